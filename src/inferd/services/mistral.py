"""The `mistral` service: embeddings, completion and streaming chat completion on the Mistral API.

Wire format (as Elasticsearch speaks it): `POST https://api.mistral.ai/v1/embeddings` with
`{"model","input":[...],"encoding_format":"float"}`, and `POST https://api.mistral.ai/v1/chat/completions`
with OpenAI's chat body except that the token cap is `max_tokens` and there is no `stream_options`
(Mistral refuses unknown fields). Authentication is `Authorization: Bearer <api_key>`.

`url` (an inferd addition; ES has no URL setting for Mistral) is a *base* URL that replaces
`https://api.mistral.ai`: the API path is appended to it, so `http://proxy:8080` is called as
`http://proxy:8080/v1/embeddings` and `http://proxy:8080/v1/chat/completions`, and
`https://gw.example/mistral` as `https://gw.example/mistral/v1/...`. A trailing `/` is ignored.

Error messages follow ES: embeddings read `error.message` of the error body; completion and chat
completion quote the provider's raw error body. Mistral's errors inside a stream arrive as a data event
holding `{"object":"error",...}`; they end the stream with ES's mid-stream error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import httpx
import orjson
from httpx_sse import EventSource
from pydantic import Field

from inferd.core.errors import StatusError, UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.core.results import CompletionResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.services.base import Endpoint
from inferd.services.http import json_error_message
from inferd.services.openai_wire import chat_body, embeddings_from_data, mid_stream_error, normalise_chunk
from inferd.services.provider import ProviderService, RateLimit, Similarity, Url, rate_limit, url_field
from inferd.services.schema import NonEmptyString, PositiveInteger, SettingsModel

BASE_URL = "https://api.mistral.ai"
EMBEDDINGS_PATH = "/v1/embeddings"
CHAT_PATH = "/v1/chat/completions"
EMBEDDINGS_RESPONSE = "Mistral embeddings"
CHAT_RESPONSE = "Mistral chat completions"

# ES: embeddings errors are read as OpenAI's `error.message`; chat and completion quote the raw body.
parse_embeddings_error = json_error_message("error", "message")


def parse_chat_error(response: httpx.Response) -> str | None:
    text = response.text
    return text if text.strip() else None


_MODEL = Field(
    title="Model",
    description="Refer to the Mistral models documentation for the list of available inference models.",
)
_URL = url_field(
    "The base URL of the Mistral API or of a compatible server (default https://api.mistral.ai); "
    "/v1/embeddings or /v1/chat/completions is appended."
)


class MistralEmbeddingSettings(SettingsModel):
    model: Annotated[NonEmptyString, _MODEL]
    url: Annotated[Url | None, _URL]
    dimensions: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Dimensions",
            description="The number of dimensions of the embeddings; learnt at creation and never sent to Mistral.",
        ),
    ]
    similarity: Annotated[Similarity | None, Field(default=None, title="Similarity", description="Similarity measure.")]
    max_input_tokens: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Maximum Input Tokens",
            description="Allows you to specify the maximum number of tokens per input.",
            json_schema_extra={"updatable": True},
        ),
    ]
    rate_limit: Annotated[RateLimit, rate_limit(240)]


class MistralCompletionSettings(SettingsModel):
    model: Annotated[NonEmptyString, _MODEL]
    url: Annotated[Url | None, _URL]
    rate_limit: Annotated[RateLimit, rate_limit(240)]


# -- request builders and response parsers ------------------------------------------------------


def endpoint_url(base: str | None, path: str) -> str:
    return (base or BASE_URL).rstrip("/") + path


def embeddings_body(model: str, texts: list[str]) -> dict[str, Any]:
    return {"model": model, "input": texts, "encoding_format": "float"}


def mistral_chat_body(chat: dict[str, Any], model: str, *, stream: bool) -> dict[str, Any]:
    return chat_body(chat, model=model, stream=stream, max_tokens_key="max_tokens", stream_options=False)


def text_of(content: Any) -> str:
    """Message content as text: Mistral may answer a list of chunks (text, thinking, ...)."""
    if isinstance(content, list):
        return "".join(c.get("text") or "" for c in content if isinstance(c, dict) and c.get("type") == "text")
    return content if isinstance(content, str) else ""


def completion_texts(payload: Any) -> list[str]:
    choices = payload.get("choices") if isinstance(payload, dict) else None
    if not isinstance(choices, list):
        raise StatusError(f"Failed to find required field [choices] in {CHAT_RESPONSE} response")
    texts = []
    for choice in choices:
        message = choice.get("message") if isinstance(choice, dict) else None
        if not isinstance(message, dict):
            raise StatusError(f"Failed to find required field [message] in {CHAT_RESPONSE} response")
        texts.append(text_of(message.get("content")))
    return texts


def _is_error_event(payload: dict[str, Any]) -> bool:
    return payload.get("object") == "error" or (
        "choices" not in payload and ("error" in payload or "detail" in payload)
    )


async def stream_events(response: httpx.Response, inference_id: str) -> AsyncIterator[dict[str, Any]]:
    """The JSON chunks of Mistral's SSE stream, up to `data: [DONE]`; an error object ends it."""
    async for event in EventSource(response).aiter_sse():
        data = event.data.strip()
        if event.event == "error":
            raise mid_stream_error(inference_id, data, parse_chat_error)
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
        if _is_error_event(payload):
            raise mid_stream_error(inference_id, data, parse_chat_error)
        yield payload


def _plain_deltas(payload: dict[str, Any]) -> dict[str, Any]:
    """A chunk with list-valued delta contents flattened to text, as the unified format expects."""
    choices = []
    for choice in payload.get("choices") or []:
        delta = (choice.get("delta") if isinstance(choice, dict) else None) or {}
        if isinstance(delta.get("content"), list):
            choice = {**choice, "delta": {**delta, "content": text_of(delta["content"])}}
        choices.append(choice)
    return {**payload, "choices": choices}


# -- the service -------------------------------------------------------------------------------


class MistralService(ProviderService):
    name = "mistral"
    display_name = "Mistral"
    provider_label = "Mistral"
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    default_similarity = "dot_product"
    embedding_batch_size = 96

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return MistralEmbeddingSettings if task_type is TaskType.TEXT_EMBEDDING else MistralCompletionSettings

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        api_key = getattr(endpoint.secrets, "api_key", None)
        assert api_key is not None
        return {"Authorization": f"Bearer {api_key.get_secret_value()}"}

    def _chat_call(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> Any:
        url = endpoint_url(getattr(endpoint.service_settings, "url", None), CHAT_PATH)
        return self.call(endpoint, url, body, self._headers(endpoint), what)

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        settings = endpoint.service_settings
        assert isinstance(settings, MistralEmbeddingSettings)
        url = endpoint_url(settings.url, EMBEDDINGS_PATH)

        async def embed(texts: list[str]) -> list[list[float]]:
            call = self.call(
                endpoint, url, embeddings_body(settings.model, texts), self._headers(endpoint), "text_embedding"
            )
            return embeddings_from_data(await self.post(call, parse_embeddings_error), EMBEDDINGS_RESPONSE)

        return TextEmbeddingResult(await self.batched(request.input, self.embedding_batch_size, embed))

    def _completion_body(self, endpoint: Endpoint, request: InferenceRequest, *, stream: bool) -> dict[str, Any]:
        settings = endpoint.service_settings
        assert isinstance(settings, MistralCompletionSettings)
        chat = {"messages": [{"role": "user", "content": text} for text in request.input]}
        return mistral_chat_body(chat, settings.model, stream=stream)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        call = self._chat_call(endpoint, self._completion_body(endpoint, request, stream=False), "completion")
        return CompletionResult(completion_texts(await self.post(call, parse_chat_error)))

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        call = self._chat_call(endpoint, self._completion_body(endpoint, request, stream=True), "completion")
        async with self.http.stream(call, parse_chat_error) as response:
            async for payload in stream_events(response, endpoint.inference_id):
                for choice in payload.get("choices") or []:
                    content = text_of((choice.get("delta") or {}).get("content"))
                    if content:
                        yield content

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        settings = endpoint.service_settings
        assert isinstance(settings, MistralCompletionSettings)
        body = mistral_chat_body(request, request.get("model") or settings.model, stream=True)
        async with self.http.stream(self._chat_call(endpoint, body, "chat_completion"), parse_chat_error) as response:
            async for payload in stream_events(response, endpoint.inference_id):
                yield normalise_chunk(_plain_deltas(payload), CHAT_RESPONSE)
