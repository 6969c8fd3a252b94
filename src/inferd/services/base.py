"""The Service base class: what a service declares, and the generic config handling around it.

A service module declares pydantic settings models (service, secret, per-task) and overrides the
inference methods it supports. Everything generic lives here: strict parsing of a PUT, lenient
parsing of stored data, `_update` merging, and "does not support" errors.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from inferd.core.chunking import parse_chunking_settings
from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.errors import InferdError, StatusError, ValidationError
from inferd.core.inference import InferenceRequest
from inferd.core.java_format import java_map
from inferd.core.results import CompletionResult, RerankResult, SparseEmbeddingResult, TextEmbeddingResult
from inferd.core.tasks import TaskType
from inferd.engine.engine import Engine
from inferd.services.schema import (
    EmptySettings,
    SettingsModel,
    dump_secrets,
    dump_settings,
    field_keys,
    parse_settings,
    secret_keys,
    updatable_keys,
)
from inferd.services.ssrf import UrlGuard
from inferd.settings import ServerSettings

PUT_BODY_KEYS = ("task_type", "service", "service_settings", "task_settings", "chunking_settings")


@dataclass(frozen=True)
class ServiceContext:
    """What a service may use; passed in by build_app (no globals)."""

    settings: ServerSettings
    url_guard: UrlGuard
    engine: Engine | None = None  # local models (the `elasticsearch` service)


@dataclass(frozen=True)
class Endpoint:
    """A stored endpoint with its settings parsed into the service's models."""

    config: EndpointConfig
    service_settings: SettingsModel
    task_settings: SettingsModel
    secrets: SettingsModel | None

    @property
    def inference_id(self) -> str:
        return self.config.inference_id

    @property
    def task_type(self) -> TaskType:
        return self.config.task_type


def _as_object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise StatusError(
            f"field [{field}] is not of the expected type. The value [{value}] cannot be converted to a [Map]"
        )
    return dict(value)


class Service:
    """Base of every service. Subclasses set the class attributes and override what they support."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    task_types: ClassVar[tuple[TaskType, ...]]
    streaming_task_types: ClassVar[tuple[TaskType, ...]] = ()
    secret_settings_model: ClassVar[type[SettingsModel] | None] = None
    # The scope ES names in errors about secret settings.
    secret_scope: ClassVar[str] = "secret_settings"  # noqa: S105 - a settings scope name
    # False for aliases kept for old clients (ES lists only real services in _services).
    listed_in_services: ClassVar[bool] = True

    def __init__(self, context: ServiceContext) -> None:
        self.context = context

    # -- declarations a service overrides ----------------------------------------------------

    def service_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        raise NotImplementedError

    def task_settings_model(self, task_type: TaskType) -> type[SettingsModel]:
        return EmptySettings

    def default_endpoints(self) -> Sequence[EndpointConfig]:
        """Preconfigured endpoints this service provides; their ids are reserved."""
        return ()

    def internal_settings(self, task_type: TaskType, service_settings: Mapping[str, Any]) -> dict[str, Any]:
        """Facts about the request to keep with the endpoint but never show (ES's persist-only fields)."""
        return {}

    def prepare_service_settings(self, task_type: TaskType, settings: dict[str, Any]) -> dict[str, Any]:
        """Fill in request-time defaults that depend on more than one field (before validation)."""
        return settings

    def live_config(self, config: EndpointConfig) -> EndpointConfig:
        """The endpoint as GET shows it, with what changes at run time filled in (ES's dynamic fields)."""
        return config

    # -- lifecycle hooks ---------------------------------------------------------------------

    async def on_create(self, endpoint: Endpoint, timeout_s: float | None) -> Endpoint:
        """Validate against the provider or deploy the model; may return discovered settings."""
        return endpoint

    async def on_update(self, before: Endpoint, after: Endpoint) -> None:
        """Apply a live change (e.g. resize a deployment)."""

    async def on_delete(self, config: EndpointConfig) -> None:
        """Release what the endpoint held (e.g. stop its deployment)."""

    async def close(self) -> None:
        """Release shared resources at shutdown."""

    # -- inference ---------------------------------------------------------------------------

    def _unsupported(self, task_type: TaskType) -> InferdError:
        return StatusError(f"The [{self.name}] service does not support task type [{task_type}]")

    async def text_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> TextEmbeddingResult:
        raise self._unsupported(TaskType.TEXT_EMBEDDING)

    async def sparse_embedding(self, endpoint: Endpoint, request: InferenceRequest) -> SparseEmbeddingResult:
        raise self._unsupported(TaskType.SPARSE_EMBEDDING)

    async def rerank(self, endpoint: Endpoint, request: InferenceRequest) -> RerankResult:
        raise self._unsupported(TaskType.RERANK)

    async def completion(self, endpoint: Endpoint, request: InferenceRequest) -> CompletionResult:
        raise self._unsupported(TaskType.COMPLETION)

    def stream_completion(self, endpoint: Endpoint, request: InferenceRequest) -> AsyncIterator[str]:
        """Text deltas of a completion, as they are produced."""
        raise self._unsupported(TaskType.COMPLETION)

    def stream_chat(self, endpoint: Endpoint, request: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """OpenAI `chat.completion.chunk` objects for a unified chat request."""
        raise self._unsupported(TaskType.CHAT_COMPLETION)

    # -- config handling (generic) ----------------------------------------------------------

    def check_task_type(self, task_type: TaskType) -> None:
        if task_type not in self.task_types:
            raise self._unsupported(task_type)

    def parse_request(
        self, inference_id: str, task_type: TaskType, body: Mapping[str, Any]
    ) -> tuple[EndpointConfig, EndpointSecrets]:
        """A PUT body -> config and secrets. Strict: every problem is reported, nothing coerced."""
        self.check_task_type(task_type)
        if body.get("service_settings") is None:
            raise StatusError("Missing required field [service_settings]")
        service_map = self.prepare_service_settings(task_type, _as_object(body["service_settings"], "service_settings"))
        task_map = _as_object(body.get("task_settings"), "task_settings")

        settings_model = self.service_settings_model(task_type)
        secrets_model = self.secret_settings_model
        task_model = self.task_settings_model(task_type)
        secret_map = {k: v for k, v in service_map.items() if k in secret_keys(secrets_model)}
        plain_map = {k: v for k, v in service_map.items() if k not in secret_map}

        problems: list[str] = []
        settings, found = parse_settings(settings_model, plain_map, "service_settings")
        problems += found
        secrets: SettingsModel | None = None
        if secrets_model is not None:
            secrets, found = parse_settings(secrets_model, secret_map, self.secret_scope)
            problems += found
        task_settings, found = parse_settings(task_model, task_map, "task_settings")
        problems += found
        chunking = None
        if task_type.supports_chunking:
            chunking, found = parse_chunking_settings(body.get("chunking_settings"))
            problems += found
        if problems:
            raise ValidationError(problems)

        unknown: dict[str, Any] = {k: v for k, v in body.items() if k not in PUT_BODY_KEYS}
        if not task_type.supports_chunking and "chunking_settings" in body:
            unknown["chunking_settings"] = body["chunking_settings"]
        unknown.update({k: v for k, v in plain_map.items() if k not in field_keys(settings_model)})
        unknown.update({k: v for k, v in task_map.items() if k not in field_keys(task_model)})
        if unknown:
            raise StatusError(
                f"Configuration contains settings [{java_map(unknown)}] unknown to the [{self.name}] service"
            )

        assert settings is not None and task_settings is not None
        config = EndpointConfig(
            inference_id=inference_id,
            task_type=task_type,
            service=self.name,
            service_settings=dump_settings(settings),
            task_settings=dump_settings(task_settings),
            chunking_settings=chunking,
            internal_settings=self.internal_settings(task_type, plain_map),
        )
        return config, EndpointSecrets(dump_secrets(secrets))

    def parse_stored(self, config: EndpointConfig, secrets: EndpointSecrets | None = None) -> Endpoint:
        """Stored data -> models. Lenient: unknown keys are dropped (logged), so upgrades never brick."""
        problems: list[str] = []
        settings, found = parse_settings(
            self.service_settings_model(config.task_type), config.service_settings, "service_settings", lenient=True
        )
        problems += found
        task_settings, found = parse_settings(
            self.task_settings_model(config.task_type), config.task_settings, "task_settings", lenient=True
        )
        problems += found
        parsed_secrets = None
        if secrets is not None and self.secret_settings_model is not None:
            parsed_secrets, found = parse_settings(
                self.secret_settings_model, secrets.values, self.secret_scope, lenient=True
            )
            problems += found
        if problems or settings is None or task_settings is None:
            raise InferdError(
                f"Failed to parse stored model [{config.inference_id}] for [{self.name}] service, "
                "please delete and add the service again"
            )
        return Endpoint(config, settings, task_settings, parsed_secrets)

    def merge_task_settings(self, endpoint: Endpoint, overrides: Mapping[str, Any]) -> Endpoint:
        """Request-time task settings over the stored ones, validated strictly."""
        if not overrides:
            return endpoint
        model = self.task_settings_model(endpoint.task_type)
        unknown = {k: v for k, v in overrides.items() if k not in field_keys(model)}
        if unknown:
            raise StatusError(
                f"Configuration contains settings [{java_map(unknown)}] unknown to the [{self.name}] service"
            )
        merged, problems = parse_settings(model, {**endpoint.config.task_settings, **overrides}, "task_settings")
        if problems or merged is None:
            raise ValidationError(problems)
        return Endpoint(endpoint.config, endpoint.service_settings, merged, endpoint.secrets)

    def apply_update(
        self,
        config: EndpointConfig,
        secrets: EndpointSecrets,
        service_settings: Mapping[str, Any] | None,
        task_settings: Mapping[str, Any] | None,
    ) -> tuple[EndpointConfig, EndpointSecrets]:
        """An `_update`: only fields declared updatable (and secrets) change; all is re-validated."""
        task_type = config.task_type
        settings_model = self.service_settings_model(task_type)
        task_model = self.task_settings_model(task_type)
        secret_fields = secret_keys(self.secret_settings_model)
        patch = dict(service_settings or {})
        secret_patch = {k: v for k, v in patch.items() if k in secret_fields}
        plain_patch = {k: v for k, v in patch.items() if k not in secret_fields}
        task_patch = dict(task_settings or {})

        problems: list[str] = []
        unknown = {k: v for k, v in plain_patch.items() if k not in field_keys(settings_model)}
        unknown.update({k: v for k, v in task_patch.items() if k not in field_keys(task_model)})
        if unknown:
            raise StatusError(
                f"Configuration contains settings [{java_map(unknown)}] unknown to the [{self.name}] service"
            )
        updatable = updatable_keys(settings_model)
        for key, value in plain_patch.items():
            if key not in updatable and config.service_settings.get(key) != value:
                problems.append(f"[service_settings] setting [{key}] cannot be updated")

        new_plain = self.merge_service_settings(config.service_settings, plain_patch)
        settings, found = parse_settings(settings_model, new_plain, "service_settings")
        problems += found
        new_secrets_map = {**secrets.values, **secret_patch}
        new_secrets: SettingsModel | None = None
        if self.secret_settings_model is not None:
            new_secrets, found = parse_settings(self.secret_settings_model, new_secrets_map, self.secret_scope)
            problems += found
        new_task, found = parse_settings(task_model, {**config.task_settings, **task_patch}, "task_settings")
        problems += found
        if problems:
            raise ValidationError(problems)
        assert settings is not None and new_task is not None
        updated = config.with_changes(service_settings=dump_settings(settings), task_settings=dump_settings(new_task))
        return updated, EndpointSecrets(dump_secrets(new_secrets))

    def merge_service_settings(self, current: Mapping[str, Any], patch: Mapping[str, Any]) -> dict[str, Any]:
        """How an `_update` patch combines with stored settings; services with exclusive fields override."""
        return {**current, **patch}
