"""The `hugging_face` service: Hugging Face Inference Endpoints, Text Embeddings Inference (TEI) and any
OpenAI-compatible chat server (TGI, vLLM, the Hugging Face router).

There is no default host: `url` is required for every task and, as in Elasticsearch, used verbatim as
the full endpoint; nothing is appended to it.

- text_embedding: a TEI-style embed route (e.g. `https://<endpoint>/embed`). Body `{"inputs": [...]}`,
  answered `[[...], ...]` or `{"embeddings": [[...], ...]}`; at most 20 inputs per call.
- rerank: a TEI rerank route (e.g. `https://<endpoint>/rerank`). Body `{"texts", "query", "return_text"?,
  "top_n"?}`, answered `[{"index", "score", "text"?}]`; sorted by score and cut to `top_n` here.
- completion and chat_completion: an OpenAI-compatible chat route (e.g. `https://<endpoint>/v1/chat/completions`),
  sent `max_tokens` (not `max_completion_tokens`) and `model` from `model_id` (or the chat request's `model`).

Every call sends `Authorization: Bearer <api_key>`. Errors: embeddings and rerank read the Hugging Face
body `{"error": "<message>"}` and are judged by ES's Hugging Face handler (429, 502 and 503 retried as rate
limits; other 5xx final; other 4xx "unsuccessful"); completion and chat also read the OpenAI shape
`{"error": {"message": ...}}` and are judged by ES's OpenAI chat completion handler (429 not retried).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import Field

from inferd.core.errors import UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.core.json_locations import token_name
from inferd.core.results import CompletionResult, RankedDocument, RerankResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.services import http
from inferd.services.base import Endpoint
from inferd.services.http import ProviderCall, json_error_message
from inferd.services.openai_wire import (
    chat_body,
    completion_texts,
    single_input,
    stream_chat_chunks,
    stream_completion_deltas,
    with_openai_chat_rules,
)
from inferd.services.provider import ApiKeySecrets, ProviderService, RateLimit, Similarity, Url, rate_limit
from inferd.services.schema import NonEmptyString, PositiveInteger, SettingsModel

EMBEDDINGS_RESPONSE = "Hugging Face embeddings"
# ES parses Hugging Face completions with its OpenAI chat completion parser, and says so.
COMPLETIONS_RESPONSE = "OpenAI chat completions"

parse_hf_error = json_error_message("error")


def parse_chat_error(response: httpx.Response) -> str | None:
    """`{"error": "..."}` (TGI, Inference Endpoints) or `{"error": {"message": ...}}` (OpenAI-compatible)."""
    return parse_hf_error(response) or json_error_message("error", "message")(response)


_URL = Field(title="URL", description="The URL endpoint to use for the requests.")
_SIMILARITY = Field(default=None, title="Similarity", description="Similarity measure.")
_DIMENSIONS = Field(default=None, title="Dimensions", description="The number of dimensions of the embeddings.")
_MAX_INPUT_TOKENS = Field(
    default=None,
    title="Maximum Input Tokens",
    description="The maximum number of tokens per input.",
    json_schema_extra={"updatable": True},
)
_MODEL_ID = Field(default=None, title="Model ID", description="The name of the model to use for the inference task.")


class HuggingFaceEmbeddingSettings(SettingsModel):
    url: Annotated[Url, _URL]
    similarity: Annotated[Similarity | None, _SIMILARITY]
    dimensions: Annotated[PositiveInteger | None, _DIMENSIONS]
    max_input_tokens: Annotated[PositiveInteger | None, _MAX_INPUT_TOKENS]
    rate_limit: Annotated[RateLimit, rate_limit(3000)]


class HuggingFaceRerankSettings(SettingsModel):
    url: Annotated[Url, _URL]
    rate_limit: Annotated[RateLimit, rate_limit(3000)]


class HuggingFaceChatSettings(SettingsModel):
    model_id: Annotated[NonEmptyString | None, _MODEL_ID]
    url: Annotated[Url, _URL]
    rate_limit: Annotated[RateLimit, rate_limit(3000)]


class HuggingFaceRerankTaskSettings(SettingsModel):
    return_documents: Annotated[
        bool | None,
        Field(
            default=None,
            title="Return Documents",
            description="Whether to return the text of each document with its score.",
            json_schema_extra={"updatable": True},
        ),
    ]
    top_n: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Top N",
            description="The number of most relevant documents to return.",
            json_schema_extra={"updatable": True},
        ),
    ]


# -- request builders and response parsers (pure) -------------------------------------------------


def _missing(field: str, response_name: str) -> UpstreamError:
    return UpstreamError(f"Failed to find required field [{field}] in {response_name} response")


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def parse_embeddings(payload: Any) -> list[list[float]]:
    """`[[...], ...]` (TEI `/embed`) or `{"embeddings": [[...], ...]}`."""
    vectors = payload.get("embeddings") if isinstance(payload, dict) else payload
    if not isinstance(vectors, list) or not all(isinstance(v, list) and all(_number(x) for x in v) for v in vectors):
        raise _missing("embeddings", EMBEDDINGS_RESPONSE)
    return [[float(x) for x in v] for v in vectors]


def rerank_body(query: str, texts: list[str], return_text: bool | None, top_n: int | None) -> dict[str, Any]:
    body: dict[str, Any] = {"texts": texts, "query": query}
    if return_text is not None:
        body["return_text"] = return_text
    if top_n is not None:
        body["top_n"] = top_n
    return body


def _unexpected_token(expected: str, value: Any) -> UpstreamError:
    return UpstreamError(
        f"Failed to parse object: expecting token of type [{expected}] but found [{token_name(value)}]"
    )


def _ranked(item: Any) -> RankedDocument:
    if not isinstance(item, dict):
        raise _unexpected_token("START_OBJECT", item)
    score = item.get("score", item.get("relevance_score"))
    text = item.get("text")
    document = item.get("document")
    if isinstance(document, dict) and isinstance(document.get("text"), str):
        text = document["text"]
    # As ES: a missing index or score reads -1 rather than failing the request.
    index = item.get("index")
    return RankedDocument(
        index=index if isinstance(index, int) and not isinstance(index, bool) else -1,
        relevance_score=float(score) if isinstance(score, int | float) and _number(score) else -1.0,
        text=text if isinstance(text, str) else None,
    )


def parse_rerank(payload: Any, top_n: int | None) -> list[RankedDocument]:
    """TEI's ranks, best first, cut to `top_n` (TEI itself may ignore it)."""
    if not isinstance(payload, list):
        raise _unexpected_token("START_ARRAY", payload)
    ranked = sorted((_ranked(item) for item in payload), key=lambda d: d.relevance_score, reverse=True)
    return ranked[:top_n] if top_n is not None else ranked


class HuggingFaceService(ProviderService):
    name = "hugging_face"
    display_name = "Hugging Face"
    provider_label = "Hugging Face"
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.RERANK,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    default_similarity = "cosine"
    embedding_batch_size = 20

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        if task_type is TaskType.TEXT_EMBEDDING:
            return HuggingFaceEmbeddingSettings
        if task_type is TaskType.RERANK:
            return HuggingFaceRerankSettings
        return HuggingFaceChatSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return HuggingFaceRerankTaskSettings if task_type is TaskType.RERANK else super().task_settings_model(task_type)

    @staticmethod
    def _headers(endpoint: Endpoint) -> dict[str, str]:
        secrets = endpoint.secrets
        assert isinstance(secrets, ApiKeySecrets)
        return {"Authorization": f"Bearer {secrets.api_key.get_secret_value()}"}

    def describe_status(self, response: httpx.Response) -> str:
        """ES's HuggingFaceResponseHandler (embeddings and rerank; chat calls are judged as OpenAI's)."""
        status = response.status_code
        if status in (429, 502, 503):
            return http.RATE_LIMIT
        if status >= 500:
            return http.SERVER_ERROR
        if status in (401, 413):
            return http.AUTHENTICATION if status == 401 else http.CONTENT_TOO_LARGE
        return http.REDIRECTION if 300 <= status < 400 else http.UNSUCCESSFUL

    def is_retryable(self, response: httpx.Response) -> bool:
        return response.status_code in (429, 502, 503)

    def _call(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> ProviderCall:
        url = getattr(endpoint.service_settings, "url", None)
        assert isinstance(url, str)
        call = self.call(endpoint, url, body, self._headers(endpoint), what)
        chat = endpoint.task_type in (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
        return with_openai_chat_rules(call) if chat else call

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        async def embed(texts: list[str]) -> list[list[float]]:
            call = self._call(endpoint, {"inputs": texts}, "text_embedding")
            return parse_embeddings(await self.post(call, parse_hf_error))

        return TextEmbeddingResult(await self.batched(request.input, self.embedding_batch_size, embed))

    async def rerank(self, endpoint: Endpoint, request: InferenceRequest) -> RerankResult:
        task = endpoint.task_settings
        assert isinstance(task, HuggingFaceRerankTaskSettings)
        # Values given in the request itself win over the endpoint's task settings.
        return_text = request.return_documents if request.return_documents is not None else task.return_documents
        top_n = request.top_n if request.top_n is not None else task.top_n
        body = rerank_body(request.query or "", list(request.input), return_text, top_n)
        payload = await self.post(self._call(endpoint, body, "rerank"), parse_hf_error)
        return RerankResult(parse_rerank(payload, top_n))

    def _chat_body(self, endpoint: Endpoint, chat: dict[str, Any], *, stream: bool) -> dict[str, Any]:
        settings = endpoint.service_settings
        assert isinstance(settings, HuggingFaceChatSettings)
        model = chat.get("model") or settings.model_id
        return chat_body(chat, model=model, stream=stream, max_tokens_key="max_tokens")

    def _completion_chat(self, request: InferenceRequest) -> dict[str, Any]:
        text = single_input(request, "Hugging Face completions")
        return {"messages": [{"role": "user", "content": text}]}

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        body = self._chat_body(endpoint, self._completion_chat(request), stream=False)
        payload = await self.post(self._call(endpoint, body, "completion"), parse_chat_error)
        return CompletionResult(completion_texts(payload, COMPLETIONS_RESPONSE))

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        body = self._chat_body(endpoint, self._completion_chat(request), stream=True)
        async with self.http.stream(self._call(endpoint, body, "completion"), parse_chat_error) as response:
            async for delta in stream_completion_deltas(response, endpoint.inference_id, parse_chat_error):
                yield delta

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        body = self._chat_body(endpoint, request, stream=True)
        async with self.http.stream(self._call(endpoint, body, "chat_completion"), parse_chat_error) as response:
            async for chunk in stream_chat_chunks(response, endpoint.inference_id, parse_chat_error):
                yield chunk
