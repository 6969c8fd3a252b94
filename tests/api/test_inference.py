"""Perform inference, `POST /_inference[/{task_type}]/{inference_id}`, through the real server.

The endpoints use the test-only `test_service` (tests/support/sample_service.py). Its results follow
simple rules that the tests recompute on their own:
- text_embedding: bytes of sha256("<input_type>:" + text, or text alone) / 255, rounded to 6 places,
  repeated to `dimensions`;
- sparse_embedding: lower-cased word counts;
- rerank: Jaccard similarity of the query's and the document's lower-cased word sets, best first;
- completion: the input upper-cased.
"""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.conftest import assert_es_error

PARSER = "cluster:internal/xpack/inference"
JSON = {"Content-Type": "application/json"}
RERANK_QUERY = "quick fox"
RERANK_DOCS = ["lazy dog", "fox den", "quick fox", "the quick brown fox"]
# Jaccard scores of RERANK_DOCS against RERANK_QUERY: 0/4, 1/3, 2/2, 2/4; best first, ties by index.
RERANK_RANKED = [(2, 1.0), (3, 0.5), (1, 0.333333), (0, 0.0)]


# -- helpers ---------------------------------------------------------------------------------------


def expected_vector(text: str, dims: int, input_type: str | None = None) -> list[float]:
    data = ((input_type + ":") if input_type else "") + text
    digest = hashlib.sha256(data.encode()).digest()
    values = [round(b / 255.0, 6) for b in digest]
    while len(values) < dims:
        values += values[:32]
    return values[:dims]


def put_endpoint(
    http: httpx.Client,
    task_type: str,
    inference_id: str,
    *,
    task_settings: dict[str, Any] | None = None,
    **service_settings: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": "test_service",
        "service_settings": {"model": "m1", "api_key": "sk-test", **service_settings},
    }
    if task_settings is not None:
        body["task_settings"] = task_settings
    response = http.put(f"/_inference/{task_type}/{inference_id}", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def stored(http: httpx.Client, inference_id: str) -> dict[str, Any]:
    response = http.get(f"/_inference/{inference_id}")
    assert response.status_code == 200, response.text
    (endpoint,) = response.json()["endpoints"]
    return dict(endpoint)


def post_raw(http: httpx.Client, path: str, body: bytes) -> httpx.Response:
    return http.post(path, content=body, headers=JSON)


def location_at(body: bytes, offset: int) -> str:
    """Jackson's 1-based [line:column] of the byte at `offset` (ASCII bodies)."""
    before = body[:offset]
    line = before.count(b"\n") + 1
    column = offset - (before.rfind(b"\n") + 1) + 1
    return f"[{line}:{column}]"


def location(body: bytes, needle: bytes) -> str:
    """The location of the first occurrence of `needle` (a field name token, quotes included)."""
    return location_at(body, body.index(needle))


def value_location(body: bytes, field: str) -> str:
    """The location of the value token right after `"<field>":`."""
    key = b'"' + field.encode() + b'":'
    return location_at(body, body.index(key) + len(key))


def rerank_items(with_text: bool, top: int | None = None) -> list[dict[str, Any]]:
    items = []
    for index, score in RERANK_RANKED[:top]:
        item: dict[str, Any] = {"index": index, "relevance_score": score}
        if with_text:
            item["text"] = RERANK_DOCS[index]
        items.append(item)
    return items


# -- text_embedding --------------------------------------------------------------------------------


def test_text_embedding_one_vector_per_input_in_order(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-te-order", dimensions=5)
    inputs = ["alpha", "beta", "gamma"]
    expected = {"text_embedding": [{"embedding": expected_vector(t, 5)} for t in inputs]}
    typed = http.post("/_inference/text_embedding/inf-te-order", json={"input": inputs})
    assert typed.status_code == 200, typed.text
    assert typed.headers["content-type"].startswith("application/json")
    assert typed.headers["x-elastic-product"] == "Elasticsearch"
    assert typed.json() == expected
    untyped = http.post("/_inference/inf-te-order", json={"input": inputs})
    assert untyped.status_code == 200, untyped.text
    assert untyped.json() == expected
    reversed_ = http.post("/_inference/inf-te-order", json={"input": inputs[::-1]})
    assert reversed_.json() == {"text_embedding": expected["text_embedding"][::-1]}


def test_text_embedding_dimensions_come_from_the_service_settings(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-te-dims3", dimensions=3)
    put_endpoint(http, "text_embedding", "inf-te-dims40", dimensions=40)
    short = http.post("/_inference/inf-te-dims3", json={"input": ["x"]}).json()["text_embedding"][0]["embedding"]
    long = http.post("/_inference/inf-te-dims40", json={"input": ["x"]}).json()["text_embedding"][0]["embedding"]
    assert short == expected_vector("x", 3)
    assert long == expected_vector("x", 40)
    assert len(short) == 3 and len(long) == 40


def test_text_embedding_single_string_input_is_a_one_element_list(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-te-single", dimensions=4)
    single = http.post("/_inference/inf-te-single", json={"input": "alpha"})
    listed = http.post("/_inference/inf-te-single", json={"input": ["alpha"]})
    assert single.status_code == 200, single.text
    assert single.json() == listed.json() == {"text_embedding": [{"embedding": expected_vector("alpha", 4)}]}


@pytest.mark.parametrize("route", ["/_inference/text_embedding/inf-te-itype", "/_inference/inf-te-itype"])
def test_input_type_changes_the_vector(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "text_embedding", "inf-te-itype", dimensions=6)

    def vector(**extra: Any) -> list[float]:
        response = http.post(route, json={"input": ["alpha"], **extra})
        assert response.status_code == 200, response.text
        return list(response.json()["text_embedding"][0]["embedding"])

    plain = vector()
    search = vector(input_type="search")
    ingest = vector(input_type="ingest")
    assert plain == expected_vector("alpha", 6)
    assert search == expected_vector("alpha", 6, "search")
    assert ingest == expected_vector("alpha", 6, "ingest")
    assert len({tuple(plain), tuple(search), tuple(ingest)}) == 3
    # Parsed like ES's InputType.fromRestString: trimmed, case-insensitive.
    assert vector(input_type=" SEARCH ") == search
    assert vector(input_type="classification") == expected_vector("alpha", 6, "classification")
    assert vector(input_type="clustering") == expected_vector("alpha", 6, "clustering")
    # `unspecified` is accepted and means "none given".
    assert vector(input_type="unspecified") == plain


# -- sparse_embedding ------------------------------------------------------------------------------


def test_sparse_embedding_word_counts(http: httpx.Client) -> None:
    put_endpoint(http, "sparse_embedding", "inf-sparse")
    response = http.post("/_inference/sparse_embedding/inf-sparse", json={"input": ["The cat and THE hat", "dog"]})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sparse_embedding": [
            {"is_truncated": False, "embedding": {"the": 2.0, "cat": 1.0, "and": 1.0, "hat": 1.0}},
            {"is_truncated": False, "embedding": {"dog": 1.0}},
        ]
    }
    # ES's field order: is_truncated, then embedding.
    assert response.text.startswith('{"sparse_embedding":[{"is_truncated":false,"embedding":{')
    assert http.post("/_inference/inf-sparse", json={"input": "dog"}).json() == {
        "sparse_embedding": [{"is_truncated": False, "embedding": {"dog": 1.0}}]
    }


def test_numbers_and_booleans_inside_the_input_array_are_read_as_text(http: httpx.Client) -> None:
    put_endpoint(http, "sparse_embedding", "inf-sparse-scalars")
    response = post_raw(http, "/_inference/inf-sparse-scalars", b'{"input":[42,true]}')
    assert response.status_code == 200, response.text
    assert response.json() == {
        "sparse_embedding": [
            {"is_truncated": False, "embedding": {"42": 1.0}},
            {"is_truncated": False, "embedding": {"true": 1.0}},
        ]
    }


# -- rerank ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/_inference/rerank/inf-rerank", "/_inference/inf-rerank"])
def test_rerank_sorted_by_score_without_documents_by_default(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "rerank", "inf-rerank")
    response = http.post(route, json={"input": RERANK_DOCS, "query": RERANK_QUERY})
    assert response.status_code == 200, response.text
    assert response.json() == {"rerank": rerank_items(with_text=False)}
    assert all("text" not in item for item in response.json()["rerank"])


def test_rerank_top_n_keeps_the_best(http: httpx.Client) -> None:
    put_endpoint(http, "rerank", "inf-rerank-top")
    response = http.post(
        "/_inference/rerank/inf-rerank-top", json={"input": RERANK_DOCS, "query": RERANK_QUERY, "top_n": 2}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"rerank": rerank_items(with_text=False, top=2)}
    # ES's INT value type also takes a numeric string.
    as_text = post_raw(
        http,
        "/_inference/rerank/inf-rerank-top",
        b'{"input":["lazy dog","fox den","quick fox","the quick brown fox"],"query":"quick fox","top_n":"1"}',
    )
    assert as_text.status_code == 200, as_text.text
    assert as_text.json() == {"rerank": rerank_items(with_text=False, top=1)}


def test_rerank_return_documents_in_the_request_overrides_task_settings(http: httpx.Client) -> None:
    put_endpoint(http, "rerank", "inf-rerank-docs", task_settings={"return_documents": False})
    before = stored(http, "inf-rerank-docs")
    body = {"input": RERANK_DOCS, "query": RERANK_QUERY}
    with_docs = http.post("/_inference/rerank/inf-rerank-docs", json={**body, "return_documents": True})
    assert with_docs.status_code == 200, with_docs.text
    assert with_docs.json() == {"rerank": rerank_items(with_text=True)}
    # The request's field also beats the request's own task_settings.
    both = http.post(
        "/_inference/rerank/inf-rerank-docs",
        json={**body, "return_documents": False, "task_settings": {"return_documents": True}},
    )
    assert both.json() == {"rerank": rerank_items(with_text=False)}
    assert stored(http, "inf-rerank-docs") == before


def test_rerank_request_task_settings_override_stored_ones(http: httpx.Client) -> None:
    put_endpoint(http, "rerank", "inf-rerank-ts", task_settings={"return_documents": True})
    before = stored(http, "inf-rerank-ts")
    body = {"input": RERANK_DOCS, "query": RERANK_QUERY}
    stored_setting = http.post("/_inference/inf-rerank-ts", json=body)
    assert stored_setting.json() == {"rerank": rerank_items(with_text=True)}
    overridden = http.post("/_inference/inf-rerank-ts", json={**body, "task_settings": {"return_documents": False}})
    assert overridden.status_code == 200, overridden.text
    assert overridden.json() == {"rerank": rerank_items(with_text=False)}
    # A per-request override is not stored.
    assert stored(http, "inf-rerank-ts") == before
    assert http.post("/_inference/inf-rerank-ts", json=body).json() == stored_setting.json()


@pytest.mark.parametrize("top_n", [0, -1])
def test_rerank_top_n_below_one_is_rejected(http: httpx.Client, top_n: int) -> None:
    put_endpoint(http, "rerank", "inf-rerank-topn0")
    body = {"input": RERANK_DOCS, "query": RERANK_QUERY, "top_n": top_n}
    reason = "Validation Failed: 1: Field [top_n] must be greater than or equal to 1;"
    for route in ("/_inference/rerank/inf-rerank-topn0", "/_inference/inf-rerank-topn0"):
        assert_es_error(http.post(route, json=body), 400, "action_request_validation_exception", reason)


# -- completion ------------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/_inference/completion/inf-compl", "/_inference/inf-compl"])
def test_completion_upper_cases(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "completion", "inf-compl")
    response = http.post(route, json={"input": "hello world"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "HELLO WORLD"}]}
    many = http.post(route, json={"input": ["a b", "Ünïcode"]})
    assert many.json() == {"completion": [{"result": "A B"}, {"result": "ÜNÏCODE"}]}


def test_service_errors_reach_the_client(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "inf-compl-fail")
    response = http.post("/_inference/completion/inf-compl-fail", json={"input": "fail"})
    assert_es_error(response, 400, "status_exception", "the test service was asked to fail")


def test_an_unexpected_error_is_an_es_500_and_the_server_goes_on(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "inf-compl-crash")
    response = http.post(
        "/_inference/completion/inf-compl-crash", json={"input": "crash"}, headers={"X-Opaque-Id": "x1"}
    )
    assert_es_error(response, 500, "exception", "An internal error occurred in inferd; the server log has the details.")
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert response.headers["x-opaque-id"] == "x1"
    assert "a bug" not in response.text
    after = http.post("/_inference/completion/inf-compl-crash", json={"input": "fine"})
    assert after.json() == {"completion": [{"result": "FINE"}]}


# -- task settings ---------------------------------------------------------------------------------


def test_request_task_settings_override_stored_ones(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-ts-delay", task_settings={"user": "stored-user", "delay_ms": 2000})
    before = stored(http, "inf-ts-delay")
    assert before["task_settings"] == {"user": "stored-user", "delay_ms": 2000}
    # With the stored delay the request cannot finish in 300ms; the request's delay_ms replaces it.
    started = time.monotonic()
    response = http.post(
        "/_inference/inf-ts-delay?timeout=300ms",
        json={"input": ["a"], "task_settings": {"delay_ms": 0, "user": "request-user"}},
    )
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 1.5
    assert response.json() == {"text_embedding": [{"embedding": expected_vector("a", 8)}]}
    assert stored(http, "inf-ts-delay") == before


def test_unknown_request_task_setting_is_rejected(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-ts-unknown", task_settings={"user": "u1"})
    before = stored(http, "inf-ts-unknown")
    response = http.post("/_inference/inf-ts-unknown", json={"input": ["a"], "task_settings": {"foo": 1}})
    assert_es_error(
        response,
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [test_service] service",
    )
    assert stored(http, "inf-ts-unknown") == before


# -- request validation (ES's InferenceAction.Request.validate, first failure wins) ----------------------


VALIDATION_CASES = [
    ("text_embedding", {}, "Field [input] cannot be null"),
    ("text_embedding", {"input": []}, "Field [input] cannot be an empty array"),
    ("completion", {"input": [], "top_n": 1}, "Field [input] cannot be an empty array"),
    ("rerank", {"input": ["a"]}, "Field [query] cannot be null for task type [rerank]"),
    ("rerank", {"input": ["a"], "query": ""}, "Field [query] cannot be empty for task type [rerank]"),
    (
        "text_embedding",
        {"input": ["a"], "return_documents": True},
        "Field [return_documents] cannot be specified for task type [text_embedding]",
    ),
    (
        "completion",
        {"input": ["a"], "return_documents": False, "top_n": 1},
        "Field [return_documents] cannot be specified for task type [completion]",
    ),
    (
        "sparse_embedding",
        {"input": ["a"], "top_n": 1},
        "Field [top_n] cannot be specified for task type [sparse_embedding]",
    ),
    (
        "sparse_embedding",
        {"input": ["a"], "input_type": "search"},
        "Field [input_type] cannot be specified for task type [sparse_embedding]",
    ),
    (
        "completion",
        {"input": ["a"], "input_type": "ingest"},
        "Field [input_type] cannot be specified for task type [completion]",
    ),
    (
        "rerank",
        {"input": ["a"], "query": "q", "input_type": "search"},
        "Field [input_type] cannot be specified for task type [rerank]",
    ),
]


@pytest.mark.parametrize(("task_type", "body", "problem"), VALIDATION_CASES)
def test_request_validation_on_the_typed_route(
    http: httpx.Client, task_type: str, body: dict[str, Any], problem: str
) -> None:
    inference_id = f"inf-val-{task_type.replace('_', '-')}"
    put_endpoint(http, task_type, inference_id)
    response = http.post(f"/_inference/{task_type}/{inference_id}", json=body)
    assert_es_error(response, 400, "action_request_validation_exception", f"Validation Failed: 1: {problem};")


UNTYPED_VALIDATION_CASES = [
    ("sparse_embedding", {}, "Field [input] cannot be null"),
    ("completion", {"input": []}, "Field [input] cannot be an empty array"),
    ("rerank", {"input": ["a"]}, "Field [query] cannot be null for task type [rerank]"),
    ("rerank", {"input": ["a"], "query": ""}, "Field [query] cannot be empty for task type [rerank]"),
]


@pytest.mark.parametrize(("task_type", "body", "problem"), UNTYPED_VALIDATION_CASES)
def test_request_validation_uses_the_endpoint_task_on_the_untyped_route(
    http: httpx.Client, task_type: str, body: dict[str, Any], problem: str
) -> None:
    inference_id = f"inf-val-any-{task_type.replace('_', '-')}"
    put_endpoint(http, task_type, inference_id)
    response = http.post(f"/_inference/{inference_id}", json=body)
    assert_es_error(response, 400, "action_request_validation_exception", f"Validation Failed: 1: {problem};")


def test_unspecified_input_type_counts_as_none_for_other_tasks(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "inf-compl-unspec")
    response = http.post("/_inference/completion/inf-compl-unspec", json={"input": "ok", "input_type": "unspecified"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "OK"}]}


# -- body parsing (ES's ObjectParser: x_content_parse_exception with the token location) ---------------


@pytest.mark.parametrize(
    ("body", "key", "suffix"),
    [
        (b'{"input":"a","foo":1}', b'"foo"', "unknown field [foo]"),
        (b'{"foo":{"bar":[1,2]},"input":"a"}', b'"foo"', "unknown field [foo]"),
        (b'{\n  "input": "a",\n    "inptu": 1\n}', b'"inptu"', "unknown field [inptu] did you mean [input]?"),
        (b'{"input":"a","querry":"q"}', b'"querry"', "unknown field [querry] did you mean [query]?"),
        (
            b'{"input":"a","task_setting":{}}',
            b'"task_setting"',
            "unknown field [task_setting] did you mean [task_settings]?",
        ),
    ],
)
def test_unknown_body_field(http: httpx.Client, body: bytes, key: bytes, suffix: str) -> None:
    put_endpoint(http, "text_embedding", "inf-unknown-field")
    response = post_raw(http, "/_inference/inf-unknown-field", body)
    assert_es_error(response, 400, "x_content_parse_exception", f"{location(body, key)} [{PARSER}] {suffix}")


def test_unknown_field_location_is_the_key_not_a_guess(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-unknown-loc")
    reasons = set()
    for body in (b'{"foo":1}', b'{"input":"a", "foo":1}', b'{\n"input":"a",\n\n   "foo":1}'):
        reasons.add(post_raw(http, "/_inference/inf-unknown-loc", body).json()["error"]["reason"])
    assert reasons == {
        f"[1:2] [{PARSER}] unknown field [foo]",
        f"[1:15] [{PARSER}] unknown field [foo]",
        f"[4:4] [{PARSER}] unknown field [foo]",
    }


@pytest.mark.parametrize(
    ("body", "value", "field", "token"),
    [
        (b'{"input":5}', b"5", "input", "VALUE_NUMBER"),
        (b'{"input":{"a":"b"}}', b"{", "input", "START_OBJECT"),
        (b'{"input":true}', b"true", "input", "VALUE_BOOLEAN"),
        (b'{"input":null}', b"null", "input", "VALUE_NULL"),
        (b'{"input":"a","query":5}', b"5", "query", "VALUE_NUMBER"),
        (b'{"input":"a","query":["q"]}', b"[", "query", "START_ARRAY"),
        (b'{"input":"a","input_type":5}', b"5", "input_type", "VALUE_NUMBER"),
        (b'{"input":"a","task_settings":"x"}', b'"x"', "task_settings", "VALUE_STRING"),
        (b'{"input":"a","task_settings":null}', b"null", "task_settings", "VALUE_NULL"),
        (b'{"input":"a","timeout":5}', b"5", "timeout", "VALUE_NUMBER"),
        (b'{"input":"a","top_n":{}}', b"{}", "top_n", "START_OBJECT"),
        (b'{"input":"a","return_documents":[]}', b"[]", "return_documents", "START_ARRAY"),
    ],
)
def test_value_of_the_wrong_type(http: httpx.Client, body: bytes, value: bytes, field: str, token: str) -> None:
    put_endpoint(http, "rerank", "inf-wrong-type")
    response = post_raw(http, "/_inference/inf-wrong-type", body)
    assert b'"' + field.encode() + b'":' + value in body
    at = value_location(body, field)
    assert_es_error(
        response, 400, "x_content_parse_exception", f"{at} [{PARSER}] {field} doesn't support values of type: {token}"
    )


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        ("foo", "No enum constant org.elasticsearch.inference.InputType.FOO"),
        (" Bogus ", "No enum constant org.elasticsearch.inference.InputType.BOGUS"),
        ("internal_search", "Unrecognized input_type [internal_search]"),
        ("internal_ingest", "Unrecognized input_type [internal_ingest]"),
    ],
)
def test_bad_input_type(http: httpx.Client, value: str, cause: str) -> None:
    put_endpoint(http, "text_embedding", "inf-bad-itype")
    body = b'{"input":["a"],\n "input_type":"' + value.encode() + b'"}'
    response = post_raw(http, "/_inference/text_embedding/inf-bad-itype", body)
    at = value_location(body, "input_type")
    error = assert_es_error(
        response, 400, "x_content_parse_exception", f"{at} [{PARSER}] failed to parse field [input_type]"
    )
    assert at == "[2:15]"
    assert error["caused_by"] == {"type": "illegal_argument_exception", "reason": cause}


def test_bad_timeout_in_the_body(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-body-timeout")
    body = b'{"input":"a","timeout":"abc"}'
    response = post_raw(http, "/_inference/inf-body-timeout", body)
    error = assert_es_error(
        response, 400, "x_content_parse_exception", f"[1:24] [{PARSER}] failed to parse field [timeout]"
    )
    assert error["caused_by"] == {
        "type": "illegal_argument_exception",
        "reason": "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized",
    }


def test_body_timeout_is_validated_but_the_query_parameter_applies(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-body-timeout-ok", task_settings={"delay_ms": 400})
    response = http.post("/_inference/inf-body-timeout-ok", json={"input": "a", "timeout": "50ms"})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": expected_vector("a", 8)}]}


@pytest.mark.parametrize("body", [None, b""])
def test_missing_body(http: httpx.Client, body: bytes | None) -> None:
    put_endpoint(http, "text_embedding", "inf-no-body")
    response = http.post("/_inference/inf-no-body", content=body, headers=JSON if body is not None else None)
    assert_es_error(response, 400, "parse_exception", "request body is required")


def test_body_that_is_not_an_object(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-array-body")
    response = post_raw(http, "/_inference/inf-array-body", b'["a"]')
    # ES's ObjectParser names itself: "[<name>] Expected START_OBJECT but was: <token>".
    assert_es_error(
        response, 400, "x_content_parse_exception", f"[1:1] [{PARSER}] Expected START_OBJECT but was: START_ARRAY"
    )


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("abc", "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized"),
        ("10", "failed to parse setting [timeout] with value [10] as a time value: unit is missing or unrecognized"),
        ("1.5s", "failed to parse [1.5s], fractional time values are not supported"),
        (
            "-5s",
            "failed to parse setting [timeout] with value [-5s] as a time value: negative durations are not supported",
        ),
    ],
)
def test_bad_timeout_parameter(http: httpx.Client, value: str, reason: str) -> None:
    put_endpoint(http, "text_embedding", "inf-bad-timeout")
    response = http.post(f"/_inference/inf-bad-timeout?timeout={value}", json={"input": "a"})
    assert_es_error(response, 400, "illegal_argument_exception", reason)


def test_body_is_checked_before_the_timeout_parameter(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-order")
    assert_es_error(http.post("/_inference/inf-order?timeout=abc"), 400, "parse_exception", "request body is required")
    assert_es_error(
        http.post("/_inference/bogus/inf-order?timeout=abc"), 400, "status_exception", "Unknown task_type [bogus]"
    )


# -- endpoint lookup ---------------------------------------------------------------------------------


@pytest.mark.parametrize("route", ["/_inference/inf-missing", "/_inference/text_embedding/inf-missing"])
def test_unknown_endpoint_is_404(http: httpx.Client, route: str) -> None:
    response = http.post(route, json={"input": "a"})
    assert_es_error(response, 404, "resource_not_found_exception", "Inference endpoint not found [inf-missing]")
    assert http.get("/_inference/inf-missing").status_code == 404


def test_unknown_task_type_in_the_url(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-bad-task")
    response = http.post("/_inference/embeddings/inf-bad-task", json={"input": "a"})
    assert_es_error(response, 400, "status_exception", "Unknown task_type [embeddings]")


def test_url_task_type_must_match_the_endpoint(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-mismatch")
    before = stored(http, "inf-mismatch")
    response = http.post("/_inference/sparse_embedding/inf-mismatch", json={"input": "a"})
    assert_es_error(
        response,
        400,
        "status_exception",
        "Incompatible task_type, the requested type [sparse_embedding] does not match the model type [text_embedding]",
    )
    # Case-insensitive task type, as ES parses it.
    ok = http.post("/_inference/TEXT_EMBEDDING/inf-mismatch", json={"input": "a"})
    assert ok.status_code == 200, ok.text
    assert stored(http, "inf-mismatch") == before


@pytest.mark.parametrize("route", ["/_inference/inf-chat-nostream", "/_inference/chat_completion/inf-chat-nostream"])
def test_chat_completion_endpoint_only_streams(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "chat_completion", "inf-chat-nostream")
    response = http.post(route, json={"input": "hi"})
    assert_es_error(
        response,
        400,
        "status_exception",
        "The [chat_completion] task type only supports streaming, please try again with the _stream API",
    )


def test_timeout_parameter_bounds_the_call(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "inf-timeout", task_settings={"delay_ms": 2000})
    started = time.monotonic()
    response = http.post("/_inference/inf-timeout?timeout=200ms", json={"input": "a"})
    elapsed = time.monotonic() - started
    assert elapsed < 1.5, elapsed
    # ES's RequestTask: ElasticsearchStatusException("Request timed out after [{}]", REQUEST_TIMEOUT).
    assert_es_error(response, 408, "status_exception", "Request timed out after [200ms]")
    # The server is fine afterwards, and a roomy timeout lets the same call finish.
    slow = http.post("/_inference/inf-timeout?timeout=10s", json={"input": "a"})
    assert slow.status_code == 200, slow.text


# -- the official clients --------------------------------------------------------------------------


def _client_calls(
    client: elasticsearch.Elasticsearch | elasticsearch8.Elasticsearch, http: httpx.Client, suffix: str
) -> None:
    te, sp, rr, co = (f"inf-cl-{k}-{suffix}" for k in ("te", "sp", "rr", "co"))
    put_endpoint(http, "text_embedding", te, dimensions=4)
    put_endpoint(http, "sparse_embedding", sp)
    put_endpoint(http, "rerank", rr, task_settings={"return_documents": True})
    put_endpoint(http, "completion", co)

    def raw(path: str, body: dict[str, Any]) -> Any:
        response = http.post(path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    te_body = raw(f"/_inference/{te}", {"input": ["a", "b"]})
    assert te_body == {"text_embedding": [{"embedding": expected_vector(t, 4)} for t in ("a", "b")]}
    assert client.inference.inference(inference_id=te, input=["a", "b"]).body == te_body
    assert client.inference.inference(inference_id=te, task_type="text_embedding", input=["a", "b"]).body == te_body
    assert client.inference.text_embedding(inference_id=te, input=["a", "b"]).body == te_body
    assert client.inference.text_embedding(inference_id=te, input="a").body == {
        "text_embedding": te_body["text_embedding"][:1]
    }

    sp_body = raw(f"/_inference/{sp}", {"input": "one two two"})
    assert sp_body == {"sparse_embedding": [{"is_truncated": False, "embedding": {"one": 1.0, "two": 2.0}}]}
    assert client.inference.sparse_embedding(inference_id=sp, input="one two two").body == sp_body
    assert (
        client.inference.inference(inference_id=sp, task_type="sparse_embedding", input="one two two").body == sp_body
    )

    rr_body = raw(f"/_inference/rerank/{rr}", {"input": RERANK_DOCS, "query": RERANK_QUERY})
    assert rr_body == {"rerank": rerank_items(with_text=True)}
    assert client.inference.rerank(inference_id=rr, input=RERANK_DOCS, query=RERANK_QUERY).body == rr_body
    assert client.inference.inference(inference_id=rr, input=RERANK_DOCS, query=RERANK_QUERY).body == rr_body
    overridden = client.inference.rerank(
        inference_id=rr, input=RERANK_DOCS, query=RERANK_QUERY, task_settings={"return_documents": False}
    )
    assert overridden.body == {"rerank": rerank_items(with_text=False)}

    co_body = raw(f"/_inference/completion/{co}", {"input": "say hi"})
    assert co_body == {"completion": [{"result": "SAY HI"}]}
    assert client.inference.completion(inference_id=co, input="say hi").body == co_body
    assert client.inference.inference(inference_id=co, task_type="completion", input="say hi").body == co_body


def test_clients_9_return_the_raw_bodies(es: elasticsearch.Elasticsearch, http: httpx.Client) -> None:
    _client_calls(es, http, "v9")


def test_clients_8_return_the_raw_bodies(es8: elasticsearch8.Elasticsearch, http: httpx.Client) -> None:
    _client_calls(es8, http, "v8")
    put_endpoint(http, "text_embedding", "inf-cl8-itype", dimensions=4)
    # The 8.x client still has input_type.
    got = es8.inference.text_embedding(inference_id="inf-cl8-itype", input="a", input_type="search")
    assert got.body == {"text_embedding": [{"embedding": expected_vector("a", 4, "search")}]}


def test_clients_raise_typed_errors(
    es: elasticsearch.Elasticsearch, es8: elasticsearch8.Elasticsearch, http: httpx.Client
) -> None:
    with pytest.raises(elasticsearch.NotFoundError) as missing9:
        es.inference.inference(inference_id="inf-cl-missing", input="a")
    assert missing9.value.body["error"]["reason"] == "Inference endpoint not found [inf-cl-missing]"
    with pytest.raises(elasticsearch8.NotFoundError) as missing8:
        es8.inference.text_embedding(inference_id="inf-cl-missing", input="a")
    assert missing8.value.body["error"]["type"] == "resource_not_found_exception"
    put_endpoint(http, "text_embedding", "inf-cl-mismatch")
    with pytest.raises(elasticsearch.BadRequestError) as mismatch:
        es.inference.sparse_embedding(inference_id="inf-cl-mismatch", input="a")
    assert mismatch.value.body["error"]["reason"] == (
        "Incompatible task_type, the requested type [sparse_embedding] does not match the model type [text_embedding]"
    )


# -- sanity of the helper --------------------------------------------------------------------------


def test_location_helper() -> None:
    assert location(b'{"a":1}', b'"a"') == "[1:2]"
    assert location(b'{\n  "a":1}', b'"a"') == "[2:3]"
    assert re.fullmatch(r"\[\d+:\d+\]", location(b"x\ny\nz", b"z"))
