"""Chunking settings (`chunking_settings`) parsed and validated with ES's rules and messages.

Defaults: absent or `{}` at PUT means sentence / 250 / 1. Numbers in range messages are printed
as doubles, as ES prints them.
"""

from __future__ import annotations

from typing import Any

from inferd.core.errors import IllegalArgument
from inferd.core.java_format import java_value

DEFAULT_CHUNKING = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
MAX_CHUNK_SIZE_LIMIT = 300
MAX_SEPARATORS = 50

SEPARATOR_GROUPS: dict[str, list[str]] = {
    "plaintext": ["(?<!\\n)\\n\\n(?!\\n)", "(?<!\\n)\\n(?!\\n)"],
    "markdown": [
        "\n# ",
        "\n## ",
        "\n### ",
        "\n#### ",
        "\n##### ",
        "\n###### ",
        "\n^(?!\\s*$).*\\n-{1,}\\n",
        "\n^(?!\\s*$).*\\n={1,}\\n",
    ],
}

_ALLOWED = {
    "word": ("strategy", "max_chunk_size", "overlap"),
    "sentence": ("strategy", "max_chunk_size", "sentence_overlap"),
    "none": ("strategy",),
    "recursive": ("strategy", "max_chunk_size", "separator_group", "separators"),
}
_EXTRA_MESSAGE = {
    "word": "Word based chunking settings can not have the following settings: [{keys}]",
    "sentence": "Sentence based chunking settings can not have the following settings: [{keys}]",
    "none": "When chunking is disabled (none), settings can not have the following: [{keys}]",
    "recursive": "Recursive chunking settings can not have the following settings: [{keys}]",
}
_MIN_CHUNK = {"word": 10, "sentence": 20, "recursive": 10}


def _int_setting(settings: dict[str, Any], key: str, problems: list[str], *, required: bool) -> int | None:
    if key not in settings or settings[key] is None:
        if required:
            problems.append(f"[chunking_settings] does not contain the required setting [{key}]")
        return None
    value = settings[key]
    if isinstance(value, bool) or not isinstance(value, int):
        problems.append(
            f"field [{key}] is not of the expected type. "
            f"The value [{java_value(value)}] cannot be converted to a [Integer]"
        )
        return None
    return value


def _bounded(key: str, value: int, low: int | None, high: int | None, problems: list[str]) -> bool:
    if value <= 0:
        problems.append(f"[chunking_settings] Invalid value [{value}]. [{key}] must be a positive integer")
        return False
    if low is not None and value < low:
        problems.append(
            f"[chunking_settings] Invalid value [{float(value)}]. "
            f"[{key}] must be a greater than or equal to [{float(low)}]"
        )
        return False
    if high is not None and value > high:
        problems.append(
            f"[chunking_settings] Invalid value [{float(value)}]. "
            f"[{key}] must be a less than or equal to [{float(high)}]"
        )
        return False
    return True


def _max_chunk_size(strategy: str, settings: dict[str, Any], problems: list[str]) -> int | None:
    size = _int_setting(settings, "max_chunk_size", problems, required=True)
    if size is None or not _bounded("max_chunk_size", size, _MIN_CHUNK[strategy], MAX_CHUNK_SIZE_LIMIT, problems):
        return None
    return size


def _separators(settings: dict[str, Any], problems: list[str]) -> list[str] | None:
    group = settings.get("separator_group")
    separators = settings.get("separators")
    if group is not None and separators is not None:
        problems.append("Recursive chunking settings can not have both separators and separator_set")
        return None
    if separators is not None:
        if not isinstance(separators, list):
            problems.append(
                f"field [separators] is not of the expected type. The value [{java_value(separators)}] "
                "cannot be converted to a [List]"
            )
            return None
        bad = next((s for s in separators if not isinstance(s, str)), None)
        if bad is not None:
            problems.append(
                f"field [separators] is not of the expected type. The value [{java_value(bad)}] "
                "cannot be converted to a [String]"
            )
            return None
        if not separators:
            problems.append("Recursive chunking settings can not have an empty list of separators")
            return None
        if len(separators) > MAX_SEPARATORS:
            problems.append(f"separators list size [{len(separators)}] must not exceed [{MAX_SEPARATORS}]")
            return None
        return list(separators)
    name = "plaintext" if group is None else str(group).strip().lower()
    if name not in SEPARATOR_GROUPS:
        problems.append(
            f"[chunking_settings] Invalid value [{java_value(group)}] received. "
            "[separator_group] must be one of [markdown, plaintext]"
        )
        return None
    return list(SEPARATOR_GROUPS[name])


def parse_chunking_settings(raw: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """A request's chunking_settings -> the normalised settings to store, or ES's problems.

    Structural errors (no or unknown strategy) raise an illegal_argument_exception at once, as ES does.
    """
    if raw is None:
        return dict(DEFAULT_CHUNKING), []
    if not isinstance(raw, dict):
        return None, [
            f"field [chunking_settings] is not of the expected type. The value [{java_value(raw)}] "
            "cannot be converted to a [Map]"
        ]
    if not raw:
        return dict(DEFAULT_CHUNKING), []
    if "strategy" not in raw:
        raise IllegalArgument("Can't generate Chunker without ChunkingStrategy provided")
    strategy = java_value(raw["strategy"])
    if strategy not in _ALLOWED:
        raise IllegalArgument(f"Invalid chunkingStrategy {strategy}")

    problems: list[str] = []
    extra = [k for k in raw if k not in _ALLOWED[strategy]]
    if extra:
        problems.append(_EXTRA_MESSAGE[strategy].format(keys=", ".join(extra)))
    if strategy == "none":
        return (None, problems) if problems else ({"strategy": "none"}, [])

    size = _max_chunk_size(strategy, raw, problems)
    result: dict[str, Any] = {"strategy": strategy, "max_chunk_size": size}
    if strategy == "word" and size is not None:
        overlap = _int_setting(raw, "overlap", problems, required=True)
        if overlap is not None and _bounded("overlap", overlap, None, size // 2, problems):
            result["overlap"] = overlap
    elif strategy == "sentence":
        sentence_overlap = _int_setting(raw, "sentence_overlap", problems, required=False)
        if sentence_overlap is None and "sentence_overlap" not in raw:
            sentence_overlap = 1
        if sentence_overlap is not None and sentence_overlap not in (0, 1):
            problems.append(f"sentence_overlap[{sentence_overlap}] must be either 0 or 1")
        result["sentence_overlap"] = sentence_overlap
    elif strategy == "recursive":
        result["separators"] = _separators(raw, problems)
    return (None, problems) if problems else (result, [])
