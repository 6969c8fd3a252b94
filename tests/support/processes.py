"""Reading processes from /proc, and waiting for a condition with a deadline."""

from __future__ import annotations

import os
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


def model_processes() -> set[int]:
    """This process's live children that run a model (`inferd.engine.runtimes.isolated`)."""
    found = set()
    for folder in Path("/proc").glob("[0-9]*"):
        fields = stat_fields(int(folder.name))
        try:
            cmdline = (folder / "cmdline").read_bytes()
        except OSError:
            continue  # exited meanwhile
        if fields and int(fields[1]) == os.getpid() and fields[0] != "Z" and b"runtimes.isolated" in cmdline:
            found.add(int(folder.name))
    return found


def wait_for(condition: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)
