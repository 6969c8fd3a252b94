"""HTTP requests enter the app at inferd's own outermost middleware, past FastAPI's no-op layers.

The real server's behaviour on that way is what the rest of the API suite checks; here, which
stacks take it and which keep FastAPI's whole stack.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

from inferd.api.compat import EsHttpMiddleware
from inferd.api.entry import InferdApp, inferd_front
from inferd.app import build_app
from inferd.settings import ServerSettings


class Tagging:
    """A middleware outside inferd's own: it adds a response header."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def tagged(message: dict[str, object]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"x-tagged", b"yes")]}  # type: ignore[list-item]
            await send(message)

        await self.app(scope, receive, tagged)


def get_root(app: InferdApp) -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with app.router.lifespan_context(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            return await c.get("/")

    return asyncio.run(call())


def settings(tmp_path: Path) -> ServerSettings:
    return ServerSettings(data_dir=tmp_path, security=False)


def test_requests_enter_at_the_es_http_middleware(tmp_path: Path) -> None:
    app = build_app(settings(tmp_path))
    assert isinstance(app, InferdApp)
    app.middleware_stack = app.build_middleware_stack()
    assert isinstance(app.front, EsHttpMiddleware)
    response = get_root(app)
    assert response.status_code == 200
    assert response.headers["x-elastic-product"] == "Elasticsearch"


def test_a_middleware_around_inferds_own_keeps_the_whole_stack(tmp_path: Path) -> None:
    app = build_app(settings(tmp_path))
    app.add_middleware(Tagging)
    app.middleware_stack = app.build_middleware_stack()
    assert app.front is None
    response = get_root(app)
    assert response.status_code == 200
    assert response.headers["x-tagged"] == "yes"


def test_an_application_500_handler_keeps_the_whole_stack(tmp_path: Path) -> None:
    app = build_app(settings(tmp_path))
    app.add_exception_handler(Exception, lambda request, exc: None)  # type: ignore[arg-type,return-value]
    assert inferd_front(app.build_middleware_stack()) is None


def test_a_framework_body_limit_keeps_the_whole_stack(tmp_path: Path) -> None:
    app = build_app(settings(tmp_path))
    app.max_body_size = 1024
    assert inferd_front(app.build_middleware_stack()) is None
