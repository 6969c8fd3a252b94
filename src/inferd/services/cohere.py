"""The `cohere` service: embeddings, rerank and (streaming) completion on Cohere's API v2.

Requests go to `https://api.cohere.ai/v2/embed`, `/v2/rerank` and `/v2/chat`. A `url` setting
overrides only the scheme, host and port (and user info): its path, query and fragment are
dropped and the v2 path is put in their place, as Elasticsearch's `CohereAccount` does. So
`http://proxy:8080/anything` sends embeddings to `http://proxy:8080/v2/embed`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar, Self

import httpx
import orjson
from httpx_sse import EventSource
from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from inferd.core.errors import StatusError, UpstreamError
from inferd.core.inference import InferenceRequest
from inferd.core.results import (
    CompletionResult,
    EmbeddingElementType,
    RankedDocument,
    RerankResult,
    TextEmbeddingResult,
)
from inferd.core.tasks import InputType, TaskType
from inferd.services import http
from inferd.services.base import Endpoint
from inferd.services.http import ProviderCall, json_error_message
from inferd.services.openai_wire import single_input
from inferd.services.provider import (
    ApiKeySecrets,
    ProviderService,
    RateLimit,
    Similarity,
    Url,
    rate_limit,
    url_field,
)
from inferd.services.schema import EmptySettings, NonEmptyString, PositiveInteger, SettingsModel

log = logging.getLogger(__name__)

BASE_URL = "https://api.cohere.ai"
MODEL_REQUIRED = "The [service_settings.model_id] field is required for the Cohere V2 API."
TEXTS_TOO_LARGE = "invalid request: total number of texts must be at most"
parse_cohere_error = json_error_message("message")

# inferd input types -> Cohere's; a request without one embeds as a search query (v2 requires one).
_INPUT_TYPES = {
    InputType.INGEST: "search_document",
    InputType.INTERNAL_INGEST: "search_document",
    InputType.SEARCH: "search_query",
    InputType.INTERNAL_SEARCH: "search_query",
    InputType.CLASSIFICATION: "classification",
    InputType.CLUSTERING: "clustering",
}
# embedding_type as given -> the element type stored and shown (ES normalises int8 and binary).
_EMBEDDING_TYPES = {"float": "float", "int8": "byte", "byte": "byte", "bit": "bit", "binary": "bit"}
# element type -> the value of Cohere's `embedding_types` and the key of its answer.
_WIRE_TYPES = {"float": "float", "byte": "int8", "bit": "binary"}


def _enum_setting(scope: str, key: str, choices: dict[str, str], allowed: str) -> Any:
    """A case-insensitive enum setting, stored normalised, refused in ES's words."""

    def check(value: str) -> str:
        normalised = choices.get(value.strip().lower())
        if normalised is None:
            message = f"[{scope}] Invalid value [{value}] received. [{key}] must be one of [{allowed}]"
            raise PydanticCustomError("es", message)
        return normalised

    return AfterValidator(check)


EmbeddingType = Annotated[
    str, _enum_setting("service_settings", "embedding_type", _EMBEDDING_TYPES, "binary, bit, byte, float, int8")
]
TaskInputType = Annotated[
    str,
    _enum_setting(
        "task_settings",
        "input_type",
        {t: t for t in ("ingest", "search", "classification", "clustering")},
        "classification, clustering, ingest, search",
    ),
]
Truncate = Annotated[
    str,
    _enum_setting("task_settings", "truncate", {t.lower(): t for t in ("NONE", "START", "END")}, "END, NONE, START"),
]

_MODEL_ID = Field(
    default=None,
    title="Model ID",
    description="The name of the model to use for the inference task.",
    json_schema_extra={"required": False},
)
_URL = url_field("The base URL of the Cohere API; only its scheme, host and port are used.")


class _CohereSettings(SettingsModel):
    @model_validator(mode="after")
    def _model_id_required(self) -> Self:
        if getattr(self, "model_id", None) is None:
            raise PydanticCustomError("es", MODEL_REQUIRED)
        return self


class CohereEmbeddingSettings(_CohereSettings):
    url: Annotated[Url | None, _URL]
    similarity: Annotated[Similarity | None, Field(default=None, title="Similarity", description="Similarity measure.")]
    dimensions: Annotated[
        PositiveInteger | None, Field(default=None, title="Dimensions", description="Embedding size.")
    ]
    max_input_tokens: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Maximum Input Tokens",
            description="The maximum number of tokens per input.",
            json_schema_extra={"updatable": True},
        ),
    ]
    model_id: Annotated[NonEmptyString | None, _MODEL_ID]
    rate_limit: Annotated[RateLimit, rate_limit(10000)]
    embedding_type: Annotated[
        EmbeddingType,
        Field(
            default="float",
            title="Embedding Type",
            description="The type of embeddings to return: float (default), byte (or int8) or bit (or binary).",
        ),
    ]


class CohereSettings(_CohereSettings):
    """Service settings of rerank and completion endpoints."""

    url: Annotated[Url | None, _URL]
    model_id: Annotated[NonEmptyString | None, _MODEL_ID]
    rate_limit: Annotated[RateLimit, rate_limit(10000)]


class CohereEmbeddingTaskSettings(SettingsModel):
    input_type: Annotated[
        TaskInputType | None,
        Field(default=None, title="Input Type", description="ingest, search, classification or clustering."),
    ]
    truncate: Annotated[
        Truncate | None,
        Field(default=None, title="Truncate", description="How to handle inputs longer than the model takes."),
    ]


class CohereRerankTaskSettings(SettingsModel):
    return_documents: Annotated[
        bool | None, Field(default=None, title="Return Documents", description="Return the text of each document.")
    ]
    top_n: Annotated[
        PositiveInteger | None,
        Field(default=None, title="Top N", description="How many of the best documents to return."),
    ]
    max_chunks_per_doc: Annotated[
        PositiveInteger | None, Field(default=None, title="Max Chunks Per Doc", description="Chunks per long document.")
    ]


# -- wire helpers (pure) -------------------------------------------------------------------------


def endpoint_url(url: str | None, operation: str) -> str:
    """The v2 endpoint for `operation`; a configured URL gives only scheme, host and port."""
    if url is None:
        return f"{BASE_URL}/v2/{operation}"
    return str(httpx.URL(url).copy_with(path=f"/v2/{operation}", query=None, fragment=None))


def _missing(field: str, response: str) -> StatusError:
    return StatusError(f"Failed to find required field [{field}] in Cohere {response} response")


def parse_embeddings(payload: Any, element_type: str) -> list[Any]:
    """Vectors of an embed answer: `embeddings` keyed by type (v2), or a plain float array (v1)."""
    embeddings = payload.get("embeddings") if isinstance(payload, dict) else None
    if isinstance(embeddings, list) and element_type == "float":
        vectors: Any = embeddings
    elif isinstance(embeddings, dict) and isinstance(embeddings.get(_WIRE_TYPES[element_type]), list):
        vectors = embeddings[_WIRE_TYPES[element_type]]
    elif embeddings is None:
        raise _missing("embeddings", "embeddings")
    else:
        raise StatusError(
            "Failed to find a supported embedding type in the Cohere embeddings response. "
            "Supported types are [binary, float, int8]"
        )
    if element_type == "float":
        return [[float(v) for v in vector] for vector in vectors]
    for vector in vectors:
        for value in vector:
            if not isinstance(value, int) or not -128 <= value <= 127:
                raise StatusError(f"Value [{value}] is out of range for a byte")
    return [list(vector) for vector in vectors]


def parse_rerank(payload: Any, documents: list[str], return_documents: bool | None) -> list[RankedDocument]:
    results = payload.get("results") if isinstance(payload, dict) else None
    if not isinstance(results, list):
        raise _missing("results", "rerank")
    ranked = []
    for item in results:
        for field in ("index", "relevance_score"):
            if not isinstance(item, dict) or item.get(field) is None:
                raise _missing(field, "rerank")
        index = int(item["index"])
        text = (item.get("document") or {}).get("text")
        if text is None and return_documents and 0 <= index < len(documents):
            text = documents[index]  # v2 no longer echoes documents; ES shows them when asked to
        ranked.append(RankedDocument(index, float(item["relevance_score"]), text))
    return sorted(ranked, key=lambda doc: doc.relevance_score, reverse=True)


def parse_chat(payload: Any) -> str:
    content = ((payload.get("message") if isinstance(payload, dict) else None) or {}).get("content")
    for part in content if isinstance(content, list) else []:
        if isinstance(part, dict) and isinstance(part.get("text"), str):
            return str(part["text"])
    raise _missing("text", "chat")


async def stream_deltas(response: httpx.Response) -> AsyncIterator[str]:
    """Text deltas of a v2 chat stream: SSE events named by their `type`; other types are skipped."""
    async for event in EventSource(response).aiter_sse():
        data = event.data.strip()
        if not data or data == "[DONE]":
            continue
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            raise UpstreamError(f"Failed to parse event from inference provider: {data[:200]}", status=500) from None
        kind = payload.get("type") if isinstance(payload, dict) else None
        delta = (payload.get("delta") if isinstance(payload, dict) else None) or {}
        if kind == "content-delta":
            text = ((delta.get("message") or {}).get("content") or {}).get("text")
            if text:
                yield str(text)
        elif kind == "message-end":
            if delta.get("finish_reason") == "ERROR":
                reason = delta.get("error") or "ERROR"
                raise UpstreamError(f"Cohere stopped the stream due to an error: {reason}", status=500)
            return


class CohereService(ProviderService):
    name = "cohere"
    display_name = "Cohere"
    provider_label = "Cohere"
    task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.TEXT_EMBEDDING, TaskType.RERANK, TaskType.COMPLETION)
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION,)
    default_similarity = "dot_product"
    embedding_batch_size = 96

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return CohereEmbeddingSettings if task_type is TaskType.TEXT_EMBEDDING else CohereSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        if task_type is TaskType.TEXT_EMBEDDING:
            return CohereEmbeddingTaskSettings
        return CohereRerankTaskSettings if task_type is TaskType.RERANK else EmptySettings

    def prepare_service_settings(self, task_type: TaskType, settings: dict[str, Any]) -> dict[str, Any]:
        if "model" in settings:  # the deprecated alias of model_id
            log.info("The cohere [service_settings.model] field is deprecated. Please use [service_settings.model_id]")
            settings = dict(settings)
            alias = settings.pop("model")
            settings.setdefault("model_id", alias)
        return super().prepare_service_settings(task_type, settings)

    def _call(self, endpoint: Endpoint, operation: str, body: dict[str, Any], what: str) -> ProviderCall:
        secrets = endpoint.secrets
        assert isinstance(secrets, ApiKeySecrets)
        key = secrets.api_key.get_secret_value()
        headers = {"Authorization": f"Bearer {key}", "Request-Source": "unspecified:elasticsearch"}
        url = endpoint_url(getattr(endpoint.service_settings, "url", None), operation)
        return self.call(endpoint, url, body, headers, what)

    def describe_status(self, response: httpx.Response) -> str:
        """ES's CohereResponseHandler: every 4xx but 401 and 429 is "unsuccessful", bar too many texts."""
        status = response.status_code
        if status == 400 and TEXTS_TOO_LARGE in response.text:
            return "Received a texts array too large response"
        if status >= 500 or status in (401, 429):
            return http.describe_status(response)  # server error, authentication, rate limit
        return http.REDIRECTION if 300 <= status < 400 else http.UNSUCCESSFUL

    def is_retryable(self, response: httpx.Response) -> bool:
        return response.status_code in (429, 500)  # ES's Cohere handler retries nothing else

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        settings, task = endpoint.service_settings, endpoint.task_settings
        assert isinstance(settings, CohereEmbeddingSettings) and isinstance(task, CohereEmbeddingTaskSettings)
        input_type = request.input_type or (InputType(task.input_type) if task.input_type else InputType.SEARCH)
        base: dict[str, Any] = {
            "model": settings.model_id,
            "input_type": _INPUT_TYPES.get(input_type, "search_query"),
            "embedding_types": [_WIRE_TYPES[settings.embedding_type]],
        }
        if task.truncate:
            base["truncate"] = task.truncate

        async def embed(texts: list[str]) -> list[Any]:
            call = self._call(endpoint, "embed", {"texts": texts, **base}, "embeddings")
            return parse_embeddings(await self.post(call, parse_cohere_error), settings.embedding_type)

        vectors = await self.batched(request.input, self.embedding_batch_size, embed)
        return TextEmbeddingResult(vectors, EmbeddingElementType(settings.embedding_type))

    async def rerank(self, endpoint: Endpoint, request: InferenceRequest) -> RerankResult:
        settings, task = endpoint.service_settings, endpoint.task_settings
        assert isinstance(settings, CohereSettings) and isinstance(task, CohereRerankTaskSettings)
        body: dict[str, Any] = {"model": settings.model_id, "query": request.query, "documents": request.input}
        return_documents = task.return_documents if request.return_documents is None else request.return_documents
        top_n = task.top_n if request.top_n is None else request.top_n
        if return_documents is not None:
            body["return_documents"] = return_documents
        if top_n is not None:
            body["top_n"] = top_n
        if task.max_chunks_per_doc is not None:
            body["max_chunks_per_doc"] = task.max_chunks_per_doc
        payload = await self.post(self._call(endpoint, "rerank", body, "rerank"), parse_cohere_error)
        return RerankResult(parse_rerank(payload, request.input, return_documents))

    def _chat_call(self, endpoint: Endpoint, request: InferenceRequest, *, stream: bool) -> ProviderCall:
        settings = endpoint.service_settings
        assert isinstance(settings, CohereSettings)
        text = single_input(request, "Cohere completion")
        body = {"messages": [{"role": "user", "content": text}], "model": settings.model_id, "stream": stream}
        return self._call(endpoint, "chat", body, "completion")

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        payload = await self.post(self._chat_call(endpoint, request, stream=False), parse_cohere_error)
        return CompletionResult([parse_chat(payload)])

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        async with self.http.stream(self._chat_call(endpoint, request, stream=True), parse_cohere_error) as response:
            async for delta in stream_deltas(response):
                yield delta
