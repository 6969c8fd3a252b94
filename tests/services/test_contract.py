"""One contract, run over every registered service: what the design promises of any service."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from inferd.core.tasks import TaskType
from inferd.services.base import Service, ServiceContext
from inferd.services.registry import ServiceRegistry
from inferd.services.schema import field_keys, nested_model, parse_settings, secret_keys
from inferd.services.ssrf import UrlGuard
from inferd.settings import ServerSettings
from tests.conftest import assert_es_error


def registry(tmp_path: Path) -> ServiceRegistry:
    return ServiceRegistry.load(ServiceContext(ServerSettings(data_dir=tmp_path), UrlGuard([])))


def services() -> list[str]:
    return [s.name for s in registry(Path("/nonexistent")).all()]


def service(name: str) -> Service:
    found = registry(Path("/nonexistent")).get(name)
    assert found is not None
    return found


@pytest.mark.parametrize("name", services())
def test_settings_models_keep_secrets_apart(name: str) -> None:
    svc = service(name)
    for task in svc.task_types:
        # A secret is secret because of its type, and it never sits in the model GET renders.
        assert not secret_keys(svc.service_settings_model(task)), (name, task)
        assert not secret_keys(svc.task_settings_model(task)), (name, task)
    if svc.secret_settings_model is not None:
        assert secret_keys(svc.secret_settings_model) == field_keys(svc.secret_settings_model)


@pytest.mark.parametrize("name", services())
def test_stored_settings_with_unknown_keys_still_load(name: str) -> None:
    svc = service(name)
    for task in svc.task_types:
        for model in (svc.service_settings_model(task), svc.task_settings_model(task)):
            _, problems = parse_settings(model, {"setting_from_a_future_version": 1}, "service_settings", lenient=True)
            assert not any("setting_from_a_future_version" in p for p in problems), (name, task, problems)


@pytest.mark.parametrize("name", services())
def test_every_setting_is_described_for_services_api(name: str) -> None:
    svc = service(name)
    for task in svc.task_types:
        models = [svc.service_settings_model(task)]
        if svc.secret_settings_model is not None:
            models.append(svc.secret_settings_model)
        while models:
            model = models.pop()
            for key, field in model.model_fields.items():
                nested = nested_model(field.annotation)
                if nested is not None:
                    models.append(nested)
                assert field.title, f"{name}/{task}: [{key}] has no label (title)"
                assert field.description, f"{name}/{task}: [{key}] has no description"


@pytest.mark.parametrize("name", services())
def test_unsupported_task_types_are_refused_and_nothing_is_stored(http: httpx.Client, name: str) -> None:
    svc = service(name)
    for task in (t for t in TaskType.concrete() if t not in svc.task_types):
        response = http.put(f"/_inference/{task}/contract-{name}", json={"service": name, "service_settings": {}})
        assert_es_error(response, 400, "status_exception", f"The [{name}] service does not support task type [{task}]")
        assert http.get(f"/_inference/contract-{name}").status_code == 404


@pytest.mark.parametrize("name", services())
def test_strict_put_refuses_unknown_settings(http: httpx.Client, name: str) -> None:
    svc = service(name)
    task = svc.task_types[0]
    body = {"service": name, "service_settings": {"setting_nobody_declared": 1}}
    response = http.put(f"/_inference/{task}/contract-{name}", json=body)
    assert response.status_code == 400, response.text
    assert http.get(f"/_inference/contract-{name}").status_code == 404


def test_every_listed_service_has_a_services_entry(http: httpx.Client) -> None:
    listed = {e["service"]: e for e in http.get("/_inference/_services").json()}
    for name in services():
        svc = service(name)
        if not svc.listed_in_services:
            assert name not in listed
            continue
        entry = listed[name]
        assert entry["task_types"] == [t.value for t in TaskType.concrete() if t in svc.task_types]
        for key, config in entry["configurations"].items():
            assert set(config) >= {"label", "required", "sensitive", "updatable", "type", "supported_task_types"}, key
