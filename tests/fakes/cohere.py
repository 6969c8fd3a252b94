"""A fake Cohere API v2: /v2/embed, /v2/rerank and /v2/chat (JSON and SSE), as Cohere answers.

Errors use Cohere's body, `{"id": ..., "message": ...}`; a wrong key gets its 401 "invalid api token".
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider

API_KEY = "co-test-cohere-key"
DEFAULT_DIMENSIONS = 16
MAX_TEXTS = 96
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering", "image")
EMBEDDING_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")


def floats(text: str, dims: int = DEFAULT_DIMENSIONS) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [round(b / 127.5 - 1.0, 6) for b in (digest * (dims // len(digest) + 1))[:dims]]


def int8s(text: str, dims: int = DEFAULT_DIMENSIONS) -> list[int]:
    return [max(-128, min(127, round(v * 127))) for v in floats(text, dims)]


def packed_bits(text: str, dims: int = DEFAULT_DIMENSIONS, *, signed: bool = True) -> list[int]:
    """One bit a dimension (1 when positive), 8 to a byte, as Cohere's binary/ubinary types."""
    bits = [1 if v > 0 else 0 for v in floats(text, dims)]
    out = []
    for i in range(0, dims, 8):
        byte = sum(bit << (7 - j) for j, bit in enumerate(bits[i : i + 8]))
        out.append(byte - 128 if signed else byte)
    return out


def relevance(query: str, document: str) -> float:
    """Deterministic score in [0, 1]: shared words weigh most, a hash breaks ties."""
    words = set(query.lower().split())
    shared = len(words & set(document.lower().split())) / max(1, len(words))
    tie = hashlib.sha256(f"{query}|{document}".encode()).digest()[0] / 2550.0
    return round(min(1.0, 0.9 * shared + tie), 6)


def answer_for(messages: list[dict[str, Any]]) -> str:
    last = messages[-1].get("content") if messages else ""
    return str(last or "").upper()


def cohere_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"id": str(uuid.uuid4()), "message": message}, status_code=status)


def _meta(**billed: int) -> dict[str, Any]:
    return {"api_version": {"version": "2"}, "billed_units": billed}


class FakeCohere(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.app.add_route("/v2/embed", self.embed, methods=["POST"])
        self.app.add_route("/v2/rerank", self.rerank, methods=["POST"])
        self.app.add_route("/v2/chat", self.chat, methods=["POST"])

    async def _begin(self, request: Request) -> tuple[Any, Response | None]:
        """Record; then a wrong key (401) or a scripted answer, else None to go on."""
        body = (await self.record(request)).body
        if request.headers.get("authorization") != f"Bearer {self.api_key}":
            return body, cohere_error(401, "invalid api token")
        scripted = await self.scripted()
        if scripted is None and not isinstance(body, dict):
            return body, cohere_error(400, "invalid request: the body must be a JSON object")
        return body, scripted

    async def embed(self, request: Request) -> Response:
        body, early = await self._begin(request)
        if early is not None:
            return early
        texts, model = body.get("texts"), body.get("model")
        if not isinstance(model, str) or not model:
            return cohere_error(400, "invalid request: model must be specified")
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            return cohere_error(400, "invalid request: texts must be a list of strings")
        if len(texts) > MAX_TEXTS:
            return cohere_error(
                400, f"invalid request: total number of texts must be at most {MAX_TEXTS} - received {len(texts)}"
            )
        if body.get("input_type") not in INPUT_TYPES:
            return cohere_error(400, "invalid request: valid input_type must be provided with the provided model")
        kinds = body.get("embedding_types") or ["float"]
        if any(k not in EMBEDDING_TYPES for k in kinds):
            return cohere_error(400, f"invalid request: embedding_types must be one of {list(EMBEDDING_TYPES)}")
        if body.get("truncate") not in (None, "NONE", "START", "END"):
            return cohere_error(400, "invalid request: truncate must be one of NONE, START, END")
        makers: dict[str, Callable[[str], list[Any]]] = {
            "float": floats,
            "int8": int8s,
            "uint8": lambda t: [v + 128 for v in int8s(t)],
            "binary": packed_bits,
            "ubinary": lambda t: packed_bits(t, signed=False),
        }
        embeddings = {k: [makers[k](t) for t in texts] for k in kinds if k in makers}
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "embeddings": embeddings,
                "texts": texts,
                "meta": _meta(input_tokens=sum(len(t.split()) for t in texts)),
                "response_type": "embeddings_by_type",
            }
        )

    async def rerank(self, request: Request) -> Response:
        body, early = await self._begin(request)
        if early is not None:
            return early
        query, documents = body.get("query"), body.get("documents")
        if not isinstance(body.get("model"), str):
            return cohere_error(400, "invalid request: model must be specified")
        if not isinstance(query, str) or not query:
            return cohere_error(400, "invalid request: query must not be empty")
        if not isinstance(documents, list) or not documents:
            return cohere_error(400, "invalid request: documents must not be empty")
        top_n = body.get("top_n")
        if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
            return cohere_error(400, "invalid request: top_n must be a positive integer")
        scored: list[dict[str, Any]] = [
            {"index": i, "relevance_score": relevance(query, str(d))} for i, d in enumerate(documents)
        ]
        ranked = sorted(scored, key=lambda r: -r["relevance_score"])[: top_n or len(documents)]
        if body.get("return_documents"):
            for r in ranked:
                r["document"] = {"text": documents[r["index"]]}
        return JSONResponse({"id": str(uuid.uuid4()), "results": ranked, "meta": _meta(search_units=1)})

    async def chat(self, request: Request) -> Response:
        body, early = await self._begin(request)
        if early is not None:
            return early
        messages = body.get("messages")
        if not isinstance(body.get("model"), str):
            return cohere_error(400, "invalid request: model must be specified")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            return cohere_error(400, "invalid request: messages must not be empty")
        if any(m.get("role") not in ("user", "assistant", "system", "tool") for m in messages):
            return cohere_error(400, "invalid request: unknown message role")
        text = answer_for(messages)
        if body.get("stream"):
            return StreamingResponse(self._stream(text), media_type="text/event-stream")
        usage = {"input_tokens": 3, "output_tokens": len(text.split())}
        return JSONResponse(
            {
                "id": str(uuid.uuid4()),
                "message": {"role": "assistant", "content": [{"type": "text", "text": text}]},
                "finish_reason": "COMPLETE",
                "usage": {"billed_units": usage, "tokens": usage},
            }
        )

    @staticmethod
    def event(payload: dict[str, Any]) -> bytes:
        return f"event: {payload['type']}\ndata: {json.dumps(payload)}\n\n".encode()

    async def _stream(self, text: str) -> AsyncIterator[bytes]:
        slow = "SLOW" in text
        empty_message = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        try:
            yield self.event({"id": "msg-fake", "type": "message-start", "delta": {"message": empty_message}})
            start = {"message": {"content": {"type": "text", "text": ""}}}
            yield self.event({"type": "content-start", "index": 0, "delta": start})
            for i, word in enumerate(text.split(" ")):
                if slow:
                    await asyncio.sleep(0.2)
                if word == "BREAK":
                    end = {"finish_reason": "ERROR", "error": "internal error while generating the response"}
                    yield self.event({"type": "message-end", "delta": end})
                    return
                piece = {"message": {"content": {"text": (" " if i else "") + word}}}
                yield self.event({"type": "content-delta", "index": 0, "delta": piece})
            yield self.event({"type": "content-end", "index": 0})
            usage = {"billed_units": {"input_tokens": 3, "output_tokens": 2}, "tokens": {"input_tokens": 3}}
            yield self.event({"type": "message-end", "delta": {"finish_reason": "COMPLETE", "usage": usage}})
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise
