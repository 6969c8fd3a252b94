"""The hugging_face service against a fake Hugging Face endpoint (TEI + TGI) on loopback, through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.services.hugging_face import HuggingFaceService
from tests.conftest import assert_es_error
from tests.fakes.hugging_face import API_KEY, DEFAULT_DIMENSIONS, UNAUTHORIZED, FakeHuggingFace, rerank_score, vector
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
    chat_chunks,
    client_for,
    dimensions_mismatch,
    error_event,
    first_delta_then_error,
    put,
    serve_fake,
    serve_inferd,
    services_entry,
    sse_frames,
)
from tests.support.servers import PASSWORD, RunningServer, free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeHuggingFace]:
    yield from serve_fake(FakeHuggingFace())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "hugging_face")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeHuggingFace) -> Iterator[httpx.Client]:
    fake.api_key = API_KEY  # some tests rotate the fake's key
    yield from client_for(inferd, fake, "hugging_face")


def hf_body(url: str, task_settings: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"service": "hugging_face", "service_settings": {"api_key": API_KEY, "url": url, **settings}}
    if task_settings is not None:
        body["task_settings"] = task_settings
    return body


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
    body = hf_body(f"{fake.url}/embed", dimensions=4)
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/hf-dims-bad", body)
    assert caused_by["reason"] == dimensions_mismatch(DEFAULT_DIMENSIONS, 4, "hf-dims-bad")


def test_a_bad_token_at_creation_is_an_es_error(http: httpx.Client, fake: FakeHuggingFace) -> None:
    body = hf_body(f"{fake.url}/embed", api_key="hf_wrong")
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/hf-badkey", body)
    assert caused_by == {"type": "status_exception", "reason": auth_failure("hf-badkey")}
    assert fake.requests[-1].headers["authorization"] == "Bearer hf_wrong"


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
    body = hf_body(f"{fake.url}/embed")
    rate_limited = {"error": "Model is overloaded", "error_type": "overloaded"}
    assert_retry_after_is_waited_out(http, fake, "/_inference/text_embedding/hf-429", body, rate_limited)


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeHuggingFace) -> None:
    late = [[0.0] * DEFAULT_DIMENSIONS]
    assert_request_timeout(http, fake, "/_inference/text_embedding/hf-slow", hf_body(f"{fake.url}/embed"), late)


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
    cause = "Failed to send Hugging Face text_embedding request. Cause:"
    assert_connection_refused(http, "/_inference/text_embedding/hf-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeHuggingFace) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/text_embedding/hf-rpm", hf_body(f"{fake.url}/embed"))


# -- streaming -----------------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeHuggingFace) -> None:
    body = hf_body(f"{fake.url}/v1/chat/completions", model_id="m1")
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/hf-stream", body)
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
    chunks = chat_chunks(response)
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
    assert error_event(response) == {
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
    error = first_delta_then_error(
        http.post("/_inference/completion/hf-break/_stream", json={"input": "one BREAK two"})
    )
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
    frames = sse_frames(response)
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
    body = hf_body(f"{fake.url}/v1/chat/completions")
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(inferd, fake, http, "/_inference/completion/hf-cancel", body, request)


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeHuggingFace) -> None:
    fake.requests.clear()
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/text_embedding/hf-ssrf",
        hf_body,
        [
            (f"{fake.url}/embed", "127.0.0.1"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://192.168.1.20/embed", "192.168.1.20"),
        ],
    )
    assert fake.requests == []


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "hugging_face")
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
    assert configs["api_key"] == api_key_configuration(all_tasks)
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
