"""Reading processes from /proc, and waiting for a condition with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (state first, then the parent's pid); None once gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except FileNotFoundError:
        return None


def gone(pid: int) -> bool:
    """No such process, or a zombie no one has reaped yet."""
    fields = stat_fields(pid)
    return fields is None or fields[0] == "Z"


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
