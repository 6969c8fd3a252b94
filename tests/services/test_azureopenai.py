"""The azureopenai service against a fake Azure OpenAI resource on loopback, through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.services.azureopenai import AzureOpenAiCompletionSettings, deployment_url
from tests.conftest import assert_es_error
from tests.fakes.azureopenai import (
    API_KEY,
    API_VERSION,
    BAD_KEY_MESSAGE,
    BAD_TOKEN_MESSAGE,
    DEFAULT_DIMENSIONS,
    DEPLOYMENT_NOT_FOUND,
    ENTRA_TOKEN,
    OLD_API_VERSION,
    AzureRecorded,
    FakeAzureOpenAi,
)
from tests.fakes.openai import vector
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
    event,
    first_delta_then_error,
    put,
    put_without_validation,
    serve_fake,
    serve_inferd,
    services_entry,
)
from tests.support.servers import PASSWORD, RunningServer, free_port


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAzureOpenAi]:
    yield from serve_fake(FakeAzureOpenAi())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "azureopenai")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeAzureOpenAi) -> Iterator[httpx.Client]:
    yield from client_for(inferd, fake, "azureopenai")


def endpoint_body(
    fake: FakeAzureOpenAi,
    deployment: str,
    *,
    secrets: dict[str, str] | None = None,
    task_settings: dict[str, Any] | None = None,
    **settings: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service": "azureopenai",
        "service_settings": {
            "resource_name": "my-resource",
            "deployment_id": deployment,
            "api_version": API_VERSION,
            "url": fake.url,
            **({"api_key": API_KEY} if secrets is None else secrets),
            **settings,
        },
    }
    if task_settings:
        body["task_settings"] = task_settings
    return body


def embedding_body(fake: FakeAzureOpenAi, **kwargs: Any) -> dict[str, Any]:
    return endpoint_body(fake, "ada", **kwargs)


def chat_body(fake: FakeAzureOpenAi, **kwargs: Any) -> dict[str, Any]:
    return endpoint_body(fake, "gpt-4o-mini", **kwargs)


def last(fake: FakeAzureOpenAi) -> AzureRecorded:
    recorded = fake.requests[-1]
    assert isinstance(recorded, AzureRecorded)
    return recorded


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_learns_dimensions(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    created = put(http, "/_inference/text_embedding/az-emb", embedding_body(fake))
    assert created == {
        "inference_id": "az-emb",
        "task_type": "text_embedding",
        "service": "azureopenai",
        "service_settings": {
            "resource_name": "my-resource",
            "deployment_id": "ada",
            "api_version": API_VERSION,
            "url": fake.url,
            "dimensions": DEFAULT_DIMENSIONS,
            "similarity": "dot_product",
            "rate_limit": {"requests_per_minute": 1440},
        },
        "chunking_settings": created["chunking_settings"],
    }
    (call,) = fake.requests
    assert isinstance(call, AzureRecorded)
    assert (call.method, call.path, call.query) == (
        "POST",
        "/openai/deployments/ada/embeddings",
        {"api-version": API_VERSION},
    )
    assert call.headers["api-key"] == API_KEY and "authorization" not in call.headers
    assert call.body == {"input": ["how big"]}  # the deployment names the model: no "model"
    got = http.get("/_inference/az-emb").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)


def test_entra_id_is_sent_as_a_bearer_token(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    created = put(http, "/_inference/completion/az-entra", chat_body(fake, secrets={"entra_id": ENTRA_TOKEN}))
    assert created["service_settings"] == {
        "resource_name": "my-resource",
        "deployment_id": "gpt-4o-mini",
        "api_version": API_VERSION,
        "url": fake.url,
        "rate_limit": {"requests_per_minute": 120},
    }
    call = last(fake)
    assert call.path == "/openai/deployments/gpt-4o-mini/chat/completions"
    assert call.headers["authorization"] == f"Bearer {ENTRA_TOKEN}" and "api-key" not in call.headers
    assert ENTRA_TOKEN not in http.get("/_inference/az-entra").text


def test_the_secret_settings_need_exactly_one_of_api_key_and_entra_id(
    http: httpx.Client, fake: FakeAzureOpenAi
) -> None:
    for secrets, problem in (
        ({}, "[secret_settings] must have either the [api_key] or the [entra_id] key set"),
        (
            {"api_key": API_KEY, "entra_id": ENTRA_TOKEN},
            "[secret_settings] must have only one of the [api_key] or the [entra_id] key set",
        ),
        ({"entra_id": ""}, "[secret_settings] Invalid value empty string. [entra_id] must be a non-empty string"),
    ):
        assert_es_error(
            http.put("/_inference/text_embedding/az-secrets", json=embedding_body(fake, secrets=secrets)),
            400,
            "validation_exception",
            f"Validation Failed: 1: {problem};",
        )
    assert http.get("/_inference/az-secrets").status_code == 404
    assert fake.requests == []


def test_missing_invalid_and_unknown_settings(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    assert_es_error(
        http.put("/_inference/text_embedding/az-bad", json={"service": "azureopenai", "service_settings": {}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [resource_name];"
        "2: [service_settings] does not contain the required setting [deployment_id];"
        "3: [service_settings] does not contain the required setting [api_version];"
        "4: [secret_settings] must have either the [api_key] or the [entra_id] key set;",
    )
    assert_es_error(
        http.put("/_inference/text_embedding/az-bad", json=embedding_body(fake, dimensions_set_by_user=True)),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not allow the setting [dimensions_set_by_user];",
    )
    # The resource name becomes a host name: nothing may slip another host or a path into it.
    assert_es_error(
        http.put("/_inference/completion/az-bad", json=chat_body(fake, resource_name="evil.example/x?")),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] Invalid value [evil.example/x?] received. [resource_name] must "
        "be the name of an Azure resource (letters, digits and hyphens);",
    )
    assert_es_error(
        http.put("/_inference/completion/az-bad", json=chat_body(fake, dimensions=3, model_id="gpt")),
        400,
        "status_exception",
        "Configuration contains settings [{dimensions=3, model_id=gpt}] unknown to the [azureopenai] service",
    )
    assert_es_error(
        http.put("/_inference/completion/az-bad", json=chat_body(fake, rate_limit={"rpm": 1})),
        400,
        "validation_exception",
        "Validation Failed: 1: Rate limit settings contain unknown entries [{rpm=1}];",
    )
    assert_es_error(
        http.put("/_inference/rerank/az-bad", json=chat_body(fake)),
        400,
        "status_exception",
        "The [azureopenai] service does not support task type [rerank]",
    )
    assert http.get("/_inference/az-bad").status_code == 404
    assert fake.requests == []


def test_dimensions_set_by_the_user_are_sent_and_checked(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    body = endpoint_body(fake, "te3-small", dimensions=16, similarity="cosine")
    created = put(http, "/_inference/text_embedding/az-dims", body)
    assert created["service_settings"]["dimensions"] == 16
    assert created["service_settings"]["similarity"] == "cosine"
    assert last(fake).body == {"input": ["how big"], "dimensions": 16}
    response = http.post("/_inference/text_embedding/az-dims", json={"input": "x"})
    assert response.json() == {"text_embedding": [{"embedding": vector("x", 16)}]}
    assert last(fake).body == {"input": ["x"], "dimensions": 16}


def test_learnt_dimensions_are_not_sent(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/text_embedding/az-nodims", embedding_body(fake))
    response = http.post("/_inference/text_embedding/az-nodims", json={"input": "x"})
    assert response.status_code == 200, response.text
    assert last(fake).body == {"input": ["x"]}  # ada refuses "dimensions"; the learnt size is not sent back


def test_a_size_that_does_not_match_the_declared_dimensions_is_refused(
    http: httpx.Client, fake: FakeAzureOpenAi
) -> None:
    fake.then(200, {"object": "list", "data": [{"index": 0, "embedding": [0.1, 0.2]}], "model": "m"})
    body = endpoint_body(fake, "te3-small", dimensions=4)
    caused_by = assert_creation_fails(http, "/_inference/text_embedding/az-mismatch", body)
    assert caused_by["reason"] == dimensions_mismatch(2, 4, "az-mismatch")


@pytest.mark.parametrize(
    ("secrets", "message"),
    [({"api_key": "wrong-key"}, BAD_KEY_MESSAGE), ({"entra_id": "expired-token"}, BAD_TOKEN_MESSAGE)],
)
def test_a_bad_credential_at_creation_is_an_es_error(
    http: httpx.Client, fake: FakeAzureOpenAi, secrets: dict[str, str], message: str
) -> None:
    caused_by = assert_creation_fails(
        http, "/_inference/text_embedding/az-badkey", embedding_body(fake, secrets=secrets)
    )
    assert caused_by == {
        "type": "status_exception",
        "reason": "Received an authentication error status code for request from inference entity id [az-badkey] "
        f"status [401]. Error message: [{message}]",
    }


def test_a_wrong_deployment_or_api_version_is_a_not_found(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    for deployment, version, message in (
        ("nope", API_VERSION, DEPLOYMENT_NOT_FOUND),
        ("ada", "1999-01-01", "Resource not found"),
    ):
        body = endpoint_body(fake, deployment, api_version=version)
        caused_by = assert_creation_fails(http, "/_inference/text_embedding/az-404", body)
        assert caused_by["reason"] == (
            f"Resource not found at [{fake.url}/openai/deployments/{deployment}/embeddings?api-version={version}] "
            f"for request from inference entity id [az-404] status [404]. Error message: [{message}]"
        )
    assert http.get("/_inference/az-404").status_code == 404


def test_validation_can_be_skipped(tmp_path: Path, fake: FakeAzureOpenAi) -> None:
    fake.requests.clear()
    created = put_without_validation(tmp_path, "/_inference/text_embedding/az-skip", embedding_body(fake))
    assert fake.requests == []
    assert "dimensions" not in created["service_settings"]


# -- inference -----------------------------------------------------------------------------------


def test_text_embedding_keeps_input_order_and_sends_task_settings(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    body = embedding_body(fake, task_settings={"user": "u-1", "headers": {"X-Team": "search"}})
    put(http, "/_inference/text_embedding/az-order", body)
    response = http.post("/_inference/text_embedding/az-order", json={"input": ["a", "b", "c"]})
    assert response.status_code == 200, response.text
    assert response.json() == {"text_embedding": [{"embedding": vector(t, DEFAULT_DIMENSIONS)} for t in "abc"]}
    call = last(fake)
    assert call.body == {"input": ["a", "b", "c"], "user": "u-1"}
    assert call.headers["x-team"] == "search" and call.headers["api-key"] == API_KEY
    # Request-time task settings override the stored ones for that call only.
    http.post("/_inference/text_embedding/az-order", json={"input": "d", "task_settings": {"user": "u-2"}})
    assert last(fake).body == {"input": ["d"], "user": "u-2"}


def test_inputs_are_split_to_the_provider_cap_and_stitched(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/text_embedding/az-batch", embedding_body(fake))
    fake.requests.clear()
    texts = [f"t{i}" for i in range(2050)]
    response = http.post("/_inference/text_embedding/az-batch", json={"input": texts})
    assert response.status_code == 200, response.text
    assert sorted(len(r.body["input"]) for r in fake.requests) == [2, 2048]
    got = response.json()["text_embedding"]
    assert len(got) == 2050
    assert [g["embedding"] for g in (got[0], got[2047], got[2048], got[2049])] == [
        vector(t, DEFAULT_DIMENSIONS) for t in ("t0", "t2047", "t2048", "t2049")
    ]


def test_completion_and_task_settings(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    body = chat_body(fake, task_settings={"user": "u-1", "headers": {"X-Team": "a"}})
    put(http, "/_inference/completion/az-chat", body)
    response = http.post("/_inference/completion/az-chat", json={"input": "hello there"})
    assert response.json() == {"completion": [{"result": "HELLO THERE"}]}
    call = last(fake)
    assert (call.path, call.query) == ("/openai/deployments/gpt-4o-mini/chat/completions", {"api-version": API_VERSION})
    assert call.body == {
        "messages": [{"role": "user", "content": "hello there"}],
        "n": 1,
        "stream": False,
        "user": "u-1",
    }
    assert call.headers["x-team"] == "a"
    assert_es_error(
        http.post("/_inference/completion/az-chat", json={"input": ["a", "b"]}),
        400,
        "status_exception",
        "Azure OpenAI completion only accepts 1 input, received [2]",
    )


def test_the_official_client_calls_it(inferd: RunningServer, fake: FakeAzureOpenAi) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD))
    try:
        client.inference.put(
            task_type="text_embedding", inference_id="az-client", inference_config=embedding_body(fake)
        )
        result = client.inference.text_embedding(inference_id="az-client", input=["hi"])
        assert result.body == {"text_embedding": [{"embedding": vector("hi", DEFAULT_DIMENSIONS)}]}
        client.inference.put(task_type="completion", inference_id="az-client-chat", inference_config=chat_body(fake))
        completion = client.inference.completion(inference_id="az-client-chat", input="hi there")
        assert completion.body == {"completion": [{"result": "HI THERE"}]}
        got = client.inference.get(inference_id="az-client")
        assert API_KEY not in json.dumps(got.body)
    finally:
        client.inference.delete(inference_id="az-client")
        client.inference.delete(inference_id="az-client-chat")
        client.close()


# -- _update: secrets --------------------------------------------------------------------------------


def update(http: httpx.Client, inference_id: str, body: dict[str, Any]) -> httpx.Response:
    return http.put(f"/_inference/{inference_id}/_update", json=body)


def test_update_switches_from_api_key_to_entra_id_and_back(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-switch", chat_body(fake))
    response = update(http, "az-switch", {"service_settings": {"entra_id": ENTRA_TOKEN}})
    assert response.status_code == 200, response.text
    assert ENTRA_TOKEN not in response.text and API_KEY not in response.text
    http.post("/_inference/completion/az-switch", json={"input": "x"})
    headers = last(fake).headers
    assert headers["authorization"] == f"Bearer {ENTRA_TOKEN}" and "api-key" not in headers
    # The old key was dropped: had it been kept, any later update would fail "only one of".
    response = update(http, "az-switch", {"task_settings": {"user": "u-9"}})
    assert response.status_code == 200, response.text
    # And back: with the token kept, the bearer would still win over the key.
    assert update(http, "az-switch", {"service_settings": {"api_key": API_KEY}}).status_code == 200
    http.post("/_inference/completion/az-switch", json={"input": "x"})
    call = last(fake)
    assert call.headers["api-key"] == API_KEY and "authorization" not in call.headers
    assert call.body["user"] == "u-9"
    got = http.get("/_inference/az-switch").text
    assert API_KEY not in got and ENTRA_TOKEN not in got


def test_an_updated_key_is_used(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/text_embedding/az-rekey", embedding_body(fake))
    assert update(http, "az-rekey", {"service_settings": {"api_key": "revoked-key"}}).status_code == 200
    assert_es_error(
        http.post("/_inference/text_embedding/az-rekey", json={"input": "x"}),
        401,
        "status_exception",
        "Received an authentication error status code for request from inference entity id [az-rekey] "
        f"status [401]. Error message: [{BAD_KEY_MESSAGE}]",
    )


def test_bad_updates_change_nothing(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    created = put(http, "/_inference/completion/az-noupdate", chat_body(fake))
    assert_es_error(
        update(http, "az-noupdate", {"service_settings": {"api_key": "k2", "entra_id": "t2"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [secret_settings] must have only one of the [api_key] or the [entra_id] key set;",
    )
    assert_es_error(
        update(http, "az-noupdate", {"service_settings": {"deployment_id": "other"}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] setting [deployment_id] cannot be updated;",
    )
    assert http.get("/_inference/az-noupdate").json()["endpoints"][0] == created
    response = http.post("/_inference/completion/az-noupdate", json={"input": "still here"})
    assert response.json() == {"completion": [{"result": "STILL HERE"}]}
    assert last(fake).headers["api-key"] == API_KEY


# -- failures ------------------------------------------------------------------------------------


def test_upstream_400_passes_through(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-400", chat_body(fake))
    filtered = {
        "message": "The response was filtered due to the prompt triggering Azure OpenAI's content management policy.",
        "type": None,
        "param": "prompt",
        "code": "content_filter",
        "status": 400,
    }
    fake.then(400, {"error": filtered})
    assert_es_error(
        http.post("/_inference/completion/az-400", json={"input": "x"}),
        400,
        "status_exception",
        "Received a bad request status code for request from inference entity id [az-400] status [400]. "
        f"Error message: [{filtered['message']}]",
    )


def test_upstream_5xx_becomes_400_after_bounded_retries(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/text_embedding/az-500", embedding_body(fake))
    fake.requests.clear()
    fake.then(500, {"error": {"code": "InternalServerError", "message": "boom"}}, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/az-500", json={"input": "x"}),
        400,
        "status_exception",
        "Received a server error status code for request from inference entity id [az-500] status [500]. "
        "Error message: [boom]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    quota = {
        "code": "429",
        "message": "Requests to the Embeddings_Create Operation under Azure OpenAI API version 2024-10-21 have "
        "exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after 1 second.",
    }
    assert_retry_after_is_waited_out(
        http,
        fake,
        "/_inference/text_embedding/az-429",
        embedding_body(fake),
        {"error": quota},
        retry_after="1",
        headers={"x-ratelimit-remaining-requests": "0", "x-ratelimit-remaining-tokens": "0"},
    )


def test_a_429_that_persists_is_a_429_naming_what_remains(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-429s", chat_body(fake))
    fake.requests.clear()
    headers = {"x-ratelimit-remaining-requests": "0"}
    fake.then(429, {"error": {"code": "429", "message": "Rate limit is exceeded."}}, headers=headers, times=10)
    assert_es_error(
        http.post("/_inference/completion/az-429s", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code. Remaining tokens [unknown]. Remaining requests [0]. for request from "
        "inference entity id [az-429s] status [429]. Error message: [Rate limit is exceeded.]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


@pytest.mark.parametrize(
    ("status", "wording", "attempts"),
    [
        (403, "Received an unsuccessful status code", 1),
        (413, "Received a content too large status code", 1),
        (422, "Received an input validation error response", 1),
        (502, "Received a server error status code", 1),
        (503, "Received a server busy error status code", 1 + MAX_RETRIES),
    ],
)
def test_statuses_follow_es_azure_openai_handler(
    http: httpx.Client, fake: FakeAzureOpenAi, status: int, wording: str, attempts: int
) -> None:
    put(http, "/_inference/text_embedding/az-status", embedding_body(fake))
    fake.requests.clear()
    fake.then(status, {"error": {"code": str(status), "message": "nope"}}, times=10)
    assert_es_error(
        http.post("/_inference/text_embedding/az-status", json={"input": "x"}),
        status if status < 500 else 400,
        "status_exception",
        f"{wording} for request from inference entity id [az-status] status [{status}]. Error message: [nope]",
    )
    assert len(fake.requests) == attempts


def test_a_400_asking_for_a_shorter_prompt_is_content_too_large(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-long", chat_body(fake))
    message = "This model's maximum context length is 8192 tokens. Please reduce your prompt; or completion length."
    fake.then(400, {"error": {"code": "context_length_exceeded", "message": message}})
    assert_es_error(
        http.post("/_inference/completion/az-long", json={"input": "x"}),
        400,
        "status_exception",
        "Received a content too large status code for request from inference entity id [az-long] status [400]. "
        f"Error message: [{message}]",
    )


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    late = {"object": "list", "data": []}
    assert_request_timeout(http, fake, "/_inference/text_embedding/az-slow", embedding_body(fake), late)


def test_malformed_json_from_the_provider(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-garbled", chat_body(fake))
    fake.then(200, raw=b"{not json", times=10)
    error = assert_es_error(
        http.post("/_inference/completion/az-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith(
        "Failed to send Azure OpenAI completion request. Cause: the response is not valid JSON"
    )


def test_an_answer_without_data_is_an_error(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/text_embedding/az-nodata", embedding_body(fake))
    fake.then(200, {"object": "list"})
    assert_es_error(
        http.post("/_inference/text_embedding/az-nodata", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [data] in Azure OpenAI embeddings response",
    )


def test_connection_refused(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    body = embedding_body(fake, url=f"http://127.0.0.1:{free_port()}")
    cause = "Failed to send Azure OpenAI embeddings request. Cause:"
    assert_connection_refused(http, "/_inference/text_embedding/az-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/text_embedding/az-rpm", embedding_body(fake))


# -- streaming -----------------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    body = chat_body(fake, task_settings={"user": "u-1"})
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/az-stream", body)
    assert last(fake).body == {
        "messages": [{"role": "user", "content": "hello big world"}],
        "n": 1,
        "stream": True,
        "user": "u-1",
    }


def test_completion_streams_on_an_api_version_without_stream_options(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-oldstream", chat_body(fake, api_version=OLD_API_VERSION))
    response = http.post("/_inference/completion/az-oldstream/_stream", json={"input": "hi"})
    assert response.content == event({"completion": [{"delta": "HI"}]}) + event("[DONE]")
    assert last(fake).query == {"api-version": OLD_API_VERSION}


def test_chat_completion_stream(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/chat_completion/az-unified", chat_body(fake, task_settings={"user": "u-7"}))
    tool = {"type": "function", "function": {"name": "lookup", "description": "d", "parameters": {"type": "object"}}}
    request = {
        "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi you"}],
        "model": "gpt-4.1",
        "max_completion_tokens": 20,
        "temperature": 0.2,
        "stop": ["END"],
        "tools": [tool],
        "tool_choice": "auto",
        "top_p": 0.5,
    }
    response = http.post("/_inference/chat_completion/az-unified/_stream", json=request)
    assert response.status_code == 200, response.text
    assert last(fake).body == {
        "messages": request["messages"],
        "stop": ["END"],
        "temperature": 0.2,
        "tool_choice": "auto",
        "tools": [tool],
        "top_p": 0.5,
        "max_completion_tokens": 20,
        "n": 1,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-7",
    }  # no "model": the deployment decides
    model = "gpt-4o-mini-2024-07-18"
    chunk = {"id": "chatcmpl-azure-fake", "model": model, "object": "chat.completion.chunk"}
    assert chat_chunks(response) == [
        # Azure's opening prompt-filter chunk, re-emitted as ES does with every chunk.
        {"id": "", "choices": [], "model": "", "object": ""},
        {**chunk, "choices": [{"delta": {"content": "", "role": "assistant"}, "index": 0}]},
        {**chunk, "choices": [{"delta": {"content": "HI"}, "index": 0}]},
        {**chunk, "choices": [{"delta": {"content": " YOU"}, "index": 0}]},
        {**chunk, "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}]},
        {**chunk, "choices": [], "usage": {"completion_tokens": 2, "prompt_tokens": 3, "total_tokens": 9}},
    ]


def test_chat_completion_on_an_api_version_without_stream_options(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/chat_completion/az-oldchat", chat_body(fake, api_version=OLD_API_VERSION))
    request = {"messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/_inference/chat_completion/az-oldchat/_stream", json=request)
    assert response.status_code == 200, response.text
    assert "stream_options" not in last(fake).body
    chunks = chat_chunks(response)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == "HI"
    assert all("usage" not in c for c in chunks)


def test_an_upstream_error_before_a_chat_stream_starts(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/chat_completion/az-chat400", chat_body(fake))
    fake.then(400, {"error": {"message": "Invalid 'messages[0].role'", "type": "invalid_request_error"}})
    response = http.post(
        "/_inference/chat_completion/az-chat400/_stream", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 400
    reason = (
        "Received a bad request status code for request from inference entity id [az-chat400] status [400]. "
        "Error message: [Invalid 'messages[0].role']"
    )
    assert response.content == event(
        {"error": {"code": "bad_request", "message": reason, "type": "status_exception"}}, "error"
    )


def test_a_mid_stream_provider_error_is_an_error_event(http: httpx.Client, fake: FakeAzureOpenAi) -> None:
    put(http, "/_inference/completion/az-break", chat_body(fake))
    error = first_delta_then_error(
        http.post("/_inference/completion/az-break/_stream", json={"input": "one BREAK two"})
    )
    assert error["status"] == 500
    assert error["error"]["reason"] == (
        "Received an error response for request from inference entity id [az-break]. "
        "Error message: [The server had an error while processing your request. Sorry about that!]"
    )


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeAzureOpenAi, http: httpx.Client
) -> None:
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(inferd, fake, http, "/_inference/completion/az-cancel", chat_body(fake), request)


# -- url, SSRF and _services ---------------------------------------------------------------------------


def test_the_default_url_is_the_resource_host_and_url_replaces_only_the_base() -> None:
    settings = {"resource_name": "my-resource", "deployment_id": "gpt 4o/mini", "api_version": "2024-10-21"}
    azure = AzureOpenAiCompletionSettings.model_validate(settings)
    assert deployment_url(azure, "chat/completions") == (
        "https://my-resource.openai.azure.com/openai/deployments/gpt%204o%2Fmini/chat/completions"
        "?api-version=2024-10-21"
    )
    proxied = AzureOpenAiCompletionSettings.model_validate({**settings, "url": "https://apim.example.com/azure/"})
    assert deployment_url(proxied, "embeddings") == (
        "https://apim.example.com/azure/openai/deployments/gpt%204o%2Fmini/embeddings?api-version=2024-10-21"
    )


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeAzureOpenAi) -> None:
    fake.requests.clear()
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/text_embedding/az-ssrf",
        lambda url: embedding_body(fake, url=url),
        [
            (fake.url, "127.0.0.1"),
            ("http://169.254.169.254", "169.254.169.254"),
            ("http://10.1.2.3/azure", "10.1.2.3"),
        ],
    )
    assert fake.requests == []


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "azureopenai")
    assert entry["name"] == "Azure OpenAI"
    assert entry["task_types"] == ["text_embedding", "completion", "chat_completion"]
    config = entry["configurations"]
    every_task = ["text_embedding", "completion", "chat_completion"]
    assert config["resource_name"] == {
        "description": "The name of your Azure OpenAI resource.",
        "label": "Resource Name",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": every_task,
    }
    assert config["deployment_id"]["label"] == "Deployment ID" and config["deployment_id"]["required"] is True
    assert config["api_version"]["description"] == "The Azure API version ID to use."
    assert config["dimensions"]["supported_task_types"] == ["text_embedding"]
    assert config["dimensions"]["type"] == "int"
    for key, label in (("api_key", "API Key"), ("entra_id", "Entra ID")):
        assert config[key] == {
            "description": "You must provide either an API key or an Entra ID.",
            "label": label,
            "required": False,
            "sensitive": True,
            "updatable": True,
            "type": "str",
            "supported_task_types": every_task,
        }
    assert config["rate_limit.requests_per_minute"]["description"] == (
        "The azureopenai service sets a default number of requests allowed per minute depending on the task type."
    )
    assert config["rate_limit.requests_per_minute"]["type"] == "int"
    assert config["url"]["required"] is False
