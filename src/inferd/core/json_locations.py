"""Line and column of the top-level keys of a JSON object, for ES's "[line:col]" error prefixes.

Only error paths use it, so it re-scans the raw text with the standard library's scanner.
"""

from __future__ import annotations

import json
from json.decoder import scanstring  # type: ignore[attr-defined]
from typing import Any

_WS = " \t\r\n"


def token_name(value: Any) -> str:
    """The Jackson token a parsed JSON value started with, as ES names it in parse errors."""
    if isinstance(value, bool):
        return "VALUE_BOOLEAN"
    if isinstance(value, int | float):
        return "VALUE_NUMBER"
    if isinstance(value, str):
        return "VALUE_STRING"
    if isinstance(value, list):
        return "START_ARRAY"
    if isinstance(value, dict):
        return "START_OBJECT"
    return "VALUE_NULL"


def _skip(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


class KeyLocator:
    """Where each top-level key (and its value) starts; (1, 1) when the text cannot be scanned."""

    def __init__(self, raw: bytes | str) -> None:
        self._text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
        self._found: dict[str, tuple[tuple[int, int], tuple[int, int]]] | None = None

    def _scan(self) -> dict[str, tuple[tuple[int, int], tuple[int, int]]]:
        text = self._text
        found: dict[str, tuple[tuple[int, int], tuple[int, int]]] = {}
        decoder = json.JSONDecoder()
        try:
            i = _skip(text, 0)
            if text[i] != "{":
                return found
            i = _skip(text, i + 1)
            while text[i] != "}":
                key_at = i
                key, i = scanstring(text, i + 1)
                i = _skip(text, _skip(text, i) + 1)  # past ':'
                value_at = i
                _, i = decoder.raw_decode(text, i)
                found.setdefault(key, (_line_col(text, key_at), _line_col(text, value_at)))
                i = _skip(text, i)
                if text[i] == ",":
                    i = _skip(text, i + 1)
        except (IndexError, ValueError):
            pass
        return found

    def key(self, name: str) -> str:
        return self._format(name, 0)

    def value(self, name: str) -> str:
        return self._format(name, 1)

    def _format(self, name: str, which: int) -> str:
        if self._found is None:
            self._found = self._scan()
        line, col = self._found[name][which] if name in self._found else (1, 1)
        return f"[{line}:{col}]"
