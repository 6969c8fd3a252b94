"""The `mistral` service: embeddings, completion and streaming chat completion on the Mistral API.

Wire format (as Elasticsearch speaks it): `POST https://api.mistral.ai/v1/embeddings` with
`{"model","input":[...],"encoding_format":"float"}`, and `POST https://api.mistral.ai/v1/chat/completions`
with OpenAI's chat body except that the token cap is `max_tokens` and there is no `stream_options`
(Mistral refuses unknown fields). Authentication is `Authorization: Bearer <api_key>`.

`url` (an inferd addition; ES has no URL setting for Mistral) is a *base* URL that replaces
`https://api.mistral.ai`: the API path is appended to it, so `http://proxy:8080` is called as
`http://proxy:8080/v1/embeddings` and `http://proxy:8080/v1/chat/completions`, and
`https://gw.example/mistral` as `https://gw.example/mistral/v1/...`. A trailing `/` is ignored.

Error messages follow ES: embeddings read `error.message` of the error body and are judged by ES's
Mistral embeddings handler (400/403/404/422 "unsuccessful"; 429, 500 and 503 retried); completion and
chat completion quote the provider's raw error body and are judged by ES's OpenAI chat completion
handler (OpenAI's wording; 500 and 503 retried, 429 not). Mistral's errors inside a stream arrive as a
data event holding `{"object":"error",...}`; they end the stream with ES's mid-stream error.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import Field

from inferd.core.errors import StatusError
from inferd.core.inference import InferenceRequest
from inferd.core.results import CompletionResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.services import http
from inferd.services.base import Endpoint
from inferd.services.http import ProviderCall, json_error_message
from inferd.services.openai_wire import (
    chat_body,
    content_too_large,
    describe_openai_status,
    embeddings_from_data,
    normalise_chunk,
    openai_retryable,
    stream_events,
    with_openai_chat_rules,
)
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


def is_mistral_error_event(payload: dict[str, Any]) -> bool:
    return payload.get("object") == "error" or (
        "choices" not in payload and ("error" in payload or "detail" in payload)
    )


def _rate_limit_wording(response: httpx.Response) -> str:
    """ES's Mistral embeddings 429 text: OpenAI's limits, or only what remains when no limit is given."""
    tokens, remaining_tokens, requests, remaining_requests = (
        response.headers.get(f"x-ratelimit-{name}", "unknown")
        for name in ("limit-tokens", "remaining-tokens", "limit-requests", "remaining-requests")
    )
    if tokens == requests == "unknown":
        return f"{http.RATE_LIMIT}. Remaining tokens [{remaining_tokens}]. Remaining requests [{remaining_requests}]."
    return (
        f"{http.RATE_LIMIT}. Token limit [{tokens}], remaining tokens [{remaining_tokens}]. "
        f"Request limit [{requests}], remaining requests [{remaining_requests}]"
    )


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

    def describe_status(self, response: httpx.Response) -> str:
        """ES's Mistral embeddings handler (AzureMistralOpenAiExternalResponseHandler): as OpenAI's, but every
        other 4xx is "unsuccessful". Completion and chat calls are judged by OpenAI's chat handler instead."""
        status = response.status_code
        if status == 429:
            return _rate_limit_wording(response)
        if status >= 500 or status == 401 or 300 <= status < 400 or content_too_large(response):
            return describe_openai_status(response)
        return http.UNSUCCESSFUL

    def is_retryable(self, response: httpx.Response) -> bool:
        return openai_retryable(response)  # 429, 500 and 503

    def _chat_call(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> ProviderCall:
        url = endpoint_url(getattr(endpoint.service_settings, "url", None), CHAT_PATH)
        return with_openai_chat_rules(self.call(endpoint, url, body, self._headers(endpoint), what))

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

    async def _chunks(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> AsyncIterator[dict[str, Any]]:
        async with self.http.stream(self._chat_call(endpoint, body, what), parse_chat_error) as response:
            async for payload in stream_events(
                response, endpoint.inference_id, parse_chat_error, is_mistral_error_event
            ):
                yield payload

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        body = self._completion_body(endpoint, request, stream=True)
        async for payload in self._chunks(endpoint, body, "completion"):
            for choice in payload.get("choices") or []:
                content = text_of((choice.get("delta") or {}).get("content"))
                if content:
                    yield content

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        settings = endpoint.service_settings
        assert isinstance(settings, MistralCompletionSettings)
        body = mistral_chat_body(request, request.get("model") or settings.model, stream=True)
        async for payload in self._chunks(endpoint, body, "chat_completion"):
            yield normalise_chunk(_plain_deltas(payload), CHAT_RESPONSE)
