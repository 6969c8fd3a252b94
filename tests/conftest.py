"""Shared fixtures: one real inferd server on loopback, driven by raw HTTP and the official clients."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.support.sample_service import SampleService
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer

DEFAULT_IDS = {
    ".elser-2-elasticsearch",
    ".multilingual-e5-small-elasticsearch",
    ".rerank-v1-elasticsearch",
    "test-default-completion",
}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shared server: security on, the test-only service registered."""
    with ThreadedServer(tmp_path_factory.mktemp("inferd-data"), extra_services=[SampleService]) as running:
        yield running


@pytest.fixture
def http(server: RunningServer) -> Iterator[httpx.Client]:
    with server.http() as client:
        yield client


@pytest.fixture(autouse=True)
def _clean_endpoints(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests on the shared server leave no endpoints behind."""
    yield
    if "server" not in request.fixturenames:
        return
    running: RunningServer = request.getfixturevalue("server")
    with running.http() as client:
        for ep in client.get("/_inference/_all").json()["endpoints"]:
            if ep["inference_id"] not in DEFAULT_IDS:
                client.delete(f"/_inference/{ep['inference_id']}")


@pytest.fixture
def es(server: RunningServer) -> Iterator[elasticsearch.Elasticsearch]:
    client = elasticsearch.Elasticsearch(server.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def es8(server: RunningServer) -> Iterator[elasticsearch8.Elasticsearch]:
    client = elasticsearch8.Elasticsearch(server.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    yield client
    client.close()


@pytest.fixture
def quiet_deprecations() -> Iterator[None]:
    """For client calls that get ES deprecation warnings (the `elser` alias) when the warning is not the subject."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", elasticsearch.ElasticsearchWarning)
        warnings.simplefilter("ignore", elasticsearch8.ElasticsearchWarning)
        yield


def assert_es_error(response: httpx.Response, status: int, es_type: str, reason: str | None = None) -> dict[str, Any]:
    """The ES error envelope, with matching HTTP and body status; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/"), response.headers
    body = response.json()
    assert body["status"] == status
    error = body["error"]
    assert error["type"] == es_type, error
    assert error["root_cause"][0]["type"] == es_type
    if reason is not None:
        assert error["reason"] == reason, error["reason"]
        assert error["root_cause"][0]["reason"] == reason
    return dict(error)


def make_embedding_endpoint(http: httpx.Client, inference_id: str = "emb", **settings: Any) -> dict[str, Any]:
    """Create a text_embedding endpoint of the test service; returns the PUT response body."""
    body = {
        "service": "test_service",
        "service_settings": {"model": "m1", "api_key": "sk-secret-123", **settings},
    }
    response = http.put(f"/_inference/text_embedding/{inference_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
