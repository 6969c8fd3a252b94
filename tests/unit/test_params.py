"""Query parameter rules: time values, booleans, suggestions, media types."""

from __future__ import annotations

import math

import pytest

from inferd.api.media import check_body_content_type, check_compatibility, response_content_type
from inferd.api.params import parse_bool, parse_time_value
from inferd.core.errors import IllegalArgument, InferdError
from inferd.core.suggest import did_you_mean


@pytest.mark.parametrize(
    ("raw", "seconds"),
    [
        ("30s", 30),
        ("1m", 60),
        ("500ms", 0.5),
        ("2h", 7200),
        ("1d", 86400),
        ("0", 0),
        ("10micros", 1e-5),
        ("7nanos", 7e-9),
        (" 5S ", 5),
    ],
)
def test_time_values(raw: str, seconds: float) -> None:
    assert parse_time_value("timeout", raw) == pytest.approx(seconds)


def test_minus_one_means_no_limit() -> None:
    assert math.isinf(parse_time_value("timeout", "-1"))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized"),
        ("10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized"),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        (
            "-5s",
            "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported",
        ),
        ("xs", "failed to parse [xs]"),
    ],
)
def test_bad_time_values(raw: str, reason: str) -> None:
    with pytest.raises(IllegalArgument) as info:
        parse_time_value("timeout", raw)
    assert info.value.reason == reason


@pytest.mark.parametrize(("raw", "value"), [(None, False), ("", True), ("true", True), ("false", False)])
def test_booleans(raw: str | None, value: bool) -> None:
    assert parse_bool("pretty", raw, False) is value


def test_bad_boolean() -> None:
    with pytest.raises(
        IllegalArgument, match=r"Failed to parse value \[yes\] as only \[true\] or \[false\] are allowed\."
    ):
        parse_bool("pretty", "yes", False)


def test_suggestions() -> None:
    assert did_you_mean("timout", ["timeout", "pretty"], arrow=True) == " -> did you mean [timeout]?"
    assert did_you_mean("inptu", ["input", "query"], arrow=False) == " did you mean [input]?"
    assert did_you_mean("zzz", ["input"], arrow=False) == ""
    assert (
        did_you_mean("tops", ["top_n", "top_k", "tops_"], arrow=True)
        == " -> did you mean any of [tops_, top_k, top_n]?"
    )


def test_response_type_echoes_compat_version() -> None:
    compat = "application/vnd.elasticsearch+json; compatible-with=8"
    assert response_content_type(compat, None) == "application/vnd.elasticsearch+json;compatible-with=8"
    assert response_content_type(None, compat) == "application/vnd.elasticsearch+json;compatible-with=8"
    assert response_content_type("application/json", None) == "application/json"
    assert response_content_type("*/*", None) == "application/json"


def test_compat_versions() -> None:
    v9 = "application/vnd.elasticsearch+json; compatible-with=9"
    check_compatibility(v9, v9, has_body=True)
    check_compatibility("*/*", "application/json", has_body=True)
    with pytest.raises(InferdError) as info:
        check_compatibility("application/vnd.elasticsearch+json; compatible-with=7", None, has_body=False)
    assert info.value.es_type == "media_type_header_exception"
    assert info.value.caused_by is not None
    assert info.value.caused_by.reason.startswith("Accept version must be either version 9 or 8, but found 7.")
    with pytest.raises(InferdError):
        check_compatibility(v9, "application/vnd.elasticsearch+json; compatible-with=8", has_body=True)


@pytest.mark.parametrize(
    "content_type",
    ["application/json", "application/json; charset=UTF-8", "application/vnd.elasticsearch+json; compatible-with=9"],
)
def test_json_bodies_are_accepted(content_type: str) -> None:
    check_body_content_type(content_type)


@pytest.mark.parametrize(
    ("content_type", "reason"),
    [
        (None, "Content-Type header is missing"),
        ("text/plain", "Content-Type header [text/plain] is not supported"),
        (
            "application/x-www-form-urlencoded",
            "Content-Type header [application/x-www-form-urlencoded] is not supported",
        ),
    ],
)
def test_other_bodies_are_refused_with_406(content_type: str | None, reason: str) -> None:
    with pytest.raises(InferdError) as info:
        check_body_content_type(content_type)
    assert (info.value.status, info.value.reason) == (406, reason)
