"""PUT/POST /_inference[/{task_type}]/{inference_id}/_update (spec 1.7; research 4)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error

SECRET = "sk-update-old-111"
NEW_SECRET = "sk-update-new-222"
INVALID_ID = (
    "Validation Failed: 1: Invalid inference_id; '{}' can contain lowercase alphanumeric (a-z and 0-9), "
    "hyphens or underscores; must start and end with alphanumeric;"
)


def create(http: httpx.Client, inference_id: str, task: str = "text_embedding", **extra: Any) -> dict[str, Any]:
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": SECRET}, **extra}
    response = http.put(f"/_inference/{task}/{inference_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def create_es(http: httpx.Client, inference_id: str, **settings: Any) -> dict[str, Any]:
    service_settings = {"model_id": ".multilingual-e5-small", "num_threads": 1, **settings}
    body = {"service": "elasticsearch", "service_settings": service_settings}
    response = http.put(f"/_inference/text_embedding/{inference_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def get_one(http: httpx.Client, inference_id: str) -> dict[str, Any]:
    response = http.get(f"/_inference/{inference_id}")
    assert response.status_code == 200, response.text
    (endpoint,) = response.json()["endpoints"]
    return dict(endpoint)


Updater = Callable[[httpx.Client, str, Any], httpx.Response]


def via(method: str, typed: bool) -> Updater:
    def update(http: httpx.Client, inference_id: str, body: Any) -> httpx.Response:
        path = f"/_inference/text_embedding/{inference_id}/_update" if typed else f"/_inference/{inference_id}/_update"
        return http.request(method, path, json=body)

    return update


UPDATERS = {
    "PUT": via("PUT", False),
    "POST": via("POST", False),
    "PUT-typed": via("PUT", True),
    "POST-typed": via("POST", True),
}


def update(http: httpx.Client, inference_id: str, body: Any) -> httpx.Response:
    return http.put(f"/_inference/{inference_id}/_update", json=body)


def assert_update_error(
    http: httpx.Client, inference_id: str, body: Any, status: int, es_type: str, reason: str, *, path: str | None = None
) -> None:
    """The update fails and the stored endpoint is exactly what it was."""
    before = get_one(http, inference_id)
    response = http.put(path or f"/_inference/{inference_id}/_update", json=body)
    assert_es_error(response, status, es_type, reason)
    assert get_one(http, inference_id) == before


# -- what can change ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", list(UPDATERS))
def test_update_forms_and_response_equals_get(http: httpx.Client, how: str) -> None:
    before = create(http, "upd-forms", task_settings={"user": "alice"})
    response = UPDATERS[how](http, "upd-forms", {"task_settings": {"user": "bob"}})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == get_one(http, "upd-forms")
    assert body["task_settings"]["user"] == "bob"
    # Nothing else moved.
    assert {k: v for k, v in body.items() if k != "task_settings"} == {
        k: v for k, v in before.items() if k != "task_settings"
    }
    assert list(body) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "task_settings",
        "chunking_settings",
    ]


def test_secret_is_updatable_and_never_returned(http: httpx.Client) -> None:
    before = create(http, "upd-secret")
    response = update(http, "upd-secret", {"service_settings": {"api_key": NEW_SECRET}})
    assert response.status_code == 200, response.text
    assert response.json() == before
    for text in (response.text, http.get("/_inference/upd-secret").text, http.get("/_inference").text):
        assert NEW_SECRET not in text
        assert SECRET not in text
        assert "api_key" not in text


def test_secret_type_is_validated(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-secret-type")["inference_id"],
        {"service_settings": {"api_key": 12}},
        400,
        "validation_exception",
        "Validation Failed: 1: field [api_key] is not of the expected type. "
        "The value [12] cannot be converted to a [String];",
    )


def test_task_settings_are_merged(http: httpx.Client) -> None:
    create(http, "upd-merge", task_settings={"user": "alice", "delay_ms": 5})
    response = update(http, "upd-merge", {"task_settings": {"user": "bob"}})
    assert response.status_code == 200, response.text
    assert response.json()["task_settings"] == {"user": "bob", "delay_ms": 5}
    response = update(http, "upd-merge", {"task_settings": {"delay_ms": 7}})
    assert response.status_code == 200, response.text
    assert get_one(http, "upd-merge")["task_settings"] == {"user": "bob", "delay_ms": 7}


def test_updatable_service_settings(http: httpx.Client) -> None:
    before = create(http, "upd-dims")
    assert before["service_settings"]["dimensions"] == 8
    body = {"service_settings": {"dimensions": 16, "rate_limit": {"requests_per_minute": 10}}}
    response = update(http, "upd-dims", body)
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "model": "m1",
        "dimensions": 16,
        "rate_limit": {"requests_per_minute": 10},
    }
    assert get_one(http, "upd-dims") == response.json()


def test_service_and_task_settings_together(http: httpx.Client) -> None:
    create(http, "upd-both")
    body = {"service_settings": {"dimensions": 4, "api_key": NEW_SECRET}, "task_settings": {"user": "carol"}}
    response = update(http, "upd-both", body)
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["dimensions"] == 4
    assert response.json()["task_settings"]["user"] == "carol"
    assert NEW_SECRET not in response.text


def test_matching_task_type_in_body_is_accepted(http: httpx.Client) -> None:
    create(http, "upd-body-task")
    for path in ("/_inference/upd-body-task/_update", "/_inference/text_embedding/upd-body-task/_update"):
        response = http.put(path, json={"task_type": "TEXT_EMBEDDING", "task_settings": {"user": "dave"}})
        assert response.status_code == 200, response.text
        assert response.json()["task_settings"]["user"] == "dave"


def test_unchanged_non_updatable_setting_is_allowed(http: httpx.Client) -> None:
    before = create(http, "upd-same-model")
    response = update(http, "upd-same-model", {"service_settings": {"model": "m1"}})
    assert response.status_code == 200, response.text
    assert response.json() == before


def test_empty_settings_objects_change_nothing(http: httpx.Client) -> None:
    before = create(http, "upd-empty-objects")
    response = update(http, "upd-empty-objects", {"service_settings": {}, "task_settings": {}})
    assert response.status_code == 200, response.text
    assert response.json() == before


# -- what cannot --------------------------------------------------------------------------------


def test_non_updatable_setting(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-model")["inference_id"],
        {"service_settings": {"model": "other"}},
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [model] cannot be updated;",
    )


def test_non_updatable_setting_blocks_the_whole_update(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-partial")["inference_id"],
        {
            "service_settings": {"model": "other", "dimensions": 32, "api_key": NEW_SECRET},
            "task_settings": {"user": "x"},
        },
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [model] cannot be updated;",
    )


def test_invalid_value(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-invalid")["inference_id"],
        {"service_settings": {"dimensions": 0}},
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [0]. [dimensions] must be a positive integer;",
    )


def test_wrong_type(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-type")["inference_id"],
        {"service_settings": {"dimensions": "abc"}},
        400,
        "validation_exception",
        "Validation Failed: 1: field [dimensions] is not of the expected type. "
        "The value [abc] cannot be converted to a [Integer];",
    )


def test_unknown_service_setting(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-unknown")["inference_id"],
        {"service_settings": {"foo": 1}},
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [test_service] service",
    )


def test_unknown_task_setting(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-unknown-task")["inference_id"],
        {"task_settings": {"bar": "x"}},
        400,
        "status_exception",
        "Configuration contains settings [{bar=x}] unknown to the [test_service] service",
    )


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ({"service": "test_service", "task_settings": {"user": "u"}}, "{service=test_service}"),
        ({"chunking_settings": {"strategy": "none"}}, "{chunking_settings={strategy=none}}"),
        (
            {"task_type": "text_embedding", "service_settings": {"dimensions": 4}, "inference_id": "x"},
            "{inference_id=x}",
        ),
    ],
)
def test_forbidden_top_level_fields(http: httpx.Client, body: dict[str, Any], shown: str) -> None:
    assert_update_error(
        http,
        create(http, "upd-forbidden")["inference_id"],
        body,
        400,
        "status_exception",
        f"Request contained fields which cannot be updated, remove these fields and try again [{shown}]",
    )


def test_empty_body(http: httpx.Client) -> None:
    assert_update_error(
        http, create(http, "upd-empty")["inference_id"], {}, 400, "status_exception", "Request body is empty"
    )


def test_missing_body(http: httpx.Client) -> None:
    before = create(http, "upd-no-body")
    assert_es_error(http.put("/_inference/upd-no-body/_update"), 400, "parse_exception", "request body is required")
    assert get_one(http, "upd-no-body") == before


def test_service_settings_not_an_object(http: httpx.Client) -> None:
    # ES prints the body as it is at that point: task_type already taken out, service_settings still in.
    assert_update_error(
        http,
        create(http, "upd-ss-string")["inference_id"],
        {"task_type": "text_embedding", "service_settings": "x"},
        400,
        "status_exception",
        "Unable to parse service settings in the request [{service_settings=x}]",
    )


def test_task_settings_not_an_object(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-ts-number")["inference_id"],
        {"service_settings": {"dimensions": 4}, "task_settings": 5},
        400,
        "status_exception",
        "Unable to parse task settings in the request [{task_settings=5}]",
    )


def test_task_type_mismatch_in_url(http: httpx.Client) -> None:
    inference_id = create(http, "upd-url-task")["inference_id"]
    assert_update_error(
        http,
        inference_id,
        {"task_settings": {"user": "x"}},
        400,
        "status_exception",
        "Task type must match the task type of the existing endpoint",
        path=f"/_inference/rerank/{inference_id}/_update",
    )


def test_task_type_mismatch_in_body(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-body-mismatch")["inference_id"],
        {"task_type": "rerank", "task_settings": {"user": "x"}},
        400,
        "status_exception",
        "Task type must match the task type of the existing endpoint",
    )


def test_task_type_conflict_between_url_and_body(http: httpx.Client) -> None:
    inference_id = create(http, "upd-conflict")["inference_id"]
    assert_update_error(
        http,
        inference_id,
        {"task_type": "rerank", "task_settings": {"user": "x"}},
        400,
        "status_exception",
        "Cannot resolve conflicting task_type parameter in the request URL [text_embedding] "
        "and the request body [rerank]",
        path=f"/_inference/text_embedding/{inference_id}/_update",
    )


def test_unknown_task_type_in_body(http: httpx.Client) -> None:
    assert_update_error(
        http,
        create(http, "upd-bogus-task")["inference_id"],
        {"task_type": "bogus", "task_settings": {"user": "x"}},
        400,
        "status_exception",
        "Unknown task_type [bogus]",
    )


@pytest.mark.parametrize("path", ["/_inference/no-such-ep/_update", "/_inference/text_embedding/no-such-ep/_update"])
def test_missing_endpoint(http: httpx.Client, path: str) -> None:
    assert_es_error(
        http.put(path, json={"task_settings": {"user": "x"}}),
        404,
        "resource_not_found_exception",
        "The inference endpoint [no-such-ep] does not exist and cannot be updated",
    )
    assert_es_error(
        http.get("/_inference/no-such-ep"),
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [no-such-ep]",
    )


@pytest.mark.parametrize("inference_id", [".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch"])
def test_default_endpoint_fails_id_validation(http: httpx.Client, inference_id: str) -> None:
    assert_update_error(
        http,
        inference_id,
        {"service_settings": {"num_allocations": 3}},
        400,
        "action_request_validation_exception",
        INVALID_ID.format(inference_id),
    )


def test_invalid_id(http: httpx.Client) -> None:
    assert_es_error(
        http.put("/_inference/Bad-Id/_update", json={"task_settings": {"user": "x"}}),
        400,
        "action_request_validation_exception",
        INVALID_ID.format("Bad-Id"),
    )


# -- the elasticsearch service ------------------------------------------------------------------


def test_elasticsearch_num_allocations(http: httpx.Client) -> None:
    create_es(http, "upd-es-num", num_allocations=1)
    response = update(http, "upd-es-num", {"service_settings": {"num_allocations": 3}})
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "num_allocations": 3,
        "num_threads": 1,
        "model_id": ".multilingual-e5-small",
    }
    assert get_one(http, "upd-es-num") == response.json()


def test_elasticsearch_adaptive_replaces_num_allocations(http: httpx.Client) -> None:
    create_es(http, "upd-es-adaptive", num_allocations=2)
    adaptive = {"enabled": True, "min_number_of_allocations": 1, "max_number_of_allocations": 4}
    response = update(http, "upd-es-adaptive", {"service_settings": {"adaptive_allocations": adaptive}})
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "num_threads": 1,
        "model_id": ".multilingual-e5-small",
        "adaptive_allocations": adaptive,
    }
    # GET also shows the running deployment's live allocation count, as ES does from its deployment
    # stats; the update response, like ES's, shows the stored settings only.
    live = {**response.json(), "service_settings": {"num_allocations": 2, **response.json()["service_settings"]}}
    assert get_one(http, "upd-es-adaptive") == live


def test_elasticsearch_num_allocations_replaces_adaptive(http: httpx.Client) -> None:
    adaptive = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 8}
    create_es(http, "upd-es-back", adaptive_allocations=adaptive)
    response = update(http, "upd-es-back", {"service_settings": {"num_allocations": 2}})
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "num_allocations": 2,
        "num_threads": 1,
        "model_id": ".multilingual-e5-small",
    }
    assert get_one(http, "upd-es-back") == response.json()


def test_elasticsearch_both_allocation_styles(http: httpx.Client) -> None:
    create_es(http, "upd-es-both", num_allocations=1)
    assert_update_error(
        http,
        "upd-es-both",
        {"service_settings": {"num_allocations": 2, "adaptive_allocations": {"enabled": True}}},
        400,
        "validation_exception",
        "Validation Failed: 1: [num_allocations] cannot be set if [adaptive_allocations] is set;",
    )


def test_elasticsearch_num_threads_cannot_change(http: httpx.Client) -> None:
    create_es(http, "upd-es-threads", num_allocations=1)
    assert_update_error(
        http,
        "upd-es-threads",
        {"service_settings": {"num_threads": 4}},
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [num_threads] cannot be updated;",
    )


def test_elasticsearch_unknown_setting(http: httpx.Client) -> None:
    create_es(http, "upd-es-unknown", num_allocations=1)
    assert_update_error(
        http,
        "upd-es-unknown",
        {"service_settings": {"foo": 1}},
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [elasticsearch] service",
    )


def test_elasticsearch_invalid_num_allocations(http: httpx.Client) -> None:
    create_es(http, "upd-es-zero", num_allocations=1)
    assert_update_error(
        http,
        "upd-es-zero",
        {"service_settings": {"num_allocations": 0}},
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [0]. [num_allocations] must be a positive integer;",
    )


def test_elasticsearch_rerank_task_settings(http: httpx.Client) -> None:
    body = {
        "service": "elasticsearch",
        "service_settings": {"model_id": ".rerank-v1", "num_threads": 1, "num_allocations": 1},
    }
    assert http.put("/_inference/rerank/upd-es-rerank", json=body).status_code == 200
    response = http.post(
        "/_inference/rerank/upd-es-rerank/_update", json={"task_settings": {"return_documents": False}}
    )
    assert response.status_code == 200, response.text
    assert response.json()["task_settings"] == {"return_documents": False}
    assert get_one(http, "upd-es-rerank") == response.json()


def test_elser_endpoint_update_keeps_service_name(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    assert http.put("/_inference/sparse_embedding/upd-elser", json=body).status_code == 200
    response = update(http, "upd-elser", {"service_settings": {"num_allocations": 2}})
    assert response.status_code == 200, response.text
    assert response.json()["service"] == "elser"
    assert response.json()["service_settings"]["num_allocations"] == 2
    assert "warning" not in response.headers
