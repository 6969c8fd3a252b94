"""PUT /_inference[/{task_type}]/{inference_id}: creation with ES's rules (spec 1.3, 4, 5; research 1, 3, 5)."""

from __future__ import annotations

import json
import platform
import re
import threading
from typing import Any

import elasticsearch
import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.servers import RunningServer

SECRET = "sk-put-secret-987"
SENTENCE_DEFAULT = {"strategy": "sentence", "max_chunk_size": 250, "sentence_overlap": 1}
WARNING = re.compile(r'^299 Elasticsearch-\d+\.\d+\.\d+(?:-SNAPSHOT)?-\S+ "(.*)"$')


def _platform_suffix() -> str:
    machine = platform.machine().lower()
    return "_linux-x86_64" if platform.system() == "Linux" and machine in ("x86_64", "amd64") else ""


ELSER_ID = ".elser_model_2" + _platform_suffix()
ELSER_SERVICE_DEPRECATED = (
    "The [elser] service is deprecated and will be removed in a future release. Use the [elasticsearch] service "
    f"instead, with [model_id] set to [{ELSER_ID}] in the [service_settings]"
)
MODEL_ID_DEPRECATED = (
    "Putting elasticsearch service inference endpoints (including elser service) without a model_id field is "
    "deprecated and will be removed in a future release. Please specify a model_id field."
)
INVALID_ID = (
    "Validation Failed: 1: Invalid inference_id; '{}' can contain lowercase alphanumeric (a-z and 0-9), "
    "hyphens or underscores; must start and end with alphanumeric;"
)


def ordered(value: Any) -> str:
    return json.dumps(value)


def sample(task_type: str | None = None, **service_settings: Any) -> dict[str, Any]:
    """A valid test_service body; service_settings entries override (None removes a key)."""
    settings: dict[str, Any] = {"model": "m1", "api_key": SECRET, **service_settings}
    body: dict[str, Any] = {
        "service": "test_service",
        "service_settings": {k: v for k, v in settings.items() if v is not None},
    }
    if task_type is not None:
        body["task_type"] = task_type
    return body


def es_body(**service_settings: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1}
    settings.update(service_settings)
    return {"service": "elasticsearch", "service_settings": {k: v for k, v in settings.items() if v is not None}}


def warnings_of(response: httpx.Response) -> set[str]:
    texts = set()
    for header in response.headers.get_list("warning"):
        match = WARNING.match(header)
        assert match, header
        texts.add(match.group(1))
    return texts


def assert_absent(http: httpx.Client, inference_id: str) -> None:
    """A failed PUT stored nothing: GET is 404 and the list does not name the id."""
    assert_es_error(
        http.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )
    listed = [ep["inference_id"] for ep in http.get("/_inference").json()["endpoints"]]
    assert inference_id not in listed


def put_error(
    http: httpx.Client, path: str, body: Any, status: int, es_type: str, reason: str, *, inference_id: str | None = None
) -> None:
    assert_es_error(http.put(path, json=body), status, es_type, reason)
    target = inference_id or path.rstrip("/").rsplit("/", 1)[-1].split("?")[0]
    if not target.startswith(".") and target != "test-default-completion":
        assert_absent(http, target)


# -- the seed example and the elasticsearch service ---------------------------------------------


def test_seed_example_exact_body_and_warnings(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    response = http.put("/_inference/sparse_embedding/my-elser-model", json=body)
    assert response.status_code == 200, response.text
    expected = {
        "inference_id": "my-elser-model",
        "task_type": "sparse_embedding",
        "service": "elser",
        "service_settings": {"num_allocations": 1, "num_threads": 1, "model_id": ELSER_ID},
        "chunking_settings": SENTENCE_DEFAULT,
    }
    assert ordered(response.json()) == ordered(expected)
    assert len(response.headers.get_list("warning")) == 2
    assert warnings_of(response) == {ELSER_SERVICE_DEPRECATED, MODEL_ID_DEPRECATED}
    got = http.get("/_inference/sparse_embedding/my-elser-model")
    assert ordered(got.json()) == ordered({"endpoints": [expected]})


def test_seed_example_with_the_official_client(es: elasticsearch.Elasticsearch) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    with pytest.warns(elasticsearch.ElasticsearchWarning) as caught:
        created = es.inference.put(task_type="sparse_embedding", inference_id="client-elser", inference_config=body)
    assert {str(w.message) for w in caught} == {ELSER_SERVICE_DEPRECATED, MODEL_ID_DEPRECATED}
    assert created.body["service"] == "elser"
    assert created.body["service_settings"]["model_id"] == ELSER_ID
    fetched = es.inference.get(task_type="sparse_embedding", inference_id="client-elser")
    assert fetched.body == {"endpoints": [created.body]}


def test_elser_with_model_id_warns_only_about_the_service(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 2, "num_threads": 1, "model_id": ELSER_ID}}
    response = http.put("/_inference/sparse_embedding/elser-with-model", json=body)
    assert response.status_code == 200, response.text
    assert warnings_of(response) == {ELSER_SERVICE_DEPRECATED}
    assert response.json()["service_settings"] == {"num_allocations": 2, "num_threads": 1, "model_id": ELSER_ID}


@pytest.mark.parametrize(
    ("task", "model_id"),
    [
        ("text_embedding", ".multilingual-e5-small"),
        ("text_embedding", ".multilingual-e5-small" + _platform_suffix()),
        ("sparse_embedding", ".elser_model_2"),
        ("sparse_embedding", ELSER_ID),
    ],
)
def test_elasticsearch_service_builtin_models(http: httpx.Client, task: str, model_id: str) -> None:
    response = http.put(f"/_inference/{task}/es-model", json=es_body(model_id=model_id))
    assert response.status_code == 200, response.text
    assert "warning" not in response.headers
    expected = {
        "inference_id": "es-model",
        "task_type": task,
        "service": "elasticsearch",
        "service_settings": {"num_allocations": 1, "num_threads": 1, "model_id": model_id},
        "chunking_settings": SENTENCE_DEFAULT,
    }
    assert ordered(response.json()) == ordered(expected)
    assert ordered(http.get("/_inference/es-model").json()) == ordered({"endpoints": [expected]})


def test_elasticsearch_rerank_model(http: httpx.Client) -> None:
    response = http.put("/_inference/rerank/es-rerank", json=es_body(model_id=".rerank-v1", num_allocations=2))
    assert response.status_code == 200, response.text
    expected = {
        "inference_id": "es-rerank",
        "task_type": "rerank",
        "service": "elasticsearch",
        "service_settings": {"num_allocations": 2, "num_threads": 1, "model_id": ".rerank-v1"},
        "task_settings": {"return_documents": True},
    }
    assert ordered(response.json()) == ordered(expected)


def test_elasticsearch_adaptive_allocations(http: httpx.Client) -> None:
    adaptive = {"enabled": True, "min_number_of_allocations": 1, "max_number_of_allocations": 4}
    body = es_body(num_allocations=None, adaptive_allocations=adaptive)
    response = http.put("/_inference/text_embedding/es-adaptive", json=body)
    assert response.status_code == 200, response.text
    assert ordered(response.json()["service_settings"]) == ordered(
        {"num_threads": 1, "model_id": ".multilingual-e5-small", "adaptive_allocations": adaptive}
    )


def test_elasticsearch_missing_model_id(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-no-model",
        es_body(model_id=None),
        400,
        "illegal_argument_exception",
        "Error parsing service settings, model_id must be provided",
    )


def test_elasticsearch_unknown_model_id(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-eland",
        es_body(model_id="my-eland-model"),
        400,
        "illegal_argument_exception",
        "Error parsing request config, model id does not match any models available on this platform. "
        "Was [my-eland-model]. You may need to load it into the cluster using eland.",
    )


def test_elasticsearch_missing_num_threads(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-no-threads",
        es_body(num_threads=None),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [num_threads];",
    )


def test_elasticsearch_neither_allocation_style(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-no-alloc",
        es_body(num_allocations=None),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain one of the required settings "
        "[num_allocations, adaptive_allocations];",
    )


def test_elasticsearch_invalid_numbers_are_all_reported(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/es-zero", json=es_body(num_allocations=0, num_threads=-1))
    error = assert_es_error(response, 400, "validation_exception")
    assert error["reason"].startswith("Validation Failed: 1: ")
    assert "[service_settings] Invalid value [0]. [num_allocations] must be a positive integer;" in error["reason"]
    assert "[service_settings] Invalid value [-1]. [num_threads] must be a positive integer;" in error["reason"]
    assert_absent(http, "es-zero")


def test_elasticsearch_wrong_type(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-type",
        es_body(num_threads="abc"),
        400,
        "validation_exception",
        "Validation Failed: 1: field [num_threads] is not of the expected type. "
        "The value [abc] cannot be converted to a [Integer];",
    )


def test_elasticsearch_adaptive_allocations_unknown_key(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-adaptive-foo",
        es_body(num_allocations=None, adaptive_allocations={"enabled": True, "foo": 1}),
        400,
        "validation_exception",
        "Validation Failed: 1: [adaptive_allocations] does not allow the setting [foo];",
    )


def test_elasticsearch_adaptive_allocations_min_above_max(http: httpx.Client) -> None:
    adaptive = {"enabled": True, "min_number_of_allocations": 5, "max_number_of_allocations": 2}
    put_error(
        http,
        "/_inference/text_embedding/es-min-max",
        es_body(num_allocations=None, adaptive_allocations=adaptive),
        400,
        "validation_exception",
        "Validation Failed: 1: [min_number_of_allocations] must not be larger than [max_number_of_allocations];",
    )


def test_elasticsearch_num_allocations_with_enabled_adaptive_allocations(http: httpx.Client) -> None:
    # ES's ML layer refuses this when the deployment starts; inferd refuses it earlier, while parsing
    # the settings, so it is a settings validation error (with ML's wording).
    put_error(
        http,
        "/_inference/text_embedding/es-both",
        es_body(num_allocations=2, adaptive_allocations={"enabled": True}),
        400,
        "validation_exception",
        "Validation Failed: 1: [number_of_allocations] cannot be set if adaptive allocations is enabled;",
    )


@pytest.mark.parametrize(
    ("task", "model_id", "supported"),
    [
        ("sparse_embedding", ".multilingual-e5-small", "text_embedding"),
        ("text_embedding", ".elser_model_2", "sparse_embedding"),
        ("rerank", ".multilingual-e5-small", "text_embedding"),
        ("text_embedding", ".rerank-v1", "rerank"),
    ],
)
def test_elasticsearch_model_does_not_serve_task(http: httpx.Client, task: str, model_id: str, supported: str) -> None:
    put_error(
        http,
        f"/_inference/{task}/es-wrong-task",
        es_body(model_id=model_id),
        400,
        "status_exception",
        f"Model [{model_id}] does not support task type [{task}]; it supports [{supported}]",
    )


def test_elasticsearch_completion_needs_a_generative_model(http: httpx.Client) -> None:
    # completion is an inferd extension of the elasticsearch service, served by the local chat model only.
    put_error(
        http,
        "/_inference/completion/es-completion",
        es_body(model_id=".rerank-v1"),
        400,
        "status_exception",
        "Model [.rerank-v1] does not support task type [completion]; it supports [rerank]",
    )


def test_elasticsearch_unknown_setting_names_the_service(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/text_embedding/es-unknown",
        es_body(foo=1),
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [elasticsearch] service",
    )


# -- task type resolution -----------------------------------------------------------------------


def test_task_type_from_url(http: httpx.Client) -> None:
    response = http.put("/_inference/completion/url-task", json=sample())
    assert response.status_code == 200, response.text
    assert response.json()["task_type"] == "completion"


def test_task_type_from_body_only(http: httpx.Client) -> None:
    response = http.put("/_inference/body-task", json=sample("rerank"))
    assert response.status_code == 200, response.text
    assert response.json()["task_type"] == "rerank"
    assert http.get("/_inference/rerank/body-task").json()["endpoints"][0]["task_type"] == "rerank"


@pytest.mark.parametrize("body_task", ["text_embedding", "TEXT_EMBEDDING", " Text_Embedding "])
def test_task_type_in_url_and_body_agree(http: httpx.Client, body_task: str) -> None:
    response = http.put("/_inference/text_embedding/both-task", json=sample(body_task))
    assert response.status_code == 200, response.text
    assert response.json()["task_type"] == "text_embedding"


def test_task_type_conflict(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/conflict-task",
        sample("rerank"),
        400,
        "status_exception",
        "Cannot resolve conflicting task_type parameter in the request URL [completion] and the request body [rerank]",
    )


def test_task_type_missing(http: httpx.Client) -> None:
    put_error(
        http, "/_inference/no-task", sample(), 400, "status_exception", "model is missing required setting [task_type]"
    )


def test_task_type_any_in_body(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/any-task",
        sample("any"),
        400,
        "status_exception",
        "task_type [any] is not valid type for inference",
    )


def test_unknown_task_type_in_body(http: httpx.Client) -> None:
    put_error(http, "/_inference/bogus-task", sample("bogus"), 400, "status_exception", "Unknown task_type [bogus]")


def test_unknown_task_type_in_url(http: httpx.Client) -> None:
    put_error(http, "/_inference/bogus/url-bogus", sample(), 400, "status_exception", "Unknown task_type [bogus]")


def test_service_does_not_support_task_type(http: httpx.Client) -> None:
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    put_error(
        http,
        "/_inference/completion/elser-completion",
        body,
        400,
        "status_exception",
        "The [elser] service does not support task type [completion]",
    )


# -- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad_id", ["My-Model", "-leading", "trailing-", "under_", "_under", "has space", "a*b"])
def test_invalid_inference_id(http: httpx.Client, bad_id: str) -> None:
    response = http.put(f"/_inference/completion/{bad_id.replace(' ', '%20')}", json=sample())
    assert_es_error(response, 400, "action_request_validation_exception", INVALID_ID.format(bad_id))


def test_dot_prefixed_id_fails_validation_before_reserved_check(http: httpx.Client) -> None:
    for inference_id in (".hidden", ".elser-2-elasticsearch"):
        response = http.put(f"/_inference/sparse_embedding/{inference_id}", json=sample())
        assert_es_error(response, 400, "action_request_validation_exception", INVALID_ID.format(inference_id))
    assert_es_error(
        http.get("/_inference/.hidden"), 404, "resource_not_found_exception", "Inference endpoint not found [.hidden]"
    )


@pytest.mark.parametrize("good_id", ["a", "0", "my.model.v2", "a-b_c.d-9"])
def test_valid_inference_ids(http: httpx.Client, good_id: str) -> None:
    response = http.put(f"/_inference/completion/{good_id}", json=sample())
    assert response.status_code == 200, response.text
    assert response.json()["inference_id"] == good_id


def test_reserved_id(http: httpx.Client) -> None:
    before = http.get("/_inference/test-default-completion").json()
    reason = (
        "[test-default-completion] is a reserved inference ID. "
        "Cannot create a new inference endpoint with a reserved ID."
    )
    assert_es_error(
        http.put("/_inference/completion/test-default-completion", json=sample()), 400, "status_exception", reason
    )
    # The reserved-id check comes before the task type resolution.
    assert_es_error(http.put("/_inference/test-default-completion", json=sample()), 400, "status_exception", reason)
    assert http.get("/_inference/test-default-completion").json() == before


# -- service and top-level body -----------------------------------------------------------------


def test_missing_service(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/no-service",
        {"service_settings": {"model": "m1", "api_key": SECRET}},
        400,
        "status_exception",
        "Inference endpoint configuration is missing the [service] setting",
    )


def test_unknown_service(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/unknown-service",
        {"service": "no-such-service", "service_settings": {}},
        400,
        "status_exception",
        "Unknown service [no-such-service]",
    )


def test_missing_service_settings(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/no-settings",
        {"service": "test_service"},
        400,
        "status_exception",
        "Missing required field [service_settings]",
    )


def test_unknown_top_level_key(http: httpx.Client) -> None:
    body = {**sample(), "foo": 1}
    put_error(
        http,
        "/_inference/completion/top-level",
        body,
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [test_service] service",
    )


def test_response_is_the_bare_endpoint(http: httpx.Client) -> None:
    response = http.put("/_inference/completion/bare", json=sample())
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["inference_id", "task_type", "service", "service_settings"]
    assert body["inference_id"] == "bare"
    assert body["service"] == "test_service"
    assert body["service_settings"]["model"] == "m1"
    assert SECRET not in response.text
    assert "api_key" not in response.text


# -- strict settings validation -----------------------------------------------------------------


def test_every_problem_is_collected(http: httpx.Client) -> None:
    body = {"service": "test_service", "service_settings": {"dimensions": 0, "similarity": "bad"}}
    put_error(
        http,
        "/_inference/text_embedding/many-problems",
        body,
        400,
        "validation_exception",
        "Validation Failed: "
        "1: [service_settings] does not contain the required setting [model];"
        "2: [service_settings] Invalid value [0]. [dimensions] must be a positive integer;"
        "3: [service_settings] Invalid value [bad] received. "
        "[similarity] must be one of [cosine, dot_product, l2_norm];"
        "4: [secret_settings] does not contain the required setting [api_key];",
    )


@pytest.mark.parametrize(
    ("key", "value", "shown", "java_type"),
    [
        ("dimensions", "abc", "abc", "Integer"),
        ("dimensions", 1.5, "1.5", "Integer"),
        ("dimensions", 3000000000, "3000000000", "Integer"),
        ("model", 5, "5", "String"),
        ("api_key", True, "true", "String"),
    ],
)
def test_wrong_types(http: httpx.Client, key: str, value: Any, shown: str, java_type: str) -> None:
    put_error(
        http,
        "/_inference/text_embedding/wrong-type",
        sample(**{key: value}),
        400,
        "validation_exception",
        f"Validation Failed: 1: field [{key}] is not of the expected type. "
        f"The value [{shown}] cannot be converted to a [{java_type}];",
    )


def test_empty_string_setting(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/empty-model",
        sample(model=""),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value empty string. [model] must be a non-empty string;",
    )


def test_unknown_service_setting(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/unknown-setting",
        sample(foo=1),
        400,
        "status_exception",
        "Configuration contains settings [{foo=1}] unknown to the [test_service] service",
    )


def test_unknown_task_setting(http: httpx.Client) -> None:
    body = {**sample(), "task_settings": {"bar": "x"}}
    put_error(
        http,
        "/_inference/text_embedding/unknown-task-setting",
        body,
        400,
        "status_exception",
        "Configuration contains settings [{bar=x}] unknown to the [test_service] service",
    )


def test_validation_errors_come_before_unknown_settings(http: httpx.Client) -> None:
    put_error(
        http,
        "/_inference/completion/both-problems",
        sample(dimensions=0, foo=1),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [0]. [dimensions] must be a positive integer;",
    )


def test_secret_is_accepted_but_never_echoed(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/secret-put", json=sample())
    assert response.status_code == 200, response.text
    assert SECRET not in response.text
    assert SECRET not in http.get("/_inference/secret-put").text
    assert SECRET not in http.get("/_inference").text


def test_defaults_are_echoed(http: httpx.Client) -> None:
    response = http.put("/_inference/text_embedding/echo-defaults", json=sample())
    assert response.status_code == 200, response.text
    settings = response.json()["service_settings"]
    assert settings == {"model": "m1", "dimensions": 8, "rate_limit": {"requests_per_minute": 3000}}


# -- chunking_settings --------------------------------------------------------------------------


def put_chunking(
    http: httpx.Client, chunking: Any, task: str = "text_embedding", inference_id: str = "chunky"
) -> httpx.Response:
    return http.put(f"/_inference/{task}/{inference_id}", json={**sample(), "chunking_settings": chunking})


@pytest.mark.parametrize("task", ["text_embedding", "sparse_embedding"])
def test_chunking_absent_defaults_to_sentence(http: httpx.Client, task: str) -> None:
    response = http.put(f"/_inference/{task}/chunk-absent", json=sample())
    assert response.status_code == 200, response.text
    assert ordered(response.json()["chunking_settings"]) == ordered(SENTENCE_DEFAULT)


def test_chunking_empty_object_defaults_to_sentence(http: httpx.Client) -> None:
    response = put_chunking(http, {})
    assert response.status_code == 200, response.text
    assert ordered(response.json()["chunking_settings"]) == ordered(SENTENCE_DEFAULT)


PLAINTEXT = ["(?<!\\n)\\n\\n(?!\\n)", "(?<!\\n)\\n(?!\\n)"]
# SeparatorGroup.MARKDOWN in Elasticsearch's x-pack core chunking package.
MARKDOWN = [
    "\n# ",
    "\n## ",
    "\n### ",
    "\n#### ",
    "\n##### ",
    "\n###### ",
    "\n^(?!\\s*$).*\\n-{1,}\\n",
    "\n^(?!\\s*$).*\\n={1,}\\n",
]


@pytest.mark.parametrize(
    ("chunking", "stored"),
    [
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 50},
            {"strategy": "word", "max_chunk_size": 100, "overlap": 50},
        ),
        (
            {"overlap": 1, "max_chunk_size": 10, "strategy": "word"},
            {"strategy": "word", "max_chunk_size": 10, "overlap": 1},
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 20, "sentence_overlap": 0},
            {"strategy": "sentence", "max_chunk_size": 20, "sentence_overlap": 0},
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 300},
            {"strategy": "sentence", "max_chunk_size": 300, "sentence_overlap": 1},
        ),
        ({"strategy": "none"}, {"strategy": "none"}),
        (
            {"strategy": "recursive", "max_chunk_size": 100},
            {"strategy": "recursive", "max_chunk_size": 100, "separators": PLAINTEXT},
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separator_group": " Markdown "},
            {"strategy": "recursive", "max_chunk_size": 100, "separators": MARKDOWN},
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 10, "separators": ["\n\n", ". "]},
            {"strategy": "recursive", "max_chunk_size": 10, "separators": ["\n\n", ". "]},
        ),
    ],
    ids=["word", "word-min", "sentence-0", "sentence-default-overlap", "none", "recursive", "markdown", "separators"],
)
def test_chunking_valid_forms(http: httpx.Client, chunking: dict[str, Any], stored: dict[str, Any]) -> None:
    response = put_chunking(http, chunking)
    assert response.status_code == 200, response.text
    assert ordered(response.json()["chunking_settings"]) == ordered(stored)
    assert ordered(http.get("/_inference/chunky").json()["endpoints"][0]["chunking_settings"]) == ordered(stored)


@pytest.mark.parametrize(
    ("chunking", "es_type", "reason"),
    [
        (
            {"max_chunk_size": 250},
            "illegal_argument_exception",
            "Can't generate Chunker without ChunkingStrategy provided",
        ),
        (
            {"strategy": "Word", "max_chunk_size": 100, "overlap": 10},
            "illegal_argument_exception",
            "Invalid chunkingStrategy Word",
        ),
        ({"strategy": "paragraph"}, "illegal_argument_exception", "Invalid chunkingStrategy paragraph"),
        ({"strategy": 5}, "illegal_argument_exception", "Invalid chunkingStrategy 5"),
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 10, "foo": 1},
            "validation_exception",
            "Validation Failed: 1: Word based chunking settings can not have the following settings: [foo];",
        ),
        (
            {"strategy": "word", "overlap": 10},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] does not contain the required setting [max_chunk_size];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 0, "overlap": 10},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [0]. [max_chunk_size] must be a positive integer;",
        ),
        (
            {"strategy": "word", "max_chunk_size": 5},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [5.0]. "
            "[max_chunk_size] must be a greater than or equal to [10.0];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 301, "overlap": 10},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [301.0]. "
            "[max_chunk_size] must be a less than or equal to [300.0];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 100},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] does not contain the required setting [overlap];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 100, "overlap": 0},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [0]. [overlap] must be a positive integer;",
        ),
        (
            {"strategy": "word", "max_chunk_size": 250, "overlap": 130},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [130.0]. "
            "[overlap] must be a less than or equal to [125.0];",
        ),
        (
            {"strategy": "word", "max_chunk_size": 101, "overlap": 51},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [51.0]. "
            "[overlap] must be a less than or equal to [50.0];",
        ),
        (
            {"strategy": "word", "max_chunk_size": "big", "overlap": 10},
            "validation_exception",
            "Validation Failed: 1: field [max_chunk_size] is not of the expected type. "
            "The value [big] cannot be converted to a [Integer];",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 100, "overlap": 10},
            "validation_exception",
            "Validation Failed: 1: Sentence based chunking settings can not have the following settings: [overlap];",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 10},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [10.0]. "
            "[max_chunk_size] must be a greater than or equal to [20.0];",
        ),
        (
            {"strategy": "sentence"},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] does not contain the required setting [max_chunk_size];",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": 2},
            "validation_exception",
            "Validation Failed: 1: sentence_overlap[2] must be either 0 or 1;",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 100, "sentence_overlap": "x"},
            "validation_exception",
            "Validation Failed: 1: field [sentence_overlap] is not of the expected type. "
            "The value [x] cannot be converted to a [Integer];",
        ),
        (
            {"strategy": "sentence", "max_chunk_size": 301, "sentence_overlap": 2},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [301.0]. "
            "[max_chunk_size] must be a less than or equal to [300.0];2: sentence_overlap[2] must be either 0 or 1;",
        ),
        (
            {"strategy": "none", "max_chunk_size": 100},
            "validation_exception",
            "Validation Failed: 1: When chunking is disabled (none), settings can not have the following: "
            "[max_chunk_size];",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "overlap": 5},
            "validation_exception",
            "Validation Failed: 1: Recursive chunking settings can not have the following settings: [overlap];",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 5},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [5.0]. "
            "[max_chunk_size] must be a greater than or equal to [10.0];",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separator_group": "html"},
            "validation_exception",
            "Validation Failed: 1: [chunking_settings] Invalid value [html] received. "
            "[separator_group] must be one of [markdown, plaintext];",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["a", 1]},
            "validation_exception",
            "Validation Failed: 1: field [separators] is not of the expected type. "
            "The value [1] cannot be converted to a [String];",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": ["a"], "separator_group": "markdown"},
            "validation_exception",
            "Validation Failed: 1: Recursive chunking settings can not have both separators and separator_set;",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": []},
            "validation_exception",
            "Validation Failed: 1: Recursive chunking settings can not have an empty list of separators;",
        ),
        (
            {"strategy": "recursive", "max_chunk_size": 100, "separators": [f"s{i}" for i in range(51)]},
            "validation_exception",
            "Validation Failed: 1: separators list size [51] must not exceed [50];",
        ),
    ],
)
def test_chunking_errors(http: httpx.Client, chunking: dict[str, Any], es_type: str, reason: str) -> None:
    assert_es_error(put_chunking(http, chunking), 400, es_type, reason)
    assert_absent(http, "chunky")


@pytest.mark.parametrize("task", ["rerank", "completion"])
def test_chunking_not_accepted_for_tasks_without_chunking(http: httpx.Client, task: str) -> None:
    response = put_chunking(http, {"strategy": "none"}, task=task)
    assert_es_error(
        response,
        400,
        "status_exception",
        "Configuration contains settings [{chunking_settings={strategy=none}}] unknown to the [test_service] service",
    )
    assert_absent(http, "chunky")


def test_chunking_not_accepted_for_elasticsearch_rerank(http: httpx.Client) -> None:
    body = {**es_body(model_id=".rerank-v1"), "chunking_settings": {"strategy": "none"}}
    put_error(
        http,
        "/_inference/rerank/es-rerank-chunk",
        body,
        400,
        "status_exception",
        "Configuration contains settings [{chunking_settings={strategy=none}}] unknown to the [elasticsearch] service",
    )


def test_elasticsearch_chunking_settings(http: httpx.Client) -> None:
    body = {**es_body(), "chunking_settings": {"strategy": "word", "max_chunk_size": 120, "overlap": 40}}
    response = http.put("/_inference/text_embedding/es-chunk", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["chunking_settings"] == {"strategy": "word", "max_chunk_size": 120, "overlap": 40}


# -- timeout, duplicates, races -----------------------------------------------------------------


@pytest.mark.parametrize("timeout", ["10s", "1m", "500ms", "-1"])
def test_timeout_param_accepted(http: httpx.Client, timeout: str) -> None:
    response = http.put("/_inference/completion/with-timeout", params={"timeout": timeout}, json=sample())
    assert response.status_code == 200, response.text
    assert response.json()["inference_id"] == "with-timeout"


def test_bad_timeout_param(http: httpx.Client) -> None:
    response = http.put("/_inference/completion/bad-timeout", params={"timeout": "abc"}, json=sample())
    assert_es_error(
        response,
        400,
        "illegal_argument_exception",
        "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized",
    )
    assert_absent(http, "bad-timeout")


def test_already_exists(http: httpx.Client) -> None:
    first = http.put("/_inference/completion/dup", json=sample(model="first"))
    assert first.status_code == 200, first.text
    for path, body in [
        ("/_inference/completion/dup", sample(model="second")),
        ("/_inference/text_embedding/dup", sample(model="second")),
        ("/_inference/dup", sample("rerank", model="second")),
    ]:
        assert_es_error(
            http.put(path, json=body),
            400,
            "resource_already_exists_exception",
            "Inference endpoint [dup] already exists",
        )
    assert http.get("/_inference/dup").json() == {"endpoints": [first.json()]}


def test_concurrent_puts_of_one_id(server: RunningServer, http: httpx.Client) -> None:
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def put(n: int) -> None:
        with server.http() as client:
            barrier.wait()
            response = client.put("/_inference/completion/race", json=sample(model=f"model-{n}"))
        with lock:
            results.append(response)

    threads = [threading.Thread(target=put, args=(n,)) for n in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == workers
    winners = [r for r in results if r.status_code == 200]
    assert len(winners) == 1, [r.text for r in results]
    for loser in (r for r in results if r.status_code != 200):
        assert_es_error(loser, 400, "resource_already_exists_exception", "Inference endpoint [race] already exists")
    stored = http.get("/_inference/race").json()["endpoints"]
    assert stored == [winners[0].json()]
