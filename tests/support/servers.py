"""Real inferd servers on loopback for the tests: in a thread (fast) or as a subprocess (for kill -9)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from inferd.app import build_app, uvicorn_config
from inferd.engine.engine import Engine
from inferd.services.base import Service
from inferd.settings import ServerSettings
from tests.support.fake_models import Recorder, fake_engine

PASSWORD = "test-elastic-password"
# Many tests fail authentication on purpose; the throttle has tests of its own with low limits.
NO_THROTTLE = {"auth_failures_per_user_and_address": "100000/minute", "auth_failures_per_address": "100000/minute"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    password: str | None = PASSWORD
    generated_passwords: list[str] = field(default_factory=list)

    @property
    def auth(self) -> tuple[str, str] | None:
        return ("elastic", self.password) if self.password else None

    def http(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("auth", self.auth)
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.url, **kwargs)


class ThreadedServer:
    """uvicorn serving build_app() in a background thread of the test process."""

    def __init__(
        self,
        data_dir: Path,
        *,
        security: bool = True,
        password: str | None = PASSWORD,
        extra_services: Sequence[type[Service]] = (),
        engine: Engine | None = None,
        **settings: Any,
    ) -> None:
        self.port = free_port()
        self.running = RunningServer(f"http://127.0.0.1:{self.port}", data_dir, password if security else None)
        config = ServerSettings(
            data_dir=data_dir,
            port=self.port,
            security=security,
            elastic_password=password if security else None,
            **{**NO_THROTTLE, **settings},
        )
        app = build_app(
            config,
            extra_services=extra_services,
            password_sink=self.running.generated_passwords.append,
            engine=engine or fake_engine(data_dir / "fake-models", Recorder()),
        )
        self.server = uvicorn.Server(uvicorn_config(app, config, host="127.0.0.1", log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> RunningServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("inferd test server did not start")
            time.sleep(0.01)
        return self.running

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


class SubprocessServer:
    """`inferd serve` in its own process, so tests can kill it the hard way."""

    def __init__(self, data_dir: Path, *, env: dict[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self.data_dir = data_dir
        throttle = {f"INFERD_{k.upper()}": v for k, v in NO_THROTTLE.items()}
        self.env = {**os.environ, "ELASTIC_PASSWORD": PASSWORD, **throttle, **(env or {})}
        self.args = list(args)
        self.proc: subprocess.Popen[str] | None = None
        self.output = ""

    def start(self) -> RunningServer:
        cmd = [sys.executable, "-m", "inferd", "serve", "--port", str(self.port), "--data-dir", str(self.data_dir)]
        self.proc = subprocess.Popen(
            [*cmd, *self.args], env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        running = RunningServer(f"http://127.0.0.1:{self.port}", self.data_dir, self.env.get("ELASTIC_PASSWORD"))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.kill()
                raise RuntimeError(f"inferd exited early: {self.output}")
            try:
                httpx.get(running.url + "/", timeout=1)
                return running
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("inferd did not start in 30s")

    def kill(self, sig: int = signal.SIGKILL) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=30)
        if self.proc.stdout is not None:
            self.output += self.proc.stdout.read()
            self.proc.stdout.close()
        return code

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill(signal.SIGTERM)
