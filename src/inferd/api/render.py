"""JSON bodies the way Elasticsearch writes them: `?pretty`, `?filter_path`, compat Content-Type."""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from inferd.api.media import response_content_type
from inferd.api.params import flag_param, query_param

_ABSENT = object()


def dumps(body: Any, *, pretty: bool) -> bytes:
    if not pretty:
        return orjson.dumps(body)
    parts: list[str] = []
    _pretty(body, 0, parts)
    parts.append("\n")  # ES adds a line feed at the end of pretty output
    return "".join(parts).encode()


def _pretty(value: Any, depth: int, out: list[str]) -> None:
    """Jackson's DefaultPrettyPrinter with a two-space indenter for objects and arrays."""
    pad = "  " * (depth + 1)
    if isinstance(value, Mapping):
        if not value:
            out.append("{ }")
            return
        out.append("{\n")
        for i, (k, v) in enumerate(value.items()):
            out.append(f"{pad}{orjson.dumps(str(k)).decode()} : ")
            _pretty(v, depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append("  " * depth + "}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[ ]")
            return
        out.append("[\n")
        for i, v in enumerate(value):
            out.append(pad)
            _pretty(v, depth + 1, out)
            out.append(",\n" if i < len(value) - 1 else "\n")
        out.append("  " * depth + "]")
    else:
        out.append(orjson.dumps(value).decode())


# -- filter_path ------------------------------------------------------------------------------

_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


def _compile(expr: str) -> tuple[str, ...]:
    return tuple(seg.replace("\\.", ".") for seg in _UNESCAPED_DOT.split(expr))


def _step(patterns: list[tuple[str, ...]], key: str) -> tuple[bool, list[tuple[str, ...]]]:
    """Advance patterns over one key: (a pattern ends here, patterns still open below)."""
    done = False
    below: list[tuple[str, ...]] = []
    for p in patterns:
        if p[0] == "**":
            below.append(p)  # '**' swallows this key and stays open
            if len(p) == 1:
                done = True
                continue
            rest_done, rest_below = _step([p[1:]], key)
            done = done or rest_done
            below.extend(rest_below)
        elif fnmatch.fnmatchcase(key, p[0]):
            if len(p) == 1:
                done = True
            else:
                below.append(p[1:])
    return done, below


def _include(value: Any, patterns: list[tuple[str, ...]]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            done, below = _step(patterns, str(k))
            if done:
                out[k] = v
            elif below:
                kept = _include(v, below)
                if kept is not _ABSENT:
                    out[k] = kept
        return out if out else _ABSENT
    if isinstance(value, list):
        items = [kept for v in value if (kept := _include(v, patterns)) is not _ABSENT]
        return items if items else _ABSENT
    return _ABSENT  # a scalar where the path wants to go deeper


def _exclude(value: Any, patterns: list[tuple[str, ...]]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            done, below = _step(patterns, str(k))
            if done:
                continue
            out[k] = _exclude(v, below) if below else v
        return out
    if isinstance(value, list):
        return [_exclude(v, patterns) for v in value]
    return value


def apply_filter_path(body: Any, filter_path: str | None) -> Any:
    if not filter_path:
        return body
    exprs = [e.strip() for e in filter_path.split(",") if e.strip()]
    includes = [_compile(e) for e in exprs if not e.startswith("-")]
    excludes = [_compile(e[1:]) for e in exprs if e.startswith("-") and len(e) > 1]
    if excludes:
        body = _exclude(body, excludes)
    if includes:
        body = _include(body, includes)
        if body is _ABSENT:
            body = {}
    return body


# -- responses -------------------------------------------------------------------------------


def json_response(
    request: Request,
    body: Any,
    status: int = 200,
    *,
    headers: Mapping[str, str] | None = None,
    filtered: bool = True,
    pretty_default: bool = False,
) -> Response:
    """A JSON response with ES's conventions; error bodies pass `filtered=False`."""
    if filtered:
        body = apply_filter_path(body, query_param(request, "filter_path"))
    pretty = flag_param(request, "pretty", default=pretty_default)
    media = response_content_type(request.headers.get("accept"), request.headers.get("content-type"))
    return Response(dumps(body, pretty=pretty), status_code=status, media_type=media, headers=dict(headers or {}))
