"""What every third-party service shares: common settings, the validation call at PUT, batching,
and calls through the shared HTTP layer.

A provider module subclasses `ProviderService`, declares its settings models and implements the
task methods with small request builders and response parsers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from typing import Annotated, Any, ClassVar, Literal

import httpx
from pydantic import AfterValidator, Field, SecretStr
from pydantic_core import PydanticCustomError

from inferd.core.errors import InferdError, StatusError
from inferd.core.inference import InferenceRequest
from inferd.core.results import EmbeddingElementType
from inferd.core.tasks import InputType, TaskType
from inferd.services.base import Endpoint, Service, ServiceContext
from inferd.services.http import ErrorParser, ProviderCall, ProviderHttp, describe_status, is_retryable
from inferd.services.schema import PositiveInteger, SettingsModel, dump_settings

VALIDATION_INPUT = "how big"
VALIDATION_QUERY = "test query"

Similarity = Literal["cosine", "dot_product", "l2_norm"]


def _check_url(value: str) -> str:
    try:
        url = httpx.URL(value)
    except (httpx.InvalidURL, TypeError) as exc:
        raise PydanticCustomError("url_parsing", f"unable to parse url [{value}]. Reason: {exc}") from None
    if url.scheme not in ("http", "https") or not url.host:
        raise PydanticCustomError(
            "url_parsing", f"unable to parse url [{value}]. Reason: an absolute http or https URL is required"
        )
    return value


Url = Annotated[str, Field(min_length=1), AfterValidator(_check_url)]


class RateLimit(SettingsModel):
    unknown_nested_key_message: ClassVar[str] = "Rate limit settings contain unknown entries [{{{key}={value}}}]"

    requests_per_minute: Annotated[
        PositiveInteger, Field(title="Rate Limit", description="Requests allowed per minute to the provider.")
    ]


def rate_limit(requests_per_minute: int) -> Any:
    """A `rate_limit` field defaulting to the service's ES default for the task."""
    return Field(
        default_factory=lambda: RateLimit(requests_per_minute=requests_per_minute),
        title="Rate Limit",
        description=f"Requests allowed per minute (default {requests_per_minute}).",
        json_schema_extra={"updatable": True},
    )


def url_field(description: str = "The absolute URL of the external service to send requests to.") -> Any:
    return Field(default=None, title="URL", description=description)


class ApiKeySecrets(SettingsModel):
    api_key: Annotated[SecretStr, Field(title="API Key", description="API Key for the provider you're connecting to.")]


class ProviderService(Service):
    """Base of the third-party services."""

    # Secret settings of these services report problems under [service_settings], as ES does.
    secret_scope: ClassVar[str] = "service_settings"  # noqa: S105 - a settings scope name
    secret_settings_model: ClassVar[type[SettingsModel] | None] = ApiKeySecrets
    default_similarity: ClassVar[Similarity] = "dot_product"
    embedding_batch_size: ClassVar[int] = 96
    # Used in "Failed to send <label> request" messages, e.g. "OpenAI".
    provider_label: ClassVar[str]

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        self.http = ProviderHttp(context.settings, context.url_guard)

    async def close(self) -> None:
        await self.http.aclose()

    def prepare_service_settings(self, task_type: TaskType, settings: dict[str, Any]) -> dict[str, Any]:
        # ES reads `rate_limit: {}` as the service's default for the task.
        limit = settings.get("rate_limit")
        field = self.service_settings_model(task_type).model_fields.get("rate_limit")
        if isinstance(limit, dict) and limit.get("requests_per_minute") is None and field is not None:
            default = field.get_default(call_default_factory=True)
            if isinstance(default, RateLimit):
                settings = {**settings, "rate_limit": {**limit, "requests_per_minute": default.requests_per_minute}}
        return settings

    # -- calls -------------------------------------------------------------------------------

    def describe_status(self, response: httpx.Response) -> str:
        """How a failed status is worded in errors; services whose ES handler words it otherwise override."""
        return describe_status(response)

    def is_retryable(self, response: httpx.Response) -> bool:
        """Which failed statuses are retried (429 and 5xx unless a service knows better)."""
        return is_retryable(response)

    def call(self, endpoint: Endpoint, url: str, body: Any, headers: dict[str, str], what: str) -> ProviderCall:
        limit = getattr(endpoint.service_settings, "rate_limit", None)
        return ProviderCall(
            inference_id=endpoint.inference_id,
            url=url,
            json=body,
            headers=headers,
            requests_per_minute=limit.requests_per_minute if isinstance(limit, RateLimit) else 0,
            label=f"{self.provider_label} {what}",
            describe=self.describe_status,
            retryable=self.is_retryable,
        )

    async def post(self, call: ProviderCall, parse_error: ErrorParser) -> Any:
        return await self.http.post_json(call, parse_error)

    @staticmethod
    async def batched(inputs: Sequence[str], size: int, run: Callable[[list[str]], Awaitable[list[Any]]]) -> list[Any]:
        """Split to the provider's cap per call, run the calls concurrently, stitch results in order."""
        chunks = [list(inputs[i : i + size]) for i in range(0, len(inputs), size)]
        results = await asyncio.gather(*(run(chunk) for chunk in chunks))
        return [item for chunk in results for item in chunk]

    @staticmethod
    def require(value: Any, what: str, response_name: str) -> Any:
        """A field the provider's answer must have, with ES's message when it does not."""
        if value is None:
            raise StatusError(f"Failed to find required field [{what}] in {response_name} response", status=400)
        return value

    # -- creation ----------------------------------------------------------------------------

    async def on_create(self, endpoint: Endpoint, timeout_s: float | None) -> Endpoint:
        url = getattr(endpoint.service_settings, "url", None)
        if isinstance(url, str):
            await self.context.url_guard.check(url)
        if self.context.settings.skip_validate_and_start:
            return endpoint
        try:
            return await self.validate(endpoint)
        except InferdError as exc:
            raise StatusError(
                "Could not complete inference endpoint creation as validation call to service threw an exception.",
                caused_by=exc,
            ) from None

    async def validate(self, endpoint: Endpoint) -> Endpoint:
        """One real call, as ES makes at PUT; text embeddings also learn their size and similarity."""
        request = InferenceRequest(input=[VALIDATION_INPUT])
        match endpoint.task_type:
            case TaskType.TEXT_EMBEDDING:
                # ES validates as an ingest call (documents, not queries).
                result = await self.text_embedding(endpoint, replace(request, input_type=InputType.INGEST))
                if not result.embeddings:
                    raise StatusError("Could not determine embedding size")
                size = len(result.embeddings[0])
                if result.element_type is EmbeddingElementType.BIT:
                    size *= 8  # bits packed eight to a byte
                return self._with_embedding_facts(endpoint, size)
            case TaskType.RERANK:
                await self.rerank(endpoint, InferenceRequest(input=[VALIDATION_INPUT], query=VALIDATION_QUERY))
            case TaskType.COMPLETION:
                await self.completion(endpoint, request)
            case TaskType.CHAT_COMPLETION:
                chat = {"messages": [{"role": "user", "content": VALIDATION_INPUT}]}
                async for _ in self.stream_chat(endpoint, chat):
                    pass
            case TaskType.SPARSE_EMBEDDING:
                await self.sparse_embedding(endpoint, request)
        return endpoint

    def _with_embedding_facts(self, endpoint: Endpoint, size: int) -> Endpoint:
        settings = endpoint.config.service_settings
        declared = settings.get("dimensions")
        if declared is not None and declared != size:
            raise StatusError(
                f"The retrieved embeddings size [{size}] does not match the size specified in the settings "
                f"[{declared}]. Please recreate the [{endpoint.inference_id}] configuration with the correct "
                "dimensions"
            )
        updated = {**settings, "dimensions": size, "similarity": settings.get("similarity") or self.default_similarity}
        model = self.service_settings_model(endpoint.task_type).model_validate(updated)
        config = endpoint.config.with_changes(service_settings=dump_settings(model))
        return Endpoint(config, model, endpoint.task_settings, endpoint.secrets)
