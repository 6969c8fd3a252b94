"""The service registry: built-ins plus plugins from the `inferd.services` entry-point group.

Plugins and built-ins go through the same door. Two services with one name is a start-up error,
never a silent override.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points

from inferd.core.endpoint import EndpointConfig
from inferd.services.anthropic import AnthropicService
from inferd.services.azureopenai import AzureOpenAiService
from inferd.services.base import Service, ServiceContext
from inferd.services.cohere import CohereService
from inferd.services.elasticsearch import ElasticsearchService, ElserService
from inferd.services.hugging_face import HuggingFaceService
from inferd.services.mistral import MistralService
from inferd.services.openai import OpenAiService

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "inferd.services"

BUILTIN_SERVICES: tuple[type[Service], ...] = (
    ElasticsearchService,
    ElserService,
    OpenAiService,
    AzureOpenAiService,
    CohereService,
    HuggingFaceService,
    AnthropicService,
    MistralService,
)


def plugin_services() -> list[type[Service]]:
    found: list[type[Service]] = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            raise RuntimeError(f"entry point [{ep.name}] of group [{ENTRY_POINT_GROUP}] is not a Service subclass")
        log.info("loaded service plugin [%s] from %s", cls.name, ep.value)
        found.append(cls)
    return found


class ServiceRegistry:
    def __init__(self, services: Iterable[Service]) -> None:
        self._services: dict[str, Service] = {}
        for service in services:
            if service.name in self._services:
                raise RuntimeError(
                    f"two services are named [{service.name}]: {type(self._services[service.name]).__qualname__} "
                    f"and {type(service).__qualname__}"
                )
            self._services[service.name] = service
        self._defaults: dict[str, EndpointConfig] = {}
        for service in self._services.values():
            for config in service.default_endpoints():
                if config.inference_id in self._defaults:
                    raise RuntimeError(f"two services declare the default endpoint [{config.inference_id}]")
                self._defaults[config.inference_id] = config

    @classmethod
    def load(cls, context: ServiceContext, extra: Sequence[type[Service]] = ()) -> ServiceRegistry:
        classes = [*BUILTIN_SERVICES, *plugin_services(), *extra]
        return cls(service_cls(context) for service_cls in classes)

    def get(self, name: str) -> Service | None:
        return self._services.get(name)

    def all(self) -> list[Service]:
        return [self._services[name] for name in sorted(self._services)]

    def default_endpoint(self, inference_id: str) -> EndpointConfig | None:
        return self._defaults.get(inference_id)

    def default_endpoints(self) -> list[EndpointConfig]:
        return [self._defaults[k] for k in sorted(self._defaults)]

    async def close(self) -> None:
        for service in self._services.values():
            await service.close()
