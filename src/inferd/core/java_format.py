"""Values printed the way Java's toString prints them, as ES quotes them in its messages."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def java_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, Mapping):
        return java_map(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(java_value(v) for v in value) + "]"
    return str(value)


def java_map(mapping: Mapping[str, Any]) -> str:
    return "{" + ", ".join(f"{k}={java_value(v)}" for k, v in mapping.items()) + "}"
