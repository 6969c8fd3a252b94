"""Reading a JSON request body with ES's errors: missing body, bad JSON, not an object, too large."""

from __future__ import annotations

import gzip
import zlib
from typing import Any

import orjson
from starlette.requests import Request

from inferd.core.errors import InferdError, ParseError, XContentParseError
from inferd.core.json_locations import token_name


class ContentTooLong(InferdError):
    status = 413
    es_type = "content_too_long_exception"


async def read_raw_body(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes:
        raise ContentTooLong(f"Request content exceeds the maximum of [{max_bytes}] bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise ContentTooLong(f"Request content exceeds the maximum of [{max_bytes}] bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "").strip().lower()
    if raw and encoding in ("gzip", "deflate"):
        try:
            raw = gzip.decompress(raw) if encoding == "gzip" else zlib.decompress(raw)
        except (OSError, zlib.error, EOFError) as exc:
            raise ParseError(f"Failed to decompress the request body ({encoding}): {exc}") from None
        if len(raw) > max_bytes:
            raise ContentTooLong(f"Request content exceeds the maximum of [{max_bytes}] bytes")
    return raw


def parse_json(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise XContentParseError(
            f"[{exc.lineno}:{exc.colno}] {exc.msg}",
            caused_by=InferdError(exc.msg, es_type="json_parse_exception", status=400),
        ) from None


def json_object(raw: bytes, *, parser: str | None = None) -> dict[str, Any]:
    """The body as a JSON object. `parser` names ES's object parser in "Expected START_OBJECT" errors."""
    if not raw.strip():
        raise ParseError("request body is required")
    body = parse_json(raw)
    if not isinstance(body, dict):
        prefix = f"[{parser}] " if parser else ""
        raise XContentParseError(f"[1:1] {prefix}Expected START_OBJECT but was: {token_name(body)}")
    return body


async def read_json_object(request: Request, max_bytes: int, *, parser: str | None = None) -> dict[str, Any]:
    return json_object(await read_raw_body(request, max_bytes), parser=parser)
