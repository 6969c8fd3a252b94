"""Each response leaves in one write: the transport under uvicorn's protocol gathers a loop step's writes.

The unit tests record what reaches the real transport; the last test drives the real server over
one raw keep-alive connection, with requests pipelined, to check that answers keep their order.
"""

from __future__ import annotations

import asyncio
import base64
import socket
from typing import Any

from inferd.api.http_protocol import CoalescingTransport, HttpProtocol
from inferd.app import build_app, uvicorn_config
from inferd.settings import ServerSettings
from tests.support.servers import RunningServer


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[list[bytes]] = []
        self.closed = False
        self.aborted = False

    def writelines(self, list_of_data: Any) -> None:
        self.calls.append([bytes(d) for d in list_of_data])

    def write(self, data: Any) -> None:
        raise AssertionError("the coalescing transport hands its writes on with writelines only")

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0


def run(steps: Any) -> RecordingTransport:
    async def main() -> RecordingTransport:
        real = RecordingTransport()
        await steps(CoalescingTransport(real, asyncio.get_running_loop()), real)
        return real

    return asyncio.run(main())


def test_the_writes_of_one_loop_step_reach_the_socket_in_one_call() -> None:
    async def steps(transport: CoalescingTransport, real: RecordingTransport) -> None:
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        transport.write(b"")
        assert real.calls == []  # nothing yet: the step has not ended
        await asyncio.sleep(0)
        assert real.calls == [[b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n", b"{}"]]

    run(steps)


def test_writes_of_later_steps_leave_one_call_each_in_their_order() -> None:
    async def steps(transport: CoalescingTransport, real: RecordingTransport) -> None:
        transport.write(b"head")
        await asyncio.sleep(0)
        transport.writelines([b"chunk 1", b"chunk 2"])
        await asyncio.sleep(0)
        transport.write(b"chunk 3")
        assert transport.get_write_buffer_size() == len(b"chunk 3")
        await asyncio.sleep(0)
        assert real.calls == [[b"head"], [b"chunk 1", b"chunk 2"], [b"chunk 3"]]

    run(steps)


def test_close_sends_what_is_pending_first_and_once() -> None:
    async def steps(transport: CoalescingTransport, real: RecordingTransport) -> None:
        transport.write(b"last words")
        transport.close()
        assert real.calls == [[b"last words"]] and real.closed
        await asyncio.sleep(0)
        assert real.calls == [[b"last words"]]

    run(steps)


def test_abort_and_a_closed_peer_drop_what_is_pending() -> None:
    async def steps(transport: CoalescingTransport, real: RecordingTransport) -> None:
        transport.write(b"never sent")
        transport.abort()
        await asyncio.sleep(0)
        transport.write(b"nor this")
        await asyncio.sleep(0)
        assert real.calls == [] and real.aborted

    run(steps)


def test_the_server_is_configured_with_the_coalescing_protocol(tmp_path: Any) -> None:
    settings = ServerSettings(data_dir=tmp_path, security=False)
    assert uvicorn_config(build_app(settings), settings).http is HttpProtocol


def test_pipelined_requests_on_one_connection_are_answered_whole_and_in_order(server: RunningServer) -> None:
    assert server.password is not None
    token = base64.b64encode(f"elastic:{server.password}".encode()).decode()
    host, port = server.url.removeprefix("http://").split(":")
    paths = ["/", "/_inference/no-such-endpoint", "/_inference/_services"]
    requests = b"".join(
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {token}\r\n\r\n".encode() for path in paths
    )
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(requests)
        received = b""
        statuses: list[bytes] = []
        while len(statuses) < len(paths):
            chunk = conn.recv(65536)
            assert chunk, f"the server closed the connection after {statuses}"
            received += chunk
            statuses = parse_responses(received)
    assert statuses == [b"200", b"404", b"200"]


def parse_responses(data: bytes) -> list[bytes]:
    """Status codes of the complete responses (content-length framed) at the start of `data`."""
    statuses = []
    while b"\r\n\r\n" in data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:"))
        if len(rest) < length:
            break
        statuses.append(lines[0].split(b" ")[1])
        data = rest[length:]
    return statuses
