"""The audit writer thread on its own: nothing queued is lost, whatever the rate, and nothing waits long."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import orjson

from inferd.auth.audit import AuditTrail


def lines(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_a_burst_larger_than_a_write_batch_is_written_whole_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    trail = AuditTrail(path, node_name="n", cluster_name="c")
    writers = [
        threading.Thread(target=lambda w=w: [trail.event("rest", "access_granted", seq=f"{w}-{i}") for i in range(400)])
        for w in range(3)
    ]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    trail.close()
    events = lines(path)
    assert len(events) == 1200
    for w in range(3):  # each thread's events keep their order
        assert [e["seq"] for e in events if str(e["seq"]).startswith(f"{w}-")] == [f"{w}-{i}" for i in range(400)]
    assert all(e["event.action"] == "access_granted" and e["node.name"] == "n" for e in events)


def test_a_lone_event_is_on_disk_soon_without_a_close(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    trail = AuditTrail(path, node_name="n", cluster_name="c")
    try:
        trail.event("rest", "access_denied", user="someone")
        deadline = time.monotonic() + 5
        while not path.read_bytes() and time.monotonic() < deadline:
            time.sleep(0.01)
        (event,) = lines(path)
        assert event["event.action"] == "access_denied" and event["user"] == "someone"
    finally:
        trail.close()


def test_close_writes_what_is_queued_while_the_writer_lingers(tmp_path: Path) -> None:
    path = tmp_path / "audit.json"
    trail = AuditTrail(path, node_name="n", cluster_name="c")
    for i in range(5):
        trail.event("rest", "access_granted", seq=i)
    trail.close()  # the writer is still waiting for more when the close arrives
    assert [e["seq"] for e in lines(path)] == list(range(5))
