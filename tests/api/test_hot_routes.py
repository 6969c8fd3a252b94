"""Perform-inference requests skip the router once it has chosen their route (api/hot_routes.py).

The router stays the judge: only paths it sent to a hot handler are remembered, and a remembered
path must answer exactly as the routed one did, errors, parameters and headers included.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from inferd.api.hot_routes import HotRoutes
from inferd.core.errors import InferdError, NotFound
from tests.conftest import make_embedding_endpoint


class CountingRouter:
    """The app behind the middleware, counting the requests that reach routing."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.routed: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.routed.append(scope["path"])
        await self.app(scope, receive, send)


def _small_app() -> tuple[HotRoutes, CountingRouter]:
    app = FastAPI()

    @app.post("/_inference/{inference_id}/_stream")
    async def stream(request: Request, inference_id: str) -> Response:
        return JSONResponse({"stream": inference_id})

    @app.post("/_inference/{inference_id}")
    async def infer(request: Request, inference_id: str) -> Response:
        if inference_id == "missing":
            raise NotFound(f"Inference endpoint not found [{inference_id}]")
        return JSONResponse({"id": inference_id, "query": request.query_params.get("timeout")})

    @app.post("/_inference/{task_type}/{inference_id}")
    async def infer_typed(request: Request, task_type: str, inference_id: str) -> Response:
        return JSONResponse({"task": task_type, "id": inference_id, "params": request.path_params})

    @app.exception_handler(InferdError)
    async def es_error(request: Request, exc: Exception) -> Response:
        return JSONResponse({"routed_error": str(exc)}, status_code=404)

    router = CountingRouter(app)
    return HotRoutes(router, (infer, infer_typed), max_paths=3), router


def _post(app: Any, path: str, method: str = "POST") -> httpx.Response:
    async def call() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.request(method, path)

    return asyncio.run(call())


def test_a_hot_path_is_routed_once_then_served_directly() -> None:
    hot, router = _small_app()
    first = _post(hot, "/_inference/text_embedding/e1")
    second = _post(hot, "/_inference/text_embedding/e1")
    assert router.routed == ["/_inference/text_embedding/e1"]
    assert first.json() == second.json() == {"task": "text_embedding", "id": "e1", "params": first.json()["params"]}
    assert second.json()["params"] == {"task_type": "text_embedding", "inference_id": "e1"}


def test_the_query_string_is_read_on_each_request() -> None:
    hot, router = _small_app()
    assert (_post(hot, "/_inference/e1?timeout=1s")).json()["query"] == "1s"
    assert (_post(hot, "/_inference/e1?timeout=2s")).json()["query"] == "2s"
    assert len(router.routed) == 1


def test_routes_that_are_not_hot_are_always_routed() -> None:
    hot, router = _small_app()
    for _ in range(2):
        assert (_post(hot, "/_inference/e1/_stream")).json() == {"stream": "e1"}
        assert (_post(hot, "/_inference/e1", method="GET")).status_code == 405
    assert len(router.routed) == 4


def test_es_errors_of_a_direct_call_are_rendered_as_es_errors() -> None:
    hot, router = _small_app()
    routed = _post(hot, "/_inference/missing")
    direct = _post(hot, "/_inference/missing")
    assert len(router.routed) == 1
    assert routed.json() == {"routed_error": "Inference endpoint not found [missing]"}
    assert direct.status_code == 404
    assert direct.json()["error"]["type"] == "resource_not_found_exception"


def test_the_memory_of_paths_is_bounded() -> None:
    hot, router = _small_app()
    for n in range(4):  # the fourth path starts the memory afresh
        _post(hot, f"/_inference/e{n}")
    _post(hot, "/_inference/e0")
    _post(hot, "/_inference/e3")
    assert router.routed == ["/_inference/e0", "/_inference/e1", "/_inference/e2", "/_inference/e3", "/_inference/e0"]


def _same_answer(first: httpx.Response, second: httpx.Response) -> None:
    assert second.status_code == first.status_code
    assert second.content == first.content
    varying = {"date", "content-length"}
    assert {k: v for k, v in first.headers.items() if k not in varying} == {
        k: v for k, v in second.headers.items() if k not in varying
    }


@pytest.mark.parametrize(
    ("path", "body", "headers"),
    [
        ("/_inference/text_embedding/hot-emb", {"input": ["one", "two"]}, {}),
        ("/_inference/hot-emb?timeout=30s", {"input": "one"}, {"X-Opaque-Id": "op-1"}),
        ("/_inference/text_embedding/hot-emb", {"input": ["x"] * 300}, {"Accept-Encoding": "gzip"}),
        ("/_inference/text_embedding/hot-emb", {"input": "one", "bogus": 1}, {}),
        ("/_inference/sparse_embedding/hot-emb", {"input": "one"}, {}),
        ("/_inference/text_embedding/hot-missing", {"input": "one"}, {}),
        ("/_inference/hot-emb?pretty=nope", {"input": "one"}, {}),
        ("/_inference/text_embedding/hot%2Femb", {"input": "one"}, {}),
    ],
)
def test_real_server_answers_a_remembered_path_as_it_answered_the_routed_one(
    http: httpx.Client, path: str, body: dict[str, Any], headers: dict[str, str]
) -> None:
    make_embedding_endpoint(http, "hot-emb")
    answers = [http.post(path, json=body, headers=headers) for _ in range(3)]
    _same_answer(answers[0], answers[1])
    _same_answer(answers[0], answers[2])
    if "Accept-Encoding" in headers:
        assert all(a.headers["content-encoding"] == "gzip" for a in answers)


def test_real_server_still_authenticates_a_remembered_path(http: httpx.Client, server: Any) -> None:
    make_embedding_endpoint(http, "hot-emb")
    assert http.post("/_inference/hot-emb", json={"input": "one"}).status_code == 200
    with httpx.Client(base_url=server.url, timeout=30) as anonymous:
        response = anonymous.post("/_inference/hot-emb", json={"input": "one"})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "security_exception"
