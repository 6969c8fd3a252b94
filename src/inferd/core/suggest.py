"""ES's "did you mean" suggestions for unknown names (Lucene Levenshtein similarity above 0.5)."""

from __future__ import annotations

from collections.abc import Iterable


def levenshtein(a: str, b: str) -> int:
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def did_you_mean(invalid: str, candidates: Iterable[str], *, arrow: bool) -> str:
    """The suffix ES appends: " -> did you mean [x]?" (REST parameters) or " did you mean [x]?" (body fields)."""
    scored = []
    for c in set(candidates):
        similarity = 1 - levenshtein(invalid, c) / max(len(invalid), len(c), 1)
        if similarity > 0.5:
            scored.append((-similarity, c))
    names = [c for _, c in sorted(scored)]
    if not names:
        return ""
    lead = " ->" if arrow else ""
    if len(names) == 1:
        return f"{lead} did you mean [{names[0]}]?"
    return f"{lead} did you mean any of [{', '.join(names)}]?"
