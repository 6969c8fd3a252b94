"""A fake Hugging Face Inference Endpoint: TEI's `/embed` and `/rerank`, and the OpenAI-compatible
`/v1/chat/completions` of TGI (JSON and SSE), answering as those servers do.

Auth is Hugging Face's: `Authorization: Bearer <token>`, refused with 401 `{"error": "..."}`. TEI and TGI
report request problems as `{"error": "...", "error_type": "..."}`; TGI reports a failure inside a
stream as an SSE `error` event holding `{"error": {"message", "http_status_code"}}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider

API_KEY = "hf_test_token_123"
DEFAULT_DIMENSIONS = 6
MAX_CLIENT_BATCH_SIZE = 32  # TEI's --max-client-batch-size default
UNAUTHORIZED = "Invalid credentials in Authorization header"
SERVED_MODEL = "tgi"


def vector(text: str, dims: int = DEFAULT_DIMENSIONS) -> list[float]:
    digest = hashlib.sha256(f"hf:{text}".encode()).digest()
    return [round((b - 128) / 128.0, 6) for b in digest[:dims]]


def rerank_score(query: str, text: str) -> float:
    digest = hashlib.sha256(f"{query}|{text}".encode()).digest()
    return round(int.from_bytes(digest[:4], "big") / 0xFFFFFFFF, 6)


def answer_for(messages: list[dict[str, Any]]) -> str:
    last = messages[-1].get("content") if messages else ""
    return str(last or "").upper()


def tei_error(status: int, message: str, error_type: str) -> JSONResponse:
    return JSONResponse({"error": message, "error_type": error_type}, status_code=status)


class FakeHuggingFace(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.dimensions = DEFAULT_DIMENSIONS
        self.app.add_route("/embed", self.embed, methods=["POST"])
        self.app.add_route("/rerank", self.rerank, methods=["POST"])
        self.app.add_route("/v1/chat/completions", self.chat, methods=["POST"])

    async def _start(self, request: Request) -> tuple[Any, Response | None]:
        """Record the request, then answer 401 for a wrong token or a scripted answer if one is queued."""
        body = (await self.record(request)).body
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, JSONResponse({"error": UNAUTHORIZED}, status_code=401)
        return body, await self.scripted()

    async def embed(self, request: Request) -> Response:
        body, early = await self._start(request)
        if early is not None:
            return early
        inputs = body.get("inputs") if isinstance(body, dict) else None
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
            return tei_error(422, "Failed to deserialize the JSON body into the target type: inputs", "validation")
        if not inputs:
            return tei_error(400, "`inputs` cannot be empty", "empty")
        if len(inputs) > MAX_CLIENT_BATCH_SIZE:
            message = f"batch size {len(inputs)} > maximum allowed batch size {MAX_CLIENT_BATCH_SIZE}"
            return tei_error(422, message, "validation")
        return JSONResponse([vector(text, self.dimensions) for text in inputs])

    async def rerank(self, request: Request) -> Response:
        body, early = await self._start(request)
        if early is not None:
            return early
        query = body.get("query") if isinstance(body, dict) else None
        texts = body.get("texts") if isinstance(body, dict) else None
        if not isinstance(query, str) or not isinstance(texts, list):
            return tei_error(
                422, "Failed to deserialize the JSON body into the target type: query, texts", "validation"
            )
        if not texts:
            return tei_error(400, "`texts` cannot be empty", "empty")
        ranks = []
        for index, text in enumerate(texts):
            rank: dict[str, Any] = {"index": index, "score": rerank_score(query, text)}
            if body.get("return_text"):
                rank["text"] = text
            ranks.append(rank)
        # TEI answers every text, best first; it does not cut to top_n.
        return JSONResponse(sorted(ranks, key=lambda r: r["score"], reverse=True))

    async def chat(self, request: Request) -> Response:
        body, early = await self._start(request)
        if early is not None:
            return early
        messages = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(messages, list) or not messages:
            return tei_error(422, "Input validation error: `messages` cannot be empty", "validation")
        text = answer_for(messages)
        model = body.get("model") or SERVED_MODEL
        if body.get("stream"):
            return StreamingResponse(self._stream(body, model, text), media_type="text/event-stream")
        return JSONResponse(
            {
                "object": "chat.completion",
                "id": "",
                "created": 1700000000,
                "model": model,
                "system_fingerprint": "3.0.1-native",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": len(text.split()), "total_tokens": 9},
            }
        )

    @staticmethod
    def chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
        payload = {
            "object": "chat.completion.chunk",
            "id": "",
            "created": 1700000000,
            "model": model,
            "system_fingerprint": "3.0.1-native",
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }
        return f"data: {json.dumps(payload)}\n\n".encode()

    async def _stream(self, body: dict[str, Any], model: str, text: str) -> AsyncIterator[bytes]:
        slow = "SLOW" in text
        try:
            for i, word in enumerate(text.split(" ")):
                if slow:
                    await asyncio.sleep(0.2)
                if word == "BREAK":
                    message = "Request failed during generation: Server error: out of memory"
                    error = {"error": {"message": message, "http_status_code": 500}}
                    yield f"event: error\ndata: {json.dumps(error)}\n\n".encode()
                    return
                delta = {"role": "assistant", "content": (" " if i else "") + word}
                yield self.chunk(model, delta)
            yield self.chunk(model, {"role": "assistant", "content": ""}, "stop")
            if (body.get("stream_options") or {}).get("include_usage"):
                usage = {
                    "object": "chat.completion.chunk",
                    "id": "",
                    "created": 1700000000,
                    "model": model,
                    "system_fingerprint": "3.0.1-native",
                    "choices": [],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
                }
                yield f"data: {json.dumps(usage)}\n\n".encode()
            yield b"data: [DONE]\n\n"
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
