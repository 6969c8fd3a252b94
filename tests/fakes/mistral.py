"""A fake Mistral API: /v1/embeddings and /v1/chat/completions (JSON and SSE), as Mistral answers.

Shapes as Mistral's API sends them: a wrong key is 401 `{"detail":"Unauthorized"}`; request errors are
`{"object":"error","message":...,"type":...,"param":null,"code":...}`, with 422 for a body that fails
validation (Mistral refuses unknown fields such as OpenAI's `stream_options` or `max_completion_tokens`);
streams are `data: <chat.completion.chunk>` events, the last one carrying `usage`, then `data: [DONE]`.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider

API_KEY = "mistral-test-key-0123456789"
EMBED_MODEL = "mistral-embed"
CHAT_MODEL = "mistral-small-latest"
DIMENSIONS = {EMBED_MODEL: 1024, "codestral-embed": 1536}
CHAT_MODELS = {CHAT_MODEL, "mistral-large-latest", "open-mistral-nemo"}

EMBEDDING_FIELDS = {"model", "input", "metadata", "output_dimension", "output_dtype", "encoding_format"}
CHAT_FIELDS = {
    "model",
    "messages",
    "temperature",
    "top_p",
    "max_tokens",
    "stream",
    "stop",
    "random_seed",
    "metadata",
    "response_format",
    "tools",
    "tool_choice",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "prediction",
    "parallel_tool_calls",
    "prompt_mode",
    "safe_prompt",
}


def vector(text: str, dims: int = DIMENSIONS[EMBED_MODEL]) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 255.0 - 0.5, 6) for b in (digest * (dims // len(digest) + 1))[:dims]]


def answer_for(messages: list[dict[str, Any]]) -> str:
    last = messages[-1].get("content") if messages else ""
    return str(last or "").upper()


def mistral_error(status: int, message: Any, error_type: str, code: str | None = None) -> JSONResponse:
    body = {"object": "error", "message": message, "type": error_type, "param": None, "code": code}
    return JSONResponse(body, status_code=status)


def invalid(problems: list[dict[str, Any]]) -> JSONResponse:
    """Mistral's 422: pydantic-style details wrapped in its error object."""
    return mistral_error(422, {"detail": problems}, "invalid_request_error")


def check_fields(body: Any, allowed: set[str], required: tuple[str, ...]) -> Response | None:
    if not isinstance(body, dict):
        return invalid([{"type": "model_attributes_type", "loc": ["body"], "msg": "Input should be an object"}])
    problems = [
        {"type": "missing", "loc": ["body", key], "msg": "Field required", "input": body}
        for key in required
        if key not in body
    ]
    problems += [
        {"type": "extra_forbidden", "loc": ["body", key], "msg": "Extra inputs are not permitted", "input": value}
        for key, value in body.items()
        if key not in allowed
    ]
    return invalid(problems) if problems else None


class FakeMistral(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.app.add_route("/v1/embeddings", self.embeddings, methods=["POST"])
        self.app.add_route("/v1/chat/completions", self.chat, methods=["POST"])

    def _unauthorized(self, request: Request) -> Response | None:
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return JSONResponse({"detail": "Unauthorized"}, status_code=401)
        return None

    async def embeddings(self, request: Request) -> Response:
        body = (await self.record(request)).body
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if (scripted := await self.scripted()) is not None:
            return scripted
        if (refused := check_fields(body, EMBEDDING_FIELDS, ("model", "input"))) is not None:
            return refused
        dims = DIMENSIONS.get(body["model"])
        if dims is None:
            return mistral_error(400, f"Invalid model: {body['model']}", "invalid_model", "1500")
        inputs = [body["input"]] if isinstance(body["input"], str) else body["input"]
        encoding = body.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            return invalid([{"type": "enum", "loc": ["body", "encoding_format"], "msg": "Input should be 'float'"}])

        def encode(text: str) -> Any:
            values = vector(text, dims)
            return values if encoding == "float" else base64.b64encode(struct.pack(f"<{dims}f", *values)).decode()

        tokens = sum(len(t.split()) for t in inputs)
        return JSONResponse(
            {
                "id": "embd-fake",
                "object": "list",
                "data": [{"object": "embedding", "embedding": encode(t), "index": i} for i, t in enumerate(inputs)],
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
            }
        )

    async def chat(self, request: Request) -> Response:
        body = (await self.record(request)).body
        if (denied := self._unauthorized(request)) is not None:
            return denied
        if (scripted := await self.scripted()) is not None:
            return scripted
        if (refused := check_fields(body, CHAT_FIELDS, ("model", "messages"))) is not None:
            return refused
        if body["model"] not in CHAT_MODELS:
            return mistral_error(400, f"Invalid model: {body['model']}", "invalid_model", "1500")
        messages = body["messages"]
        text = answer_for(messages)
        tool = self._forced_tool(body)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, text, tool), media_type="text/event-stream")
        content = " | ".join(answer_for([m]) for m in messages)
        return JSONResponse(
            {
                "id": "cmpl-fake",
                "object": "chat.completion",
                "created": 1700000000,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "tool_calls": None},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(content.split()), "total_tokens": 12},
            }
        )

    @staticmethod
    def _forced_tool(body: dict[str, Any]) -> str | None:
        choice = body.get("tool_choice")
        if isinstance(choice, dict):
            return str(choice["function"]["name"])
        if choice in ("any", "required") and body.get("tools"):
            return str(body["tools"][0]["function"]["name"])
        return None

    def chunk(self, body: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        payload = {
            "id": "cmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    async def _stream(self, body: dict[str, Any], text: str, tool: str | None) -> AsyncIterator[bytes]:
        slow = "SLOW" in text
        usage = {"usage": {"prompt_tokens": 5, "total_tokens": 7, "completion_tokens": 2}}
        try:
            yield self.chunk(body, {"role": "assistant", "content": ""})
            if tool is not None:
                call = {"id": "Fk3xQ9Lm2", "function": {"name": tool, "arguments": '{"q": "x"}'}, "index": 0}
                yield self.chunk(body, {"tool_calls": [call]}, "tool_calls", **usage)
                yield b"data: [DONE]\n\n"
                return
            for i, word in enumerate(text.split(" ")):
                if slow:
                    await asyncio.sleep(0.2)
                if word == "BREAK":
                    error = {
                        "object": "error",
                        "message": "Service unavailable",
                        "type": "internal_server_error",
                        "param": None,
                        "code": "3000",
                    }
                    yield f"data: {json.dumps(error)}\n\n".encode()
                    return
                yield self.chunk(body, {"content": (" " if i else "") + word})
            yield self.chunk(body, {"content": ""}, "stop", **usage)
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
