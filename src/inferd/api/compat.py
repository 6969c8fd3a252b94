"""ES's HTTP conventions around every request, as one ASGI middleware.

In order: decode the path the ES way, add the product and opaque-id headers to the response,
authenticate (before routing, as ES 8 does), and check the request's media types.
"""

from __future__ import annotations

import itertools
import logging
import secrets

from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from inferd import ES_COMPAT_VERSION
from inferd.api.errors import render_error, render_unexpected
from inferd.api.media import MediaTypeHeaderError, check_body_content_type, check_compatibility
from inferd.api.paths import request_uri, rewrite_scope_path
from inferd.auth.authenticator import ANONYMOUS_SUPERUSER, Authenticator, claimed_username
from inferd.auth.authorizer import Authorizer, RequestInfo
from inferd.auth.principal import Principal
from inferd.core.deprecation import start_collecting
from inferd.core.errors import AuthenticationError, InferdError

PRINCIPAL = "inferd.principal"
REQUEST_INFO = "inferd.request_info"
PRODUCT_HEADER = (b"x-elastic-product", b"Elasticsearch")


log = logging.getLogger(__name__)


def _has_body(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return value.strip() not in (b"", b"0")
        if name == b"transfer-encoding":
            return True
    return False


_READ_HEADERS = (b"accept", b"content-type", b"authorization", b"x-opaque-id")


def _read_headers(scope: Scope) -> dict[bytes, str]:
    """The first value of each header in `_READ_HEADERS`, in one pass over the raw list.

    Starlette's `Headers.get` is the generic `Mapping.get`, which walks the list again on every
    call: three calls were 4 % of the event loop's time under load.
    """
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _READ_HEADERS and name not in found:
            found[name] = value.decode("latin-1")
    return found


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


class EsHttpMiddleware:
    def __init__(self, app: ASGIApp, authenticator: Authenticator | None, authorizer: Authorizer) -> None:
        self.app = app
        self.authenticator = authenticator  # None: security is off
        self.authorizer = authorizer
        # Request ids need to be unique, not secret: a random node prefix and a counter (reading
        # os.urandom on every request showed up as a third of the event loop's time).
        prefix = secrets.token_urlsafe(9)
        self._request_ids = (f"{prefix}{n:x}" for n in itertools.count())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = _read_headers(scope)
        opaque_id = headers.get(b"x-opaque-id")

        warnings = start_collecting()
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                response_headers = list(message.get("headers", []))
                # ES leaves the product header off authentication and authorization failures.
                if message["status"] not in (401, 403):
                    response_headers.append(PRODUCT_HEADER)
                if opaque_id is not None:
                    response_headers.append((b"x-opaque-id", opaque_id.encode("latin-1")))
                response_headers.extend((b"warning", warning_header(w)) for w in warnings)
                message = {**message, "headers": response_headers}
            await send(message)

        request = Request(scope)
        info = RequestInfo(
            method=scope["method"],
            path=scope["path"],
            address=_client_address(scope),
            request_id=next(self._request_ids),
            opaque_id=opaque_id or None,
        )
        scope[REQUEST_INFO] = info
        try:
            rewrite_scope_path(scope)
            scope[PRINCIPAL] = await self._authenticate(request, info, headers.get(b"authorization"))
            has_body = _has_body(scope)
            check_compatibility(headers.get(b"accept"), headers.get(b"content-type"), has_body)
            if has_body:
                check_body_content_type(headers.get(b"content-type"))
        except InferdError as exc:
            if isinstance(exc, MediaTypeHeaderError):
                # ES strips the refused headers before it answers, so the error is plain JSON.
                scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in (b"accept", b"content-type")]
                request = Request(scope)
            await render_error(request, exc)(scope, receive, send_with_headers)
            return
        try:
            await self.app(scope, receive, send_with_headers)
        except ClientDisconnect:
            # The client went away before its body arrived: nobody is left to answer, and it is no error of ours.
            log.debug("client left during %s %s", info.method, info.path)
        except Exception as exc:
            if started:
                raise
            await render_unexpected(request, exc)(scope, receive, send_with_headers)

    async def _authenticate(self, request: Request, info: RequestInfo, authorization: str | None) -> Principal:
        if self.authenticator is None:
            return ANONYMOUS_SUPERUSER
        try:
            return await self.authenticator.authenticate(authorization, request_uri(request.scope), info.address)
        except AuthenticationError:
            anonymous = not (authorization or "").strip()
            self.authorizer.authentication_failed(info, claimed_username(authorization), anonymous=anonymous)
            raise


def warning_header(text: str) -> bytes:
    """ES's deprecation header: 299 Elasticsearch-<version> "<text>" (quotes and backslashes escaped)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return f'299 Elasticsearch-{ES_COMPAT_VERSION}-inferd "{escaped}"'.encode()


class GzipWhenAccepted(GZipMiddleware):
    """Gzip responses for clients that accept it (ES's `http.compression`); others skip the wrapper."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Starlette wraps every response in a pass-through responder when the client does not
        # accept gzip; skipping it saved 5 % of the event loop's time.
        if scope["type"] == "http" and any(
            k == b"accept-encoding" and b"gzip" in v.lower() for k, v in scope["headers"]
        ):
            await super().__call__(scope, receive, send)
        else:
            await self.app(scope, receive, send)
