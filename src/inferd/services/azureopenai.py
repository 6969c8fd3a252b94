"""The `azureopenai` service: embeddings, completion and streaming chat completion on a deployment
of an Azure OpenAI resource.

Requests go to `https://{resource_name}.openai.azure.com/openai/deployments/{deployment_id}/{op}`
with the query `?api-version={api_version}`, where `{op}` is `embeddings` or `chat/completions`.
The `url` setting (an inferd addition; ES has none) replaces only the base,
`https://{resource_name}.openai.azure.com`: the `/openai/deployments/...` path and the
`api-version` query are still appended to it, so it can name a gateway in front of Azure (or a
compatible server) that serves Azure's own paths, e.g. `https://apim.example.com/azure`.

Failed statuses are worded and retried as ES's AzureOpenAiResponseHandler does: OpenAI's handler (500 and
503 retried, 403 "unsuccessful") with its own 429 text, which names the remaining tokens and requests.

Authentication is exactly one of `api_key` (sent as `api-key: <key>`) and `entra_id` (a Microsoft
Entra ID token, sent as `Authorization: Bearer <token>`). An `_update` that gives one of them
replaces the stored one, as ES builds new secret settings from the update alone.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Annotated, Any, ClassVar, Self
from urllib.parse import quote, urlencode

import httpx
from pydantic import AfterValidator, Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.errors import ValidationError
from inferd.core.inference import InferenceRequest
from inferd.core.results import CompletionResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.services import http
from inferd.services.base import Endpoint
from inferd.services.http import json_error_message
from inferd.services.openai_wire import (
    chat_body,
    completion_texts,
    describe_openai_status,
    embeddings_from_data,
    openai_retryable,
    single_input,
    stream_chat_chunks,
    stream_completion_deltas,
)
from inferd.services.provider import ProviderService, RateLimit, Similarity, Url, url_field
from inferd.services.schema import NonEmptyString, PositiveInteger, SettingsModel

parse_azure_error = json_error_message("error", "message")

SECRET_KEYS = ("api_key", "entra_id")
# Azure resource names (the custom subdomain) are letters, digits and hyphens.
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")
# The first GA api-version that accepts `stream_options` (older ones answer 400 "Unrecognized
# request argument supplied: stream_options"); versions are dated `YYYY-MM-DD[-preview]`.
_STREAM_OPTIONS_SINCE = "2024-09-01"
_ONE_OF = "You must provide either an API key or an Entra ID."


def _check_resource_name(value: str) -> str:
    # The name becomes a host name: anything else could steer the request to another host.
    if not _RESOURCE_NAME.fullmatch(value):
        raise PydanticCustomError(
            "es",
            f"[service_settings] Invalid value [{value}] received. [resource_name] must be the name of an Azure "
            "resource (letters, digits and hyphens)",
        )
    return value


class AzureOpenAiSecrets(SettingsModel):
    api_key: Annotated[SecretStr | None, Field(default=None, title="API Key", description=_ONE_OF)]
    entra_id: Annotated[SecretStr | None, Field(default=None, title="Entra ID", description=_ONE_OF)]

    @field_validator("api_key", "entra_id")
    @classmethod
    def _not_empty(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise PydanticCustomError(
                "es", f"[secret_settings] Invalid value empty string. [{info.field_name}] must be a non-empty string"
            )
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [key for key in SECRET_KEYS if getattr(self, key) is not None]
        if not given:
            raise PydanticCustomError(
                "es", "[secret_settings] must have either the [api_key] or the [entra_id] key set"
            )
        if len(given) > 1:
            raise PydanticCustomError(
                "es", "[secret_settings] must have only one of the [api_key] or the [entra_id] key set"
            )
        return self


class AzureRateLimit(RateLimit):
    requests_per_minute: Annotated[
        PositiveInteger,
        Field(
            title="Rate Limit",
            description="The azureopenai service sets a default number of requests allowed per minute depending "
            "on the task type.",
        ),
    ]


def _rate_limit(requests_per_minute: int) -> Any:
    return Field(
        default_factory=lambda: AzureRateLimit(requests_per_minute=requests_per_minute),
        title="Rate Limit",
        description=f"Requests allowed per minute (default {requests_per_minute}).",
        json_schema_extra={"updatable": True},
    )


ResourceName = Annotated[NonEmptyString, AfterValidator(_check_resource_name)]
_RESOURCE = Field(title="Resource Name", description="The name of your Azure OpenAI resource.")
_DEPLOYMENT = Field(title="Deployment ID", description="The deployment name of your deployed models.")
_API_VERSION = Field(title="API Version", description="The Azure API version ID to use.")
_URL = url_field(
    "A base URL replacing https://{resource_name}.openai.azure.com; the deployment path and the api-version "
    "query are appended to it."
)


class AzureOpenAiEmbeddingSettings(SettingsModel):
    resource_name: Annotated[ResourceName, _RESOURCE]
    deployment_id: Annotated[NonEmptyString, _DEPLOYMENT]
    api_version: Annotated[NonEmptyString, _API_VERSION]
    url: Annotated[Url | None, _URL]
    dimensions: Annotated[
        PositiveInteger | None,
        Field(
            default=None,
            title="Dimensions",
            description="The number of dimensions the resulting embeddings should have. For more information refer "
            "to https://learn.microsoft.com/en-us/azure/ai-services/openai/reference#request-body-1.",
        ),
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
    similarity: Annotated[Similarity | None, Field(default=None, title="Similarity", description="Similarity measure.")]
    rate_limit: Annotated[AzureRateLimit, _rate_limit(1440)]


class AzureOpenAiCompletionSettings(SettingsModel):
    resource_name: Annotated[ResourceName, _RESOURCE]
    deployment_id: Annotated[NonEmptyString, _DEPLOYMENT]
    api_version: Annotated[NonEmptyString, _API_VERSION]
    url: Annotated[Url | None, _URL]
    rate_limit: Annotated[AzureRateLimit, _rate_limit(120)]


AzureSettings = AzureOpenAiEmbeddingSettings | AzureOpenAiCompletionSettings


class AzureOpenAiTaskSettings(SettingsModel):
    user: Annotated[
        str | None,
        Field(
            default=None,
            title="User",
            description="Specifies the user issuing the request.",
            json_schema_extra={"updatable": True},
        ),
    ]
    headers: Annotated[
        dict[str, str] | None,
        Field(
            default=None,
            title="Custom Headers",
            description="Custom headers to include in the requests to Azure OpenAI.",
            json_schema_extra={"updatable": True},
        ),
    ]


# -- request building (pure) ---------------------------------------------------------------------


def deployment_url(settings: AzureSettings, operation: str) -> str:
    """The Azure endpoint of `operation` (`embeddings`, `chat/completions`) on the deployment."""
    base = settings.url.rstrip("/") if settings.url else f"https://{settings.resource_name}.openai.azure.com"
    deployment = quote(settings.deployment_id, safe="")
    return f"{base}/openai/deployments/{deployment}/{operation}?{urlencode({'api-version': settings.api_version})}"


def auth_headers(secrets: AzureOpenAiSecrets) -> dict[str, str]:
    if secrets.entra_id is not None:
        return {"Authorization": f"Bearer {secrets.entra_id.get_secret_value()}"}
    if secrets.api_key is not None:
        return {"api-key": secrets.api_key.get_secret_value()}
    raise ValidationError(
        ["The request does not have any authentication methods set. One of [api_key] or [entra_id] is required."]
    )


def embeddings_body(texts: list[str], user: str | None, dimensions: int | None) -> dict[str, Any]:
    """Azure's embeddings body: the deployment names the model, so there is no `model`."""
    body: dict[str, Any] = {"input": texts}
    if user:
        body["user"] = user
    if dimensions is not None:
        body["dimensions"] = dimensions
    return body


def accepts_stream_options(api_version: str) -> bool:
    dated = re.match(r"\d{4}-\d{2}-\d{2}", api_version)
    return dated is None or dated.group() >= _STREAM_OPTIONS_SINCE


# -- the service -----------------------------------------------------------------------------------


class AzureOpenAiService(ProviderService):
    name = "azureopenai"
    display_name = "Azure OpenAI"
    provider_label = "Azure OpenAI"
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)
    secret_settings_model = AzureOpenAiSecrets
    secret_scope: ClassVar[str] = "secret_settings"  # noqa: S105 - a settings scope name
    default_similarity = "dot_product"
    embedding_batch_size = 2048

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        if task_type is TaskType.TEXT_EMBEDDING:
            return AzureOpenAiEmbeddingSettings
        return AzureOpenAiCompletionSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return AzureOpenAiTaskSettings

    def prepare_service_settings(self, task_type: TaskType, settings: dict[str, Any]) -> dict[str, Any]:
        if task_type is TaskType.TEXT_EMBEDDING and "dimensions_set_by_user" in settings:
            raise ValidationError(["[service_settings] does not allow the setting [dimensions_set_by_user]"])
        return super().prepare_service_settings(task_type, settings)

    def internal_settings(self, task_type: TaskType, service_settings: Mapping[str, Any]) -> dict[str, Any]:
        # Only dimensions the user asked for are sent; those learnt at PUT are the model's own.
        return {"dimensions_set_by_user": service_settings.get("dimensions") is not None}

    def apply_update(
        self,
        config: EndpointConfig,
        secrets: EndpointSecrets,
        service_settings: Mapping[str, Any] | None,
        task_settings: Mapping[str, Any] | None,
    ) -> tuple[EndpointConfig, EndpointSecrets]:
        # New secrets replace the stored ones as a whole (ES's newSecretSettings), so switching from
        # api_key to entra_id drops the key instead of failing "only one of".
        if any(service_settings and service_settings.get(key) is not None for key in SECRET_KEYS):
            secrets = EndpointSecrets({k: v for k, v in secrets.values.items() if k not in SECRET_KEYS})
        return super().apply_update(config, secrets, service_settings, task_settings)

    def describe_status(self, response: httpx.Response) -> str:
        if response.status_code == 429:  # Azure's rate limit headers give only what remains
            tokens = response.headers.get("x-ratelimit-remaining-tokens", "unknown")
            requests = response.headers.get("x-ratelimit-remaining-requests", "unknown")
            return f"{http.RATE_LIMIT}. Remaining tokens [{tokens}]. Remaining requests [{requests}]."
        return describe_openai_status(response)

    def is_retryable(self, response: httpx.Response) -> bool:
        return openai_retryable(response)  # 429, 500 and 503

    def _headers(self, endpoint: Endpoint) -> dict[str, str]:
        secrets = endpoint.secrets
        task = endpoint.task_settings
        assert isinstance(secrets, AzureOpenAiSecrets) and isinstance(task, AzureOpenAiTaskSettings)
        return {**auth_headers(secrets), **(task.headers or {})}

    def _parts(self, endpoint: Endpoint) -> tuple[AzureSettings, AzureOpenAiTaskSettings]:
        settings = endpoint.service_settings
        task = endpoint.task_settings
        assert isinstance(settings, AzureOpenAiEmbeddingSettings | AzureOpenAiCompletionSettings)
        assert isinstance(task, AzureOpenAiTaskSettings)
        return settings, task

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        settings, task = self._parts(endpoint)
        assert isinstance(settings, AzureOpenAiEmbeddingSettings)
        dimensions = settings.dimensions if endpoint.config.internal_settings.get("dimensions_set_by_user") else None
        url = deployment_url(settings, "embeddings")

        async def embed(texts: list[str]) -> list[list[float]]:
            body = embeddings_body(texts, task.user, dimensions)
            call = self.call(endpoint, url, body, self._headers(endpoint), "embeddings")
            return embeddings_from_data(await self.post(call, parse_azure_error), "Azure OpenAI embeddings")

        return TextEmbeddingResult(await self.batched(request.input, self.embedding_batch_size, embed))

    def _completion_body(self, endpoint: Endpoint, request: InferenceRequest, *, stream: bool) -> dict[str, Any]:
        _, task = self._parts(endpoint)
        text = single_input(request, "Azure OpenAI completion")
        chat = {"messages": [{"role": "user", "content": text}]}
        # Completion deltas carry no usage, and older api-versions refuse `stream_options` (ES sends none).
        return chat_body(chat, model=None, stream=stream, user=task.user, stream_options=False)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        settings, _ = self._parts(endpoint)
        body = self._completion_body(endpoint, request, stream=False)
        call = self.call(
            endpoint, deployment_url(settings, "chat/completions"), body, self._headers(endpoint), "completion"
        )
        payload = await self.post(call, parse_azure_error)
        return CompletionResult(completion_texts(payload, "Azure OpenAI chat completions"))

    async def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        settings, _ = self._parts(endpoint)
        body = self._completion_body(endpoint, request, stream=True)
        call = self.call(
            endpoint, deployment_url(settings, "chat/completions"), body, self._headers(endpoint), "completion"
        )
        async with self.http.stream(call, parse_azure_error) as response:
            async for delta in stream_completion_deltas(response, endpoint.inference_id, parse_azure_error):
                yield delta

    async def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        settings, task = self._parts(endpoint)
        # The deployment fixes the model: ES sends no `model` to Azure.
        body = chat_body(
            request,
            model=None,
            stream=True,
            user=task.user,
            stream_options=accepts_stream_options(settings.api_version),
        )
        url = deployment_url(settings, "chat/completions")
        call = self.call(endpoint, url, body, self._headers(endpoint), "chat completion")
        async with self.http.stream(call, parse_azure_error) as response:
            chunks = stream_chat_chunks(
                response, endpoint.inference_id, parse_azure_error, "Azure OpenAI chat completions"
            )
            async for chunk in chunks:
                yield chunk
