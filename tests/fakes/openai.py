"""A fake OpenAI API: /v1/embeddings and /v1/chat/completions (JSON and SSE), as OpenAI answers."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider

API_KEY = "sk-test-openai-key"
DEFAULT_DIMENSIONS = 8


def vector(text: str, dims: int) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0, 6) for b in (digest * (dims // len(digest) + 1))[:dims]]


def answer_for(messages: list[dict[str, Any]]) -> str:
    last = messages[-1].get("content") if messages else ""
    return str(last or "").upper()


def openai_error(status: int, message: str, error_type: str, code: str | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": error_type, "param": None, "code": code}}, status_code=status
    )


class FakeOpenAi(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.app.add_route("/v1/embeddings", self.embeddings, methods=["POST"])
        self.app.add_route("/v1/chat/completions", self.chat, methods=["POST"])

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            shown = (request.headers.get("authorization") or "").removeprefix("Bearer ")[:6]
            return openai_error(
                401,
                f"Incorrect API key provided: {shown}***. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
            )
        return None

    async def embeddings(self, request: Request) -> Response:
        body = (await self.record(request)).body
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if (scripted := await self.scripted()) is not None:
            return scripted
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or "model" not in body:
            return openai_error(400, "'input' and 'model' are required", "invalid_request_error")
        if body.get("dimensions") is not None and not body["model"].startswith("text-embedding-3"):
            return openai_error(400, "This model does not support specifying dimensions.", "invalid_request_error")
        dims = body.get("dimensions") or DEFAULT_DIMENSIONS
        # Answer in reverse order: clients must order by "index", as OpenAI does not promise order.
        data = [{"object": "embedding", "index": i, "embedding": vector(text, dims)} for i, text in enumerate(inputs)][
            ::-1
        ]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            }
        )

    async def chat(self, request: Request) -> Response:
        body = (await self.record(request)).body
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if (scripted := await self.scripted()) is not None:
            return scripted
        text = answer_for(body.get("messages") or [])
        if body.get("stream"):
            return StreamingResponse(self._stream(body, text), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body.get("model"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 3, "completion_tokens": len(text.split()), "total_tokens": 9},
            }
        )

    def chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body.get("model"),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    async def _stream(self, body: dict[str, Any], text: str) -> AsyncIterator[bytes]:
        slow = "SLOW" in text
        try:
            yield self.chunk(body, {"role": "assistant", "content": ""})
            for i, word in enumerate(text.split(" ")):
                if slow:
                    await asyncio.sleep(0.2)
                if word == "BREAK":
                    error = {
                        "error": {
                            "message": "The server had an error while processing your request.",
                            "type": "server_error",
                            "param": None,
                            "code": None,
                        }
                    }
                    yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
                    return
                yield self.chunk(body, {"content": (" " if i else "") + word})
            yield self.chunk(body, {}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                usage: dict[str, Any] = {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion.chunk",
                    "created": 1700000000,
                    "model": body.get("model"),
                    "choices": [],
                    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
                }
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
