"""The `anthropic` service: completion and chat completion (both streaming) on Anthropic's Messages API.

`url`: ES has no URL setting for Anthropic; inferd takes one so an endpoint can point at a proxy or a
compatible server. It is used verbatim as the full Messages endpoint (e.g. `https://proxy.internal/v1/messages`),
as ES uses user URLs; without it requests go to `https://api.anthropic.com/v1/messages`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Annotated, Any, ClassVar

import httpx
import orjson
from httpx_sse import EventSource
from pydantic import Field

from inferd.core.errors import StatusError, UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.core.results import CompletionResult
from inferd.core.tasks import TaskType
from inferd.services import http
from inferd.services.base import Endpoint
from inferd.services.http import ProviderCall, json_error_message
from inferd.services.provider import ApiKeySecrets, ProviderService, RateLimit, Url, url_field
from inferd.services.schema import Integer, NonEmptyString, PositiveInteger, SettingsModel

MESSAGES_URL = "https://api.anthropic.com/v1/messages"
API_VERSION = "2023-06-01"
RESPONSE_NAME = "Anthropic chat completions"
OVERLOADED = "Received an Anthropic server is temporarily overloaded status code"
parse_anthropic_error = json_error_message("error", "message")

# Status of an `error` event inside a completion stream, by Anthropic error type (anything else: 500).
_STREAM_ERROR_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
}
_FINISH_REASONS = {"max_tokens": "length", "tool_use": "tool_calls", "refusal": "content_filter"}
_TOOL_CHOICE = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}
_RATE_HEADERS = [f"{kind}-{what}" for kind in ("tokens", "requests") for what in ("limit", "remaining", "reset")]
_CHUNK = "chat.completion.chunk"
_DATA_URI = re.compile(r"data:(?P<media>[^;,]+)(?:;[^;,]*)*;base64,(?P<data>.*)", re.DOTALL)


class AnthropicRateLimit(RateLimit):
    requests_per_minute: Annotated[
        PositiveInteger,
        Field(
            title="Rate Limit",
            description="By default, the anthropic service sets the number of requests allowed per minute to 50.",
        ),
    ]


class AnthropicServiceSettings(SettingsModel):
    model_id: Annotated[
        NonEmptyString, Field(title="Model ID", description="The name of the model to use for the inference task.")
    ]
    url: Annotated[Url | None, url_field("The full URL of the Messages endpoint (default Anthropic's own).")]
    rate_limit: Annotated[
        AnthropicRateLimit,
        Field(
            default_factory=lambda: AnthropicRateLimit(requests_per_minute=50),
            title="Rate Limit",
            description="Requests allowed per minute (default 50).",
            json_schema_extra={"updatable": True},
        ),
    ]


class AnthropicTaskSettings(SettingsModel):
    max_tokens: Annotated[
        PositiveInteger,
        Field(title="Max Tokens", description="The maximum number of tokens to generate before stopping."),
    ]
    temperature: Annotated[
        float | None, Field(default=None, title="Temperature", description="The amount of randomness injected.")
    ]
    top_p: Annotated[float | None, Field(default=None, title="Top P", description="Nucleus sampling cut-off.")]
    top_k: Annotated[
        Integer | None, Field(default=None, title="Top K", description="Sample only from the top K options.")
    ]


def describe_anthropic_status(response: httpx.Response) -> str:
    """ES's AnthropicResponseHandler wording of a failed status (it retries 429, 500 and 529)."""
    status = response.status_code
    if status == 429:
        h = [response.headers.get(f"anthropic-ratelimit-{k}", "unknown") for k in _RATE_HEADERS]
        return (
            f"{http.RATE_LIMIT}. Token limit [{h[0]}], remaining tokens [{h[1]}], tokens reset [{h[2]}]. Request "
            f"limit [{h[3]}], remaining requests [{h[4]}], request reset [{h[5]}]. "
            f"Retry after [{response.headers.get('retry-after', 'unknown')}]"
        )
    if status >= 500:
        return OVERLOADED if status == 529 else http.SERVER_ERROR
    if status in (401, 403):
        return http.AUTHENTICATION if status == 401 else http.PERMISSION_DENIED
    return http.REDIRECTION if 300 <= status < 400 else http.UNSUCCESSFUL


def completion_body(inputs: list[str], model: str, task: AnthropicTaskSettings, *, stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": text} for text in inputs], "model": model}
    body["max_tokens"] = task.max_tokens
    body.update({k: v for k, v in (("temperature", task.temperature), ("top_p", task.top_p)) if v is not None})
    if task.top_k is not None:
        body["top_k"] = task.top_k
    if stream:
        body["stream"] = True
    return body


def completion_texts(payload: Any) -> list[str]:
    content = payload.get("content") if isinstance(payload, dict) else None
    if not isinstance(content, list):
        raise StatusError(f"Failed to find required field [content] in {RESPONSE_NAME} response")
    blocks = [b for b in content if isinstance(b, dict) and b.get("type") == "text"]
    return [b["text"] for b in blocks if isinstance(b.get("text"), str)]


def _unsupported(what: str) -> StatusError:
    return StatusError(f"{what} for the Anthropic chat completion API.")


def _block(part: dict[str, Any]) -> dict[str, Any]:
    """A unified content part as an Anthropic content block."""
    if part["type"] == "text":
        return {"type": "text", "text": part.get("text") or ""}
    if part["type"] == "image_url":
        url = (part.get("image_url") or {}).get("url", "")
        if m := _DATA_URI.fullmatch(url):
            media = "image/jpeg" if m["media"] == "image/jpg" else m["media"]
            return {"type": "image", "source": {"type": "base64", "media_type": media, "data": m["data"]}}
        if url.startswith(("http://", "https://")):
            return {"type": "image", "source": {"type": "url", "url": url}}
        raise _unsupported(
            "Image URLs must be HTTP(S) URLs or base64 data URIs with the format [data:{MIME-type};base64,...]"
        )
    raise _unsupported(f"Unsupported content type [{part['type']}]")


def _blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, list):
        return [_block(part) for part in content]
    return [{"type": "text", "text": content if isinstance(content, str) else ""}]


def _text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text") or "" for part in content if part.get("type") == "text")
    return content if isinstance(content, str) else ""


def _tool_input(call: dict[str, Any]) -> Any:
    arguments = call["function"]["arguments"]
    try:
        return orjson.loads(arguments) if arguments.strip() else {}
    except orjson.JSONDecodeError:
        raise StatusError(f"The arguments of tool call [{call['id']}] are not valid JSON") from None


def anthropic_message(message: dict[str, Any]) -> dict[str, Any]:
    """A unified (OpenAI-shaped) message in Anthropic's content-block shape."""
    role, content = message["role"], message.get("content")
    if role == "assistant" and message.get("tool_calls"):
        text = _text(content)
        uses = [
            {"type": "tool_use", "id": c["id"], "name": c["function"]["name"], "input": _tool_input(c)}
            for c in message["tool_calls"]
        ]
        return {"role": "assistant", "content": ([{"type": "text", "text": text}] if text else []) + uses}
    if role == "tool":
        if not message.get("tool_call_id"):
            raise _unsupported("Field [tool_call_id] is required in a tool message")
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message["tool_call_id"]}
        if content is not None:
            result["content"] = _blocks(content)
        return {"role": "user", "content": [result]}
    if role not in ("user", "assistant"):
        raise _unsupported(f"Unsupported role [{role}]")
    return {"role": role, "content": _blocks(content) if content else [{"type": "text", "text": ""}]}


def anthropic_tool(function: dict[str, Any]) -> dict[str, Any]:
    params = function.get("parameters") or {}
    schema = {"type": "object", "properties": params.get("properties", {})}
    schema.update({k: v for k, v in params.items() if k not in ("type", "properties")})
    tool = {"name": function["name"], "input_schema": schema}
    return tool | ({"description": function["description"]} if function.get("description") is not None else {})


def chat_body(chat: dict[str, Any], model: str, task: AnthropicTaskSettings) -> dict[str, Any]:
    """A unified chat completion request as a streaming Messages API body."""
    messages = chat["messages"]
    body: dict[str, Any] = {"model": model}
    system = [{"type": "text", "text": _text(m.get("content"))} for m in messages if m["role"] == "system"]
    if system:
        body["system"] = system
    body["messages"] = [anthropic_message(m) for m in messages if m["role"] != "system"]
    if chat.get("stop"):
        body["stop_sequences"] = chat["stop"]
    for key in ("temperature", "top_p"):
        value = chat.get(key, getattr(task, key))
        if value is not None:
            body[key] = value
    if task.top_k is not None:
        body["top_k"] = task.top_k
    if (choice := chat.get("tool_choice")) is not None:
        body["tool_choice"] = (
            _TOOL_CHOICE[choice] if isinstance(choice, str) else {"type": "tool", **choice["function"]}
        )
    if chat.get("tools"):
        body["tools"] = [anthropic_tool(t["function"]) for t in chat["tools"]]
    body["stream"] = True
    body["max_tokens"] = chat.get("max_completion_tokens") or task.max_tokens
    return body


async def _events(response: httpx.Response) -> AsyncIterator[tuple[str, dict[str, Any], str]]:
    """(type, payload, raw data) of each event of an Anthropic SSE stream."""
    async for event in EventSource(response).aiter_sse():
        if not event.data.strip():
            continue
        try:
            payload = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"Failed to parse event from inference provider: {event.data[:200]}", status=500
            ) from None
        if isinstance(payload, dict):
            yield str(payload.get("type") or event.event), payload, event.data


def _field(value: Any, key: str) -> Any:
    found = value.get(key) if isinstance(value, dict) else None
    if found is None:
        raise UpstreamError(f"Failed to find required field [{key}] in {RESPONSE_NAME} response", status=500)
    return found


class ChunkConverter:
    """Anthropic stream events -> OpenAI `chat.completion.chunk` objects (one stream, so stateful)."""

    def __init__(self) -> None:
        self.id: str | None = None
        self.model: str | None = None
        self.prompt_tokens = 0
        self.tool_calls: dict[int, int] = {}  # content block index -> tool call index

    def _chunk(
        self, delta: dict[str, Any], finish: str | None = None, output_tokens: int | None = None
    ) -> dict[str, Any]:
        choice = {"delta": delta} | ({"finish_reason": finish} if finish else {}) | {"index": 0}
        chunk: dict[str, Any] = {"id": self.id, "choices": [choice], "model": self.model, "object": _CHUNK}
        if output_tokens is not None:
            chunk["usage"] = {
                "completion_tokens": output_tokens,
                "prompt_tokens": self.prompt_tokens,
                "total_tokens": output_tokens + self.prompt_tokens,
            }
        return chunk

    def _tool_call(self, block_index: int, **call: Any) -> dict[str, Any] | None:
        index = self.tool_calls.get(block_index)
        return None if index is None else self._chunk({"tool_calls": [{"index": index, **call}]})

    def convert(self, kind: str, event: dict[str, Any]) -> dict[str, Any] | None:
        if kind == "message_start":
            message = _field(event, "message")
            self.id, self.model = _field(message, "id"), _field(message, "model")
            usage = _field(message, "usage")
            self.prompt_tokens = int(_field(usage, "input_tokens"))
            finish = _finish_reason(message.get("stop_reason"))
            return self._chunk({"role": _field(message, "role")}, finish, int(_field(usage, "output_tokens")))
        if kind == "content_block_start":
            block = _field(event, "content_block")
            if block.get("type") == "text":
                return self._chunk({"content": block.get("text", "")})
            if block.get("type") == "tool_use":
                index = _field(event, "index")
                self.tool_calls[index] = len(self.tool_calls)
                function = {"name": _field(block, "name"), "arguments": ""}
                return self._tool_call(index, id=_field(block, "id"), type="function", function=function)
        if kind == "content_block_delta":
            delta = _field(event, "delta")
            if delta.get("type") == "text_delta":
                return self._chunk({"content": _field(delta, "text")})
            if delta.get("type") == "input_json_delta":
                arguments = _field(delta, "partial_json")
                return self._tool_call(event.get("index", -1), function={"arguments": arguments})
        if kind == "message_delta":
            output = int(_field(_field(event, "usage"), "output_tokens"))
            return self._chunk({}, _finish_reason(_field(event, "delta").get("stop_reason")), output)
        return None  # ping, content_block_stop, message_stop and unknown events


def _finish_reason(stop_reason: Any) -> str | None:
    return None if stop_reason is None else _FINISH_REASONS.get(str(stop_reason), "stop")


class AnthropicService(ProviderService):
    name = "anthropic"
    display_name = "Anthropic"
    provider_label = "Anthropic"
    task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return AnthropicServiceSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return AnthropicTaskSettings

    @staticmethod
    def _settings(endpoint: Endpoint) -> tuple[AnthropicServiceSettings, AnthropicTaskSettings]:
        settings, task = endpoint.service_settings, endpoint.task_settings
        assert isinstance(settings, AnthropicServiceSettings) and isinstance(task, AnthropicTaskSettings)
        return settings, task

    def _call(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> ProviderCall:
        secrets = endpoint.secrets
        assert isinstance(secrets, ApiKeySecrets)
        headers = {"x-api-key": secrets.api_key.get_secret_value(), "anthropic-version": API_VERSION}
        settings, _ = self._settings(endpoint)
        return self.call(endpoint, settings.url or MESSAGES_URL, body, headers, what)

    def describe_status(self, response: httpx.Response) -> str:
        return describe_anthropic_status(response)

    def is_retryable(self, response: httpx.Response) -> bool:
        return response.status_code in (429, 500, 529)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        settings, task = self._settings(endpoint)
        body = completion_body(list(request.input), settings.model_id, task, stream=False)
        payload = await self.post(self._call(endpoint, body, "completion"), parse_anthropic_error)
        return CompletionResult(completion_texts(payload))

    async def _stream(
        self, endpoint: Endpoint, body: dict[str, Any], chat: bool
    ) -> AsyncIterator[tuple[str, dict[str, Any], str]]:
        call = self._call(endpoint, body, "chat completion" if chat else "completion")
        refused = False

        def parse_error(response: httpx.Response) -> str | None:
            nonlocal refused
            refused = True  # Anthropic answered with an error status
            return response.text if chat else parse_anthropic_error(response)  # ES quotes chat errors raw

        async with AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(self.http.stream(call, parse_error))
            except UpstreamError as exc:
                if chat and refused:
                    exc.es_type = "anthropic_error"  # ES's unified error type for Anthropic's own errors
                raise
            async for item in _events(response):
                yield item

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        settings, task = self._settings(endpoint)
        body = completion_body(list(request.input), settings.model_id, task, stream=True)
        async for kind, event, _ in self._stream(endpoint, body, chat=False):
            if kind == "error":
                error = event.get("error") or {}
                status = _STREAM_ERROR_STATUS.get(str(error.get("type")), 500)
                raise UpstreamError(str(error.get("message")), status=status)
            if kind in ("content_block_start", "content_block_delta"):
                source = event.get("content_block" if kind == "content_block_start" else "delta")
                text = source.get("text") if isinstance(source, dict) else None
                if isinstance(text, str) and text:  # text blocks and text deltas; tool input is not text
                    yield text

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        settings, task = self._settings(endpoint)
        converter = ChunkConverter()
        async for kind, event, raw in self._stream(endpoint, chat_body(request, settings.model_id, task), chat=True):
            if kind == "error":
                raise UpstreamError(
                    f"Received an error response for request from inference entity id [{endpoint.inference_id}]. "
                    f"Error message: [{raw}]",
                    status=500,
                    es_type="anthropic_error",
                )
            chunk = converter.convert(kind, event)
            if chunk is not None:
                yield chunk
