"""The audit trail: one JSON object per line in `<data-dir>/audit.json`, in ES's field names.

Written through a queue by a background thread, so a slow disk never stalls a request. It records
who did what to which endpoint and whether it was allowed, never a request body or a secret.
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

AUDIT_FILE = "audit.json"


def _timestamp() -> str:
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S,") + f"{now.microsecond // 1000:03d}+0000"


class _JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return orjson.dumps(record.msg).decode()


class _Enqueue(logging.handlers.QueueHandler):
    """Hands the event over as it is: formatting happens on the writer thread, not on the request's."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record


class AuditTrail:
    def __init__(self, path: Path | None, *, node_name: str, cluster_name: str) -> None:
        self._base = {"node.name": node_name, "cluster.name": cluster_name}
        self._logger = logging.getLogger(f"inferd.audit.{id(self)}")
        self._logger.propagate = False
        self._logger.setLevel(logging.INFO)
        self._listener: logging.handlers.QueueListener | None = None
        if path is not None:
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(_JsonLines())
            q: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
            self._logger.addHandler(_Enqueue(q))
            self._listener = logging.handlers.QueueListener(q, handler)
            self._listener.start()

    @property
    def enabled(self) -> bool:
        return self._listener is not None

    def event(self, event_type: str, event_action: str, **fields: Any) -> None:
        if not self.enabled:
            return
        entry = {"type": "audit", "timestamp": _timestamp(), **self._base, "event.type": event_type}
        entry["event.action"] = event_action
        entry.update({k: v for k, v in fields.items() if v is not None})
        self._logger.info(entry)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            for handler in self._listener.handlers:
                handler.close()
            self._listener = None
        for handler in list(self._logger.handlers):
            self._logger.removeHandler(handler)
