"""The OpenAI wire format, shared by the services that speak it (OpenAI, Azure OpenAI, Mistral,
Hugging Face chat): request bodies, response parsers, the SSE stream readers and ES's OpenAI status handling."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from functools import partial
from typing import Any

import httpx
import orjson
from httpx_sse import EventSource

from inferd.core.errors import InferdError, StatusError, UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.services import http
from inferd.services.http import ErrorParser, ProviderCall, json_error_message

SERVER_BUSY = "Received a server busy error status code"
_CONTENT_TOO_LARGE = "Please reduce your prompt; or completion length."
_error_message = json_error_message("error", "message")

# Keys of a unified chat request passed on as they are, in ES's order.
_CHAT_KEYS = ("messages", "stop", "temperature", "tool_choice", "tools", "top_p")


def content_too_large(response: httpx.Response) -> bool:
    """ES's content-too-large test: a 413, or a 400 whose `error.message` asks for a shorter prompt."""
    status = response.status_code
    return status == 413 or (status == 400 and _CONTENT_TOO_LARGE in (_error_message(response) or ""))


def describe_openai_status(response: httpx.Response) -> str:
    """ES's OpenAiResponseHandler wording (OpenAI, Azure OpenAI, Mistral and Hugging Face chat). Its handlers
    differ only in their 429 text, which services that add rate limit headers to it word themselves."""
    status = response.status_code
    if status == 503:
        return SERVER_BUSY
    if content_too_large(response):
        return http.CONTENT_TOO_LARGE
    return http.UNSUCCESSFUL if status == 403 else http.describe_status(response)


def openai_retryable(response: httpx.Response, *, rate_limit: bool = True) -> bool:
    """ES's OpenAI handler retries 500, 503 and 429; its chat completion handler not 429."""
    return response.status_code in (500, 503) or (rate_limit and response.status_code == 429)


def with_openai_chat_rules(call: ProviderCall) -> ProviderCall:
    """A call judged as ES's OpenAiChatCompletionResponseHandler judges it (OpenAI's wording, 429 final),
    for services whose own rules apply to their other tasks only."""
    return replace(call, describe=describe_openai_status, retryable=partial(openai_retryable, rate_limit=False))


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


def is_openai_error_event(payload: dict[str, Any]) -> bool:
    """OpenAI's in-stream error: a data event holding `{"error": ...}` instead of a chunk."""
    return "error" in payload and "choices" not in payload


async def stream_events(
    response: httpx.Response,
    inference_id: str,
    parse_error: ErrorParser,
    is_error_event: Callable[[dict[str, Any]], bool] = is_openai_error_event,
) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an OpenAI-style SSE stream, up to `[DONE]`. An event named `error`, or a data
    event that `is_error_event` calls one (each provider words its errors), ends it with ES's mid-stream error."""
    async for event in EventSource(response).aiter_sse():
        data = event.data.strip()
        if event.event == "error":
            raise mid_stream_error(inference_id, data, parse_error)
        if not data:
            continue
        if data.upper() == "[DONE]":
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            payload = None
        if not isinstance(payload, dict):
            raise UpstreamError(f"Failed to parse event from inference provider: {data[:200]}", status=500)
        if is_error_event(payload):
            raise mid_stream_error(inference_id, data, parse_error)
        yield payload


async def stream_completion_deltas(
    response: httpx.Response, inference_id: str, parse_error: ErrorParser
) -> AsyncIterator[str]:
    async for payload in stream_events(response, inference_id, parse_error):
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
    async for payload in stream_events(response, inference_id, parse_error):
        yield normalise_chunk(payload, response_name)
