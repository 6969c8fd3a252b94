"""The one place that turns exceptions into Elasticsearch error responses."""

from __future__ import annotations

import logging
import traceback
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from inferd.api.params import flag_param
from inferd.api.render import json_response
from inferd.core.errors import InferdError, SimpleError, XContentParseError

log = logging.getLogger(__name__)

INTERNAL_REASON = "An internal error occurred in inferd; the server log has the details."


def _header_value(values: list[str]) -> str | list[str]:
    return values[0] if len(values) == 1 else values


def _cause_chain(exc: InferdError, trace: bool) -> dict[str, Any]:
    body = _exception_object(exc, trace)
    if exc.caused_by is not None:
        body["caused_by"] = _cause_chain(exc.caused_by, trace)
    return body


def _exception_object(exc: InferdError, trace: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": exc.es_type, "reason": exc.reason}
    body.update(exc.extra)
    if exc.headers_in_body and exc.headers:
        body["header"] = {k: _header_value(v) for k, v in exc.headers.items()}
    if trace:
        body["stack_trace"] = "".join(traceback.format_exception(exc))
    return body


# Causes that are plain Java exceptions in ES; the others are Elasticsearch exceptions.
_JAVA_EXCEPTIONS = frozenset({"illegal_argument_exception", "json_parse_exception", "number_format_exception"})


def _root_cause(exc: InferdError) -> InferdError:
    """ES's guess: a parse error caused by an Elasticsearch exception reports that exception as the root."""
    if (
        isinstance(exc, XContentParseError)
        and exc.caused_by is not None
        and exc.caused_by.es_type not in _JAVA_EXCEPTIONS
    ):
        return _root_cause(exc.caused_by)
    return exc


def error_body(exc: InferdError, *, trace: bool = False) -> dict[str, Any]:
    if isinstance(exc, SimpleError):
        simple: dict[str, Any] = {"error": exc.reason}
        if exc.include_status:
            simple["status"] = exc.status
        return simple
    # ES never shows stack traces for authentication failures.
    trace = trace and exc.status != 401
    # root_cause lists the root exception without its causes.
    root = _exception_object(_root_cause(exc), trace)
    error = {"root_cause": [root], **_cause_chain(exc, trace)}
    return {"error": error, "status": exc.status}


def render_error(request: Request, exc: InferdError) -> Response:
    trace = flag_param(request, "error_trace")
    response = json_response(request, error_body(exc, trace=trace), exc.status, filtered=False)
    for name, values in exc.headers.items():
        for value in values:
            response.raw_headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return response


def render_unexpected(request: Request, exc: BaseException) -> Response:
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return render_error(request, InferdError(INTERNAL_REASON))
