"""DELETE /_inference[/{task_type}]/{inference_id} with dry_run and force (spec 1.8; research 6)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint

ACKNOWLEDGED = {"acknowledged": True, "pipelines": [], "indexes": []}
DRY_RUN = {"acknowledged": False, "pipelines": [], "indexes": [], "error_message": ""}
DEFAULT_IDS = [".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch"]


def listed_ids(http: httpx.Client) -> list[str]:
    return [ep["inference_id"] for ep in http.get("/_inference").json()["endpoints"]]


def get_one(http: httpx.Client, inference_id: str) -> dict[str, Any]:
    response = http.get(f"/_inference/{inference_id}")
    assert response.status_code == 200, response.text
    (endpoint,) = response.json()["endpoints"]
    return dict(endpoint)


def assert_gone(http: httpx.Client, inference_id: str) -> None:
    assert_es_error(
        http.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )
    assert inference_id not in listed_ids(http)


def ordered_keys(response: httpx.Response) -> list[str]:
    return list(response.json())


@pytest.mark.parametrize(
    "path", ["/_inference/del-me", "/_inference/text_embedding/del-me", "/_inference/TEXT_EMBEDDING/del-me"]
)
def test_delete(http: httpx.Client, path: str) -> None:
    make_embedding_endpoint(http, "del-me")
    make_embedding_endpoint(http, "keep-me")
    response = http.delete(path)
    assert response.status_code == 200, response.text
    assert response.json() == ACKNOWLEDGED
    assert ordered_keys(response) == ["acknowledged", "pipelines", "indexes"]
    assert_gone(http, "del-me")
    # Only the named endpoint went.
    assert get_one(http, "keep-me")["inference_id"] == "keep-me"


def test_delete_twice_is_not_found(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "del-twice")
    assert http.delete("/_inference/del-twice").json() == ACKNOWLEDGED
    assert_es_error(
        http.delete("/_inference/del-twice"),
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [del-twice]",
    )


def test_id_can_be_reused_after_delete(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "reuse", dimensions=4)
    assert http.delete("/_inference/reuse").json() == ACKNOWLEDGED
    recreated = make_embedding_endpoint(http, "reuse", dimensions=12)
    assert get_one(http, "reuse") == recreated
    assert recreated["service_settings"]["dimensions"] == 12


@pytest.mark.parametrize("path", ["/_inference/dry", "/_inference/text_embedding/dry"])
def test_dry_run_deletes_nothing(http: httpx.Client, path: str) -> None:
    created = make_embedding_endpoint(http, "dry")
    response = http.delete(path, params={"dry_run": "true"})
    assert response.status_code == 200, response.text
    assert response.json() == DRY_RUN
    assert ordered_keys(response) == ["acknowledged", "pipelines", "indexes", "error_message"]
    assert get_one(http, "dry") == created


def test_dry_run_wins_over_force(http: httpx.Client) -> None:
    created = make_embedding_endpoint(http, "dry-force")
    response = http.delete("/_inference/dry-force", params={"dry_run": "true", "force": "true"})
    assert response.status_code == 200, response.text
    assert response.json() == DRY_RUN
    assert get_one(http, "dry-force") == created


def test_dry_run_false_and_force_deletes(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "forced")
    response = http.delete("/_inference/forced", params={"dry_run": "false", "force": "true"})
    assert response.status_code == 200, response.text
    assert response.json() == ACKNOWLEDGED
    assert_gone(http, "forced")


def test_dry_run_of_missing_endpoint(http: httpx.Client) -> None:
    assert_es_error(
        http.delete("/_inference/never-was", params={"dry_run": "true"}),
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [never-was]",
    )


def test_invalid_boolean_parameter(http: httpx.Client) -> None:
    created = make_embedding_endpoint(http, "bad-bool")
    assert_es_error(
        http.delete("/_inference/bad-bool", params={"dry_run": "maybe"}),
        400,
        "illegal_argument_exception",
        "Failed to parse value [maybe] as only [true] or [false] are allowed.",
    )
    assert get_one(http, "bad-bool") == created


@pytest.mark.parametrize("path", ["/_inference/missing-ep", "/_inference/text_embedding/missing-ep"])
def test_not_found(http: httpx.Client, path: str) -> None:
    before = listed_ids(http)
    assert_es_error(http.delete(path), 404, "resource_not_found_exception", "Inference endpoint not found [missing-ep]")
    assert listed_ids(http) == before


def test_task_mismatch(http: httpx.Client) -> None:
    created = make_embedding_endpoint(http, "del-mismatch")
    for params in ({}, {"force": "true"}, {"dry_run": "true"}):
        assert_es_error(
            http.delete("/_inference/sparse_embedding/del-mismatch", params=params),
            400,
            "status_exception",
            "Requested task type [sparse_embedding] does not match the inference endpoint's task type [text_embedding]",
        )
    assert get_one(http, "del-mismatch") == created


def test_unknown_task_type(http: httpx.Client) -> None:
    created = make_embedding_endpoint(http, "del-bogus")
    assert_es_error(http.delete("/_inference/bogus/del-bogus"), 400, "status_exception", "Unknown task_type [bogus]")
    assert get_one(http, "del-bogus") == created


@pytest.mark.parametrize("inference_id", [*DEFAULT_IDS, "test-default-completion"])
def test_default_endpoint_needs_force(http: httpx.Client, inference_id: str) -> None:
    before = get_one(http, inference_id)
    assert_es_error(
        http.delete(f"/_inference/{inference_id}"),
        400,
        "status_exception",
        f"[{inference_id}] is a reserved inference endpoint. "
        "Use the force=true query parameter to delete the inference endpoint.",
    )
    assert get_one(http, inference_id) == before
    assert inference_id in listed_ids(http)


@pytest.mark.parametrize("inference_id", [*DEFAULT_IDS, "test-default-completion"])
def test_default_endpoint_with_force_is_acknowledged_and_comes_back(http: httpx.Client, inference_id: str) -> None:
    before = get_one(http, inference_id)
    response = http.delete(f"/_inference/{before['task_type']}/{inference_id}", params={"force": "true"})
    assert response.status_code == 200, response.text
    assert response.json() == ACKNOWLEDGED
    # Defaults live in code: the endpoint is listed again at once, unchanged.
    assert get_one(http, inference_id) == before
    assert inference_id in listed_ids(http)


def test_delete_leaves_other_tasks_and_defaults_alone(http: httpx.Client) -> None:
    make_embedding_endpoint(http, "alone-a")
    make_embedding_endpoint(http, "alone-b")
    before = listed_ids(http)
    assert http.delete("/_inference/alone-a").json() == ACKNOWLEDGED
    assert listed_ids(http) == [i for i in before if i != "alone-a"]
