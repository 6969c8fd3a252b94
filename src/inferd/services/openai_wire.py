"""The OpenAI wire format, shared by the services that speak it (OpenAI, Azure OpenAI, Mistral,
Hugging Face chat): request bodies, response parsers and the SSE stream readers."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from inferd.core.errors import InferdError, StatusError, UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.services.http import ErrorParser

# Keys of a unified chat request passed on as they are, in ES's order.
_CHAT_KEYS = ("messages", "stop", "temperature", "tool_choice", "tools", "top_p")


def single_input(request: InferenceRequest, label: str) -> str:
    if len(request.input) != 1:
        raise StatusError(f"{label} only accepts 1 input, received [{len(request.input)}]")
    return request.input[0]


def chat_body(
    chat: dict[str, Any],
    *,
    model: str | None,
    stream: bool,
    user: str | None = None,
    max_tokens_key: str = "max_completion_tokens",
    stream_options: bool = True,
) -> dict[str, Any]:
    """An OpenAI chat completions body from a unified chat request."""
    body = {k: chat[k] for k in _CHAT_KEYS if chat.get(k) not in (None, [])}
    if chat.get("max_completion_tokens") is not None:
        body[max_tokens_key] = chat["max_completion_tokens"]
    if model:
        body["model"] = model
    body["n"] = 1
    body["stream"] = stream
    if stream and stream_options:
        body["stream_options"] = {"include_usage": True}
    if user:
        body["user"] = user
    return body


def _missing(field: str, response_name: str) -> StatusError:
    return StatusError(f"Failed to find required field [{field}] in {response_name} response")


def _vector(value: Any) -> list[float]:
    if isinstance(value, str):  # encoding_format=base64: little-endian float32
        raw = base64.b64decode(value)
        return list(struct.unpack(f"<{len(raw) // 4}f", raw))
    return [float(v) for v in value]


def embeddings_from_data(payload: Any, response_name: str) -> list[list[float]]:
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise _missing("data", response_name)
    ordered = sorted(data, key=lambda item: item.get("index", 0)) if all(isinstance(i, dict) for i in data) else []
    if len(ordered) != len(data):
        raise _missing("embedding", response_name)
    vectors = []
    for item in ordered:
        if "embedding" not in item:
            raise _missing("embedding", response_name)
        vectors.append(_vector(item["embedding"]))
    return vectors


def completion_texts(payload: Any, response_name: str) -> list[str]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list):
        raise _missing("choices", response_name)
    texts = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict) or "content" not in message:
            raise _missing("message", response_name)
        texts.append(message["content"] or "")
    return texts


def mid_stream_error(inference_id: str, data: str, parse_error: ErrorParser) -> InferdError:
    """An error event inside a stream (never retried): ES answers 500 with the provider's message."""
    fake = httpx.Response(500, content=data.encode())
    message = parse_error(fake)
    reason = f"Received an error response for request from inference entity id [{inference_id}]"
    if message:
        reason += f". Error message: [{message}]"
    error_type = "stream_error"
    try:
        payload = orjson.loads(data)
        if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
            error_type = str(payload["error"].get("type") or error_type)
    except orjson.JSONDecodeError:
        pass
    return UpstreamError(reason, status=500, es_type=error_type)


async def _events(response: httpx.Response, inference_id: str, parse_error: ErrorParser) -> AsyncIterator[Any]:
    """The JSON payloads of an OpenAI-style SSE stream, up to `[DONE]`."""
    async for event in EventSource(response).aiter_sse():
        if event.event == "error":
            raise mid_stream_error(inference_id, event.data, parse_error)
        if event.data.strip().upper() == "[DONE]":
            return
        if not event.data.strip():
            continue
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"Failed to parse event from inference provider: {event.data[:200]}", status=500
            ) from None
        if isinstance(payload, dict) and "error" in payload and "choices" not in payload:
            raise mid_stream_error(inference_id, event.data, parse_error)
        yield payload


async def stream_completion_deltas(
    response: httpx.Response, inference_id: str, parse_error: ErrorParser
) -> AsyncIterator[str]:
    async for payload in _events(response, inference_id, parse_error):
        for choice in payload.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                yield content


_DELTA_KEYS = ("content", "refusal", "role", "reasoning", "tool_calls")


def normalise_chunk(payload: dict[str, Any], response_name: str) -> dict[str, Any]:
    """A provider chunk as ES re-emits it: required id/choices/model/object, optional usage."""
    for key in ("id", "choices", "model", "object"):
        if key not in payload:
            raise _missing(key, response_name)
    choices = []
    for choice in payload["choices"] or []:
        delta = choice.get("delta") or {}
        out: dict[str, Any] = {"delta": {k: delta[k] for k in _DELTA_KEYS if delta.get(k) is not None}}
        if choice.get("finish_reason") is not None:
            out["finish_reason"] = choice["finish_reason"]
        out["index"] = choice.get("index", 0)
        choices.append(out)
    chunk: dict[str, Any] = {
        "id": payload["id"],
        "choices": choices,
        "model": payload["model"],
        "object": payload["object"],
    }
    if payload.get("usage"):
        chunk["usage"] = payload["usage"]
    return chunk


async def stream_chat_chunks(
    response: httpx.Response,
    inference_id: str,
    parse_error: ErrorParser,
    response_name: str = "OpenAI chat completions",
) -> AsyncIterator[dict[str, Any]]:
    async for payload in _events(response, inference_id, parse_error):
        yield normalise_chunk(payload, response_name)
