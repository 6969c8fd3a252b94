"""The audit trail: one JSON object per line in `<data-dir>/audit.json`, in ES's field names.

Written through a queue by a background thread, so a slow disk never stalls a request. It records
who did what to which endpoint and whether it was allowed, never a request body or a secret.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

AUDIT_FILE = "audit.json"
_BATCH = 256  # events written (and flushed) together when they pile up
# After the first event of a batch, the writer waits this long for more before it writes. Under
# load it then wakes a few times a second rather than once a request: each wake-up also takes the
# GIL from the model threads and the event loop.
LINGER_S = 0.05


def format_timestamp(epoch_s: float) -> str:
    """ES's audit timestamp: `2026-11-28T01:02:03,456+0000`."""
    now = datetime.fromtimestamp(epoch_s, UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S,") + f"{now.microsecond // 1000:03d}+0000"


class AuditTrail:
    """Events go on a queue as plain dicts; one writer thread stamps, encodes and appends them.

    Not the logging module: a LogRecord per request, and the formatting, cost the event loop
    about 5 % of its time under load.
    """

    def __init__(self, path: Path | None, *, node_name: str, cluster_name: str) -> None:
        self._base = {"node.name": node_name, "cluster.name": cluster_name}
        self._queue: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        if path is not None:
            self._file = path.open("ab")
            self._thread = threading.Thread(target=self._write, name="inferd-audit", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._thread is not None

    def event(self, event_type: str, event_action: str, **fields: Any) -> None:
        if self._thread is None:
            return
        entry = {"type": "audit", "timestamp": time.time(), **self._base, "event.type": event_type}
        entry["event.action"] = event_action
        entry.update({k: v for k, v in fields.items() if v is not None})
        self._queue.put(entry)

    def _write(self) -> None:
        while True:
            first = self._queue.get()
            if first is not None:
                time.sleep(LINGER_S)
            pending: list[dict[str, Any] | None] = [first]
            while pending[-1] is not None:
                try:
                    pending.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for start in range(0, len(pending), _BATCH):
                self._append([item for item in pending[start : start + _BATCH] if item is not None])
            if pending[-1] is None:
                return

    def _append(self, events: list[dict[str, Any]]) -> None:
        lines = []
        for event in events:
            event["timestamp"] = format_timestamp(event["timestamp"])
            lines.append(orjson.dumps(event) + b"\n")
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
        except OSError as exc:  # a full disk must not kill the writer and let the queue grow
            log.error("could not write %d audit event(s): %s", len(lines), exc)

    def close(self) -> None:
        """Write what is queued, then stop."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
            self._file.close()
