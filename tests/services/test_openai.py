"""The openai service against a fake OpenAI API on loopback, through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from tests.conftest import assert_es_error
from tests.fakes.openai import API_KEY, DEFAULT_DIMENSIONS, FakeOpenAi, vector
from tests.support.providers import (
    MAX_RETRIES,
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
    first_delta_then_error,
    put,
    put_without_validation,
    serve_fake,
    serve_inferd,
    services_entry,
)
from tests.support.servers import PASSWORD, RunningServer, free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAi]:
    yield from serve_fake(FakeOpenAi())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "openai")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeOpenAi) -> Iterator[httpx.Client]:
    yield from client_for(inferd, fake, "openai")


def embedding_body(fake: FakeOpenAi, **settings: Any) -> dict[str, Any]:
    return {
        "service": "openai",
        "service_settings": {
            "api_key": API_KEY,
            "model_id": "text-embedding-ada-002",
            "url": f"{fake.url}/v1/embeddings",
            **settings,
        },
    }


def chat_body(fake: FakeOpenAi, task_settings: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": "openai",
        "service_settings": {
            "api_key": API_KEY,
            "model_id": "gpt-4o-mini",
            "url": f"{fake.url}/v1/chat/completions",
            **settings,
        },
    }
    if task_settings:
        body["task_settings"] = task_settings
    return body


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_learns_dimensions(http: httpx.Client, fake: FakeOpenAi) -> None:
    created = put(http, "/_inference/text_embedding/oa-emb", embedding_body(fake))
    assert created["service_settings"] == {
        "model_id": "text-embedding-ada-002",
        "url": f"{fake.url}/v1/embeddings",
        "similarity": "dot_product",
        "dimensions": DEFAULT_DIMENSIONS,
        "rate_limit": {"requests_per_minute": 3000},
    }
    (call,) = fake.requests
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.body == {"input": ["how big"], "model": "text-embedding-ada-002"}
    got = http.get("/_inference/oa-emb").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)


def test_dimensions_set_by_the_user_are_sent_and_checked(http: httpx.Client, fake: FakeOpenAi) -> None:
    body = embedding_body(fake, model_id="text-embedding-3-small", dimensions=16, similarity="cosine")
    created = put(http, "/_inference/text_embedding/oa-dims", body)
    assert created["service_settings"]["dimensions"] == 16
    assert created["service_settings"]["similarity"] == "cosine"
    assert fake.requests[-1].body["dimensions"] == 16
    http.post("/_inference/text_embedding/oa-dims", json={"input": "x"})
    assert fake.requests[-1].body["dimensions"] == 16


def test_learnt_dimensions_are_not_sent(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/text_embedding/oa-nodims", embedding_body(fake))
    response = http.post("/_inference/text_embedding/oa-nodims", json={"input": "x"})
    assert response.status_code == 200, response.text
    assert "dimensions" not in fake.requests[-1].body


def test_a_size_that_does_not_match_the_declared_dimensions_is_refused(http: httpx.Client, fake: FakeOpenAi) -> None:
    fake.then(200, {"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}], "model": "m"})
    body = embedding_body(fake, model_id="text-embedding-3-small", dimensions=4)
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/oa-mismatch", body)
    assert caused_by["reason"] == dimensions_mismatch(2, 4, "oa-mismatch")


def test_a_provider_error_at_creation_is_an_es_error(http: httpx.Client, fake: FakeOpenAi) -> None:
    caused_by = assert_creation_fails(
        http, "/_inference/text_embedding/oa-badkey", embedding_body(fake, api_key="sk-wrong")
    )
    assert caused_by["type"] == "status_exception"
    assert caused_by["reason"].startswith(
        "Received an authentication error status code for request from inference entity id [oa-badkey] "
        "status [401]. Error message: [Incorrect API key provided: sk-wro***."
    )


def test_validation_can_be_skipped(tmp_path: Path, fake: FakeOpenAi) -> None:
    fake.requests.clear()
    created = put_without_validation(tmp_path, "/_inference/text_embedding/oa-skip", embedding_body(fake))
    assert fake.requests == []
    assert "dimensions" not in created["service_settings"]


def test_missing_and_unknown_settings(http: httpx.Client, fake: FakeOpenAi) -> None:
    assert_es_error(
        http.put("/_inference/text_embedding/oa-bad", json={"service": "openai", "service_settings": {"url": "x"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"
        "2: [service_settings] Invalid url [x] received for field [url]. Error: unable to parse url [x]. "
        "Reason: an absolute http or https URL is required;"
        "3: [service_settings] does not contain the required setting [api_key];",
    )
    assert_es_error(
        http.put("/_inference/text_embedding/oa-bad", json=embedding_body(fake, rate_limit={"rpm": 1})),
        400,
        "validation_exception",
        "Validation Failed: 1: Rate limit settings contain unknown entries [{rpm=1}];",
    )
    assert_es_error(
        http.put("/_inference/sparse_embedding/oa-bad", json=embedding_body(fake)),
        400,
        "status_exception",
        "The [openai] service does not support task type [sparse_embedding]",
    )
    assert fake.requests == []


# -- inference -----------------------------------------------------------------------------------


def test_text_embedding_keeps_input_order(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/text_embedding/oa-order", embedding_body(fake))
    response = http.post("/_inference/text_embedding/oa-order", json={"input": ["a", "b", "c"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": vector(t, DEFAULT_DIMENSIONS)} for t in "abc"]}


def test_inputs_are_split_to_the_provider_cap_and_stitched(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/text_embedding/oa-batch", embedding_body(fake))
    fake.requests.clear()
    texts = [f"t{i}" for i in range(2050)]
    response = http.post("/_inference/text_embedding/oa-batch", json={"input": texts})
    assert response.status_code == 200
    assert sorted(len(r.body["input"]) for r in fake.requests) == [2, 2048]
    got = response.json()["text_embedding"]
    assert [g["embedding"] for g in (got[0], got[2049])] == [vector("t0", 8), vector("t2049", 8)]


def test_completion_and_task_settings(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/completion/oa-chat", chat_body(fake, {"user": "u-1", "headers": {"X-Team": "a"}}))
    response = http.post("/_inference/completion/oa-chat", json={"input": "hello there"})
    assert response.json() == {"completion": [{"result": "HELLO THERE"}]}
    last = fake.requests[-1]
    assert last.body == {
        "messages": [{"role": "user", "content": "hello there"}],
        "model": "gpt-4o-mini",
        "n": 1,
        "stream": False,
        "user": "u-1",
    }
    assert last.headers["x-team"] == "a"
    assert_es_error(
        http.post("/_inference/completion/oa-chat", json={"input": ["a", "b"]}),
        400,
        "status_exception",
        "OpenAI completions only accepts 1 input, received [2]",
    )


def test_the_official_client_calls_it(inferd: RunningServer, fake: FakeOpenAi) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD))
    try:
        client.inference.put(
            task_type="text_embedding", inference_id="oa-client", inference_config=embedding_body(fake)
        )
        result = client.inference.text_embedding(inference_id="oa-client", input=["hi"])
        assert result.body == {"text_embedding": [{"embedding": vector("hi", 8)}]}
    finally:
        client.inference.delete(inference_id="oa-client")
        client.close()


# -- failures ------------------------------------------------------------------------------------


def test_upstream_400_passes_through(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/text_embedding/oa-400", embedding_body(fake))
    fake.then(400, {"error": {"message": "Invalid input", "type": "invalid_request_error"}})
    assert_es_error(
        http.post("/_inference/text_embedding/oa-400", json={"input": "x"}),
        400,
        "status_exception",
        "Received a bad request status code for request from inference entity id [oa-400] status [400]. "
        "Error message: [Invalid input]",
    )


def test_upstream_5xx_becomes_400_after_bounded_retries(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/text_embedding/oa-500", embedding_body(fake))
    fake.requests.clear()
    fake.then(500, {"error": {"message": "boom", "type": "server_error"}}, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/oa-500", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server error status code for request from inference entity id [oa-500] status [500]. "
        "Error message: [boom]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeOpenAi) -> None:
    body = embedding_body(fake)
    rate_limited = {"error": {"message": "Rate limit reached", "type": "requests"}}
    assert_retry_after_is_waited_out(http, fake, "/_inference/text_embedding/oa-429", body, rate_limited)


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeOpenAi) -> None:
    late = {"object": "list", "data": []}
    assert_request_timeout(http, fake, "/_inference/text_embedding/oa-slow", embedding_body(fake), late)


def test_malformed_json_from_the_provider(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/completion/oa-garbled", chat_body(fake))
    fake.then(200, raw=b"{not json", times=10)
    error = assert_es_error(
        http.post("/_inference/completion/oa-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith("Failed to send OpenAI completion request. Cause: the response is not valid JSON")


def test_connection_refused(http: httpx.Client, fake: FakeOpenAi) -> None:
    body = embedding_body(fake, url=f"http://127.0.0.1:{free_port()}/v1/embeddings")
    cause = "Failed to send OpenAI embeddings request. Cause:"
    assert_connection_refused(http, "/_inference/text_embedding/oa-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeOpenAi) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/text_embedding/oa-rpm", embedding_body(fake))


# -- streaming -----------------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeOpenAi) -> None:
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/oa-stream", chat_body(fake))
    sent = fake.requests[-1].body
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_chat_completion_stream(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/chat_completion/oa-unified", chat_body(fake))
    request = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi you"}],
        "model": "gpt-4.1",
        "max_completion_tokens": 20,
        "temperature": 0.2,
    }
    response = http.post("/_inference/chat_completion/oa-unified/_stream", json=request)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].body
    assert (
        sent["model"] == "gpt-4.1" and sent["max_completion_tokens"] == 20 and sent["messages"] == request["messages"]
    )
    chunks = chat_chunks(response)
    assert chunks[0] == {
        "id": "chatcmpl-fake",
        "choices": [{"delta": {"content": "", "role": "assistant"}, "index": 0}],
        "model": "gpt-4.1",
        "object": "chat.completion.chunk",
    }
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "HI YOU"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] == 5


def test_a_mid_stream_provider_error_is_an_error_event(http: httpx.Client, fake: FakeOpenAi) -> None:
    put(http, "/_inference/completion/oa-break", chat_body(fake))
    error = first_delta_then_error(
        http.post("/_inference/completion/oa-break/_stream", json={"input": "one BREAK two"})
    )
    assert error["status"] == 500
    assert error["error"]["reason"] == (
        "Received an error response for request from inference entity id [oa-break]. "
        "Error message: [The server had an error while processing your request.]"
    )


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeOpenAi, http: httpx.Client
) -> None:
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(inferd, fake, http, "/_inference/completion/oa-cancel", chat_body(fake), request)


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeOpenAi) -> None:
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/text_embedding/oa-ssrf",
        lambda url: embedding_body(fake, url=url),
        [
            (f"{fake.url}/v1/embeddings", "127.0.0.1"),
            ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
            ("http://10.1.2.3/v1/embeddings", "10.1.2.3"),
        ],
    )


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "openai")
    assert entry["task_types"] == ["text_embedding", "completion", "chat_completion"]
    assert entry["configurations"]["api_key"]["sensitive"] is True
    assert entry["configurations"]["rate_limit.requests_per_minute"]["type"] == "int"
