"""Running fake provider servers on loopback, and scripting their failures.

Each fake is a Starlette app speaking one provider's real wire format. It records every request
it receives, and a test can queue scripted answers (status, JSON body, headers, delay) that are
served before the fake's normal behaviour resumes.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tests.support.servers import free_port


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Scripted:
    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None  # sent as is (e.g. malformed JSON)


class FakeProvider:
    """Base of the fakes: request log, scripted answers, a disconnect flag for streams."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.script: deque[Scripted] = deque()
        self.stream_cancelled = threading.Event()
        self.app = Starlette()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        )
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)

    def then(
        self,
        status: int,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        raw: bytes | None = None,
        times: int = 1,
    ) -> FakeProvider:
        for _ in range(times):
            self.script.append(Scripted(status, body, headers or {}, delay, raw))
        return self

    async def record(self, request: Request) -> Recorded:
        raw = await request.body()
        body = json.loads(raw) if raw else None
        recorded = Recorded(request.method, request.url.path, dict(request.headers), body)
        self.requests.append(recorded)
        return recorded

    async def scripted(self) -> Response | None:
        if not self.script:
            return None
        answer = self.script.popleft()
        if answer.delay:
            await asyncio.sleep(answer.delay)
        if answer.raw is not None:
            return Response(
                answer.raw, status_code=answer.status, headers=answer.headers, media_type="application/json"
            )
        return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
