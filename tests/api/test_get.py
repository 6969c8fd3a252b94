"""GET /_inference in every form, with Elasticsearch's semantics (spec 1.2, 4.1; research 1)."""

from __future__ import annotations

import json
import platform
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint

SECRET = "sk-secret-123"  # the api_key make_embedding_endpoint stores


def _platform_suffix() -> str:
    """ES picks the `_linux-x86_64` build of ELSER and E5 on linux x86-64 machines, the generic one elsewhere."""
    machine = platform.machine().lower()
    return "_linux-x86_64" if platform.system() == "Linux" and machine in ("x86_64", "amd64") else ""


ADAPTIVE = {"enabled": True, "min_number_of_allocations": 0, "max_number_of_allocations": 32}
SENTENCE_DEFAULT = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}

ELSER_DEFAULT: dict[str, Any] = {
    "inference_id": ".elser-2-elasticsearch",
    "task_type": "sparse_embedding",
    "service": "elasticsearch",
    "service_settings": {
        "num_threads": 1,
        "model_id": ".elser_model_2" + _platform_suffix(),
        "adaptive_allocations": ADAPTIVE,
    },
    "chunking_settings": SENTENCE_DEFAULT,
}
E5_DEFAULT: dict[str, Any] = {
    "inference_id": ".multilingual-e5-small-elasticsearch",
    "task_type": "text_embedding",
    "service": "elasticsearch",
    "service_settings": {
        "num_threads": 1,
        "model_id": ".multilingual-e5-small" + _platform_suffix(),
        "adaptive_allocations": ADAPTIVE,
    },
    "chunking_settings": SENTENCE_DEFAULT,
}
RERANK_DEFAULT: dict[str, Any] = {
    "inference_id": ".rerank-v1-elasticsearch",
    "task_type": "rerank",
    "service": "elasticsearch",
    "service_settings": {"num_threads": 1, "model_id": ".rerank-v1", "adaptive_allocations": ADAPTIVE},
    "task_settings": {"return_documents": True},
}
ES_DEFAULTS = [ELSER_DEFAULT, E5_DEFAULT, RERANK_DEFAULT]
DEFAULT_IDS = [".elser-2-elasticsearch", ".multilingual-e5-small-elasticsearch", ".rerank-v1-elasticsearch"]
TEST_DEFAULT_ID = "test-default-completion"


def ordered(value: Any) -> str:
    """Order-sensitive comparison of JSON values (dict == ignores key order)."""
    return json.dumps(value)


def put_test(http: httpx.Client, inference_id: str, task_type: str, **extra: Any) -> dict[str, Any]:
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": SECRET}, **extra}
    response = http.put(f"/_inference/{task_type}/{inference_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def endpoints(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["endpoints"], body
    assert isinstance(body["endpoints"], list)
    return list(body["endpoints"])


def ids(response: httpx.Response) -> list[str]:
    return [ep["inference_id"] for ep in endpoints(response)]


# -- listing ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/_inference", "/_inference/_all", "/_inference/*", "/_inference/any/_all"])
def test_list_all_forms_return_the_same_sorted_list(http: httpx.Client, path: str) -> None:
    put_test(http, "zz-last", "completion")
    put_test(http, "aa-first", "text_embedding")
    put_test(http, "mm-middle", "rerank")
    listed = ids(http.get(path))
    assert listed == sorted([*DEFAULT_IDS, TEST_DEFAULT_ID, "aa-first", "mm-middle", "zz-last"])
    assert listed == sorted(listed)
    assert http.get(path).json() == http.get("/_inference").json()


def test_list_sorts_by_id_not_by_creation_or_task(http: httpx.Client) -> None:
    for inference_id, task in [("b-2", "completion"), ("b-10", "text_embedding"), ("a-9", "rerank"), ("b-1", "rerank")]:
        put_test(http, inference_id, task)
    mine = [i for i in ids(http.get("/_inference")) if i not in DEFAULT_IDS and i != TEST_DEFAULT_ID]
    # Plain string order, as ES's String.compareTo: "b-10" sorts before "b-2".
    assert mine == ["a-9", "b-1", "b-10", "b-2"]


def test_default_endpoints_are_listed_with_es_settings(http: httpx.Client) -> None:
    listed = {ep["inference_id"]: ep for ep in endpoints(http.get("/_inference"))}
    for expected in ES_DEFAULTS:
        assert ordered(listed[expected["inference_id"]]) == ordered(expected)


@pytest.mark.parametrize("expected", ES_DEFAULTS, ids=DEFAULT_IDS)
def test_default_endpoint_by_id(http: httpx.Client, expected: dict[str, Any]) -> None:
    by_id = endpoints(http.get(f"/_inference/{expected['inference_id']}"))
    assert ordered(by_id) == ordered([expected])
    typed = endpoints(http.get(f"/_inference/{expected['task_type']}/{expected['inference_id']}"))
    assert ordered(typed) == ordered([expected])


def test_elser_and_e5_defaults_chunk_by_sentence_and_rerank_does_not_chunk(http: httpx.Client) -> None:
    listed = {ep["inference_id"]: ep for ep in endpoints(http.get("/_inference"))}
    assert listed[".elser-2-elasticsearch"]["chunking_settings"] == SENTENCE_DEFAULT
    assert listed[".multilingual-e5-small-elasticsearch"]["chunking_settings"] == SENTENCE_DEFAULT
    assert "chunking_settings" not in listed[".rerank-v1-elasticsearch"]
    assert listed[".rerank-v1-elasticsearch"]["task_settings"] == {"return_documents": True}
    # elser and e5 have empty task settings, which ES leaves out.
    assert "task_settings" not in listed[".elser-2-elasticsearch"]
    assert "task_settings" not in listed[".multilingual-e5-small-elasticsearch"]


def test_empty_task_filter_is_an_empty_list(http: httpx.Client) -> None:
    assert endpoints(http.get("/_inference/chat_completion/_all")) == []


# -- task filtering -----------------------------------------------------------------------------


@pytest.mark.parametrize("all_id", ["_all", "*"])
def test_task_filter_keeps_only_that_task(http: httpx.Client, all_id: str) -> None:
    put_test(http, "te-one", "text_embedding")
    put_test(http, "te-two", "text_embedding")
    put_test(http, "rr-one", "rerank")
    put_test(http, "co-one", "completion")
    text = endpoints(http.get(f"/_inference/text_embedding/{all_id}"))
    assert [ep["inference_id"] for ep in text] == [".multilingual-e5-small-elasticsearch", "te-one", "te-two"]
    assert {ep["task_type"] for ep in text} == {"text_embedding"}
    assert ids(http.get(f"/_inference/rerank/{all_id}")) == [".rerank-v1-elasticsearch", "rr-one"]
    assert ids(http.get(f"/_inference/completion/{all_id}")) == ["co-one", TEST_DEFAULT_ID]
    assert ids(http.get(f"/_inference/sparse_embedding/{all_id}")) == [".elser-2-elasticsearch"]


@pytest.mark.parametrize("task", ["TEXT_EMBEDDING", "Text_Embedding", "%20Text_Embedding", "text_embedding%20"])
def test_task_type_in_path_is_case_insensitive_and_trimmed(http: httpx.Client, task: str) -> None:
    created = put_test(http, "ci-embed", "text_embedding")
    assert endpoints(http.get(f"/_inference/{task}/ci-embed")) == [created]
    assert ids(http.get(f"/_inference/{task}/_all")) == [".multilingual-e5-small-elasticsearch", "ci-embed"]


# -- single id ----------------------------------------------------------------------------------


def test_single_id_is_wrapped_in_endpoints(http: httpx.Client) -> None:
    created = put_test(http, "one-id", "completion")
    assert http.get("/_inference/one-id").json() == {"endpoints": [created]}
    assert http.get("/_inference/completion/one-id").json() == {"endpoints": [created]}


def test_get_by_id_does_not_match_prefixes(http: httpx.Client) -> None:
    put_test(http, "prefix", "completion")
    put_test(http, "prefix-longer", "completion")
    assert ids(http.get("/_inference/prefix")) == ["prefix"]


@pytest.mark.parametrize("literal", ["my-*", "my-e*", "my-ep1,my-ep2", "*-ep1", "_all,my-ep1"])
def test_partial_wildcards_and_comma_lists_are_literal_ids(http: httpx.Client, literal: str) -> None:
    put_test(http, "my-ep1", "completion")
    put_test(http, "my-ep2", "completion")
    path = "/_inference/" + literal.replace(",", "%2C")
    assert_es_error(http.get(path), 404, "resource_not_found_exception", f"Inference endpoint not found [{literal}]")
    typed = http.get("/_inference/completion/" + literal)
    assert_es_error(typed, 404, "resource_not_found_exception", f"Inference endpoint not found [{literal}]")


def test_not_found(http: httpx.Client) -> None:
    assert_es_error(
        http.get("/_inference/does-not-exist"),
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [does-not-exist]",
    )
    assert_es_error(
        http.get("/_inference/rerank/does-not-exist"),
        404,
        "resource_not_found_exception",
        "Inference endpoint not found [does-not-exist]",
    )


def test_task_mismatch(http: httpx.Client) -> None:
    put_test(http, "mismatch-te", "text_embedding")
    assert_es_error(
        http.get("/_inference/sparse_embedding/mismatch-te"),
        400,
        "status_exception",
        "Requested task type [sparse_embedding] does not match the inference endpoint's task type [text_embedding]",
    )
    # The task type in the message is the parsed one, whatever case the URL used.
    assert_es_error(
        http.get("/_inference/RERANK/mismatch-te"),
        400,
        "status_exception",
        "Requested task type [rerank] does not match the inference endpoint's task type [text_embedding]",
    )


def test_task_mismatch_on_default_endpoint(http: httpx.Client) -> None:
    assert_es_error(
        http.get("/_inference/text_embedding/.rerank-v1-elasticsearch"),
        400,
        "status_exception",
        "Requested task type [text_embedding] does not match the inference endpoint's task type [rerank]",
    )


@pytest.mark.parametrize("path", ["/_inference/bogus/some-id", "/_inference/bogus/_all", "/_inference/embeddings/*"])
def test_unknown_task_type(http: httpx.Client, path: str) -> None:
    task = path.split("/")[2]
    assert_es_error(http.get(path), 400, "status_exception", f"Unknown task_type [{task}]")


def test_unknown_task_type_is_reported_before_not_found(http: httpx.Client) -> None:
    assert_es_error(http.get("/_inference/bogus/no-such-id"), 400, "status_exception", "Unknown task_type [bogus]")


# -- shape and secrets --------------------------------------------------------------------------


def test_endpoint_info_field_order(http: httpx.Client) -> None:
    put_test(http, "order-te", "text_embedding", task_settings={"user": "alice"})
    put_test(http, "order-co", "completion")
    listed = {ep["inference_id"]: ep for ep in endpoints(http.get("/_inference"))}
    assert list(listed["order-te"]) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "task_settings",
        "chunking_settings",
    ]
    assert listed["order-te"]["task_settings"]["user"] == "alice"
    # No task settings and no chunking for a completion endpoint of a service with empty task settings.
    assert list(listed["order-co"]) == ["inference_id", "task_type", "service", "service_settings"]
    assert list(listed[".rerank-v1-elasticsearch"]) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "task_settings",
    ]
    assert list(listed[".elser-2-elasticsearch"]) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "chunking_settings",
    ]


def test_get_equals_put_response(http: httpx.Client) -> None:
    created = make_embedding_endpoint(http, "same-as-put", dimensions=16)
    assert endpoints(http.get("/_inference/same-as-put")) == [created]
    assert created["service_settings"]["dimensions"] == 16
    assert created["service_settings"]["model"] == "m1"


@pytest.mark.parametrize(
    "path",
    [
        "/_inference",
        "/_inference/_all",
        "/_inference/*",
        "/_inference/secret-te",
        "/_inference/text_embedding/secret-te",
        "/_inference/text_embedding/_all",
        "/_inference/completion/secret-co",
        "/_inference/completion/*",
    ],
)
def test_no_secret_in_any_get(http: httpx.Client, path: str) -> None:
    put_test(http, "secret-te", "text_embedding")
    put_test(http, "secret-co", "completion")
    response = http.get(path)
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    assert "api_key" not in response.text
    for ep in endpoints(response):
        assert "api_key" not in ep["service_settings"]
        assert "secret_settings" not in ep


def test_elser_endpoint_shows_elser_service(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    assert http.put("/_inference/sparse_embedding/get-elser", json=body).status_code == 200
    response = http.get("/_inference/sparse_embedding/get-elser")
    # Reading an elser endpoint is not deprecated; only creating one is.
    assert "warning" not in response.headers
    (ep,) = endpoints(response)
    assert ep["service"] == "elser"
    assert ep["service_settings"] == {
        "num_allocations": 1,
        "num_threads": 1,
        "model_id": ".elser_model_2" + _platform_suffix(),
    }
