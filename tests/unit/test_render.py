"""Body rendering: Jackson-style pretty printing and ES's filter_path."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.api.render import apply_filter_path, dumps


def test_pretty_matches_jacksons_default_pretty_printer() -> None:
    body = {"a": 1, "b": [1, {"c": "x"}], "e": {}, "f": [], "g": None}
    expected = (
        "{\n"
        '  "a" : 1,\n'
        '  "b" : [\n'
        "    1,\n"
        "    {\n"
        '      "c" : "x"\n'
        "    }\n"
        "  ],\n"
        '  "e" : { },\n'
        '  "f" : [ ],\n'
        '  "g" : null\n'
        "}\n"
    )
    assert dumps(body, pretty=True).decode() == expected


def test_compact_output_has_no_trailing_newline() -> None:
    assert dumps({"a": [1, 2]}, pretty=False) == b'{"a":[1,2]}'


BODY = {
    "endpoints": [
        {"inference_id": "a", "task_type": "rerank", "service_settings": {"model_id": "m", "num_threads": 1}},
        {"inference_id": "b", "task_type": "completion", "service_settings": {"model_id": "n"}},
    ],
    "meta": {"took": 3},
}


@pytest.mark.parametrize(
    ("filter_path", "expected"),
    [
        ("endpoints.inference_id", {"endpoints": [{"inference_id": "a"}, {"inference_id": "b"}]}),
        ("meta", {"meta": {"took": 3}}),
        ("*.took", {"meta": {"took": 3}}),
        (
            "**.model_id",
            {"endpoints": [{"service_settings": {"model_id": "m"}}, {"service_settings": {"model_id": "n"}}]},
        ),
        ("endpoints.*_id", {"endpoints": [{"inference_id": "a"}, {"inference_id": "b"}]}),
        ("nothing.here", {}),
        ("-endpoints", {"meta": {"took": 3}}),
        (
            "-**.service_settings,-meta",
            {
                "endpoints": [
                    {"inference_id": "a", "task_type": "rerank"},
                    {"inference_id": "b", "task_type": "completion"},
                ]
            },
        ),
        (
            "endpoints,-endpoints.service_settings",
            {
                "endpoints": [
                    {"inference_id": "a", "task_type": "rerank"},
                    {"inference_id": "b", "task_type": "completion"},
                ]
            },
        ),
        ("meta.took.deeper", {}),
    ],
)
def test_filter_path(filter_path: str, expected: dict[str, Any]) -> None:
    assert apply_filter_path(BODY, filter_path) == expected


def test_filter_path_on_a_top_level_array() -> None:
    services = [{"service": "a", "name": "A"}, {"service": "b", "name": "B"}]
    assert apply_filter_path(services, "service") == [{"service": "a"}, {"service": "b"}]


def test_escaped_dots_name_one_key() -> None:
    assert apply_filter_path({"a.b": 1, "a": {"b": 2}}, "a\\.b") == {"a.b": 1}
