"""GET /_inference/_services[/{task_type}]: the services catalogue (spec 1.9; research 2)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error

TASK_ORDER = ["text_embedding", "sparse_embedding", "rerank", "completion", "chat_completion"]
FIELD_KEY_ORDER = [
    "default_value",
    "description",
    "label",
    "required",
    "sensitive",
    "updatable",
    "type",
    "supported_task_types",
]
# ES lists text_embedding, sparse_embedding and rerank; inferd adds the local chat model's two tasks.
ES_TASKS = ["text_embedding", "sparse_embedding", "rerank", "completion", "chat_completion"]


def catalog(http: httpx.Client, path: str = "/_inference/_services") -> list[dict[str, Any]]:
    response = http.get(path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert isinstance(body, list), body
    return body


def by_name(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {e["service"]: e for e in entries}


def test_bare_array_sorted_by_service(http: httpx.Client) -> None:
    entries = catalog(http)
    names = [e["service"] for e in entries]
    assert names == sorted(names)
    assert len(names) == len(set(names))
    assert {"elasticsearch", "test_service"} <= set(names)


def test_elser_alias_is_not_listed(http: httpx.Client) -> None:
    assert "elser" not in [e["service"] for e in catalog(http)]


def test_entry_shape(http: httpx.Client) -> None:
    for entry in catalog(http):
        assert list(entry) == ["service", "name", "task_types", "configurations"], entry
        assert entry["task_types"], entry
        # TaskType ordinal order, lower case, no `any`.
        assert entry["task_types"] == [t for t in TASK_ORDER if t in entry["task_types"]]
        for key, field in entry["configurations"].items():
            assert [k for k in FIELD_KEY_ORDER if k in field] == list(field), (entry["service"], key)
            assert {"label", "required", "sensitive", "updatable", "supported_task_types"} <= set(field)
            assert isinstance(field["label"], str)
            # ES 9.x field types; "map" arrived with custom headers (e.g. openai task_settings.headers).
            assert field["type"] in ("str", "int", "list", "bool", "map"), (entry["service"], key, field["type"])
            for flag in ("required", "sensitive", "updatable"):
                assert isinstance(field[flag], bool)
            supported = field["supported_task_types"]
            assert supported, (entry["service"], key)
            assert supported == [t for t in entry["task_types"] if t in supported], (entry["service"], key)


def test_elasticsearch_entry(http: httpx.Client) -> None:
    entry = by_name(catalog(http))["elasticsearch"]
    assert entry["name"] == "Elasticsearch"
    assert entry["task_types"] == ES_TASKS


def _without_default(field: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in field.items() if k != "default_value"}


# research 2: ElasticsearchInternalService.Configuration.
ES_CORE_FIELDS: dict[str, dict[str, Any]] = {
    "num_allocations": {
        "description": "The total number of allocations this model is assigned across machine learning nodes.",
        "label": "Number Allocations",
        "required": True,
        "sensitive": False,
        "updatable": True,
        "type": "int",
        "supported_task_types": ES_TASKS,
    },
    "num_threads": {
        "description": "Sets the number of threads used by each model allocation during inference.",
        "label": "Number Threads",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "int",
        "supported_task_types": ES_TASKS,
    },
    "model_id": {
        "description": "The name of the model to use for the inference task.",
        "label": "Model ID",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": ES_TASKS,
    },
}


@pytest.mark.parametrize("key", list(ES_CORE_FIELDS))
def test_elasticsearch_core_fields_match_es(http: httpx.Client, key: str) -> None:
    configurations = by_name(catalog(http))["elasticsearch"]["configurations"]
    assert _without_default(configurations[key]) == ES_CORE_FIELDS[key]


def test_elasticsearch_default_values_match_es(http: httpx.Client) -> None:
    configurations = by_name(catalog(http))["elasticsearch"]["configurations"]
    assert configurations["num_allocations"].get("default_value") == 1
    assert configurations["num_threads"].get("default_value") == 2
    assert "default_value" not in configurations["model_id"]


def test_elasticsearch_has_no_secrets(http: httpx.Client) -> None:
    configurations = by_name(catalog(http))["elasticsearch"]["configurations"]
    assert not [k for k, f in configurations.items() if f["sensitive"]]


def test_test_service_entry(http: httpx.Client) -> None:
    entry = by_name(catalog(http))["test_service"]
    assert entry["name"] == "Test Service"
    assert entry["task_types"] == TASK_ORDER
    configurations = entry["configurations"]
    assert configurations["api_key"] == {
        "description": "The API key.",
        "label": "API Key",
        "required": True,
        "sensitive": True,
        "updatable": True,
        "type": "str",
        "supported_task_types": TASK_ORDER,
    }
    assert configurations["model"]["required"] is True
    assert configurations["model"]["updatable"] is False
    assert configurations["model"]["sensitive"] is False
    assert configurations["dimensions"]["type"] == "int"
    assert configurations["dimensions"]["updatable"] is True
    assert configurations["dimensions"]["default_value"] == 8
    assert configurations["similarity"]["required"] is False
    # Only api_key is secret.
    assert [k for k, f in configurations.items() if f["sensitive"]] == ["api_key"]


def test_updatable_flags_agree_with_update(http: httpx.Client) -> None:
    """What _services calls updatable is what _update accepts (rate_limit is declared updatable)."""
    configurations = by_name(catalog(http))["test_service"]["configurations"]
    rate_keys = [k for k in configurations if k == "rate_limit" or k.startswith("rate_limit.")]
    assert rate_keys
    for key in rate_keys:
        assert configurations[key]["updatable"] is True, key
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-svc"}}
    assert http.put("/_inference/completion/svc-upd", json=body).status_code == 200
    response = http.put(
        "/_inference/svc-upd/_update", json={"service_settings": {"rate_limit": {"requests_per_minute": 7}}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 7}


def test_elasticsearch_updatable_flags_agree_with_update(http: httpx.Client) -> None:
    """adaptive_allocations can be changed by _update, so _services must not call its parts non-updatable."""
    configurations = by_name(catalog(http))["elasticsearch"]["configurations"]
    adaptive_keys = [k for k in configurations if k == "adaptive_allocations" or k.startswith("adaptive_allocations.")]
    assert adaptive_keys
    for key in adaptive_keys:
        assert configurations[key]["updatable"] is True, key
    settings = {"model_id": ".multilingual-e5-small", "num_threads": 1, "num_allocations": 1}
    body = {"service": "elasticsearch", "service_settings": settings}
    assert http.put("/_inference/text_embedding/svc-es-upd", json=body).status_code == 200
    adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 2}
    response = http.put("/_inference/svc-es-upd/_update", json={"service_settings": {"adaptive_allocations": adaptive}})
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["adaptive_allocations"] == adaptive


def test_secret_never_appears_in_catalog(http: httpx.Client) -> None:
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-catalog-secret"}}
    assert http.put("/_inference/completion/svc-secret", json=body).status_code == 200
    assert "sk-catalog-secret" not in http.get("/_inference/_services").text


@pytest.mark.parametrize("task", TASK_ORDER)
def test_filter_by_task_type(http: httpx.Client, task: str) -> None:
    everything = catalog(http)
    filtered = catalog(http, f"/_inference/_services/{task}")
    assert filtered == [e for e in everything if task in e["task_types"]]
    # Filtering picks entries; it does not trim them.
    for entry in filtered:
        assert entry == by_name(everything)[entry["service"]]


def test_rerank_lists_elasticsearch_and_test_service(http: httpx.Client) -> None:
    names = [e["service"] for e in catalog(http, "/_inference/_services/rerank")]
    assert "elasticsearch" in names
    assert "test_service" in names


def test_completion_lists_the_services_that_complete(http: httpx.Client) -> None:
    names = [e["service"] for e in catalog(http, "/_inference/_services/completion")]
    assert "test_service" in names
    assert "elasticsearch" in names  # the local chat model (an inferd extension)
    assert "elser" not in names
    assert [e["service"] for e in catalog(http, "/_inference/_services/sparse_embedding")].count("openai") == 0


@pytest.mark.parametrize("task", ["RERANK", "Rerank", "%20rerank%20"])
def test_task_type_is_case_insensitive(http: httpx.Client, task: str) -> None:
    assert catalog(http, f"/_inference/_services/{task}") == catalog(http, "/_inference/_services/rerank")


def test_any_lists_everything(http: httpx.Client) -> None:
    assert catalog(http, "/_inference/_services/any") == catalog(http)


@pytest.mark.parametrize("task", ["bogus", "embeddings", "_all"])
def test_unknown_task_type(http: httpx.Client, task: str) -> None:
    assert_es_error(http.get(f"/_inference/_services/{task}"), 400, "status_exception", f"Unknown task_type [{task}]")
