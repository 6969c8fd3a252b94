"""The cohere service against a fake Cohere API v2 on loopback, through the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.core.errors import StatusError, UpstreamError
from inferd.services.cohere import (
    CohereService,
    endpoint_url,
    parse_chat,
    parse_embeddings,
    parse_rerank,
    stream_deltas,
)
from tests.conftest import assert_es_error
from tests.fakes.cohere import API_KEY, DEFAULT_DIMENSIONS, FakeCohere, floats, int8s, packed_bits, relevance
from tests.support.providers import (
    MAX_RETRIES,
    api_key_configuration,
    assert_completion_stream_is_byte_exact,
    assert_connection_refused,
    assert_creation_fails,
    assert_disconnect_cancels_upstream,
    assert_rate_limit_holds,
    assert_request_timeout,
    assert_retry_after_is_waited_out,
    assert_ssrf_guard_refuses,
    client_for,
    dimensions_mismatch,
    error_event,
    first_delta_then_error,
    put,
    put_without_validation,
    serve_fake,
    serve_inferd,
    services_entry,
)
from tests.support.servers import PASSWORD, RunningServer, free_port

EMBED_MODEL = "embed-english-v3.0"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeCohere]:
    yield from serve_fake(FakeCohere())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "cohere")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeCohere) -> Iterator[httpx.Client]:
    yield from client_for(inferd, fake, "cohere")


def config(
    fake: FakeCohere, model_id: str = EMBED_MODEL, task_settings: dict[str, Any] | None = None, **settings: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": "cohere",
        "service_settings": {"api_key": API_KEY, "model_id": model_id, "url": fake.url, **settings},
    }
    if task_settings is not None:
        body["task_settings"] = task_settings
    return body


def post(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(path, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_learns_dimensions(http: httpx.Client, fake: FakeCohere) -> None:
    created = put(http, "/_inference/text_embedding/co-emb", config(fake))
    assert created["service_settings"] == {
        "url": fake.url,
        "similarity": "dot_product",
        "dimensions": DEFAULT_DIMENSIONS,
        "model_id": EMBED_MODEL,
        "rate_limit": {"requests_per_minute": 10000},
        "embedding_type": "float",
    }
    (call,) = fake.requests
    assert call.path == "/v2/embed"
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["request-source"] == "unspecified:elasticsearch"
    # ES validates an embedding endpoint as ingest.
    assert call.body == {
        "texts": ["how big"],
        "model": EMBED_MODEL,
        "input_type": "search_document",
        "embedding_types": ["float"],
    }
    got = http.get("/_inference/co-emb").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)


@pytest.mark.parametrize(
    ("given", "shown", "wire", "key", "dims"),
    [
        ("int8", "byte", "int8", "text_embedding_bytes", DEFAULT_DIMENSIONS),
        ("byte", "byte", "int8", "text_embedding_bytes", DEFAULT_DIMENSIONS),
        ("binary", "bit", "binary", "text_embedding_bits", DEFAULT_DIMENSIONS),
        ("bit", "bit", "binary", "text_embedding_bits", DEFAULT_DIMENSIONS),
    ],
)
def test_byte_and_bit_embeddings(
    http: httpx.Client, fake: FakeCohere, given: str, shown: str, wire: str, key: str, dims: int
) -> None:
    created = put(http, "/_inference/text_embedding/co-typed", config(fake, embedding_type=given))
    assert created["service_settings"]["embedding_type"] == shown
    # Bit embeddings come packed, 8 dimensions a byte; the endpoint's dimensions count bits.
    assert created["service_settings"]["dimensions"] == dims
    result = post(http, "/_inference/text_embedding/co-typed", {"input": ["a", "b"]})
    expected = [int8s(t) for t in "ab"] if shown == "byte" else [packed_bits(t) for t in "ab"]
    assert result == {key: [{"embedding": e} for e in expected]}
    assert fake.requests[-1].body["embedding_types"] == [wire]


def test_url_override_keeps_only_scheme_host_and_port(http: httpx.Client, fake: FakeCohere) -> None:
    url = f"{fake.url}/some/prefix?region=eu"
    created = put(http, "/_inference/text_embedding/co-url", config(fake, url=url))
    assert created["service_settings"]["url"] == url
    post(http, "/_inference/text_embedding/co-url", {"input": "x"})
    assert [r.path for r in fake.requests] == ["/v2/embed", "/v2/embed"]


def test_a_size_that_does_not_match_the_declared_dimensions_is_refused(http: httpx.Client, fake: FakeCohere) -> None:
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/co-mismatch", config(fake, dimensions=4))
    assert caused_by["reason"] == dimensions_mismatch(DEFAULT_DIMENSIONS, 4, "co-mismatch")


def test_a_bad_key_at_creation_is_an_es_error(http: httpx.Client, fake: FakeCohere) -> None:
    caused_by = assert_creation_fails(
        http, "/_inference/rerank/co-badkey", config(fake, "rerank-v3.5", api_key="wrong")
    )
    assert caused_by["type"] == "status_exception"
    assert caused_by["reason"] == (
        "Received an authentication error status code for request from inference entity id [co-badkey] "
        "status [401]. Error message: [invalid api token]"
    )


def test_validation_can_be_skipped(tmp_path: Path, fake: FakeCohere) -> None:
    fake.requests.clear()
    created = put_without_validation(tmp_path, "/_inference/text_embedding/co-skip", config(fake))
    assert fake.requests == []
    assert "dimensions" not in created["service_settings"]


def test_settings_are_checked_with_es_messages(http: httpx.Client, fake: FakeCohere) -> None:
    no_model = {"service": "cohere", "service_settings": {"api_key": API_KEY}}
    assert_es_error(
        http.put("/_inference/completion/co-bad", json=no_model),
        400,
        "validation_exception",
        "Validation Failed: 1: The [service_settings.model_id] field is required for the Cohere V2 API.;",
    )
    assert_es_error(
        http.put("/_inference/text_embedding/co-bad", json=config(fake, embedding_type="int4")),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [int4] received. [embedding_type] must be one of "
        "[binary, bit, byte, float, int8];",
    )
    assert_es_error(
        http.put(
            "/_inference/text_embedding/co-bad",
            json=config(fake, task_settings={"input_type": "query", "truncate": "middle"}),
        ),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] Invalid value [query] received. [input_type] must be one of "
        "[classification, clustering, ingest, search];"
        "2: [task_settings] Invalid value [middle] received. [truncate] must be one of [END, NONE, START];",
    )
    assert_es_error(
        http.put("/_inference/rerank/co-bad", json=config(fake, task_settings={"top_n": 0})),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] Invalid value [0]. [top_n] must be a positive integer;",
    )
    assert_es_error(
        http.put("/_inference/completion/co-bad", json=config(fake, similarity="cosine")),
        400,
        "status_exception",
        "Configuration contains settings [{similarity=cosine}] unknown to the [cohere] service",
    )
    assert_es_error(
        http.put("/_inference/sparse_embedding/co-bad", json=config(fake)),
        400,
        "status_exception",
        "The [cohere] service does not support task type [sparse_embedding]",
    )
    assert fake.requests == []
    assert http.get("/_inference/co-bad").status_code == 404


def test_the_deprecated_model_key_still_names_the_model(http: httpx.Client, fake: FakeCohere) -> None:
    body = config(fake, "command-r")
    body["service_settings"]["model"] = body["service_settings"].pop("model_id")
    created = put(http, "/_inference/completion/co-alias", body)
    assert created["service_settings"]["model_id"] == "command-r"
    assert "model" not in created["service_settings"]
    assert fake.requests[-1].body["model"] == "command-r"


def test_update_changes_only_what_es_allows(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/rerank/co-upd", config(fake, "rerank-v3.5"))
    response = http.put(
        "/_inference/co-upd/_update",
        json={"service_settings": {"rate_limit": {"requests_per_minute": 50}, "api_key": "rotated"}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"]["rate_limit"] == {"requests_per_minute": 50}
    assert "rotated" not in response.text
    assert_es_error(
        http.put("/_inference/co-upd/_update", json={"service_settings": {"model_id": "rerank-v4"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [model_id] cannot be updated;",
    )
    fake.requests.clear()
    # The new key is what is sent now; the fake refuses it.
    error = assert_es_error(
        http.post("/_inference/rerank/co-upd", json={"input": ["a"], "query": "q"}), 401, "status_exception"
    )
    assert error["reason"].endswith("status [401]. Error message: [invalid api token]")
    assert fake.requests[-1].headers["authorization"] == "Bearer rotated"


# -- text embedding ----------------------------------------------------------------------------


def test_input_type_and_truncate_reach_cohere(http: httpx.Client, fake: FakeCohere) -> None:
    put(
        http,
        "/_inference/text_embedding/co-itype",
        config(fake, task_settings={"input_type": "Ingest", "truncate": "end"}),
    )
    shown = http.get("/_inference/co-itype").json()["endpoints"][0]["task_settings"]
    assert shown == {"input_type": "ingest", "truncate": "END"}

    def sent(request: dict[str, Any]) -> dict[str, Any]:
        post(http, "/_inference/text_embedding/co-itype", {"input": ["x", "y"], **request})
        return dict(fake.requests[-1].body)

    assert sent({}) == {
        "texts": ["x", "y"],
        "model": EMBED_MODEL,
        "input_type": "search_document",
        "embedding_types": ["float"],
        "truncate": "END",
    }
    # The request's input_type wins over the task settings; request task_settings override stored ones.
    assert sent({"input_type": "search"})["input_type"] == "search_query"
    assert sent({"input_type": "classification"})["input_type"] == "classification"
    assert sent({"task_settings": {"input_type": "clustering", "truncate": "NONE"}}) == {
        "texts": ["x", "y"],
        "model": EMBED_MODEL,
        "input_type": "clustering",
        "embedding_types": ["float"],
        "truncate": "NONE",
    }


def test_without_an_input_type_cohere_gets_search_query(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/text_embedding/co-noitype", config(fake))
    result = post(http, "/_inference/text_embedding/co-noitype", {"input": ["a", "b", "c"]})
    assert result == {"text_embedding": [{"embedding": floats(t)} for t in "abc"]}
    assert fake.requests[-1].body["input_type"] == "search_query"
    assert "truncate" not in fake.requests[-1].body


def test_inputs_are_split_to_the_cap_of_96_and_stitched(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/text_embedding/co-batch", config(fake))
    fake.requests.clear()
    texts = [f"t{i}" for i in range(200)]
    result = post(http, "/_inference/text_embedding/co-batch", {"input": texts})
    assert sorted(len(r.body["texts"]) for r in fake.requests) == [8, 96, 96]
    assert [e["embedding"] for e in result["text_embedding"]] == [floats(t) for t in texts]


# -- rerank --------------------------------------------------------------------------------------

DOCS = ["the capital of France is Paris", "Berlin is in Germany", "Paris is the capital of France", "bananas"]
QUERY = "capital of France"


def ranked(top_n: int | None = None, *, with_text: bool = False) -> list[dict[str, Any]]:
    order = sorted(range(len(DOCS)), key=lambda i: -relevance(QUERY, DOCS[i]))[:top_n]
    out = []
    for i in order:
        item: dict[str, Any] = {"index": i, "relevance_score": relevance(QUERY, DOCS[i])}
        if with_text:
            item["text"] = DOCS[i]
        out.append(item)
    return out


def test_rerank(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/rerank/co-rerank", config(fake, "rerank-v3.5"))
    assert fake.requests[-1].path == "/v2/rerank"
    assert fake.requests[-1].body == {"model": "rerank-v3.5", "query": "test query", "documents": ["how big"]}
    result = post(http, "/_inference/rerank/co-rerank", {"input": DOCS, "query": QUERY})
    assert result == {"rerank": ranked()}
    assert [r["index"] for r in result["rerank"]][:2] in ([0, 2], [2, 0])
    assert fake.requests[-1].body == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS}


def test_rerank_task_settings_and_request_fields(http: httpx.Client, fake: FakeCohere) -> None:
    task = {"return_documents": True, "top_n": 2, "max_chunks_per_doc": 3}
    put(http, "/_inference/rerank/co-rerank-ts", config(fake, "rerank-v3.5", task_settings=task))
    result = post(http, "/_inference/rerank/co-rerank-ts", {"input": DOCS, "query": QUERY})
    assert result == {"rerank": ranked(2, with_text=True)}
    assert fake.requests[-1].body == {"model": "rerank-v3.5", "query": QUERY, "documents": DOCS, **task}
    # The request's top_n and return_documents win over the task settings.
    result = post(
        http, "/_inference/rerank/co-rerank-ts", {"input": DOCS, "query": QUERY, "top_n": 3, "return_documents": False}
    )
    assert result == {"rerank": ranked(3)}
    assert fake.requests[-1].body == {
        "model": "rerank-v3.5",
        "query": QUERY,
        "documents": DOCS,
        "return_documents": False,
        "top_n": 3,
        "max_chunks_per_doc": 3,
    }


def test_rerank_sorts_and_fills_text_when_cohere_leaves_documents_out(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/rerank/co-rerank-v2", config(fake, "rerank-v3.5"))
    # Cohere's newest v2 answers no documents; results are sorted by score even if the answer is not.
    fake.then(200, {"id": "r", "results": [{"index": 1, "relevance_score": 0.2}, {"index": 0, "relevance_score": 0.9}]})
    result = post(
        http, "/_inference/rerank/co-rerank-v2", {"input": ["a", "b"], "query": "q", "return_documents": True}
    )
    assert result == {
        "rerank": [{"index": 0, "relevance_score": 0.9, "text": "a"}, {"index": 1, "relevance_score": 0.2, "text": "b"}]
    }


# -- completion ----------------------------------------------------------------------------------


def test_completion(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/completion/co-chat", config(fake, "command-r-plus"))
    assert fake.requests[-1].path == "/v2/chat"
    result = post(http, "/_inference/completion/co-chat", {"input": "hello there"})
    assert result == {"completion": [{"result": "HELLO THERE"}]}
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello there"}],
        "model": "command-r-plus",
        "stream": False,
    }
    assert_es_error(
        http.post("/_inference/completion/co-chat", json={"input": ["a", "b"]}),
        400,
        "status_exception",
        "Cohere completion only accepts 1 input, received [2]",
    )


def test_the_official_client_calls_every_task(inferd: RunningServer, fake: FakeCohere) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD))
    try:
        client.inference.put(task_type="text_embedding", inference_id="co-c-emb", inference_config=config(fake))
        assert client.inference.text_embedding(inference_id="co-c-emb", input=["hi"]).body == {
            "text_embedding": [{"embedding": floats("hi")}]
        }
        client.inference.put(task_type="rerank", inference_id="co-c-rr", inference_config=config(fake, "rerank-v3.5"))
        assert client.inference.rerank(inference_id="co-c-rr", input=DOCS, query=QUERY).body == {"rerank": ranked()}
        client.inference.put(task_type="completion", inference_id="co-c-chat", inference_config=config(fake, "c"))
        assert client.inference.completion(inference_id="co-c-chat", input="yo").body == {
            "completion": [{"result": "YO"}]
        }
        got = client.inference.get(inference_id="co-c-emb").body["endpoints"][0]
        assert got["service"] == "cohere" and API_KEY not in json.dumps(got)
    finally:
        for inference_id in ("co-c-emb", "co-c-rr", "co-c-chat"):
            client.options(ignore_status=404).inference.delete(inference_id=inference_id)
        client.close()


# -- failures ------------------------------------------------------------------------------------


UNSUCCESSFUL = "Received an unsuccessful status code"
TOO_MANY_TEXTS = "invalid request: total number of texts must be at most 96 - received 97"


@pytest.mark.parametrize(
    ("status", "message", "wording"),
    [
        (400, "invalid request: input_type is invalid", UNSUCCESSFUL),
        (404, "model 'x' not found", UNSUCCESSFUL),
        (403, "forbidden", UNSUCCESSFUL),
        (422, "unprocessable", UNSUCCESSFUL),
        (413, "too large", UNSUCCESSFUL),
        (400, TOO_MANY_TEXTS, "Received a texts array too large response"),
    ],
)
def test_upstream_4xx_passes_through_in_es_cohere_words(
    http: httpx.Client, fake: FakeCohere, status: int, message: str, wording: str
) -> None:
    put(http, "/_inference/text_embedding/co-4xx", config(fake))
    fake.requests.clear()
    fake.then(status, {"id": "e", "message": message})
    assert_es_error(
        http.post("/_inference/text_embedding/co-4xx", json={"input": "x"}),
        status,
        "status_exception",
        f"{wording} for request from inference entity id [co-4xx] status [{status}]. Error message: [{message}]",
    )
    assert len(fake.requests) == 1  # not retried


def test_upstream_5xx_becomes_400_after_bounded_retries(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/rerank/co-500", config(fake, "rerank-v3.5"))
    fake.requests.clear()
    fake.then(500, {"id": "e", "message": "internal server error"}, times=10)
    assert_es_error(
        http.post("/_inference/rerank/co-500", json={"input": ["a"], "query": "q"}),
        400,
        "status_exception",
        "Received a server error status code for request from inference entity id [co-500] status [500]. "
        "Error message: [internal server error]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


@pytest.mark.parametrize("status", [502, 503, 529])
def test_other_5xx_are_not_retried(http: httpx.Client, fake: FakeCohere, status: int) -> None:
    # ES's Cohere handler retries 429 and 500 only.
    put(http, "/_inference/rerank/co-5xx", config(fake, "rerank-v3.5"))
    fake.requests.clear()
    fake.then(status, {"id": "e", "message": "unavailable"}, times=10)
    assert_es_error(
        http.post("/_inference/rerank/co-5xx", json={"input": ["a"], "query": "q"}),
        400,
        "status_exception",
        f"Received a server error status code for request from inference entity id [co-5xx] status [{status}]. "
        "Error message: [unavailable]",
    )
    assert len(fake.requests) == 1


def test_a_429_that_persists_is_a_429_after_bounded_retries(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/text_embedding/co-429s", config(fake))
    fake.requests.clear()
    fake.then(429, {"id": "e", "message": "slow down"}, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/co-429s", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code for request from inference entity id [co-429s] status [429]. "
        "Error message: [slow down]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeCohere) -> None:
    rate_limited = {"id": "e", "message": "You are using a Trial key"}
    assert_retry_after_is_waited_out(http, fake, "/_inference/text_embedding/co-429", config(fake), rate_limited)


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeCohere) -> None:
    late = {"message": {"content": [{"type": "text", "text": "late"}]}}
    assert_request_timeout(http, fake, "/_inference/completion/co-slow", config(fake, "c"), late)


def test_malformed_and_incomplete_answers(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/text_embedding/co-garbled", config(fake))
    fake.then(200, raw=b"{not json", times=10)
    error = assert_es_error(
        http.post("/_inference/text_embedding/co-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith("Failed to send Cohere embeddings request. Cause: the response is not valid JSON")
    fake.script.clear()
    fake.then(200, {"id": "x", "texts": ["x"]})
    assert_es_error(
        http.post("/_inference/text_embedding/co-garbled", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [embeddings] in Cohere embeddings response",
    )
    fake.then(200, {"id": "x", "embeddings": {"uint8": [[1, 2]]}})
    assert_es_error(
        http.post("/_inference/text_embedding/co-garbled", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find a supported embedding type in the Cohere embeddings response. "
        "Supported types are [binary, float, int8]",
    )


def test_connection_refused(http: httpx.Client, fake: FakeCohere) -> None:
    body = config(fake, url=f"http://127.0.0.1:{free_port()}")
    cause = "Failed to send Cohere embeddings request. Cause:"
    assert_connection_refused(http, "/_inference/text_embedding/co-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeCohere) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/text_embedding/co-rpm", config(fake))


# -- streaming -----------------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeCohere) -> None:
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/co-stream", config(fake, "command-r"))
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello big world"}],
        "model": "command-r",
        "stream": True,
    }


def test_a_stream_that_cohere_ends_with_an_error_is_an_error_event(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/completion/co-break", config(fake, "command-r"))
    error = first_delta_then_error(http.post("/_inference/co-break/_stream", json={"input": "one BREAK two"}))
    assert error["status"] == 500
    assert error["error"]["type"] == "status_exception"
    assert error["error"]["reason"] == (
        "Cohere stopped the stream due to an error: internal error while generating the response"
    )


def test_a_failure_before_the_stream_starts_keeps_its_status(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/completion/co-early", config(fake, "command-r"))
    fake.then(400, {"id": "e", "message": "invalid request: message must not be empty"})
    response = http.post("/_inference/completion/co-early/_stream", json={"input": "x"})
    assert response.status_code == 400
    assert error_event(response)["error"]["reason"] == (
        "Received an unsuccessful status code for request from inference entity id [co-early] status [400]. "
        "Error message: [invalid request: message must not be empty]"
    )


def test_streaming_other_tasks_is_not_allowed(http: httpx.Client, fake: FakeCohere) -> None:
    put(http, "/_inference/rerank/co-nostream", config(fake, "rerank-v3.5"))
    response = http.post("/_inference/rerank/co-nostream/_stream", json={"input": ["a"], "query": "q"})
    assert response.status_code == 405
    assert error_event(response)["error"]["reason"] == (
        "Streaming is not allowed for service [cohere] and task [rerank]. Supported tasks: [completion]"
    )


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeCohere, http: httpx.Client
) -> None:
    body = config(fake, "command-r")
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(inferd, fake, http, "/_inference/completion/co-cancel", body, request)


# -- guard and catalog ---------------------------------------------------------------------------


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeCohere) -> None:
    fake.requests.clear()
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/rerank/co-ssrf",
        lambda url: config(fake, "rerank-v3.5", url=url),
        [
            (fake.url, "127.0.0.1"),
            ("http://169.254.169.254", "169.254.169.254"),
            ("http://192.168.1.20:8080/v2", "192.168.1.20"),
        ],
    )
    assert fake.requests == []


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "cohere")
    assert entry["name"] == "Cohere"
    assert entry["task_types"] == ["text_embedding", "rerank", "completion"]
    configurations = entry["configurations"]
    assert configurations["api_key"] == api_key_configuration(["text_embedding", "rerank", "completion"])
    assert configurations["model_id"] == {
        "description": "The name of the model to use for the inference task.",
        "label": "Model ID",
        "required": False,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": ["text_embedding", "rerank", "completion"],
    }
    limit = configurations["rate_limit.requests_per_minute"]
    assert (limit["type"], limit["required"], limit["supported_task_types"]) == (
        "int",
        False,
        ["text_embedding", "rerank", "completion"],
    )
    assert configurations["embedding_type"]["supported_task_types"] == ["text_embedding"]


# -- wire helpers (no sockets) -------------------------------------------------------------------


def test_endpoint_urls() -> None:
    assert endpoint_url(None, "rerank") == "https://api.cohere.ai/v2/rerank"
    assert endpoint_url("https://user:pw@proxy.example:8443/cohere/v1?x=1#f", "chat") == (
        "https://user:pw@proxy.example:8443/v2/chat"
    )


def test_answer_parsers_report_what_is_missing() -> None:
    assert parse_embeddings({"embeddings": [[1, 0.5]]}, "float") == [[1.0, 0.5]]  # the v1 float array
    with pytest.raises(StatusError, match=r"^Value \[128\] is out of range for a byte$"):
        parse_embeddings({"embeddings": {"int8": [[127, 128]]}}, "byte")
    with pytest.raises(StatusError, match=r"^Failed to find required field \[results\] in Cohere rerank response$"):
        parse_rerank({"id": "x"}, ["a"], None)
    with pytest.raises(StatusError, match=r"^Failed to find required field \[relevance_score\] in Cohere rerank"):
        parse_rerank({"results": [{"index": 0}]}, ["a"], None)
    thinking_first = [{"type": "thinking", "thinking": "hm"}, {"type": "text", "text": "t"}]
    assert parse_chat({"message": {"content": thinking_first}}) == "t"
    with pytest.raises(StatusError, match=r"^Failed to find required field \[text\] in Cohere chat response$"):
        parse_chat({"message": {"content": []}})


def deltas(body: bytes) -> list[str]:
    async def collect() -> list[str]:
        response = httpx.Response(200, content=body, headers={"content-type": "text/event-stream"})
        return [d async for d in stream_deltas(response)]

    return asyncio.run(collect())


def test_stream_reader_skips_what_is_not_text() -> None:
    piece = b'data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"hi"}}}}\n\n'
    thinking = b'data: {"type":"content-delta","delta":{"message":{"content":{"thinking":"hm"}}}}\n\n'
    plan = b'event: tool-plan-delta\ndata: {"type":"tool-plan-delta","delta":{"message":{"tool_plan":"x"}}}\n\n'
    end = b'data: {"type":"message-end","delta":{"finish_reason":"MAX_TOKENS"}}\n\n'
    assert deltas(piece + thinking + plan + b"data: [DONE]\n\n" + piece + end + piece) == ["hi", "hi"]
    with pytest.raises(UpstreamError, match=r"^Failed to parse event from inference provider: \{oops$"):
        deltas(piece + b"data: {oops\n\n")


def failed(status: int, body: str = "") -> httpx.Response:
    return httpx.Response(status, text=body, request=httpx.Request("POST", "http://h/v2/embed"))


@pytest.mark.parametrize(
    ("status", "body", "wording", "retried"),
    [
        (301, "", "Unhandled redirection", False),
        (400, "invalid request", "Received an unsuccessful status code", False),
        (400, TOO_MANY_TEXTS, "Received a texts array too large response", False),
        (401, "", "Received an authentication error status code", False),
        (403, "", "Received an unsuccessful status code", False),
        (404, "", "Received an unsuccessful status code", False),
        (405, "", "Received an unsuccessful status code", False),
        (429, "", "Received a rate limit status code", True),
        (500, "", "Received a server error status code", True),
        (503, "", "Received a server error status code", False),
    ],
)
def test_status_wording_and_retries_follow_es_cohere_handler(
    status: int, body: str, wording: str, retried: bool
) -> None:
    service = CohereService.__new__(CohereService)  # the hooks need no context
    assert service.describe_status(failed(status, body)) == wording
    assert service.is_retryable(failed(status, body)) is retried
