"""Endpoint lifecycle: create, read, update, delete and resolve, with Elasticsearch's rules.

Knows the store and the service registry through their interfaces; knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferd.core.endpoint import EndpointConfig, EndpointSecrets, validate_inference_id
from inferd.core.errors import AlreadyExists, InferdError, InferenceTimeout, NotFound, StatusError
from inferd.core.java_format import java_map
from inferd.core.tasks import TaskType
from inferd.services.base import Endpoint, Service
from inferd.services.registry import ServiceRegistry
from inferd.store.base import EndpointStore

ALL_IDS = ("_all", "*")


@dataclass
class ResolvedEndpoint:
    service: Service
    config: EndpointConfig
    secrets: EndpointSecrets | None
    _parsed: Endpoint | None = field(default=None, repr=False, compare=False)

    def parse(self) -> Endpoint:
        """Parsed once per resolved (and cached) endpoint, not on every request."""
        if self._parsed is None:
            self._parsed = self.service.parse_stored(self.config, self.secrets)
        return self._parsed


# How long a resolved endpoint is reused without reading the store. Changes made on this node
# invalidate it at once; the TTL bounds staleness when several nodes share one registry.
RESOLVE_CACHE_SECONDS = 15.0


UPDATABLE_BODY_KEYS = ("task_type", "service_settings", "task_settings")


def default_timeout_s(task_type: TaskType) -> float:
    """ES's task-dependent default for PUT and inference timeouts."""
    return 120.0 if task_type in (TaskType.COMPLETION, TaskType.CHAT_COMPLETION) else 30.0


def deadline(timeout_s: float) -> float | None:
    """For asyncio.timeout: None when there is no limit (ES's -1)."""
    return None if math.isinf(timeout_s) else timeout_s


def format_seconds(seconds: float) -> str:
    """A duration as ES's TimeValue prints it."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{round(seconds * 1000)}ms"


def resolve_task_type(url_task: TaskType, body_task: Any) -> TaskType:
    """ES's ServiceUtils.resolveTaskType for PUT and _update bodies."""
    parsed_body: TaskType | None = None
    if body_task is not None:
        if not isinstance(body_task, str):
            raise StatusError(f"Unknown task_type [{body_task}]")
        parsed_body = TaskType.parse(body_task)
        if parsed_body is TaskType.ANY:
            raise StatusError("task_type [any] is not valid type for inference")
    if url_task is TaskType.ANY and parsed_body is None:
        raise StatusError("model is missing required setting [task_type]")
    if parsed_body is None:
        return url_task
    if url_task is not TaskType.ANY and url_task is not parsed_body:
        raise StatusError(
            "Cannot resolve conflicting task_type parameter in the request URL "
            f"[{url_task}] and the request body [{parsed_body}]"
        )
    return parsed_body


def _task_mismatch(requested: TaskType, actual: TaskType) -> StatusError:
    return StatusError(
        f"Requested task type [{requested}] does not match the inference endpoint's task type [{actual}]"
    )


class EndpointManager:
    def __init__(self, store: EndpointStore, services: ServiceRegistry) -> None:
        self.store = store
        self.services = services
        self._resolved: dict[str, tuple[float, ResolvedEndpoint]] = {}
        self._generation = 0  # bumped by every change: a lookup that raced one is not cached

    # -- create ----------------------------------------------------------------------------

    async def create(
        self, inference_id: str, url_task: TaskType, body: dict[str, Any], timeout_s: float | None
    ) -> EndpointConfig:
        validate_inference_id(inference_id)
        if self.services.default_endpoint(inference_id) is not None:
            raise StatusError(
                f"[{inference_id}] is a reserved inference ID. "
                "Cannot create a new inference endpoint with a reserved ID."
            )
        task_type = resolve_task_type(url_task, body.get("task_type"))
        service_name = body.get("service")
        if service_name is None:
            raise StatusError("Inference endpoint configuration is missing the [service] setting")
        service = self.services.get(service_name) if isinstance(service_name, str) else None
        if service is None:
            raise StatusError(f"Unknown service [{service_name}]")
        config, secrets = service.parse_request(inference_id, task_type, body)
        # Fail fast on a taken id before any slow validation or deployment; the store's
        # create-only insert still settles races.
        if await self.store.get(inference_id) is not None:
            raise AlreadyExists(f"Inference endpoint [{inference_id}] already exists")
        timeout = default_timeout_s(task_type) if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(deadline(timeout)):
                endpoint = await service.on_create(service.parse_stored(config, secrets), timeout)
        except TimeoutError:
            raise InferenceTimeout(
                f"Timed out after [{format_seconds(timeout)}] creating inference endpoint [{inference_id}]"
            ) from None
        try:
            await self.store.create(endpoint.config, secrets)
            self.forget(inference_id)
        except InferdError:
            await service.on_delete(endpoint.config)
            raise
        return endpoint.config

    # -- read ------------------------------------------------------------------------------

    async def get(
        self, inference_id: str, task_type: TaskType, *, visible: Callable[[str], bool] = lambda _: True
    ) -> list[EndpointConfig]:
        """One endpoint, or all of them (`_all`/`*`), keeping only those `visible` to the caller."""
        if inference_id in ALL_IDS:
            wanted = None if task_type is TaskType.ANY else task_type
            found = await self.store.list(wanted)
            defaults = [d for d in self.services.default_endpoints() if wanted in (None, d.task_type)]
            listed = [self._live(c) for c in [*found, *defaults] if visible(c.inference_id)]
            return sorted(listed, key=lambda c: c.inference_id)
        config = await self.find(inference_id)
        if task_type is not TaskType.ANY and config.task_type is not task_type:
            raise _task_mismatch(task_type, config.task_type)
        return [self._live(config)]

    def _live(self, config: EndpointConfig) -> EndpointConfig:
        service = self.services.get(config.service)
        return config if service is None else service.live_config(config)

    async def find(self, inference_id: str) -> EndpointConfig:
        config = self.services.default_endpoint(inference_id) or await self.store.get(inference_id)
        if config is None:
            raise NotFound(f"Inference endpoint not found [{inference_id}]")
        return config

    async def resolve(self, inference_id: str) -> ResolvedEndpoint:
        """The endpoint, its secrets and its service, for inference; parsing is left to the caller,
        so task-type checks on the stored config come first. Cached briefly: this is the hot path."""
        cached = self._resolved.get(inference_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        generation = self._generation
        resolved = await self._resolve(inference_id)
        if generation == self._generation:
            if len(self._resolved) > 1024:
                self._resolved.clear()
            self._resolved[inference_id] = (time.monotonic() + RESOLVE_CACHE_SECONDS, resolved)
        return resolved

    def forget(self, inference_id: str) -> None:
        self._generation += 1
        self._resolved.pop(inference_id, None)

    async def _resolve(self, inference_id: str) -> ResolvedEndpoint:
        default = self.services.default_endpoint(inference_id)
        secrets: EndpointSecrets | None = None  # preconfigured endpoints have none
        if default is not None:
            config = default
        else:
            found = await self.store.get_with_secrets(inference_id)
            if found is None:
                raise NotFound(f"Inference endpoint not found [{inference_id}]")
            config, secrets = found
        service = self.services.get(config.service)
        if service is None:
            raise StatusError(f"Unknown service [{config.service}] for model [{inference_id}]")
        return ResolvedEndpoint(service, config, secrets)

    # -- delete ----------------------------------------------------------------------------

    async def delete(self, inference_id: str, task_type: TaskType, *, dry_run: bool, force: bool) -> dict[str, Any]:
        config = await self.find(inference_id)
        if task_type is not TaskType.ANY and config.task_type is not task_type:
            raise _task_mismatch(task_type, config.task_type)
        if dry_run:
            # Nothing in inferd references endpoints (no pipelines or mappings), so nothing blocks a delete.
            return {"acknowledged": False, "pipelines": [], "indexes": [], "error_message": ""}
        is_default = self.services.default_endpoint(inference_id) is not None
        if is_default and not force:
            raise StatusError(
                f"[{inference_id}] is a reserved inference endpoint. "
                "Use the force=true query parameter to delete the inference endpoint."
            )
        service = self.services.get(config.service)
        if service is None and not force:
            raise NotFound(f"No service found for this inference endpoint {inference_id}")
        if not is_default:
            await self.store.delete(inference_id)
        self.forget(inference_id)
        if service is not None:
            await service.on_delete(config)
        return {"acknowledged": True, "pipelines": [], "indexes": []}

    # -- update ----------------------------------------------------------------------------

    async def update(self, inference_id: str, url_task: TaskType, body: dict[str, Any]) -> EndpointConfig:
        validate_inference_id(inference_id)
        service_patch, task_patch, body_task = _parse_update_body(body)
        task_type = resolve_task_type(url_task, body_task) if body_task or url_task is not TaskType.ANY else None
        found = await self.store.get_with_secrets(inference_id)
        if found is None:
            raise NotFound(f"The inference endpoint [{inference_id}] does not exist and cannot be updated")
        config, secrets = found
        service = self.services.get(config.service)
        if service is None:
            raise InferdError(f"Service [{config.service}] not found")
        if task_type is not None and task_type is not config.task_type:
            raise StatusError("Task type must match the task type of the existing endpoint")
        new_config, new_secrets = service.apply_update(config, secrets, service_patch, task_patch)
        await service.on_update(service.parse_stored(config, secrets), service.parse_stored(new_config, new_secrets))
        await self.store.replace(new_config, new_secrets)
        self.forget(inference_id)
        return new_config


def _parse_update_body(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    if not body:
        raise StatusError("Request body is empty")
    rest = dict(body)
    body_task = rest.pop("task_type", None)
    if body_task is not None and not isinstance(body_task, str):
        raise StatusError(f"Failed to parse [task_type] in update request [{java_map(body)}]")
    service_settings = rest.get("service_settings")
    if service_settings is not None and not isinstance(service_settings, dict):
        raise StatusError(f"Unable to parse service settings in the request [{java_map(rest)}]")
    rest.pop("service_settings", None)
    task_settings = rest.get("task_settings")
    if task_settings is not None and not isinstance(task_settings, dict):
        raise StatusError(f"Unable to parse task settings in the request [{java_map(rest)}]")
    rest.pop("task_settings", None)
    if rest:
        raise StatusError(
            f"Request contained fields which cannot be updated, remove these fields and try again [{java_map(rest)}]"
        )
    return service_settings or {}, task_settings or {}, body_task
