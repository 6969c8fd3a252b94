"""The service registry: built-ins, entry-point plugins, and start-up failures on collisions."""

from __future__ import annotations

import os
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from inferd.services.base import ServiceContext
from inferd.services.elasticsearch import ElasticsearchService
from inferd.services.registry import ServiceRegistry
from inferd.services.ssrf import UrlGuard
from inferd.settings import ServerSettings
from tests.support.sample_service import SampleService
from tests.support.servers import PASSWORD, SubprocessServer


def context(tmp_path: Path) -> ServiceContext:
    return ServiceContext(ServerSettings(data_dir=tmp_path), UrlGuard([]))


def test_builtins_are_registered(tmp_path: Path) -> None:
    registry = ServiceRegistry.load(context(tmp_path))
    assert [s.name for s in registry.all()] == [
        "anthropic",
        "azureopenai",
        "cohere",
        "elasticsearch",
        "elser",
        "hugging_face",
        "mistral",
        "openai",
    ]
    assert [d.inference_id for d in registry.default_endpoints()] == [
        ".elser-2-elasticsearch",
        ".multilingual-e5-small-elasticsearch",
        ".rerank-v1-elasticsearch",
    ]


def test_two_services_with_one_name_fail_at_start(tmp_path: Path) -> None:
    class Impostor(SampleService):
        name = "elasticsearch"

    with pytest.raises(RuntimeError, match=r"two services are named \[elasticsearch\]"):
        ServiceRegistry.load(context(tmp_path), [Impostor])


def test_two_services_declaring_one_default_endpoint_fail_at_start(tmp_path: Path) -> None:
    class Copy(ElasticsearchService):
        name = "copy"

    with pytest.raises(RuntimeError, match=r"two services declare the default endpoint \[\.elser-2-elasticsearch\]"):
        ServiceRegistry.load(context(tmp_path), [Copy])


PLUGIN = """
from typing import ClassVar
from inferd.core.tasks import TaskType
from inferd.services.base import Service
from inferd.services.schema import SettingsModel


class PluginSettings(SettingsModel):
    url: str


class PluginService(Service):
    name = "my_plugin"
    display_name = "My Plugin"
    task_types: ClassVar[tuple[TaskType, ...]] = (TaskType.COMPLETION,)

    def service_settings_model(self, task_type):
        return PluginSettings
"""


@pytest.mark.slow
def test_a_service_installed_as_an_entry_point_is_served(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "my_plugin").mkdir(parents=True)
    (site / "my_plugin" / "__init__.py").write_text(textwrap.dedent(PLUGIN))
    dist = site / "my_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: my-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[inferd.services]\nmy_plugin = my_plugin:PluginService\n")
    path = os.pathsep.join([str(site), *sys.path])
    server = SubprocessServer(tmp_path / "data", env={"PYTHONPATH": path})
    running = server.start()
    try:
        with httpx.Client(base_url=running.url, auth=("elastic", PASSWORD)) as http:
            services = {s["service"]: s for s in http.get("/_inference/_services/completion").json()}
            assert "my_plugin" in services
            assert services["my_plugin"]["configurations"]["url"]["required"] is True
            put = http.put(
                "/_inference/completion/p1", json={"service": "my_plugin", "service_settings": {"url": "http://x"}}
            )
            assert put.status_code == 200, put.text
            assert put.json()["service"] == "my_plugin"
            bad = http.put("/_inference/completion/p2", json={"service": "my_plugin", "service_settings": {}})
            assert bad.json()["error"]["reason"] == (
                "Validation Failed: 1: [service_settings] does not contain the required setting [url];"
            )
    finally:
        server.stop()
