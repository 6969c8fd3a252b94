"""Deprecation warnings for the current request, sent back as ES `Warning` headers.

The HTTP layer opens a collector per request; code anywhere below adds to it. Outside a request
(the CLI, tests of the core), warnings only go to the log.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar

log = logging.getLogger("inferd.deprecation")

_current: ContextVar[list[str] | None] = ContextVar("inferd_response_warnings", default=None)


def deprecation_warning(text: str) -> None:
    log.warning("%s", text)
    collected = _current.get()
    if collected is not None and text not in collected:
        collected.append(text)


def start_collecting() -> list[str]:
    """A fresh list for this request's warnings (bound to the current context)."""
    collected: list[str] = []
    _current.set(collected)
    return collected
