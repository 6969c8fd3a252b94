"""The `elasticsearch` service (built-in local models) and its deprecated alias `elser`.

This module declares the settings, model-id rules and default endpoints with Elasticsearch's
semantics. Running the models is the engine's job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from inferd.core.chunking import DEFAULT_CHUNKING
from inferd.core.deprecation import deprecation_warning
from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.errors import IllegalArgument, StatusError, ValidationError
from inferd.core.java_format import java_value
from inferd.core.tasks import TaskType
from inferd.engine.catalog import BUILTIN_MODELS, E5_SMALL, ELSER_V2, RERANK_V1, current_platform, platform_default
from inferd.services.base import Endpoint, Service, ServiceContext
from inferd.services.local_inference import (
    LocalInference,
    allocation_plan,
    deployment_id_of,
    deployment_id_of_config,
)
from inferd.services.schema import EmptySettings, Integer, NonEmptyString, PositiveInteger, SettingsModel


def _es_error(message: str) -> PydanticCustomError:
    return PydanticCustomError("es", message)


class AdaptiveAllocations(SettingsModel):
    unknown_nested_key_message: ClassVar[str] = "[{parent}] does not allow the setting [{key}]"

    enabled: Annotated[bool, Field(description="Turn on adaptive allocations.", title="Enabled")] = False
    min_number_of_allocations: Annotated[
        Integer | None,
        Field(
            description="The least number of allocations (0 lets the deployment scale to zero).",
            title="Minimum Allocations",
        ),
    ] = None
    max_number_of_allocations: Annotated[
        Integer | None, Field(description="The most allocations to scale up to.", title="Maximum Allocations")
    ] = None

    @model_validator(mode="after")
    def _check_bounds(self) -> Self:
        low, high = self.min_number_of_allocations, self.max_number_of_allocations
        # -1 means "unset" in ES and is not checked.
        if low is not None and low != -1 and low < 0:
            raise _es_error("[min_number_of_allocations] must be a non-negative integer or null")
        if high is not None and high != -1 and high < 1:
            raise _es_error("[max_number_of_allocations] must be a positive integer or null")
        if low is not None and high is not None and low > high and high != -1:
            raise _es_error("[min_number_of_allocations] must not be larger than [max_number_of_allocations]")
        return self


class ElasticsearchServiceSettings(SettingsModel):
    # Field order is ES's serialisation order.
    num_allocations: Annotated[
        PositiveInteger | None,
        Field(
            description="The total number of allocations this model is assigned across machine learning nodes.",
            title="Number Allocations",
            # `_services` hints for forms (ES shows them): one of the two allocation styles is required.
            json_schema_extra={"updatable": True, "required": True, "default_value": 1},
        ),
    ] = None
    num_threads: Annotated[
        PositiveInteger,
        Field(
            description="Sets the number of threads used by each model allocation during inference.",
            title="Number Threads",
            json_schema_extra={"default_value": 2},
        ),
    ]
    model_id: Annotated[
        NonEmptyString, Field(description="The name of the model to use for the inference task.", title="Model ID")
    ]
    adaptive_allocations: Annotated[
        AdaptiveAllocations | None,
        Field(
            description="Scale the number of allocations with the load.",
            title="Adaptive Allocations",
            json_schema_extra={"updatable": True},
        ),
    ] = None
    deployment_id: Annotated[
        NonEmptyString | None,
        Field(
            description="The id of an existing deployment to use instead of starting a new one.", title="Deployment ID"
        ),
    ] = None

    @model_validator(mode="after")
    def _check_allocations(self) -> Self:
        if self.num_allocations is None and self.adaptive_allocations is None:
            raise _es_error(
                "[service_settings] does not contain one of the required settings "
                "[num_allocations, adaptive_allocations]"
            )
        if self.num_allocations is not None and self.adaptive_allocations and self.adaptive_allocations.enabled:
            raise _es_error("[number_of_allocations] cannot be set if adaptive allocations is enabled")
        return self


class RerankServiceSettings(ElasticsearchServiceSettings):
    long_document_strategy: Annotated[
        Literal["truncate", "chunk"] | None,
        Field(
            description="How to handle documents longer than the model's input: truncate them, or score chunks.",
            title="Long Document Strategy",
        ),
    ] = None
    max_chunks_per_doc: Annotated[
        PositiveInteger | None,
        Field(
            description="The most chunks scored per document when the strategy is chunk.",
            title="Max Chunks Per Document",
        ),
    ] = None

    @model_validator(mode="after")
    def _check_chunk_strategy(self) -> Self:
        if self.max_chunks_per_doc is not None and self.long_document_strategy != "chunk":
            raise _es_error("The [max_chunks_per_doc] setting requires [long_document_strategy] to be set to [chunk]")
        return self


class RerankTaskSettings(SettingsModel):
    return_documents: Annotated[
        bool,
        Field(
            description="Return the text of each document with its score.",
            title="Return Documents",
            json_schema_extra={"updatable": True},
        ),
    ] = True


_UNKNOWN_MODEL = (
    "Error parsing request config, model id does not match any models available on this platform. Was [{}]. "
    "You may need to load it into the cluster using eland."
)
_OTHER_PLATFORM = (
    "Error parsing request config, model id does not match any models available on this platform. Was [{}]. "
    "You may need to use a platform agnostic model."
)


class ElasticsearchService(LocalInference, Service):
    name = "elasticsearch"
    display_name = "Elasticsearch"
    # completion and chat_completion (the local chat model) are an inferd extension.
    task_types: ClassVar[tuple[TaskType, ...]] = (
        TaskType.TEXT_EMBEDDING,
        TaskType.SPARSE_EMBEDDING,
        TaskType.RERANK,
        TaskType.COMPLETION,
        TaskType.CHAT_COMPLETION,
    )
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION, TaskType.CHAT_COMPLETION)

    def __init__(self, context: ServiceContext) -> None:
        super().__init__(context)
        if context.engine is not None:
            self.engine = context.engine

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return RerankServiceSettings if task_type is TaskType.RERANK else ElasticsearchServiceSettings

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return RerankTaskSettings if task_type is TaskType.RERANK else EmptySettings

    def default_model_id(self) -> str | None:
        return None

    def parse_request(
        self, inference_id: str, task_type: TaskType, body: Mapping[str, Any]
    ) -> tuple[EndpointConfig, EndpointSecrets]:
        self.check_task_type(task_type)
        settings = body.get("service_settings")
        if isinstance(settings, Mapping):
            model_id = settings.get("model_id")
            if model_id is None:
                model_id = self.default_model_id()
                if model_id is None:
                    raise IllegalArgument("Error parsing service settings, model_id must be provided")
                deprecation_warning(
                    "Putting elasticsearch service inference endpoints (including elser service) without a "
                    "model_id field is deprecated and will be removed in a future release. "
                    "Please specify a model_id field."
                )
                body = {**body, "service_settings": {**settings, "model_id": model_id}}
            if isinstance(model_id, str) and model_id:
                self.check_model(model_id, task_type)
        return super().parse_request(inference_id, task_type, body)

    def check_model(self, model_id: str, task_type: TaskType) -> None:
        engine = self.context.engine
        model = engine.spec(model_id) if engine is not None else BUILTIN_MODELS.get(model_id)
        if model is None:
            raise IllegalArgument(_UNKNOWN_MODEL.format(model_id))
        if model.platform is not None and model.platform != current_platform():
            raise IllegalArgument(_OTHER_PLATFORM.format(model_id))
        if task_type not in model.task_types:
            supported = ", ".join(t.value for t in model.task_types)
            raise StatusError(f"Model [{model_id}] does not support task type [{task_type}]; it supports [{supported}]")

    # -- deployments ---------------------------------------------------------------------

    async def on_create(self, endpoint: Endpoint, timeout_s: float | None) -> Endpoint:
        if self.context.settings.skip_validate_and_start:
            return endpoint  # ES's setting skips starting the deployment too; it starts on first use
        deployment_id = deployment_id_of(endpoint)
        if deployment_id != endpoint.inference_id:
            self.engine.attach(deployment_id, self.model_spec(endpoint), endpoint.inference_id)
        else:
            await self.deployment(endpoint)
        return endpoint

    async def on_update(self, before: Endpoint, after: Endpoint) -> None:
        running = self.engine.find(deployment_id_of(after))
        if running is not None:
            await running.replan(allocation_plan(after.service_settings))

    async def on_delete(self, config: EndpointConfig) -> None:
        await self.engine.release(deployment_id_of_config(config), config.inference_id)

    def live_config(self, config: EndpointConfig) -> EndpointConfig:
        # As ES reads deployment stats on GET: a running deployment shows its current allocation
        # count, which adaptive allocations move (down to 0) and `_update` sets.
        deployment = self.engine.find(deployment_id_of_config(config)) if self.context.engine is not None else None
        if deployment is None:
            return config
        settings = {"num_allocations": deployment.num_allocations}  # first, where ES writes it
        settings.update((k, v) for k, v in config.service_settings.items() if k != "num_allocations")
        return dataclasses.replace(config, service_settings=settings)

    def merge_service_settings(self, current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        # The two allocation styles exclude each other: setting one replaces the other.
        if "num_allocations" in patch and "adaptive_allocations" in patch:
            raise ValidationError(["[num_allocations] cannot be set if [adaptive_allocations] is set"])
        merged = {**current, **patch}
        if "num_allocations" in patch:
            merged.pop("adaptive_allocations", None)
        elif "adaptive_allocations" in patch:
            merged.pop("num_allocations", None)
        return merged

    def default_endpoints(self) -> Sequence[EndpointConfig]:
        adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}

        def settings(model_id: str) -> dict[str, Any]:
            return {"num_threads": 1, "model_id": model_id, "adaptive_allocations": dict(adaptive)}

        return (
            EndpointConfig(
                ".elser-2-elasticsearch",
                TaskType.SPARSE_EMBEDDING,
                self.name,
                settings(platform_default(ELSER_V2)),
                {},
                dict(DEFAULT_CHUNKING),
            ),
            EndpointConfig(
                ".multilingual-e5-small-elasticsearch",
                TaskType.TEXT_EMBEDDING,
                self.name,
                settings(platform_default(E5_SMALL)),
                {},
                dict(DEFAULT_CHUNKING),
            ),
            EndpointConfig(
                ".rerank-v1-elasticsearch",
                TaskType.RERANK,
                self.name,
                settings(RERANK_V1),
                {"return_documents": True},
                None,
            ),
        )


class ElserService(ElasticsearchService):
    """Deprecated alias kept for old clients: ELSER only, model_id optional."""

    name = "elser"
    display_name = "Elser"
    task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.SPARSE_EMBEDDING,)
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = ()
    listed_in_services = False

    def default_model_id(self) -> str:
        return platform_default(ELSER_V2)

    def parse_request(
        self, inference_id: str, task_type: TaskType, body: Mapping[str, Any]
    ) -> tuple[EndpointConfig, EndpointSecrets]:
        deprecation_warning(
            "The [elser] service is deprecated and will be removed in a future release. Use the [elasticsearch] "
            f"service instead, with [model_id] set to [{self.default_model_id()}] in the [service_settings]"
        )
        return super().parse_request(inference_id, task_type, body)

    def default_endpoints(self) -> Sequence[EndpointConfig]:
        return ()


__all__ = ["ElasticsearchService", "ElserService", "java_value"]
