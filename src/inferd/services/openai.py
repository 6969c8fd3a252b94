"""The `openai` service: embeddings, completion and streaming chat completion on the OpenAI API
(or any server speaking it, through `url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, ClassVar

import httpx
from pydantic import Field, SecretStr

from inferd.core.inference import InferenceRequest
from inferd.core.results import CompletionResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.services.base import Endpoint
from inferd.services.http import ProviderCall, json_error_message
from inferd.services.openai_wire import (
    chat_body,
    completion_texts,
    describe_openai_status,
    embeddings_from_data,
    openai_retryable,
    single_input,
    stream_chat_chunks,
    stream_completion_deltas,
    with_openai_chat_rules,
)
from inferd.services.provider import (
    ProviderService,
    RateLimit,
    Similarity,
    Url,
    rate_limit,
    url_field,
)
from inferd.services.schema import NonEmptyString, PositiveInteger, SettingsModel

BASE_URL = "https://api.openai.com/v1"
parse_openai_error = json_error_message("error", "message")


class OpenAiSecrets(SettingsModel):
    api_key: Annotated[
        SecretStr,
        Field(
            title="API Key",
            description="The OpenAI API authentication key. For more details about generating OpenAI API keys, "
            "refer to the https://platform.openai.com/account/api-keys.",
        ),
    ]


_MODEL_ID = Field(title="Model ID", description="The name of the model to use for the inference task.")
_ORGANIZATION = Field(
    default=None,
    title="Organization ID",
    description="The unique identifier of your organization.",
    json_schema_extra={"updatable": True},
)
_MAX_INPUT_TOKENS = Field(
    default=None,
    title="Maximum Input Tokens",
    description="The maximum number of tokens per input.",
    json_schema_extra={"updatable": True},
)


class OpenAiEmbeddingSettings(SettingsModel):
    model_id: Annotated[NonEmptyString, _MODEL_ID]
    url: Annotated[Url | None, url_field()]
    organization_id: Annotated[str | None, _ORGANIZATION]
    similarity: Annotated[Similarity | None, Field(default=None, title="Similarity", description="Similarity measure.")]
    dimensions: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Dimensions",
            description="The number of dimensions the resulting embeddings should have (text-embedding-3 and later).",
        ),
    ]
    max_input_tokens: Annotated[PositiveInteger | None, _MAX_INPUT_TOKENS]
    rate_limit: Annotated[RateLimit, rate_limit(3000)]


class OpenAiCompletionSettings(SettingsModel):
    model_id: Annotated[NonEmptyString, _MODEL_ID]
    url: Annotated[Url | None, url_field()]
    organization_id: Annotated[str | None, _ORGANIZATION]
    max_input_tokens: Annotated[PositiveInteger | None, _MAX_INPUT_TOKENS]
    rate_limit: Annotated[RateLimit, rate_limit(500)]


class OpenAiTaskSettings(SettingsModel):
    user: Annotated[
        str | None,
        Field(
            default=None,
            title="User",
            description="A unique identifier of your end user, passed on to OpenAI.",
            json_schema_extra={"updatable": True},
        ),
    ]
    headers: Annotated[
        dict[str, str] | None,
        Field(
            default=None,
            title="Custom Headers",
            description="Custom headers to include in the requests to OpenAI.",
            json_schema_extra={"updatable": True},
        ),
    ]


class OpenAiService(ProviderService):
    name = "openai"
    display_name = "OpenAI"
    provider_label = "OpenAI"
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    secret_settings_model = OpenAiSecrets
    default_similarity = "dot_product"
    embedding_batch_size = 2048

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return OpenAiEmbeddingSettings if task_type is TaskType.TEXT_EMBEDDING else OpenAiCompletionSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return OpenAiTaskSettings

    def internal_settings(self, task_type: TaskType, service_settings: Mapping[str, Any]) -> dict[str, Any]:
        # Only dimensions the user asked for are sent; those learnt at PUT are the model's own.
        return {"dimensions_set_by_user": service_settings.get("dimensions") is not None}

    def describe_status(self, response: httpx.Response) -> str:
        return describe_openai_status(response)

    def is_retryable(self, response: httpx.Response) -> bool:
        return openai_retryable(response)

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        secrets = endpoint.secrets
        assert isinstance(secrets, OpenAiSecrets)
        headers = {"Authorization": f"Bearer {secrets.api_key.get_secret_value()}"}
        organization = getattr(endpoint.service_settings, "organization_id", None)
        if organization:
            headers["OpenAI-Organization"] = organization
        task = endpoint.task_settings
        assert isinstance(task, OpenAiTaskSettings)
        headers.update(task.headers or {})
        return headers

    def _chat_call(self, endpoint: Endpoint, body: dict[str, Any], what: str) -> ProviderCall:
        """ES judges chat completions apart: OpenAI's wording, and a 429 is final."""
        url = self._url(endpoint, "chat/completions")
        return with_openai_chat_rules(self.call(endpoint, url, body, self._headers(endpoint), what))

    def _url(self, endpoint: Endpoint, path: str) -> str:
        url = getattr(endpoint.service_settings, "url", None)
        return url if isinstance(url, str) else f"{BASE_URL}/{path}"

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        settings = endpoint.service_settings
        task = endpoint.task_settings
        assert isinstance(settings, OpenAiEmbeddingSettings) and isinstance(task, OpenAiTaskSettings)
        send_dimensions = endpoint.config.internal_settings.get("dimensions_set_by_user", False)

        async def embed(texts: list[str]) -> list[list[float]]:
            body: dict[str, Any] = {"input": texts, "model": settings.model_id}
            if task.user:
                body["user"] = task.user
            if send_dimensions and settings.dimensions is not None:
                body["dimensions"] = settings.dimensions
            call = self.call(endpoint, self._url(endpoint, "embeddings"), body, self._headers(endpoint), "embeddings")
            return embeddings_from_data(await self.post(call, parse_openai_error), "OpenAI embeddings")

        return TextEmbeddingResult(await self.batched(request.input, self.embedding_batch_size, embed))

    def _completion_body(self, endpoint: Endpoint, request: InferenceRequest, *, stream: bool) -> dict[str, Any]:
        settings = endpoint.service_settings
        task = endpoint.task_settings
        assert isinstance(settings, OpenAiCompletionSettings) and isinstance(task, OpenAiTaskSettings)
        text = single_input(request, "OpenAI completions")
        chat = {"messages": [{"role": "user", "content": text}]}
        return chat_body(chat, model=settings.model_id, stream=stream, user=task.user)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        body = self._completion_body(endpoint, request, stream=False)
        call = self._chat_call(endpoint, body, "completion")
        return CompletionResult(completion_texts(await self.post(call, parse_openai_error), "OpenAI chat completions"))

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        body = self._completion_body(endpoint, request, stream=True)
        call = self._chat_call(endpoint, body, "completion")
        async with self.http.stream(call, parse_openai_error) as response:
            async for delta in stream_completion_deltas(response, endpoint.inference_id, parse_openai_error):
                yield delta

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        settings = endpoint.service_settings
        task = endpoint.task_settings
        assert isinstance(settings, OpenAiCompletionSettings) and isinstance(task, OpenAiTaskSettings)
        body = chat_body(request, model=request.get("model") or settings.model_id, stream=True, user=task.user)
        call = self._chat_call(endpoint, body, "chat completion")
        async with self.http.stream(call, parse_openai_error) as response:
            async for chunk in stream_chat_chunks(response, endpoint.inference_id, parse_openai_error):
                yield chunk
