"""The CPU one HTTP request costs a machine before any model runs: the floor under served/raw.

`bench/embeddings.py` runs wrk, the server and the model on the same cores. When the model has
every core, each request's HTTP work (wrk writing and reading it, the kernel's loopback TCP, the
server parsing it and writing the answer) takes CPU the raw reading gives the model, so

    served/raw <= model CPU a text / (model CPU a text + floor CPU a request)

for any server, where the floor is what a server that does nothing but answer costs. This measures
that floor with the bench's own load (wrk, one thread, 32 connections, POSTs of the bench's
size) against the leanest Python server there is: uvloop with httptools' parser (what uvicorn
and inferd use), answering every request with a fixed body of `--body-bytes` (about an inferd
answer's size) and nothing else: no routing, security, JSON or batching. With both cores busy,
each request costs cores / requests a second. Prints that, and the bound it puts on served/raw for
a model of `--raw` texts a second with every core (e.g. the bench's raw figure). Usage:

    .venv/bin/python bench/http_floor.py [--seconds 15] [--rounds 3] [--body-bytes 4000] [--raw 2658]

Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLIENTS = 32

SERVER = r"""
import asyncio, sys
import httptools, uvloop

BODY = b"x" * int(sys.argv[2])
ANSWER = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(BODY), BODY)


class Fixed(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        self.transport.write(ANSWER)


async def main():
    server = await asyncio.get_running_loop().create_server(Fixed, "127.0.0.1", int(sys.argv[1]))
    async with server:
        await server.serve_forever()

uvloop.run(main())
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Basic ZWxhc3RpYzpjaGFuZ2VtZQ=="
wrk.body = '{"input": "%s"}'
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def busy_fraction(before: list[int], after: list[int]) -> float:
    """The share of the machine's CPU time that was not idle between two /proc/stat readings."""
    deltas = [b - a for a, b in zip(before, after, strict=True)]
    idle = deltas[3] + deltas[4]  # idle and iowait
    return 1 - idle / sum(deltas)


def cpu_times() -> list[int]:
    with open("/proc/stat") as stat:
        return [int(field) for field in stat.readline().split()[1:]]


def requests_per_s(url: str, seconds: float, text: str) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % text)
    command = ["wrk", "-t1", f"-c{CLIENTS}", f"-d{max(1, round(seconds))}s", "-s", script.name, url]
    before = cpu_times()
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    after = cpu_times()
    os.unlink(script.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert rate and "Non-2xx" not in out, out
    return float(rate.group(1)), busy_fraction(before, after)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--body-bytes", type=int, default=4000, help="size of the fixed answer")
    parser.add_argument("--raw", type=float, help="a model's raw texts/s on every core: prints the bound it sets")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise SystemExit("wrk is needed: apt-get install wrk")
    cpus = os.cpu_count() or 1
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(args.body_bytes)])
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        text = "a sentence of about the length the embedding bench sends, some forty tokens of it " * 3
        readings = [requests_per_s(f"http://127.0.0.1:{port}/", args.seconds, text) for _ in range(args.rounds)]
    finally:
        server.terminate()
        server.wait()
    rate = statistics.median(r for r, _ in readings)
    busy = statistics.median(b for _, b in readings)
    floor_ms = cpus * busy / rate * 1000
    print(f"cpus={cpus} clients={CLIENTS} (wrk) body={args.body_bytes} bytes rounds={args.rounds} s={args.seconds}")
    print(f"fixed-answer server: {rate:,.0f} requests/s, machine {busy:.0%} busy: {floor_ms:.3f} ms of CPU a request")
    if args.raw:
        model_ms = cpus / args.raw * 1000
        print(
            f"model at {args.raw:,.0f} texts/s on {cpus} cores = {model_ms:.3f} ms of CPU a text: "
            f"served/raw <= {model_ms / (model_ms + floor_ms):.2f} for any server at least this lean"
        )


if __name__ == "__main__":
    main()
