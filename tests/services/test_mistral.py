"""The mistral service against a fake Mistral API on loopback, through the real server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.core.errors import InferdError
from inferd.services.mistral import (
    MistralService,
    endpoint_url,
    is_mistral_error_event,
    mistral_chat_body,
    parse_chat_error,
    text_of,
)
from inferd.services.openai_wire import stream_events
from tests.conftest import assert_es_error
from tests.fakes.mistral import API_KEY, CHAT_MODEL, EMBED_MODEL, FakeMistral, vector
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
    event,
    first_delta_then_error,
    put,
    put_without_validation,
    serve_fake,
    serve_inferd,
    services_entry,
)
from tests.support.servers import PASSWORD, RunningServer, free_port

DIMS = 1024


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeMistral]:
    yield from serve_fake(FakeMistral())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "mistral")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeMistral) -> Iterator[httpx.Client]:
    yield from client_for(inferd, fake, "mistral")


def embedding_body(fake: FakeMistral, **settings: Any) -> dict[str, Any]:
    return {
        "service": "mistral",
        "service_settings": {"api_key": API_KEY, "model": EMBED_MODEL, "url": fake.url, **settings},
    }


def chat_body(fake: FakeMistral, **settings: Any) -> dict[str, Any]:
    return {
        "service": "mistral",
        "service_settings": {"api_key": API_KEY, "model": CHAT_MODEL, "url": fake.url, **settings},
    }


def compact(body: Any) -> str:
    """A JSON body as the fake (Starlette's JSONResponse) writes it."""
    return json.dumps(body, separators=(",", ":"))


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_learns_dimensions(http: httpx.Client, fake: FakeMistral) -> None:
    created = put(http, "/_inference/text_embedding/mi-emb", embedding_body(fake))
    assert created == {
        "inference_id": "mi-emb",
        "task_type": "text_embedding",
        "service": "mistral",
        "service_settings": {
            "model": EMBED_MODEL,
            "url": fake.url,
            "dimensions": DIMS,
            "similarity": "dot_product",
            "rate_limit": {"requests_per_minute": 240},
        },
        "chunking_settings": created["chunking_settings"],
    }
    assert list(created["service_settings"]) == ["model", "url", "dimensions", "similarity", "rate_limit"]
    (call,) = fake.requests
    assert (call.method, call.path) == ("POST", "/v1/embeddings")
    assert call.headers["authorization"] == f"Bearer {API_KEY}"
    assert call.headers["content-type"] == "application/json"
    assert call.body == {"model": EMBED_MODEL, "input": ["how big"], "encoding_format": "float"}
    got = http.get("/_inference/mi-emb").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)
    assert API_KEY not in http.get("/_inference/_all").text


def test_declared_similarity_and_dimensions_are_kept_and_dimensions_never_sent(
    http: httpx.Client, fake: FakeMistral
) -> None:
    body = embedding_body(fake, dimensions=DIMS, similarity="cosine", max_input_tokens=512)
    created = put(http, "/_inference/text_embedding/mi-dims", body)
    assert created["service_settings"] == {
        "model": EMBED_MODEL,
        "url": fake.url,
        "dimensions": DIMS,
        "similarity": "cosine",
        "max_input_tokens": 512,
        "rate_limit": {"requests_per_minute": 240},
    }
    response = http.post("/_inference/text_embedding/mi-dims", json={"input": "x"})
    assert response.status_code == 200, response.text
    assert [r.body for r in fake.requests] == [
        {"model": EMBED_MODEL, "input": ["how big"], "encoding_format": "float"},
        {"model": EMBED_MODEL, "input": ["x"], "encoding_format": "float"},
    ]


def test_a_size_that_does_not_match_the_declared_dimensions_is_refused(http: httpx.Client, fake: FakeMistral) -> None:
    body = embedding_body(fake, dimensions=256)
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/mi-mismatch", body)
    assert caused_by["reason"] == dimensions_mismatch(DIMS, 256, "mi-mismatch")


def test_a_bad_key_at_creation_is_the_mapped_401(http: httpx.Client, fake: FakeMistral) -> None:
    # Embeddings read `error.message`, which Mistral's 401 body lacks: no "Error message" part (as in ES).
    body = embedding_body(fake, api_key="wrong")
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/mi-badkey", body)
    assert caused_by == {
        "type": "status_exception",
        "reason": "Received an authentication error status code for request from inference entity id [mi-badkey] "
        "status [401]",
    }
    # Completion quotes Mistral's raw error body.
    caused_by = assert_creation_fails(http, "/_inference/completion/mi-badkey", chat_body(fake, api_key="wrong"))
    assert caused_by["reason"] == (
        "Received an authentication error status code for request from inference entity id [mi-badkey] "
        'status [401]. Error message: [{"detail":"Unauthorized"}]'
    )
    assert fake.requests[-1].headers["authorization"] == "Bearer wrong"


def test_validation_can_be_skipped(tmp_path: Path, fake: FakeMistral) -> None:
    fake.requests.clear()
    created = put_without_validation(tmp_path, "/_inference/text_embedding/mi-skip", embedding_body(fake))
    assert fake.requests == []
    assert created["service_settings"] == {
        "model": EMBED_MODEL,
        "url": fake.url,
        "rate_limit": {"requests_per_minute": 240},
    }


def test_missing_unknown_and_unsupported_settings(http: httpx.Client, fake: FakeMistral) -> None:
    # The key is `model`, not `model_id`; unknown keys are reported once everything else is valid.
    assert_es_error(
        http.put(
            "/_inference/text_embedding/mi-bad",
            json={"service": "mistral", "service_settings": {"model_id": EMBED_MODEL, "url": "nope"}},
        ),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model];"
        "2: [service_settings] Invalid url [nope] received for field [url]. Error: unable to parse url [nope]. "
        "Reason: an absolute http or https URL is required;"
        "3: [service_settings] does not contain the required setting [api_key];",
    )
    assert_es_error(
        http.put("/_inference/text_embedding/mi-bad", json=embedding_body(fake, model_id=EMBED_MODEL)),
        400,
        "status_exception",
        "Configuration contains settings [{model_id=mistral-embed}] unknown to the [mistral] service",
    )
    assert_es_error(
        http.put("/_inference/completion/mi-bad", json={**chat_body(fake), "task_settings": {"user": "u"}}),
        400,
        "status_exception",
        "Configuration contains settings [{user=u}] unknown to the [mistral] service",
    )
    assert_es_error(
        http.put("/_inference/completion/mi-bad", json=chat_body(fake, max_input_tokens=10)),
        400,
        "status_exception",
        "Configuration contains settings [{max_input_tokens=10}] unknown to the [mistral] service",
    )
    for task in ("rerank", "sparse_embedding"):
        assert_es_error(
            http.put(f"/_inference/{task}/mi-bad", json=embedding_body(fake)),
            400,
            "status_exception",
            f"The [mistral] service does not support task type [{task}]",
        )
    assert fake.requests == []
    assert http.get("/_inference/mi-bad").status_code == 404


def test_update_changes_only_updatable_settings_and_secrets(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-upd", embedding_body(fake))
    response = http.put(
        "/_inference/mi-upd/_update",
        json={"service_settings": {"max_input_tokens": 256, "rate_limit": {"requests_per_minute": 60}}},
    )
    assert response.status_code == 200, response.text
    settings = response.json()["service_settings"]
    assert (settings["max_input_tokens"], settings["rate_limit"]) == (256, {"requests_per_minute": 60})
    assert_es_error(
        http.put("/_inference/mi-upd/_update", json={"service_settings": {"model": "codestral-embed"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [model] cannot be updated;",
    )
    assert http.get("/_inference/mi-upd").json()["endpoints"][0]["service_settings"]["model"] == EMBED_MODEL
    # The key is a secret: updatable, used from then on, never shown.
    response = http.put("/_inference/mi-upd/_update", json={"service_settings": {"api_key": "rotated-key"}})
    assert response.status_code == 200, response.text
    assert "rotated-key" not in response.text
    assert http.post("/_inference/text_embedding/mi-upd", json={"input": "x"}).status_code == 401
    assert fake.requests[-1].headers["authorization"] == "Bearer rotated-key"


# -- inference -----------------------------------------------------------------------------------


def test_text_embedding_keeps_input_order(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-order", embedding_body(fake))
    response = http.post("/_inference/text_embedding/mi-order", json={"input": ["a", "b", "c"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": vector(t)} for t in "abc"]}
    assert fake.requests[-1].body == {"model": EMBED_MODEL, "input": ["a", "b", "c"], "encoding_format": "float"}


def test_inputs_are_split_to_batches_of_96_and_stitched(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-batch", embedding_body(fake))
    fake.requests.clear()
    texts = [f"t{i}" for i in range(200)]
    response = http.post("/_inference/text_embedding/mi-batch", json={"input": texts})
    assert response.status_code == 200, response.text
    assert sorted(len(r.body["input"]) for r in fake.requests) == [8, 96, 96]
    got = [g["embedding"] for g in response.json()["text_embedding"]]
    assert got == [vector(t) for t in texts]


def test_completion_body_and_result(http: httpx.Client, fake: FakeMistral) -> None:
    created = put(http, "/_inference/completion/mi-chat", chat_body(fake))
    assert created["service_settings"] == {
        "model": CHAT_MODEL,
        "url": fake.url,
        "rate_limit": {"requests_per_minute": 240},
    }
    assert fake.requests[0].body == {
        "messages": [{"role": "user", "content": "how big"}],
        "model": CHAT_MODEL,
        "n": 1,
        "stream": False,
    }
    response = http.post("/_inference/completion/mi-chat", json={"input": "hello there"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "HELLO THERE"}]}
    last = fake.requests[-1]
    assert (last.path, last.headers["authorization"]) == ("/v1/chat/completions", f"Bearer {API_KEY}")
    assert last.body == {
        "messages": [{"role": "user", "content": "hello there"}],
        "model": CHAT_MODEL,
        "n": 1,
        "stream": False,
    }
    # Each input is one user message of the same request (ES's UnifiedChatInput).
    response = http.post("/_inference/completion/mi-chat", json={"input": ["one", "two"]})
    assert response.json() == {"completion": [{"result": "ONE | TWO"}]}
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": "one"},
        {"role": "user", "content": "two"},
    ]


def test_the_official_client_calls_it(inferd: RunningServer, fake: FakeMistral) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    try:
        client.inference.put(
            task_type="text_embedding", inference_id="mi-client", inference_config=embedding_body(fake)
        )
        result = client.inference.text_embedding(inference_id="mi-client", input=["hi"])
        assert result.body == {"text_embedding": [{"embedding": vector("hi")}]}
        client.inference.put(task_type="completion", inference_id="mi-client-c", inference_config=chat_body(fake))
        completion = client.inference.completion(inference_id="mi-client-c", input="bonjour")
        assert completion.body == {"completion": [{"result": "BONJOUR"}]}
        got = client.inference.get(inference_id="mi-client")
        assert got.body["endpoints"][0]["service_settings"]["dimensions"] == DIMS
    finally:
        client.inference.delete(inference_id="mi-client")
        client.inference.delete(inference_id="mi-client-c")
        client.close()


def test_a_base_url_with_a_trailing_slash(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-slash", embedding_body(fake, url=fake.url + "/"))
    assert [r.path for r in fake.requests] == ["/v1/embeddings"]


# -- failures ------------------------------------------------------------------------------------


def test_upstream_400_passes_through_with_the_raw_body(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/completion/mi-400", chat_body(fake))
    body = {"object": "error", "message": "Invalid model: x", "type": "invalid_model", "param": None, "code": "1500"}
    fake.then(400, body)
    assert_es_error(
        http.post("/_inference/completion/mi-400", json={"input": "x"}),
        400,
        "status_exception",
        "Received a bad request status code for request from inference entity id [mi-400] status [400]. "
        f"Error message: [{compact(body)}]",
    )


def test_upstream_422_is_an_input_validation_error(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/completion/mi-422", chat_body(fake))
    detail = [{"type": "extra_forbidden", "loc": ["body", "x"], "msg": "Extra inputs are not permitted", "input": 1}]
    body = {"object": "error", "message": {"detail": detail}, "type": "invalid_request_error", "param": None}
    fake.then(422, body)
    assert_es_error(
        http.post("/_inference/completion/mi-422", json={"input": "x"}),
        422,
        "status_exception",
        "Received an input validation error response for request from inference entity id [mi-422] status [422]. "
        f"Error message: [{compact(body)}]",
    )


def test_embeddings_400_is_an_unsuccessful_status(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-e400", embedding_body(fake))
    fake.then(400, {"object": "error", "message": "Too many inputs", "type": "invalid_request_error", "param": None})
    assert_es_error(
        http.post("/_inference/text_embedding/mi-e400", json={"input": "x"}),
        400,
        "status_exception",
        "Received an unsuccessful status code for request from inference entity id [mi-e400] status [400]",
    )


def test_upstream_5xx_becomes_400_after_bounded_retries(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/completion/mi-500", chat_body(fake))
    fake.requests.clear()
    body = {"object": "error", "message": "Internal error", "type": "internal_server_error", "param": None}
    fake.then(500, body, times=10)
    assert_es_error(
        http.post("/_inference/completion/mi-500", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server error status code for request from inference entity id [mi-500] status [500]. "
        f"Error message: [{compact(body)}]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES
    assert len(fake.script) == 10 - len(fake.requests)


@pytest.mark.parametrize(("status", "attempts"), [(403, 1), (404, 1), (422, 1), (502, 1), (503, 4)])
def test_embeddings_statuses_follow_es_mistral_embeddings_handler(
    http: httpx.Client, fake: FakeMistral, status: int, attempts: int
) -> None:
    put(http, "/_inference/text_embedding/mi-estatus", embedding_body(fake))
    fake.requests.clear()
    fake.then(status, {"error": {"message": "nope", "type": "x"}}, times=10)
    wording = {
        502: "Received a server error status code",
        503: "Received a server busy error status code",
    }.get(status, "Received an unsuccessful status code")
    assert_es_error(
        http.post("/_inference/text_embedding/mi-estatus", json={"input": "x"}),
        status if status < 500 else 400,
        "status_exception",
        f"{wording} for request from inference entity id [mi-estatus] status [{status}]. Error message: [nope]",
    )
    assert len(fake.requests) == attempts  # 503 is retried: 1 + http_max_retries attempts


def test_a_429_on_embeddings_is_retried_then_reported_with_what_remains(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/text_embedding/mi-e429", embedding_body(fake))
    fake.requests.clear()
    headers = {"x-ratelimit-remaining-tokens": "0"}
    fake.then(429, {"error": {"message": "slow down"}}, headers=headers, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/mi-e429", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code. Remaining tokens [0]. Remaining requests [unknown]. for request from "
        "inference entity id [mi-e429] status [429]. Error message: [slow down]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_completion_429_is_not_retried_and_503_is(http: httpx.Client, fake: FakeMistral) -> None:
    # ES's OpenAI chat completion handler: a 429 is final, a 503 is "server busy" and retried.
    put(http, "/_inference/completion/mi-c429", chat_body(fake))
    fake.requests.clear()
    body = {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited", "code": "1300"}
    fake.then(429, body, headers={"Retry-After": "0"}, times=10)
    assert_es_error(
        http.post("/_inference/completion/mi-c429", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code for request from inference entity id [mi-c429] status [429]. "
        f"Error message: [{compact(body)}]",
    )
    assert len(fake.requests) == 1
    fake.script.clear()
    fake.requests.clear()
    fake.then(503, raw=b"busy", times=10)
    assert_es_error(
        http.post("/_inference/completion/mi-c429", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server busy error status code for request from inference entity id [mi-c429] status [503]. "
        "Error message: [busy]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeMistral) -> None:
    body = {"object": "error", "message": "Requests rate limit exceeded", "type": "rate_limited", "code": "1300"}
    assert_retry_after_is_waited_out(http, fake, "/_inference/text_embedding/mi-429", embedding_body(fake), body)


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeMistral) -> None:
    late = {"object": "list", "data": []}
    assert_request_timeout(http, fake, "/_inference/text_embedding/mi-slow", embedding_body(fake), late)


def test_malformed_json_and_missing_fields_from_the_provider(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/completion/mi-garbled", chat_body(fake))
    fake.then(200, raw=b"{not json")
    error = assert_es_error(
        http.post("/_inference/completion/mi-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith(
        "Failed to send Mistral completion request. Cause: the response is not valid JSON"
    )
    fake.then(200, {"id": "cmpl-1", "object": "chat.completion"})
    assert_es_error(
        http.post("/_inference/completion/mi-garbled", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [choices] in Mistral chat completions response",
    )
    put(http, "/_inference/text_embedding/mi-garbled-e", embedding_body(fake))
    fake.then(200, {"id": "embd-1", "object": "list"})
    assert_es_error(
        http.post("/_inference/text_embedding/mi-garbled-e", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [data] in Mistral embeddings response",
    )


def test_connection_refused(http: httpx.Client, fake: FakeMistral) -> None:
    body = embedding_body(fake, url=f"http://127.0.0.1:{free_port()}")
    cause = "Failed to send Mistral text_embedding request. Cause:"
    assert_connection_refused(http, "/_inference/text_embedding/mi-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeMistral) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/text_embedding/mi-rpm", embedding_body(fake))


# -- streaming -----------------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeMistral) -> None:
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/mi-stream", chat_body(fake))
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello big world"}],
        "model": CHAT_MODEL,
        "n": 1,
        "stream": True,
    }


def unified_chunk(
    delta: dict[str, Any], finish: str | None = None, usage: dict[str, int] | None = None
) -> dict[str, Any]:
    """A chat.completion.chunk as inferd re-emits it: id, choices, model, object, then usage if any."""
    choice: dict[str, Any] = {"delta": delta}
    if finish is not None:
        choice["finish_reason"] = finish
    choice["index"] = 0
    chunk = {"id": "cmpl-fake", "choices": [choice], "model": "mistral-large-latest", "object": "chat.completion.chunk"}
    return {**chunk, "usage": usage} if usage else chunk


def test_chat_completion_stream_maps_the_unified_request(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/chat_completion/mi-unified", chat_body(fake))
    # The validation call at PUT is a streaming chat request.
    assert fake.requests[0].body == {
        "messages": [{"role": "user", "content": "how big"}],
        "model": CHAT_MODEL,
        "n": 1,
        "stream": True,
    }
    request = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi you"}],
        "model": "mistral-large-latest",
        "max_completion_tokens": 20,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["\n\n"],
    }
    response = http.post("/_inference/chat_completion/mi-unified/_stream", json=request)
    assert response.status_code == 200, response.text
    # max_tokens instead of max_completion_tokens, no stream_options: Mistral refuses unknown fields.
    assert fake.requests[-1].body == {
        "messages": request["messages"],
        "stop": ["\n\n"],
        "temperature": 0.2,
        "top_p": 0.9,
        "max_tokens": 20,
        "model": "mistral-large-latest",
        "n": 1,
        "stream": True,
    }
    usage = {"prompt_tokens": 5, "total_tokens": 7, "completion_tokens": 2}
    assert response.content == b"".join(
        [
            event(unified_chunk({"content": "", "role": "assistant"})),
            event(unified_chunk({"content": "HI"})),
            event(unified_chunk({"content": " YOU"})),
            event(unified_chunk({"content": ""}, "stop", usage)),
            event("[DONE]"),
        ]
    )


def test_chat_completion_stream_with_tools(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/chat_completion/mi-tools", chat_body(fake))
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    request = {"messages": [{"role": "user", "content": "find x"}], "tools": tools, "tool_choice": "required"}
    response = http.post("/_inference/chat_completion/mi-tools/_stream", json=request)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].body
    assert (sent["tools"], sent["tool_choice"]) == (tools, "required")
    assert chat_chunks(response)[-1]["choices"] == [
        {
            "delta": {
                "tool_calls": [
                    {"id": "Fk3xQ9Lm2", "function": {"name": "lookup", "arguments": '{"q": "x"}'}, "index": 0}
                ]
            },
            "finish_reason": "tool_calls",
            "index": 0,
        }
    ]


def test_a_mid_stream_provider_error_is_an_error_event(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/completion/mi-break", chat_body(fake))
    error = first_delta_then_error(
        http.post("/_inference/completion/mi-break/_stream", json={"input": "one BREAK two"})
    )
    assert error["status"] == 500
    raw = json.dumps(
        {
            "object": "error",
            "message": "Service unavailable",
            "type": "internal_server_error",
            "param": None,
            "code": "3000",
        }
    )
    assert error["error"]["reason"] == (
        f"Received an error response for request from inference entity id [mi-break]. Error message: [{raw}]"
    )


def test_a_chat_stream_refused_upstream_is_a_unified_error(http: httpx.Client, fake: FakeMistral) -> None:
    put(http, "/_inference/chat_completion/mi-refuse", chat_body(fake))
    body = {"object": "error", "message": "Invalid model: nope", "type": "invalid_model", "param": None, "code": "1500"}
    fake.then(400, body)
    response = http.post(
        "/_inference/chat_completion/mi-refuse/_stream",
        json={"model": "nope", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 400
    assert response.content == event(
        {
            "error": {
                "code": "bad_request",
                "message": "Received a bad request status code for request from inference entity id [mi-refuse] "
                f"status [400]. Error message: [{compact(body)}]",
                "type": "status_exception",
            }
        },
        "error",
    )
    assert fake.requests[-1].body["model"] == "nope"


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeMistral, http: httpx.Client
) -> None:
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(inferd, fake, http, "/_inference/completion/mi-cancel", chat_body(fake), request)


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeMistral) -> None:
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/text_embedding/mi-ssrf",
        lambda url: embedding_body(fake, url=url),
        [
            (fake.url, "127.0.0.1"),
            ("http://169.254.169.254", "169.254.169.254"),
            ("http://10.1.2.3/mistral", "10.1.2.3"),
        ],
    )


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "mistral")
    assert (entry["name"], entry["task_types"]) == ("Mistral", ["text_embedding", "completion", "chat_completion"])
    config = entry["configurations"]
    all_tasks = ["text_embedding", "completion", "chat_completion"]
    assert config["api_key"] == api_key_configuration(all_tasks)
    assert config["model"] == {
        "description": "Refer to the Mistral models documentation for the list of available inference models.",
        "label": "Model",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": all_tasks,
    }
    assert config["max_input_tokens"] == {
        "description": "Allows you to specify the maximum number of tokens per input.",
        "label": "Maximum Input Tokens",
        "required": False,
        "sensitive": False,
        "updatable": True,
        "type": "int",
        "supported_task_types": ["text_embedding"],
    }
    assert config["rate_limit.requests_per_minute"]["type"] == "int"
    assert config["url"]["required"] is False
    assert "model_id" not in config
    streaming = http.get("/_inference/_services/chat_completion").json()
    assert "mistral" in [e["service"] for e in streaming]


# -- pure helpers ---------------------------------------------------------------------------------


def test_the_url_override_is_a_base_url() -> None:
    assert endpoint_url(None, "/v1/embeddings") == "https://api.mistral.ai/v1/embeddings"
    assert (
        endpoint_url("http://gw:8080/mistral/", "/v1/chat/completions") == "http://gw:8080/mistral/v1/chat/completions"
    )


def test_chat_body_uses_max_tokens_and_no_stream_options() -> None:
    chat = {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 5, "stop": [], "tools": None}
    assert mistral_chat_body(chat, "m", stream=True) == {
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 5,
        "model": "m",
        "n": 1,
        "stream": True,
    }


def test_list_content_is_read_as_text() -> None:
    content = [{"type": "thinking", "thinking": [{"type": "text", "text": "hmm"}]}, {"type": "text", "text": "ok"}]
    assert (text_of(content), text_of("plain"), text_of(None)) == ("ok", "plain", "")


async def _collect(payload: bytes) -> list[dict[str, Any]]:
    response = httpx.Response(200, content=payload, headers={"content-type": "text/event-stream"})
    return [chunk async for chunk in stream_events(response, "x", parse_chat_error, is_mistral_error_event)]


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"data: not-json\n\n", "Failed to parse event from inference provider: not-json"),
        (
            b'data: {"detail":"boom"}\n\n',
            'Received an error response for request from inference entity id [x]. Error message: [{"detail":"boom"}]',
        ),
    ],
)
def test_bad_stream_events(payload: bytes, reason: str) -> None:
    with pytest.raises(InferdError) as caught:
        asyncio.run(
            _collect(b'data: {"id":"1","object":"chat.completion.chunk","model":"m","choices":[]}\n\n' + payload)
        )
    assert (caught.value.status, caught.value.reason) == (500, reason)


def failed(status: int, error: str = "", headers: dict[str, str] | None = None) -> httpx.Response:
    request = httpx.Request("POST", "https://api.mistral.ai/v1/embeddings")
    return httpx.Response(status, json={"error": {"message": error}}, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "error", "wording", "retried"),
    [
        (301, "", "Unhandled redirection", False),
        (400, "bad", "Received an unsuccessful status code", False),
        (400, "Please reduce your prompt; or completion length.", "Received a content too large status code", False),
        (401, "", "Received an authentication error status code", False),
        (413, "", "Received a content too large status code", False),
        (500, "", "Received a server error status code", True),
        (503, "", "Received a server busy error status code", True),
        (504, "", "Received a server error status code", False),
    ],
)
def test_embeddings_status_wording_and_retries(status: int, error: str, wording: str, retried: bool) -> None:
    service = MistralService.__new__(MistralService)  # the hooks need no context
    assert service.describe_status(failed(status, error)) == wording
    assert service.is_retryable(failed(status, error)) is retried


def test_embeddings_429_wording_names_the_limits_when_given() -> None:
    service = MistralService.__new__(MistralService)
    limits = {"x-ratelimit-limit-tokens": "500000", "x-ratelimit-remaining-requests": "3"}
    assert service.is_retryable(failed(429))
    assert service.describe_status(failed(429, headers=limits)) == (
        "Received a rate limit status code. Token limit [500000], remaining tokens [unknown]. "
        "Request limit [unknown], remaining requests [3]"
    )
