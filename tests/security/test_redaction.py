"""Secret settings given at PUT or `_update` never come back out: not in responses, logs, or the database file."""

from __future__ import annotations

import logging
import os
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.sample_service import SampleService, embed
from tests.support.servers import SubprocessServer, ThreadedServer

REPO_ROOT = Path(__file__).resolve().parents[2]
ENDPOINT_ID = "redact-me"
MODEL = "model-visible-in-config"


def fresh_secret(label: str) -> str:
    return f"sk-{label}-{uuid.uuid4().hex}"


def every_get(client: httpx.Client, inference_id: str) -> list[httpx.Response]:
    paths = [
        "/_inference",
        "/_inference/_all",
        "/_inference/*",
        f"/_inference/{inference_id}",
        f"/_inference/text_embedding/{inference_id}",
        "/_inference/text_embedding/_all",
        f"/_inference/{inference_id}?pretty",
        f"/_inference/{inference_id}?filter_path=endpoints.service_settings",
        "/_inference/_services",
        "/_inference/_services/text_embedding",
    ]
    responses = [client.get(path) for path in paths]
    for path, response in zip(paths, responses, strict=True):
        assert response.status_code == 200, (path, response.text)
    return responses


def assert_nowhere(secrets: list[str], texts: list[str]) -> None:
    for secret in secrets:
        for text in texts:
            assert secret not in text, f"secret {secret!r} leaked into: {text[:500]}"


def database_bytes(data_dir: Path) -> bytes:
    """The registry as it lies on disk: the main file and, when present, the write-ahead log."""
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("inferd.db*")) if p.is_file())


def exercise(client: httpx.Client, put_secret: str, update_secrets: list[str]) -> list[str]:
    """PUT, then `_update` once per secret (both routes, both methods); returns every response text."""
    body = {"service": "test_service", "service_settings": {"model": MODEL, "api_key": put_secret}}
    put = client.put(f"/_inference/text_embedding/{ENDPOINT_ID}", json=body)
    assert put.status_code == 200, put.text
    assert "api_key" not in put.json()["service_settings"]
    texts = [put.text]
    routes = [
        ("PUT", f"/_inference/{ENDPOINT_ID}/_update"),
        ("POST", f"/_inference/text_embedding/{ENDPOINT_ID}/_update"),
    ]
    for i, secret in enumerate(update_secrets):
        method, path = routes[i % len(routes)]
        response = client.request(method, path, json={"service_settings": {"api_key": secret}})
        assert response.status_code == 200, response.text
        assert "api_key" not in response.json()["service_settings"]
        texts.append(response.text)
    # A rejected update that carries a secret does not echo it either, and changes nothing.
    before = client.get(f"/_inference/{ENDPOINT_ID}").json()
    bad = client.put(
        f"/_inference/{ENDPOINT_ID}/_update",
        json={"service_settings": {"api_key": update_secrets[-1] + "-x", "not_a_setting": 1}},
    )
    assert_es_error(
        bad,
        400,
        "status_exception",
        "Configuration contains settings [{not_a_setting=1}] unknown to the [test_service] service",
    )
    texts.append(bad.text)
    assert client.get(f"/_inference/{ENDPOINT_ID}").json() == before
    # The secrets are really stored (not dropped): the endpoint answers.
    inferred = client.post(f"/_inference/{ENDPOINT_ID}", json={"input": "redaction"})
    assert inferred.status_code == 200, inferred.text
    assert inferred.json() == {"text_embedding": [{"embedding": embed("redaction", 8)}]}
    texts.append(inferred.text)
    gets = every_get(client, ENDPOINT_ID)
    texts.extend(r.text for r in gets)
    for response in gets[:6]:
        for endpoint in response.json().get("endpoints", []):
            assert "api_key" not in endpoint["service_settings"]
    return texts


def test_secrets_never_appear_in_responses_logs_or_the_database(
    data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put_secret = fresh_secret("put")
    update_secrets = [fresh_secret("update-a"), fresh_secret("update-b")]
    secrets = [put_secret, *update_secrets]
    caplog.set_level(logging.DEBUG)
    for name in ("inferd", "uvicorn", "uvicorn.error", "uvicorn.access", "sqlalchemy.engine", "sqlalchemy.pool"):
        caplog.set_level(logging.DEBUG, logger=name)

    with ThreadedServer(data_dir, extra_services=[SampleService], log_level="debug") as running:
        with running.http() as client:
            texts = exercise(client, put_secret, update_secrets)
        assert_nowhere(secrets, texts)
        on_disk_while_running = database_bytes(data_dir)

    on_disk_after_stop = database_bytes(data_dir)
    for raw in (on_disk_while_running, on_disk_after_stop):
        # The config is there in the clear (so this is the right file), the secrets are not.
        assert ENDPOINT_ID.encode() in raw
        assert MODEL.encode() in raw
        for secret in secrets:
            assert secret.encode() not in raw

    assert caplog.records, "nothing was logged, so the log check proves nothing"
    log_texts = [caplog.text, *(r.getMessage() for r in caplog.records), *(repr(r.args) for r in caplog.records)]
    assert_nowhere(secrets, log_texts)


def test_secrets_are_not_in_the_database_after_restart_and_update(data_dir: Path) -> None:
    first, second = fresh_secret("first"), fresh_secret("second")
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        body = {"service": "test_service", "service_settings": {"model": MODEL, "api_key": first}}
        assert client.put(f"/_inference/text_embedding/{ENDPOINT_ID}", json=body).status_code == 200
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        update = client.put(f"/_inference/{ENDPOINT_ID}/_update", json={"service_settings": {"api_key": second}})
        assert update.status_code == 200, update.text
        assert_nowhere([first, second], [update.text, *(r.text for r in every_get(client, ENDPOINT_ID))])
    raw = database_bytes(data_dir)
    assert MODEL.encode() in raw
    assert first.encode() not in raw
    assert second.encode() not in raw


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A PYTHONPATH on which `inferd serve` finds the test service through the `inferd.services` entry point."""
    dist = tmp_path / "plugin" / "inferd_test_plugin-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: inferd-test-plugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[inferd.services]\ntest_service = tests.support.sample_service:SampleService\n"
    )
    return os.pathsep.join([str(dist.parent), str(REPO_ROOT)])


@pytest.mark.slow
def test_secrets_never_appear_in_the_serve_output_at_debug_level(data_dir: Path, plugin_path: str) -> None:
    put_secret = fresh_secret("put")
    update_secrets = [fresh_secret("update")]
    proc = SubprocessServer(data_dir, env={"PYTHONPATH": plugin_path}, args=["--log-level", "debug"])
    try:
        running = proc.start()
        with running.http() as client:
            texts = exercise(client, put_secret, update_secrets)
    finally:
        proc.stop()
    assert "test_service" in proc.output, proc.output  # the plugin was loaded and logged
    assert_nowhere([put_secret, *update_secrets], [*texts, proc.output])
    raw = database_bytes(data_dir)
    assert MODEL.encode() in raw
    for secret in (put_secret, *update_secrets):
        assert secret.encode() not in raw
