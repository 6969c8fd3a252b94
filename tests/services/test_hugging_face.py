"""The hugging_face service against a fake Hugging Face endpoint (TEI + TGI) on loopback, through the real server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.services.hugging_face import HuggingFaceService
from tests.conftest import assert_es_error
from tests.fakes.hugging_face import API_KEY, DEFAULT_DIMENSIONS, UNAUTHORIZED, FakeHuggingFace, rerank_score, vector
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer, free_port

LOOPBACK = r"http://127\.0\.0\.1:\d+/.*"
MAX_RETRIES = 3
FAST_RETRIES: dict[str, Any] = {
    "http_retry_initial_delay": 0.01,
    "http_retry_max_delay": 0.05,
    "http_max_retries": MAX_RETRIES,
}
BOM = b"\xef\xbb\xbf"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeHuggingFace]:
    provider = FakeHuggingFace()
    with provider:
        yield provider


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    data = tmp_path_factory.mktemp("hugging_face")
    with ThreadedServer(data, trusted_url_patterns=[LOOPBACK], **FAST_RETRIES) as running:
        yield running


@pytest.fixture
def http(inferd: RunningServer, fake: FakeHuggingFace) -> Iterator[httpx.Client]:
    fake.requests.clear()
    fake.script.clear()
    fake.stream_cancelled.clear()
    fake.api_key = API_KEY
    with inferd.http() as client:
        yield client
        for ep in client.get("/_inference/_all").json()["endpoints"]:
            if ep["service"] == "hugging_face":
                client.delete(f"/_inference/{ep['inference_id']}")


def hf_body(url: str, task_settings: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service": "hugging_face", "service_settings": {"api_key": API_KEY, "url": url, **settings}}
    if task_settings is not None:
        body["task_settings"] = task_settings
    return body


def put(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.put(path, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def auth_failure(inference_id: str) -> str:
    return (
        f"Received an authentication error status code for request from inference entity id [{inference_id}] "
        f"status [401]. Error message: [{UNAUTHORIZED}]"
    )


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_learns_dimensions(http: httpx.Client, fake: FakeHuggingFace) -> None:
    created = put(http, "/_inference/text_embedding/hf-emb", hf_body(f"{fake.url}/embed"))
    assert created == {
        "inference_id": "hf-emb",
        "task_type": "text_embedding",
        "service": "hugging_face",
        "service_settings": {
            "url": f"{fake.url}/embed",
            "similarity": "cosine",
            "dimensions": DEFAULT_DIMENSIONS,
            "rate_limit": {"requests_per_minute": 3000},
        },
        "chunking_settings": created["chunking_settings"],
    }
    assert list(created["service_settings"]) == ["url", "similarity", "dimensions", "rate_limit"]
    (call,) = fake.requests
    assert (call.path, call.headers["authorization"]) == ("/embed", f"Bearer {API_KEY}")
    assert call.headers["content-type"] == "application/json"
    assert call.body == {"inputs": ["how big"]}
    got = http.get("/_inference/hf-emb").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)
    assert API_KEY not in http.get("/_inference/_all").text


def test_user_similarity_and_dimensions_are_kept_and_checked(http: httpx.Client, fake: FakeHuggingFace) -> None:
    body = hf_body(f"{fake.url}/embed", similarity="dot_product", dimensions=DEFAULT_DIMENSIONS, max_input_tokens=512)
    created = put(http, "/_inference/text_embedding/hf-dims", body)
    assert created["service_settings"] == {
        "url": f"{fake.url}/embed",
        "similarity": "dot_product",
        "dimensions": DEFAULT_DIMENSIONS,
        "max_input_tokens": 512,
        "rate_limit": {"requests_per_minute": 3000},
    }
    assert fake.requests[-1].body == {"inputs": ["how big"]}  # dimensions are never sent
    error = assert_es_error(
        http.put("/_inference/text_embedding/hf-dims-bad", json=hf_body(f"{fake.url}/embed", dimensions=4)),
        400,
        "status_exception",
        "Could not complete inference endpoint creation as validation call to service threw an exception.",
    )
    assert error["caused_by"]["reason"] == (
        f"The retrieved embeddings size [{DEFAULT_DIMENSIONS}] does not match the size specified in the settings [4]. "
        "Please recreate the [hf-dims-bad] configuration with the correct dimensions"
    )
    assert http.get("/_inference/hf-dims-bad").status_code == 404


def test_a_bad_token_at_creation_is_an_es_error(http: httpx.Client, fake: FakeHuggingFace) -> None:
    body = hf_body(f"{fake.url}/embed", api_key="hf_wrong")
    error = assert_es_error(
        http.put("/_inference/text_embedding/hf-badkey", json=body),
        400,
        "status_exception",
        "Could not complete inference endpoint creation as validation call to service threw an exception.",
    )
    assert error["caused_by"] == {"type": "status_exception", "reason": auth_failure("hf-badkey")}
    assert fake.requests[-1].headers["authorization"] == "Bearer hf_wrong"
    assert http.get("/_inference/hf-badkey").status_code == 404


def test_url_is_required_and_settings_are_strict(http: httpx.Client, fake: FakeHuggingFace) -> None:
    assert_es_error(
        http.put("/_inference/text_embedding/hf-bad", json={"service": "hugging_face", "service_settings": {}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [url];"
        "2: [service_settings] does not contain the required setting [api_key];",
    )
    for task in ("rerank", "completion", "chat_completion"):
        assert_es_error(
            http.put(
                f"/_inference/{task}/hf-bad", json={"service": "hugging_face", "service_settings": {"api_key": "k"}}
            ),
            400,
            "validation_exception",
            "Validation Failed: 1: [service_settings] does not contain the required setting [url];",
        )
    assert_es_error(
        http.put("/_inference/rerank/hf-bad", json=hf_body(f"{fake.url}/rerank", model_id="m")),
        400,
        "status_exception",
        "Configuration contains settings [{model_id=m}] unknown to the [hugging_face] service",
    )
    assert_es_error(
        http.put("/_inference/rerank/hf-bad", json=hf_body(f"{fake.url}/rerank", {"top_n": 0})),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] Invalid value [0]. [top_n] must be a positive integer;",
    )
    assert_es_error(
        http.put("/_inference/completion/hf-bad", json=hf_body(f"{fake.url}/v1/chat/completions", {"top_n": 1})),
        400,
        "status_exception",
        "Configuration contains settings [{top_n=1}] unknown to the [hugging_face] service",
    )
    assert_es_error(
        http.put("/_inference/sparse_embedding/hf-bad", json=hf_body(f"{fake.url}/embed")),
        400,
        "status_exception",
        "The [hugging_face] service does not support task type [sparse_embedding]",
    )
    assert fake.requests == []
    assert http.get("/_inference/hf-bad").status_code == 404


def test_update_changes_only_updatable_settings(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/rerank/hf-upd", hf_body(f"{fake.url}/rerank"))
    response = http.put(
        "/_inference/hf-upd/_update",
        json={"service_settings": {"rate_limit": {"requests_per_minute": 60}}, "task_settings": {"top_n": 2}},
    )
    assert response.status_code == 200, response.text
    assert response.json()["service_settings"] == {
        "url": f"{fake.url}/rerank",
        "rate_limit": {"requests_per_minute": 60},
    }
    assert response.json()["task_settings"] == {"top_n": 2}
    assert_es_error(
        http.put("/_inference/hf-upd/_update", json={"service_settings": {"url": f"{fake.url}/other"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [url] cannot be updated;",
    )
    assert http.get("/_inference/hf-upd").json()["endpoints"][0]["service_settings"]["url"] == f"{fake.url}/rerank"


# -- inference -----------------------------------------------------------------------------------


def test_text_embedding_in_input_order(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-order", hf_body(f"{fake.url}/embed"))
    response = http.post("/_inference/text_embedding/hf-order", json={"input": ["a", "b", "c"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": vector(t)} for t in "abc"]}
    assert fake.requests[-1].body == {"inputs": ["a", "b", "c"]}


def test_the_embeddings_object_answer_is_read_too(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-obj", hf_body(f"{fake.url}/embed"))
    fake.then(200, {"embeddings": [[0.5, -0.25, 1, 0, 0, 0], [0.125, 0, 0, 0, 0, 2]]})
    response = http.post("/_inference/text_embedding/hf-obj", json={"input": ["x", "y"]})
    assert response.json() == {
        "text_embedding": [
            {"embedding": [0.5, -0.25, 1.0, 0.0, 0.0, 0.0]},
            {"embedding": [0.125, 0.0, 0.0, 0.0, 0.0, 2.0]},
        ]
    }
    fake.then(200, {"vectors": [[1.0]]})
    assert_es_error(
        http.post("/_inference/text_embedding/hf-obj", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [embeddings] in Hugging Face embeddings response",
    )


def test_inputs_are_split_to_batches_of_20_and_stitched(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-batch", hf_body(f"{fake.url}/embed"))
    fake.requests.clear()
    texts = [f"t{i}" for i in range(45)]
    response = http.post("/_inference/text_embedding/hf-batch", json={"input": texts})
    assert response.status_code == 200, response.text
    assert sorted(len(r.body["inputs"]) for r in fake.requests) == [5, 20, 20]
    assert [e["embedding"] for e in response.json()["text_embedding"]] == [vector(t) for t in texts]


def test_rerank_maps_task_settings_and_request_values(http: httpx.Client, fake: FakeHuggingFace) -> None:
    created = put(
        http, "/_inference/rerank/hf-rr", hf_body(f"{fake.url}/rerank", {"return_documents": False, "top_n": 2})
    )
    assert created["service_settings"] == {"url": f"{fake.url}/rerank", "rate_limit": {"requests_per_minute": 3000}}
    assert created["task_settings"] == {"return_documents": False, "top_n": 2}
    assert fake.requests[-1].body == {"texts": ["how big"], "query": "test query", "return_text": False, "top_n": 2}

    docs = ["apples are red", "the sky is blue", "grass is green", "snow is white"]
    best = sorted(range(4), key=lambda i: rerank_score("colours", docs[i]), reverse=True)
    response = http.post("/_inference/rerank/hf-rr", json={"input": docs, "query": "colours"})
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body == {"texts": docs, "query": "colours", "return_text": False, "top_n": 2}
    assert response.json() == {
        "rerank": [{"index": i, "relevance_score": rerank_score("colours", docs[i])} for i in best[:2]]
    }

    # Values in the request itself win over the endpoint's, and request task_settings over stored ones.
    response = http.post(
        "/_inference/rerank/hf-rr", json={"input": docs, "query": "colours", "return_documents": True, "top_n": 3}
    )
    assert fake.requests[-1].body == {"texts": docs, "query": "colours", "return_text": True, "top_n": 3}
    assert response.json()["rerank"] == [
        {"index": i, "relevance_score": rerank_score("colours", docs[i]), "text": docs[i]} for i in best[:3]
    ]
    response = http.post(
        "/_inference/rerank/hf-rr", json={"input": docs, "query": "colours", "task_settings": {"top_n": 4}}
    )
    assert fake.requests[-1].body == {"texts": docs, "query": "colours", "return_text": False, "top_n": 4}
    assert [r["index"] for r in response.json()["rerank"]] == best


def test_rerank_without_settings_sends_only_texts_and_query(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/rerank/hf-rr-min", hf_body(f"{fake.url}/rerank"))
    assert fake.requests[-1].body == {"texts": ["how big"], "query": "test query"}
    # Cohere-style answers (relevance_score, document.text) are read as ES reads them, then sorted.
    fake.then(200, [{"index": 0, "relevance_score": 0.1, "document": {"text": "a"}}, {"index": 1, "score": 0.9}])
    response = http.post("/_inference/rerank/hf-rr-min", json={"input": ["a", "b"], "query": "q"})
    assert response.json() == {
        "rerank": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1, "text": "a"}]
    }
    for answer, reason in (
        ({"results": []}, "expecting token of type [START_ARRAY] but found [START_OBJECT]"),
        ([0.5], "expecting token of type [START_OBJECT] but found [VALUE_NUMBER]"),
    ):
        fake.then(200, answer)
        assert_es_error(
            http.post("/_inference/rerank/hf-rr-min", json={"input": ["a"], "query": "q"}),
            400,
            "status_exception",
            f"Failed to parse object: {reason}",
        )


def test_completion_body_and_result(http: httpx.Client, fake: FakeHuggingFace) -> None:
    url = f"{fake.url}/v1/chat/completions"
    created = put(http, "/_inference/completion/hf-comp", hf_body(url, model_id="meta-llama/Llama-3.1-8B-Instruct"))
    assert created["service_settings"] == {
        "model_id": "meta-llama/Llama-3.1-8B-Instruct",
        "url": url,
        "rate_limit": {"requests_per_minute": 3000},
    }
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "how big"}],
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "n": 1,
        "stream": False,
    }
    response = http.post("/_inference/completion/hf-comp", json={"input": "hello there"})
    assert response.json() == {"completion": [{"result": "HELLO THERE"}]}
    assert_es_error(
        http.post("/_inference/completion/hf-comp", json={"input": ["a", "b"]}),
        400,
        "status_exception",
        "Hugging Face completions only accepts 1 input, received [2]",
    )
    put(http, "/_inference/completion/hf-comp-nomodel", hf_body(url))
    assert "model" not in fake.requests[-1].body


def test_the_official_client_calls_it(inferd: RunningServer, fake: FakeHuggingFace) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD))
    try:
        client.inference.put(
            task_type="text_embedding", inference_id="hf-client", inference_config=hf_body(f"{fake.url}/embed")
        )
        client.inference.put(
            task_type="rerank", inference_id="hf-client-rr", inference_config=hf_body(f"{fake.url}/rerank")
        )
        assert client.inference.text_embedding(inference_id="hf-client", input=["hi"]).body == {
            "text_embedding": [{"embedding": vector("hi")}]
        }
        ranked = client.inference.rerank(inference_id="hf-client-rr", query="q", input=["x", "y"]).body["rerank"]
        assert [r["relevance_score"] for r in ranked] == sorted((rerank_score("q", t) for t in "xy"), reverse=True)
        got = client.inference.get(inference_id="hf-client").body["endpoints"][0]
        assert got["service"] == "hugging_face" and API_KEY not in json.dumps(got)
    finally:
        client.inference.delete(inference_id="hf-client")
        client.inference.delete(inference_id="hf-client-rr")
        client.close()


# -- failures ------------------------------------------------------------------------------------


def test_a_bad_token_at_inference_passes_401_through(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-401", hf_body(f"{fake.url}/embed"))
    fake.api_key = "hf_rotated"
    assert_es_error(
        http.post("/_inference/text_embedding/hf-401", json={"input": "x"}),
        401,
        "status_exception",
        auth_failure("hf-401"),
    )


def test_upstream_400_passes_through(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-400", hf_body(f"{fake.url}/embed"))
    fake.requests.clear()
    fake.then(
        400, {"error": "Input validation error: inputs must have less than 512 tokens", "error_type": "validation"}
    )
    assert_es_error(
        http.post("/_inference/text_embedding/hf-400", json={"input": "x"}),
        400,
        "status_exception",
        "Received an unsuccessful status code for request from inference entity id [hf-400] status [400]. "
        "Error message: [Input validation error: inputs must have less than 512 tokens]",
    )
    assert len(fake.requests) == 1  # not retried


@pytest.mark.parametrize("status", [403, 404, 422])
def test_other_4xx_are_unsuccessful_and_final(http: httpx.Client, fake: FakeHuggingFace, status: int) -> None:
    put(http, "/_inference/rerank/hf-4xx", hf_body(f"{fake.url}/rerank"))
    fake.requests.clear()
    fake.then(status, {"error": "nope"}, times=10)
    assert_es_error(
        http.post("/_inference/rerank/hf-4xx", json={"input": ["a"], "query": "q"}),
        status,
        "status_exception",
        f"Received an unsuccessful status code for request from inference entity id [hf-4xx] status [{status}]. "
        "Error message: [nope]",
    )
    assert len(fake.requests) == 1


@pytest.mark.parametrize("status", [502, 503])
def test_502_and_503_are_retried_as_rate_limits_then_400(
    http: httpx.Client, fake: FakeHuggingFace, status: int
) -> None:
    # ES's Hugging Face handler reads a busy or loading endpoint as a rate limit.
    put(http, "/_inference/rerank/hf-503", hf_body(f"{fake.url}/rerank"))
    fake.requests.clear()
    fake.then(status, {"error": "Model is overloaded", "error_type": "overloaded"}, times=10)
    assert_es_error(
        http.post("/_inference/rerank/hf-503", json={"input": ["a"], "query": "q"}),
        400,
        "status_exception",
        f"Received a rate limit status code for request from inference entity id [hf-503] status [{status}]. "
        "Error message: [Model is overloaded]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_500_is_a_server_error_and_not_retried(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-500", hf_body(f"{fake.url}/embed"))
    fake.requests.clear()
    fake.then(500, {"error": "CUDA out of memory"}, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/hf-500", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server error status code for request from inference entity id [hf-500] status [500]. "
        "Error message: [CUDA out of memory]",
    )
    assert len(fake.requests) == 1


def test_completion_follows_es_openai_chat_handler(http: httpx.Client, fake: FakeHuggingFace) -> None:
    # Completion and chat: 500 and 503 are retried, 429 is final.
    put(http, "/_inference/completion/hf-comp-5xx", hf_body(f"{fake.url}/v1/chat/completions"))
    fake.requests.clear()
    fake.then(503, {"error": "Model is loading"}, times=10)
    assert_es_error(
        http.post("/_inference/completion/hf-comp-5xx", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server busy error status code for request from inference entity id [hf-comp-5xx] status [503]. "
        "Error message: [Model is loading]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES
    fake.script.clear()
    fake.requests.clear()
    fake.then(429, {"error": "Rate limit reached"}, headers={"Retry-After": "0"}, times=10)
    assert_es_error(
        http.post("/_inference/completion/hf-comp-5xx", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code for request from inference entity id [hf-comp-5xx] status [429]. "
        "Error message: [Rate limit reached]",
    )
    assert len(fake.requests) == 1


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-429", hf_body(f"{fake.url}/embed"))
    fake.requests.clear()
    fake.then(429, {"error": "Model is overloaded", "error_type": "overloaded"}, headers={"Retry-After": "0.5"})
    started = time.monotonic()
    response = http.post("/_inference/text_embedding/hf-429", json={"input": "x"})
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 2
    assert time.monotonic() - started >= 0.5


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-slow", hf_body(f"{fake.url}/embed"))
    fake.then(200, [[0.0] * DEFAULT_DIMENSIONS], delay=3)
    assert_es_error(
        http.post("/_inference/text_embedding/hf-slow?timeout=300ms", json={"input": "x"}),
        408,
        "status_exception",
        "Request timed out after [300ms]",
    )


def test_malformed_json_from_the_provider(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-garbled", hf_body(f"{fake.url}/embed"))
    fake.then(200, raw=b"[[0.1, 0.2", times=10)
    error = assert_es_error(
        http.post("/_inference/text_embedding/hf-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith(
        "Failed to send Hugging Face text_embedding request. Cause: the response is not valid JSON"
    )


def test_connection_refused(http: httpx.Client) -> None:
    body = hf_body(f"http://127.0.0.1:{free_port()}/embed")
    error = assert_es_error(http.put("/_inference/text_embedding/hf-refused", json=body), 400, "status_exception")
    assert error["caused_by"]["reason"].startswith("Failed to send Hugging Face text_embedding request. Cause:")
    assert http.get("/_inference/hf-refused").status_code == 404


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/text_embedding/hf-rpm", hf_body(f"{fake.url}/embed", rate_limit={"requests_per_minute": 3}))
    for _ in range(2):  # the validation call at PUT took the first slot
        assert http.post("/_inference/text_embedding/hf-rpm", json={"input": "x"}).status_code == 200
    before = len(fake.requests)
    response = http.post("/_inference/text_embedding/hf-rpm?timeout=500ms", json={"input": "x"})
    assert response.status_code == 408
    assert len(fake.requests) == before


# -- streaming -----------------------------------------------------------------------------------


def event(data: dict[str, Any] | str, name: str = "message") -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return BOM + f"event: {name}\ndata: {payload}\n\n".encode()


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/completion/hf-stream", hf_body(f"{fake.url}/v1/chat/completions", model_id="m1"))
    response = http.post("/_inference/completion/hf-stream/_stream", json={"input": "hello big world"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b"".join(
        [
            event({"completion": [{"delta": "HELLO"}]}),
            event({"completion": [{"delta": " BIG"}]}),
            event({"completion": [{"delta": " WORLD"}]}),
            event("[DONE]"),
        ]
    )
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello big world"}],
        "model": "m1",
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }


def test_chat_completion_stream(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/chat_completion/hf-chat", hf_body(f"{fake.url}/v1/chat/completions", model_id="m1"))
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": "how big"}]
    request = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi you"}],
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "max_completion_tokens": 20,
        "temperature": 0.2,
        "stop": ["\n"],
    }
    response = http.post("/_inference/chat_completion/hf-chat/_stream", json=request)
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body == {
        "messages": request["messages"],
        "stop": ["\n"],
        "temperature": 0.2,
        "max_tokens": 20,
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    frames = [f for f in response.content.split(BOM) if f]
    assert frames[-1] == b"event: message\ndata: [DONE]\n\n"
    chunks = [json.loads(f.removeprefix(b"event: message\ndata: ")) for f in frames[:-1]]
    assert chunks[0] == {
        "id": "",
        "choices": [{"delta": {"content": "HI", "role": "assistant"}, "index": 0}],
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "object": "chat.completion.chunk",
    }
    assert chunks[2]["choices"] == [
        {"delta": {"content": "", "role": "assistant"}, "finish_reason": "stop", "index": 0}
    ]
    assert "".join(c["choices"][0]["delta"]["content"] for c in chunks if c["choices"]) == "HI YOU"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {
        "prompt_tokens": 5,
        "completion_tokens": 3,
        "total_tokens": 8,
    }
    assert_es_error(
        http.post("/_inference/chat_completion/hf-chat", json={"input": "x"}),
        400,
        "status_exception",
        "The [chat_completion] task type only supports streaming, please try again with the _stream API",
    )


def test_a_chat_error_before_the_stream_is_a_unified_error(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/chat_completion/hf-chat-401", hf_body(f"{fake.url}/v1/chat/completions"))
    fake.api_key = "hf_rotated"
    response = http.post(
        "/_inference/chat_completion/hf-chat-401/_stream", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 401
    name, data = response.content.removeprefix(BOM).split(b"\n", 1)
    assert name == b"event: error"
    assert json.loads(data.removeprefix(b"data: ")) == {
        "error": {"code": "unauthorized", "message": auth_failure("hf-chat-401"), "type": "status_exception"}
    }


def test_an_openai_shaped_error_body_is_read_for_completion(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/completion/hf-comp-err", hf_body(f"{fake.url}/v1/chat/completions"))
    fake.then(400, {"error": {"message": "max_tokens must be at least 1", "type": "invalid_request_error"}})
    assert_es_error(
        http.post("/_inference/completion/hf-comp-err", json={"input": "x"}),
        400,
        "status_exception",
        "Received a bad request status code for request from inference entity id [hf-comp-err] status [400]. "
        "Error message: [max_tokens must be at least 1]",
    )


def test_a_mid_stream_provider_error_is_an_error_event(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/completion/hf-break", hf_body(f"{fake.url}/v1/chat/completions"))
    response = http.post("/_inference/completion/hf-break/_stream", json={"input": "one BREAK two"})
    assert response.status_code == 200
    frames = [f for f in response.content.split(BOM) if f]
    assert frames[0] == b'event: message\ndata: {"completion":[{"delta":"ONE"}]}\n\n'
    assert len(frames) == 2
    name, data = frames[1].split(b"\n", 1)
    assert name == b"event: error"
    error = json.loads(data.removeprefix(b"data: "))
    assert error["status"] == 500
    assert error["error"]["reason"] == (
        "Received an error response for request from inference entity id [hf-break]. "
        "Error message: [Request failed during generation: Server error: out of memory]"
    )


def test_a_mid_stream_chat_error_is_a_unified_error_event(http: httpx.Client, fake: FakeHuggingFace) -> None:
    put(http, "/_inference/chat_completion/hf-chat-break", hf_body(f"{fake.url}/v1/chat/completions"))
    response = http.post(
        "/_inference/chat_completion/hf-chat-break/_stream", json={"messages": [{"role": "user", "content": "a BREAK"}]}
    )
    assert response.status_code == 200
    frames = [f for f in response.content.split(BOM) if f]
    assert frames[0].startswith(b"event: message\ndata: ")
    name, data = frames[-1].split(b"\n", 1)
    assert name == b"event: error"
    error = json.loads(data.removeprefix(b"data: "))["error"]
    assert error["message"] == (
        "Received an error response for request from inference entity id [hf-chat-break]. "
        "Error message: [Request failed during generation: Server error: out of memory]"
    )


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeHuggingFace, http: httpx.Client
) -> None:
    put(http, "/_inference/completion/hf-cancel", hf_body(f"{fake.url}/v1/chat/completions"))
    with (
        inferd.http() as client,
        client.stream("POST", "/_inference/completion/hf-cancel/_stream", json={"input": "slow " * 50}) as response,
    ):
        next(response.iter_bytes())
    assert fake.stream_cancelled.wait(timeout=10), "the upstream stream was not cancelled"


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeHuggingFace) -> None:
    fake.requests.clear()
    with ThreadedServer(tmp_path) as running, running.http() as client:
        for url, address in (
            (f"{fake.url}/embed", "127.0.0.1"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://192.168.1.20/embed", "192.168.1.20"),
        ):
            assert_es_error(
                client.put("/_inference/text_embedding/hf-ssrf", json=hf_body(url)),
                400,
                "status_exception",
                f"The url [{url}] resolves to the non-public address [{address}], which inferd does not call; "
                "an operator can allow it with a matching pattern in INFERD_TRUSTED_URL_PATTERNS",
            )
        assert client.get("/_inference/hf-ssrf").status_code == 404
    assert fake.requests == []


def test_services_entry(http: httpx.Client) -> None:
    (entry,) = [e for e in http.get("/_inference/_services").json() if e["service"] == "hugging_face"]
    assert entry["name"] == "Hugging Face"
    assert entry["task_types"] == ["text_embedding", "rerank", "completion", "chat_completion"]
    configs = entry["configurations"]
    all_tasks = ["text_embedding", "rerank", "completion", "chat_completion"]
    assert configs["url"] == {
        "description": "The URL endpoint to use for the requests.",
        "label": "URL",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": all_tasks,
    }
    assert configs["api_key"] == {
        "description": "API Key for the provider you're connecting to.",
        "label": "API Key",
        "required": True,
        "sensitive": True,
        "updatable": True,
        "type": "str",
        "supported_task_types": all_tasks,
    }
    assert configs["rate_limit.requests_per_minute"]["type"] == "int"
    assert configs["rate_limit.requests_per_minute"]["supported_task_types"] == all_tasks
    assert configs["model_id"]["required"] is False
    assert configs["model_id"]["supported_task_types"] == ["completion", "chat_completion"]
    assert configs["dimensions"]["supported_task_types"] == ["text_embedding"]
    assert [e["service"] for e in http.get("/_inference/_services/rerank").json()].count("hugging_face") == 1


def failed(status: int) -> httpx.Response:
    return httpx.Response(status, request=httpx.Request("POST", "https://hf.example/embed"))


@pytest.mark.parametrize(
    ("status", "wording", "retried"),
    [
        (307, "Unhandled redirection", False),
        (400, "Received an unsuccessful status code", False),
        (401, "Received an authentication error status code", False),
        (413, "Received a content too large status code", False),
        (429, "Received a rate limit status code", True),
        (500, "Received a server error status code", False),
        (502, "Received a rate limit status code", True),
        (503, "Received a rate limit status code", True),
        (504, "Received a server error status code", False),
    ],
)
def test_status_wording_and_retries_follow_es_hugging_face_handler(status: int, wording: str, retried: bool) -> None:
    service = HuggingFaceService.__new__(HuggingFaceService)  # the hooks need no context
    assert service.describe_status(failed(status)) == wording
    assert service.is_retryable(failed(status)) is retried
