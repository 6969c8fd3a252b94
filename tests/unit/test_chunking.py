"""chunking_settings parsing: defaults, every strategy, ES's messages."""

from __future__ import annotations

from typing import Any

import pytest

from inferd.core.chunking import DEFAULT_CHUNKING, SEPARATOR_GROUPS, parse_chunking_settings
from inferd.core.errors import IllegalArgument


@pytest.mark.parametrize("raw", [None, {}])
def test_absent_or_empty_means_sentence_250_1(raw: Any) -> None:
    assert parse_chunking_settings(raw) == (DEFAULT_CHUNKING, [])
    assert DEFAULT_CHUNKING == {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 50},
            {"strategy": "word", "max_chunk_size": 100, "overlap": 50},
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 20},
            {"strategy": "sentence", "max_chunk_size": 20, "sentence_overlap": 1},
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 300, "sentence_overlap": 0},
            {"strategy": "sentence", "max_chunk_size": 300, "sentence_overlap": 0},
        ),
        ({"strategy": "none"}, {"strategy": "none"}),
        (
            {"strategy": "recursive", "max_chunk_size": 10, "separators": ["\n"]},
            {"strategy": "recursive", "max_chunk_size": 10, "separators": ["\n"]},
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 50, "separator_group": " Markdown "},
            {"strategy": "recursive", "max_chunk_size": 50, "separators": SEPARATOR_GROUPS["markdown"]},
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 50},
            {"strategy": "recursive", "max_chunk_size": 50, "separators": SEPARATOR_GROUPS["plaintext"]},
        ),
    ],
)
def test_valid_settings_are_normalised(raw: dict[str, Any], expected: dict[str, Any]) -> None:
    assert parse_chunking_settings(raw) == (expected, [])


@pytest.mark.parametrize(
    ("raw", "problems"),
    [
        (
            {"strategy": "word", "max_chunk_size": 100},
            ["[chunking_settings] does not contain the required setting [overlap]"],
        ),
        (
            {"strategy": "word", "overlap": 1},
            ["[chunking_settings] does not contain the required setting [max_chunk_size]"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 5, "overlap": 1},
            ["[chunking_settings] Invalid value [5.0]. [max_chunk_size] must be a greater than or equal to [10.0]"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 301, "overlap": 1},
            ["[chunking_settings] Invalid value [301.0]. [max_chunk_size] must be a less than or equal to [300.0]"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 250, "overlap": 130},
            ["[chunking_settings] Invalid value [130.0]. [overlap] must be a less than or equal to [125.0]"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 250, "overlap": 0},
            ["[chunking_settings] Invalid value [0]. [overlap] must be a positive integer"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 0, "overlap": 1},
            ["[chunking_settings] Invalid value [0]. [max_chunk_size] must be a positive integer"],
        ),
        (
            {"strategy": "word", "max_chunk_size": "big", "overlap": 1},
            ["field [max_chunk_size] is not of the expected type. The value [big] cannot be converted to a [Integer]"],
        ),
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 10, "sentence_overlap": 1, "x": 2},
            ["Word based chunking settings can not have the following settings: [sentence_overlap, x]"],
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 19},
            ["[chunking_settings] Invalid value [19.0]. [max_chunk_size] must be a greater than or equal to [20.0]"],
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 2},
            ["sentence_overlap[2] must be either 0 or 1"],
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 100, "overlap": 2},
            ["Sentence based chunking settings can not have the following settings: [overlap]"],
        ),
        (
            {"strategy": "none", "max_chunk_size": 100},
            ["When chunking is disabled (none), settings can not have the following: [max_chunk_size]"],
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": []},
            ["Recursive chunking settings can not have an empty list of separators"],
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["a"], "separator_group": "markdown"},
            ["Recursive chunking settings can not have both separators and separator_set"],
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separator_group": "html"},
            [
                "[chunking_settings] Invalid value [html] received. "
                "[separator_group] must be one of [markdown, plaintext]"
            ],
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["a", 1]},
            ["field [separators] is not of the expected type. The value [1] cannot be converted to a [String]"],
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["s"] * 51},
            ["separators list size [51] must not exceed [50]"],
        ),
    ],
)
def test_invalid_settings_report_es_messages(raw: dict[str, Any], problems: list[str]) -> None:
    assert parse_chunking_settings(raw) == (None, problems)


def test_several_problems_are_collected() -> None:
    settings, problems = parse_chunking_settings(
        {"strategy": "sentence", "max_chunk_size": 5, "sentence_overlap": 3, "z": 1}
    )
    assert settings is None
    assert problems == [
        "Sentence based chunking settings can not have the following settings: [z]",
        "[chunking_settings] Invalid value [5.0]. [max_chunk_size] must be a greater than or equal to [20.0]",
        "sentence_overlap[3] must be either 0 or 1",
    ]


def test_missing_strategy_is_an_illegal_argument() -> None:
    with pytest.raises(IllegalArgument, match=r"^Can't generate Chunker without ChunkingStrategy provided$"):
        parse_chunking_settings({"max_chunk_size": 100})


@pytest.mark.parametrize(("strategy", "shown"), [("Sentence", "Sentence"), ("paragraph", "paragraph"), (5, "5")])
def test_unknown_strategy_is_an_illegal_argument(strategy: Any, shown: str) -> None:
    with pytest.raises(IllegalArgument) as info:
        parse_chunking_settings({"strategy": strategy})
    assert info.value.reason == f"Invalid chunkingStrategy {shown}"
