"""Paths as ES reads them: split the raw path on '/', then percent-decode each segment.

Starlette matches routes on a fully decoded path, where an id holding "%2F" would turn into two
segments. So the raw path is rewritten into a form where each segment keeps '/' and '%' escaped,
and the `seg` convertor decodes a path parameter once it has been matched.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any
from urllib.parse import quote, unquote

from starlette.convertors import Convertor, register_url_convertor

from inferd.core.errors import IllegalArgument

DECODED_PATH = "inferd.decoded_path"


class SegmentConvertor(Convertor[str]):
    regex = "[^/]+"

    def convert(self, value: str) -> str:
        return unquote(value)

    def to_string(self, value: str) -> str:
        return quote(value, safe="")


register_url_convertor("seg", SegmentConvertor())


def segments(raw_path: bytes) -> list[str]:
    """Decoded segments; empty segments are dropped, as ES's path trie does."""
    out = []
    for part in raw_path.split(b"/"):
        if not part:
            continue
        try:
            out.append(unquote(part.decode("ascii"), errors="strict"))
        except (UnicodeDecodeError, ValueError):
            raise IllegalArgument(f"unable to decode the path segment [{part.decode('latin-1')}]") from None
    return out


def rewrite_scope_path(scope: MutableMapping[str, Any]) -> None:
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    raw = raw.split(b"?", 1)[0]
    parts = segments(raw)
    scope[DECODED_PATH] = "/" + "/".join(parts)
    scope["path"] = "/" + "/".join(p.replace("%", "%25").replace("/", "%2F") for p in parts)


def decoded_path(scope: MutableMapping[str, Any]) -> str:
    return str(scope.get(DECODED_PATH) or scope["path"])


def request_uri(scope: MutableMapping[str, Any]) -> str:
    """The request target as sent (raw path and query string), as ES quotes it in messages."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    uri = raw.decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    return f"{uri}?{query.decode('latin-1')}" if query else uri
