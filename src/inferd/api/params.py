"""Query parameters with ES's rules: booleans, time values, and refusal of unknown parameters."""

from __future__ import annotations

import math
from collections.abc import Iterable

from starlette.requests import Request

from inferd.api.paths import decoded_path
from inferd.core.errors import IllegalArgument, InferdError
from inferd.core.suggest import did_you_mean

# Accepted on every route (ES's response parameters plus error_trace).
COMMON_PARAMS = frozenset({"pretty", "human", "error_trace", "filter_path", "format"})


def query_param(request: Request, name: str) -> str | None:
    """The first value of a query parameter. Most requests have no query string: they skip parsing one."""
    if not request.scope.get("query_string"):
        return None
    return request.query_params.get(name)


def parse_bool(name: str, raw: str | None, default: bool) -> bool:
    if raw is None:
        return default
    # The presence of the parameter alone (?pretty) turns it on.
    if raw == "" or raw == "true":
        return True
    if raw == "false":
        return False
    raise IllegalArgument(f"Failed to parse value [{raw}] as only [true] or [false] are allowed.")


def flag_param(request: Request, name: str, *, default: bool = False) -> bool:
    """A boolean parameter; an invalid value counts as the default (it was refused earlier)."""
    try:
        return parse_bool(name, query_param(request, name), default)
    except IllegalArgument:
        return default


_TIME_UNITS = (("nanos", 1e-9), ("micros", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0), ("d", 86400.0))


def parse_time_value(name: str, raw: str) -> float:
    """An ES time value ("30s", "1m", "500ms", "-1") in seconds; infinity for -1 (no limit)."""
    value = raw.strip().lower()
    if value == "-1":
        return math.inf
    if value == "0":
        return 0.0
    unit = next(((suffix, factor) for suffix, factor in _TIME_UNITS if value.endswith(suffix)), None)
    if unit is None:
        raise IllegalArgument(
            f"failed to parse setting [{name}] with value [{raw}] as a time value: unit is missing or unrecognized"
        )
    suffix, factor = unit
    number = value[: -len(suffix)].strip()
    try:
        amount = int(number)
    except ValueError:
        # ES passes Java's NumberFormatException on as the cause.
        cause = InferdError(f'For input string: "{number}"', status=400, es_type="number_format_exception")
        try:
            float(number)
        except ValueError:
            raise IllegalArgument(f"failed to parse [{raw}]", caused_by=cause) from None
        raise IllegalArgument(
            f"failed to parse [{raw}], fractional time values are not supported", caused_by=cause
        ) from None
    if amount < 0:
        raise IllegalArgument(
            f"failed to parse setting [{name}] with value [{raw}] as a time value: negative durations are not supported"
        )
    return amount * factor


def check_params(request: Request, allowed: Iterable[str] = ()) -> None:
    """Refuse parameters the route does not know, with ES's message and suggestions."""
    if not request.scope.get("query_string"):
        return
    known = COMMON_PARAMS | set(allowed)
    unknown = sorted({k for k in request.query_params if k not in known})
    if unknown:
        word = "parameters" if len(unknown) > 1 else "parameter"
        items = ", ".join(f"[{u}]{did_you_mean(u, known, arrow=True)}" for u in unknown)
        raise IllegalArgument(f"request [{decoded_path(request.scope)}] contains unrecognized {word}: {items}")
    for name in ("pretty", "human", "error_trace"):
        parse_bool(name, request.query_params.get(name), False)


def time_param(request: Request, name: str = "timeout", *, default: float | None) -> float | None:
    """Seconds from a time-value parameter; `default` when absent, infinity for -1 (no limit)."""
    raw = query_param(request, name)
    return default if raw is None else parse_time_value(name, raw)


def bool_param(request: Request, name: str, default: bool = False) -> bool:
    return parse_bool(name, query_param(request, name), default)
