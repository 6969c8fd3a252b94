"""The anthropic service against a fake Anthropic Messages API on loopback, through the real server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest

from inferd.services.anthropic import AnthropicService
from tests.conftest import assert_es_error
from tests.fakes.anthropic import API_KEY, INPUT_TOKENS, MESSAGE_ID, TOOL_USE_ID, VERSION, FakeAnthropic
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
    put,
    put_without_validation,
    serve_fake,
    serve_inferd,
    services_entry,
    sse_frames,
)
from tests.support.servers import PASSWORD, RunningServer, free_port

MODEL = "claude-3-5-haiku-20241022"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeAnthropic]:
    yield from serve_fake(FakeAnthropic())


@pytest.fixture(scope="module")
def inferd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    yield from serve_inferd(tmp_path_factory, "anthropic")


@pytest.fixture
def http(inferd: RunningServer, fake: FakeAnthropic) -> Iterator[httpx.Client]:
    yield from client_for(inferd, fake, "anthropic")


def endpoint_body(fake: FakeAnthropic, task_settings: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
    return {
        "service": "anthropic",
        "service_settings": {"api_key": API_KEY, "model_id": MODEL, "url": f"{fake.url}/v1/messages", **settings},
        "task_settings": {"max_tokens": 64} if task_settings is None else task_settings,
    }


def anthropic_error(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def frames(response: httpx.Response) -> list[tuple[str, Any]]:
    """(event name, decoded data) of each frame of an ES SSE response."""
    out = []
    for frame in sse_frames(response):
        name, data = frame.split(b"\n", 1)
        text = data.removeprefix(b"data: ").rstrip(b"\n").decode()
        out.append((name.removeprefix(b"event: ").decode(), text if text == "[DONE]" else json.loads(text)))
    return out


# -- creation ----------------------------------------------------------------------------------


def test_put_validates_with_a_real_call_and_get_hides_the_key(http: httpx.Client, fake: FakeAnthropic) -> None:
    created = put(http, "/_inference/completion/an-put", endpoint_body(fake))
    assert created == {
        "inference_id": "an-put",
        "task_type": "completion",
        "service": "anthropic",
        "service_settings": {
            "model_id": MODEL,
            "url": f"{fake.url}/v1/messages",
            "rate_limit": {"requests_per_minute": 50},
        },
        "task_settings": {"max_tokens": 64},
    }
    (call,) = fake.requests
    assert call.path == "/v1/messages"
    assert call.headers["x-api-key"] == API_KEY
    assert call.headers["anthropic-version"] == VERSION
    assert "authorization" not in call.headers
    assert call.body == {"messages": [{"role": "user", "content": "how big"}], "model": MODEL, "max_tokens": 64}
    got = http.get("/_inference/an-put").json()["endpoints"][0]
    assert got == created
    assert API_KEY not in json.dumps(got)


def test_max_tokens_is_required(http: httpx.Client, fake: FakeAnthropic) -> None:
    assert_es_error(
        http.put("/_inference/completion/an-nomax", json=endpoint_body(fake, task_settings={})),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] does not contain the required setting [max_tokens];",
    )
    assert fake.requests == []
    assert http.get("/_inference/an-nomax").status_code == 404


def test_missing_wrong_and_unknown_settings(http: httpx.Client, fake: FakeAnthropic) -> None:
    assert_es_error(
        http.put("/_inference/completion/an-bad", json={"service": "anthropic", "service_settings": {}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [service_settings] does not contain the required setting [model_id];"
        "2: [service_settings] does not contain the required setting [api_key];"
        "3: [task_settings] does not contain the required setting [max_tokens];",
    )
    assert_es_error(
        http.put("/_inference/completion/an-bad", json=endpoint_body(fake, task_settings={"max_tokens": 0})),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] Invalid value [0]. [max_tokens] must be a positive integer;",
    )
    assert_es_error(
        http.put("/_inference/completion/an-bad", json=endpoint_body(fake, task_settings={"max_tokens": "many"})),
        400,
        "validation_exception",
        "Validation Failed: 1: field [max_tokens] is not of the expected type. "
        "The value [many] cannot be converted to a [Integer];",
    )
    assert_es_error(
        http.put("/_inference/completion/an-bad", json=endpoint_body(fake, {"max_tokens": 5, "top_n": 1})),
        400,
        "status_exception",
        "Configuration contains settings [{top_n=1}] unknown to the [anthropic] service",
    )
    assert_es_error(
        http.put("/_inference/text_embedding/an-bad", json=endpoint_body(fake)),
        400,
        "status_exception",
        "The [anthropic] service does not support task type [text_embedding]",
    )
    assert fake.requests == []
    assert http.get("/_inference/an-bad").status_code == 404


def test_a_bad_key_at_creation_is_the_mapped_401(http: httpx.Client, fake: FakeAnthropic) -> None:
    body = endpoint_body(fake, api_key="sk-ant-wrong")
    caused_by = assert_creation_fails(http, "/_inference/completion/an-badkey", body)
    assert caused_by == {
        "type": "status_exception",
        "reason": "Received an authentication error status code for request from inference entity id [an-badkey] "
        "status [401]. Error message: [invalid x-api-key]",
    }
    assert fake.requests[-1].headers["x-api-key"] == "sk-ant-wrong"


def test_validation_can_be_skipped(tmp_path: Path, fake: FakeAnthropic) -> None:
    fake.requests.clear()
    body = endpoint_body(fake)
    del body["service_settings"]["url"]  # the default endpoint is Anthropic's own: never called here
    created = put_without_validation(tmp_path, "/_inference/completion/an-skip", body)
    assert fake.requests == []
    assert created["service_settings"] == {"model_id": MODEL, "rate_limit": {"requests_per_minute": 50}}


# -- completion ----------------------------------------------------------------------------------


def test_completion_maps_the_task_settings(http: httpx.Client, fake: FakeAnthropic) -> None:
    task = {"max_tokens": 128, "temperature": 0.5, "top_p": 0.9, "top_k": 40}
    created = put(http, "/_inference/completion/an-comp", endpoint_body(fake, task))
    assert created["task_settings"] == task
    response = http.post("/_inference/completion/an-comp", json={"input": "hello there"})
    assert response.status_code == 200, response.text
    assert response.json() == {"completion": [{"result": "HELLO THERE"}]}
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello there"}],
        "model": MODEL,
        "max_tokens": 128,
        "temperature": 0.5,
        "top_p": 0.9,
        "top_k": 40,
    }


def test_request_task_settings_override_max_tokens(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-override", endpoint_body(fake, {"max_tokens": 64, "temperature": 0.1}))
    request = {"input": "hi", "task_settings": {"max_tokens": 7, "top_k": 3}}
    response = http.post("/_inference/completion/an-override", json=request)
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hi"}],
        "model": MODEL,
        "max_tokens": 7,
        "temperature": 0.1,
        "top_k": 3,
    }
    # The override is for that request only.
    assert http.get("/_inference/an-override").json()["endpoints"][0]["task_settings"] == {
        "max_tokens": 64,
        "temperature": 0.1,
    }
    http.post("/_inference/completion/an-override", json={"input": "hi"})
    assert fake.requests[-1].body["max_tokens"] == 64
    assert_es_error(
        http.post("/_inference/completion/an-override", json={"input": "hi", "task_settings": {"max_tokens": -1}}),
        400,
        "validation_exception",
        "Validation Failed: 1: [task_settings] Invalid value [-1]. [max_tokens] must be a positive integer;",
    )


def test_each_input_is_a_user_message_and_each_text_block_a_result(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-multi", endpoint_body(fake))
    answer = {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": [
            {"type": "text", "text": "first"},
            {"type": "tool_use", "id": TOOL_USE_ID, "name": "get_weather", "input": {}},
            {"type": "text", "text": "second"},
        ],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 5, "output_tokens": 2},
    }
    fake.then(200, answer)
    response = http.post("/_inference/completion/an-multi", json={"input": ["a", "b"]})
    assert response.json() == {"completion": [{"result": "first"}, {"result": "second"}]}
    assert fake.requests[-1].body["messages"] == [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]


def test_the_official_client_calls_it(inferd: RunningServer, fake: FakeAnthropic) -> None:
    client = elasticsearch.Elasticsearch(inferd.url, basic_auth=("elastic", PASSWORD))
    try:
        body = endpoint_body(fake)
        client.inference.put_anthropic(
            task_type="completion",
            anthropic_inference_id="an-client",
            service="anthropic",
            service_settings=body["service_settings"],
            task_settings={"max_tokens": 32},
        )
        result = client.inference.completion(inference_id="an-client", input="from the client")
        assert result.body == {"completion": [{"result": "FROM THE CLIENT"}]}
        assert fake.requests[-1].body["max_tokens"] == 32
    finally:
        client.inference.delete(inference_id="an-client")
        client.close()


# -- failures ------------------------------------------------------------------------------------


def test_upstream_400_passes_through(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-400", endpoint_body(fake))
    fake.requests.clear()
    fake.then(400, anthropic_error("invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
    assert_es_error(
        http.post("/_inference/completion/an-400", json={"input": "x"}),
        400,
        "status_exception",
        "Received an unsuccessful status code for request from inference entity id [an-400] status [400]. "
        "Error message: [prompt is too long: 250000 tokens > 200000 maximum]",
    )
    assert len(fake.requests) == 1  # a 4xx is not retried


def test_upstream_403_and_404(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-403", endpoint_body(fake))
    fake.then(403, anthropic_error("permission_error", "Your API key does not have permission to use this model."))
    assert_es_error(
        http.post("/_inference/completion/an-403", json={"input": "x"}),
        403,
        "status_exception",
        "Received a permission denied error status code for request from inference entity id [an-403] "
        "status [403]. Error message: [Your API key does not have permission to use this model.]",
    )
    fake.then(404, anthropic_error("not_found_error", f"model: {MODEL}"))
    assert_es_error(
        http.post("/_inference/completion/an-403", json={"input": "x"}),
        404,
        "status_exception",
        "Received an unsuccessful status code for request from inference entity id [an-403] status [404]. "
        f"Error message: [model: {MODEL}]",
    )


@pytest.mark.parametrize(
    ("status", "error_type", "wording"),
    [
        (500, "api_error", "Received a server error status code"),
        (529, "overloaded_error", "Received an Anthropic server is temporarily overloaded status code"),
    ],
)
def test_5xx_becomes_400_after_bounded_retries(
    http: httpx.Client, fake: FakeAnthropic, status: int, error_type: str, wording: str
) -> None:
    put(http, "/_inference/completion/an-5xx", endpoint_body(fake))
    fake.requests.clear()
    fake.then(status, anthropic_error(error_type, "Overloaded"), times=10)
    assert_es_error(
        http.post("/_inference/completion/an-5xx", json={"input": "x"}),
        400,
        "status_exception",
        f"{wording} for request from inference entity id [an-5xx] status [{status}]. Error message: [Overloaded]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


@pytest.mark.parametrize("status", [502, 503])
def test_other_5xx_are_not_retried(http: httpx.Client, fake: FakeAnthropic, status: int) -> None:
    put(http, "/_inference/completion/an-5xx-once", endpoint_body(fake))
    fake.requests.clear()
    fake.then(status, anthropic_error("api_error", "Unavailable"), times=10)
    assert_es_error(
        http.post("/_inference/completion/an-5xx-once", json={"input": "x"}),
        400,
        "status_exception",
        f"Received a server error status code for request from inference entity id [an-5xx-once] status [{status}]. "
        "Error message: [Unavailable]",
    )
    assert len(fake.requests) == 1


def test_429_is_retried_after_retry_after(http: httpx.Client, fake: FakeAnthropic) -> None:
    rate_limited = anthropic_error("rate_limit_error", "Number of requests has exceeded your rate limit")
    assert_retry_after_is_waited_out(http, fake, "/_inference/completion/an-429", endpoint_body(fake), rate_limited)


def test_429_after_the_retries_reports_the_rate_limit_headers(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-429b", endpoint_body(fake))
    fake.requests.clear()
    headers = {
        "retry-after": "0",
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "2025-01-01T00:00:30Z",
        "anthropic-ratelimit-tokens-limit": "40000",
    }
    fake.then(429, anthropic_error("rate_limit_error", "Slow down"), headers=headers, times=10)
    assert_es_error(
        http.post("/_inference/completion/an-429b", json={"input": "x"}),
        429,
        "status_exception",
        "Received a rate limit status code. Token limit [40000], remaining tokens [unknown], tokens reset [unknown]. "
        "Request limit [50], remaining requests [0], request reset [2025-01-01T00:00:30Z]. Retry after [0] "
        "for request from inference entity id [an-429b] status [429]. Error message: [Slow down]",
    )
    assert len(fake.requests) == 1 + MAX_RETRIES


def test_a_slow_provider_hits_the_request_timeout(http: httpx.Client, fake: FakeAnthropic) -> None:
    assert_request_timeout(http, fake, "/_inference/completion/an-slow", endpoint_body(fake), {"content": []})


def test_malformed_and_incomplete_answers(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-garbled", endpoint_body(fake))
    fake.then(200, raw=b"{not json")
    error = assert_es_error(
        http.post("/_inference/completion/an-garbled", json={"input": "x"}), 400, "status_exception"
    )
    assert error["reason"].startswith(
        "Failed to send Anthropic completion request. Cause: the response is not valid JSON"
    )
    fake.then(200, {"id": MESSAGE_ID, "type": "message", "role": "assistant"})
    assert_es_error(
        http.post("/_inference/completion/an-garbled", json={"input": "x"}),
        400,
        "status_exception",
        "Failed to find required field [content] in Anthropic chat completions response",
    )


def test_connection_refused(http: httpx.Client, fake: FakeAnthropic) -> None:
    body = endpoint_body(fake, url=f"http://127.0.0.1:{free_port()}/v1/messages")
    cause = "Failed to send Anthropic completion request. Cause:"
    assert_connection_refused(http, "/_inference/completion/an-refused", body, cause)


def test_the_rate_limit_holds(http: httpx.Client, fake: FakeAnthropic) -> None:
    assert_rate_limit_holds(http, fake, "/_inference/completion/an-rpm", endpoint_body(fake))


# -- completion streaming ------------------------------------------------------------------------


def test_completion_stream_frames_are_byte_exact(http: httpx.Client, fake: FakeAnthropic) -> None:
    body = endpoint_body(fake, {"max_tokens": 16, "top_k": 5})
    assert_completion_stream_is_byte_exact(http, "/_inference/completion/an-stream", body)
    assert fake.requests[-1].body == {
        "messages": [{"role": "user", "content": "hello big world"}],
        "model": MODEL,
        "max_tokens": 16,
        "top_k": 5,
        "stream": True,
    }


@pytest.mark.parametrize(("word", "status", "reason"), [("BREAK", 500, "Overloaded"), ("LIMIT", 429, "Slow down")])
def test_a_mid_stream_error_event_is_an_es_error_event(
    http: httpx.Client, fake: FakeAnthropic, word: str, status: int, reason: str
) -> None:
    put(http, "/_inference/completion/an-break", endpoint_body(fake))
    response = http.post("/_inference/completion/an-break/_stream", json={"input": f"one {word} two"})
    assert response.status_code == 200
    (first, error) = frames(response)
    assert first == ("message", {"completion": [{"delta": "ONE"}]})
    assert error[0] == "error"
    assert error[1]["status"] == status
    assert error[1]["error"]["type"] == "status_exception"
    assert error[1]["error"]["reason"] == reason


def test_an_upstream_error_before_the_stream_keeps_its_status(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-early", endpoint_body(fake))
    fake.then(401, anthropic_error("authentication_error", "invalid x-api-key"))
    response = http.post("/_inference/completion/an-early/_stream", json={"input": "x"})
    assert response.status_code == 401
    ((name, body),) = frames(response)
    assert name == "error"
    assert body["error"]["reason"] == (
        "Received an authentication error status code for request from inference entity id [an-early] "
        "status [401]. Error message: [invalid x-api-key]"
    )


def test_a_client_that_disconnects_cancels_the_upstream_call(
    inferd: RunningServer, fake: FakeAnthropic, http: httpx.Client
) -> None:
    request = {"input": "slow " * 50}
    assert_disconnect_cancels_upstream(
        inferd, fake, http, "/_inference/completion/an-cancel", endpoint_body(fake), request
    )


# -- chat completion -----------------------------------------------------------------------------


def chunk(choice: dict[str, Any], usage: dict[str, int] | None = None) -> dict[str, Any]:
    out = {"id": MESSAGE_ID, "choices": [choice], "model": MODEL, "object": "chat.completion.chunk"}
    return out | ({"usage": usage} if usage else {})


def test_chat_completion_put_validates_with_a_streaming_call(http: httpx.Client, fake: FakeAnthropic) -> None:
    created = put(http, "/_inference/chat_completion/an-chat-put", endpoint_body(fake))
    assert created["task_type"] == "chat_completion"
    assert fake.requests[-1].body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "how big"}]}],
        "stream": True,
        "max_tokens": 64,
    }
    assert_es_error(
        http.post("/_inference/chat_completion/an-chat-put", json={"input": "x"}),
        400,
        "status_exception",
        "The [chat_completion] task type only supports streaming, please try again with the _stream API",
    )


def test_chat_completion_stream_converts_request_and_events(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-chat", endpoint_body(fake, {"max_tokens": 64, "top_p": 0.5, "top_k": 9}))
    request = {
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi you"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": [{"type": "text", "text": "say it"}, {"type": "text", "text": "loud"}]},
        ],
        "model": "ignored-by-anthropic",
        "max_completion_tokens": 20,
        "temperature": 0.2,
        "stop": ["END"],
    }
    response = http.post("/_inference/chat_completion/an-chat/_stream", json=request)
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body == {
        "model": MODEL,
        "system": [{"type": "text", "text": "be brief"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi you"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
            {"role": "user", "content": [{"type": "text", "text": "say it"}, {"type": "text", "text": "loud"}]},
        ],
        "stop_sequences": ["END"],
        "temperature": 0.2,
        "top_p": 0.5,
        "top_k": 9,
        "stream": True,
        "max_tokens": 20,
    }
    assert frames(response) == [
        ("message", chunk({"delta": {"role": "assistant"}, "index": 0}, usage(1))),
        ("message", chunk({"delta": {"content": ""}, "index": 0})),
        ("message", chunk({"delta": {"content": "SAY"}, "index": 0})),
        ("message", chunk({"delta": {"content": " IT"}, "index": 0})),
        ("message", chunk({"delta": {"content": " LOUD"}, "index": 0})),
        ("message", chunk({"delta": {}, "finish_reason": "stop", "index": 0}, usage(12))),
        ("message", "[DONE]"),
    ]


def usage(output: int) -> dict[str, int]:
    return {"completion_tokens": output, "prompt_tokens": INPUT_TOKENS, "total_tokens": output + INPUT_TOKENS}


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}


def test_chat_completion_tool_calls(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-tools", endpoint_body(fake))
    request = {
        "messages": [{"role": "user", "content": "Paris"}],
        "tools": [WEATHER_TOOL],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    }
    response = http.post("/_inference/chat_completion/an-tools/_stream", json=request)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].body
    assert sent["tools"] == [
        {
            "name": "get_weather",
            "input_schema": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
                "additionalProperties": False,
            },
            "description": "The weather in a city",
        }
    ]
    assert sent["tool_choice"] == {"type": "tool", "name": "get_weather"}
    call = {"index": 0, "id": TOOL_USE_ID, "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    assert [data for _, data in frames(response)][2:] == [
        chunk({"delta": {"content": "Let"}, "index": 0}),
        chunk({"delta": {"content": " me"}, "index": 0}),
        chunk({"delta": {"content": " check."}, "index": 0}),
        chunk({"delta": {"tool_calls": [call]}, "index": 0}),
        chunk({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"cit'}}]}, "index": 0}),
        chunk({"delta": {"tool_calls": [{"index": 0, "function": {"arguments": 'y": "Paris"}'}}]}, "index": 0}),
        chunk({"delta": {}, "finish_reason": "tool_calls", "index": 0}, usage(12)),
        "[DONE]",
    ]


def test_chat_completion_tool_results_become_anthropic_blocks(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-toolres", endpoint_body(fake))
    request = {
        "messages": [
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "content": "Let me check.",
                "tool_calls": [
                    {
                        "id": TOOL_USE_ID,
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": TOOL_USE_ID, "content": "sunny"},
        ],
        "tools": [WEATHER_TOOL],
        "tool_choice": "auto",
    }
    response = http.post("/_inference/chat_completion/an-toolres/_stream", json=request)
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Paris"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": TOOL_USE_ID, "name": "get_weather", "input": {"city": "Paris"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": TOOL_USE_ID, "content": [{"type": "text", "text": "sunny"}]}
            ],
        },
    ]
    assert fake.requests[-1].body["tool_choice"] == {"type": "auto"}
    text = "".join(d["choices"][0]["delta"].get("content", "") for n, d in frames(response) if d != "[DONE]")
    assert text == "RESULT: sunny"


@pytest.mark.parametrize(("choice", "expected"), [("none", {"type": "none"}), ("required", {"type": "any"})])
def test_chat_completion_tool_choice_strings(
    http: httpx.Client, fake: FakeAnthropic, choice: str, expected: dict[str, str]
) -> None:
    put(http, "/_inference/chat_completion/an-choice", endpoint_body(fake))
    request = {"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER_TOOL], "tool_choice": choice}
    assert http.post("/_inference/chat_completion/an-choice/_stream", json=request).status_code == 200
    assert fake.requests[-1].body["tool_choice"] == expected


def test_chat_completion_images(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-image", endpoint_body(fake))
    parts = [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/jpg;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
    ]
    response = http.post(
        "/_inference/chat_completion/an-image/_stream", json={"messages": [{"role": "user", "content": parts}]}
    )
    assert response.status_code == 200, response.text
    assert fake.requests[-1].body["messages"][0]["content"] == [
        {"type": "text", "text": "what is this"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"role": "developer", "content": "x"}, "Unsupported role [developer] for the Anthropic chat completion API."),
        (
            {"role": "tool", "content": "x"},
            "Field [tool_call_id] is required in a tool message for the Anthropic chat completion API.",
        ),
        (
            {"role": "user", "content": [{"type": "input_audio", "text": "x"}]},
            "Unsupported content type [input_audio] for the Anthropic chat completion API.",
        ),
        (
            {
                "role": "assistant",
                "tool_calls": [{"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}],
            },
            "The arguments of tool call [t1] are not valid JSON",
        ),
        (
            {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]},
            "Image URLs must be HTTP(S) URLs or base64 data URIs with the format [data:{MIME-type};base64,...] "
            "for the Anthropic chat completion API.",
        ),
    ],
)
def test_chat_completion_messages_anthropic_cannot_take(
    http: httpx.Client, fake: FakeAnthropic, message: dict[str, Any], reason: str
) -> None:
    put(http, "/_inference/chat_completion/an-badmsg", endpoint_body(fake))
    before = len(fake.requests)
    response = http.post("/_inference/chat_completion/an-badmsg/_stream", json={"messages": [message]})
    assert response.status_code == 400
    assert frames(response) == [
        ("error", {"error": {"code": "bad_request", "message": reason, "type": "status_exception"}})
    ]
    assert len(fake.requests) == before


def test_chat_completion_system_parts_and_empty_tool_results(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-parts", endpoint_body(fake))
    request = {
        "messages": [
            {"role": "system", "content": [{"type": "text", "text": "be"}, {"type": "text", "text": " kind"}]},
            {"role": "system", "content": "and brief"},
            {"role": "user", "content": "Paris"},
            {
                "role": "assistant",
                "tool_calls": [{"id": TOOL_USE_ID, "type": "function", "function": {"name": "ping", "arguments": ""}}],
            },
            {"role": "tool", "tool_call_id": TOOL_USE_ID},
        ],
    }
    response = http.post("/_inference/chat_completion/an-parts/_stream", json=request)
    assert response.status_code == 200, response.text
    sent = fake.requests[-1].body
    assert sent["system"] == [{"type": "text", "text": "be kind"}, {"type": "text", "text": "and brief"}]
    assert sent["messages"][1:] == [
        {"role": "assistant", "content": [{"type": "tool_use", "id": TOOL_USE_ID, "name": "ping", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": TOOL_USE_ID}]},
    ]


SSE = {"content-type": "text/event-stream"}


def test_a_garbled_stream_event(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/completion/an-garbled-sse", endpoint_body(fake))
    fake.then(200, raw=b"event: message_start\ndata: {oops\n\n", headers=SSE)
    response = http.post("/_inference/completion/an-garbled-sse/_stream", json={"input": "x"})
    assert response.status_code == 500
    ((name, body),) = frames(response)
    assert name == "error"
    assert body["error"]["reason"] == "Failed to parse event from inference provider: {oops"


def test_a_chat_stream_event_without_a_required_field(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-nofield", endpoint_body(fake))
    start = {"type": "message_start", "message": {"id": MESSAGE_ID, "model": MODEL, "role": "assistant"}}
    fake.then(200, raw=f"event: message_start\ndata: {json.dumps(start)}\n\n".encode(), headers=SSE)
    response = http.post(
        "/_inference/chat_completion/an-nofield/_stream", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 500
    assert frames(response) == [
        (
            "error",
            {
                "error": {
                    "code": "internal_server_error",
                    "message": "Failed to find required field [usage] in Anthropic chat completions response",
                    "type": "status_exception",
                }
            },
        )
    ]


def test_chat_completion_upstream_error_before_the_stream(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-chat400", endpoint_body(fake))
    error = anthropic_error("invalid_request_error", "max_tokens: 100000 > 8192")
    fake.then(400, error)
    response = http.post(
        "/_inference/chat_completion/an-chat400/_stream", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 400
    ((name, body),) = frames(response)
    assert name == "error"
    assert body == {
        "error": {
            "code": "bad_request",
            "message": "Received an unsuccessful status code for request from inference entity id [an-chat400] "
            f"status [400]. Error message: [{json.dumps(error, separators=(',', ':'))}]",
            "type": "anthropic_error",
        }
    }


def test_chat_completion_mid_stream_error(http: httpx.Client, fake: FakeAnthropic) -> None:
    put(http, "/_inference/chat_completion/an-chatbrk", endpoint_body(fake))
    response = http.post(
        "/_inference/chat_completion/an-chatbrk/_stream", json={"messages": [{"role": "user", "content": "a BREAK"}]}
    )
    assert response.status_code == 200
    got = frames(response)
    assert [name for name, _ in got] == ["message", "message", "message", "error"]
    raw = json.dumps({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert got[-1][1] == {
        "error": {
            "code": "internal_server_error",
            "message": "Received an error response for request from inference entity id [an-chatbrk]. "
            f"Error message: [{raw}]",
            "type": "anthropic_error",
        }
    }


def test_chat_completion_disconnect_cancels_upstream(
    inferd: RunningServer, fake: FakeAnthropic, http: httpx.Client
) -> None:
    request = {"messages": [{"role": "user", "content": "slow " * 50}]}
    assert_disconnect_cancels_upstream(
        inferd, fake, http, "/_inference/chat_completion/an-chatcancel", endpoint_body(fake), request
    )


# -- guard and catalogue -------------------------------------------------------------------------


def test_ssrf_guard_refuses_private_addresses(tmp_path: Path, fake: FakeAnthropic) -> None:
    fake.requests.clear()
    assert_ssrf_guard_refuses(
        tmp_path,
        "/_inference/completion/an-ssrf",
        lambda url: endpoint_body(fake, url=url),
        [(f"{fake.url}/v1/messages", "127.0.0.1"), ("http://10.0.0.7/v1/messages", "10.0.0.7")],
    )
    assert fake.requests == []


def test_services_entry(http: httpx.Client) -> None:
    entry = services_entry(http, "anthropic")
    assert entry["name"] == "Anthropic"
    assert entry["task_types"] == ["completion", "chat_completion"]
    config = entry["configurations"]
    assert config["api_key"] == api_key_configuration(["completion", "chat_completion"])
    assert config["model_id"] == {
        "description": "The name of the model to use for the inference task.",
        "label": "Model ID",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "str",
        "supported_task_types": ["completion", "chat_completion"],
    }
    assert config["max_tokens"] == {
        "description": "The maximum number of tokens to generate before stopping.",
        "label": "Max Tokens",
        "required": True,
        "sensitive": False,
        "updatable": False,
        "type": "int",
        "supported_task_types": ["completion", "chat_completion"],
    }
    limit = config["rate_limit.requests_per_minute"]
    assert (
        limit["description"]
        == "By default, the anthropic service sets the number of requests allowed per minute to 50."
    )
    assert (limit["type"], limit["required"]) == ("int", False)
    completion_only = [e for e in http.get("/_inference/_services/completion").json() if e["service"] == "anthropic"]
    assert completion_only == [entry]


def failed(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(
        status, headers=headers, request=httpx.Request("POST", "https://api.anthropic.com/v1/messages")
    )


@pytest.mark.parametrize(
    ("status", "wording", "retried"),
    [
        (302, "Unhandled redirection", False),
        (400, "Received an unsuccessful status code", False),
        (401, "Received an authentication error status code", False),
        (403, "Received a permission denied error status code", False),
        (404, "Received an unsuccessful status code", False),
        (413, "Received an unsuccessful status code", False),
        (422, "Received an unsuccessful status code", False),
        (500, "Received a server error status code", True),
        (502, "Received a server error status code", False),
        (503, "Received a server error status code", False),
        (529, "Received an Anthropic server is temporarily overloaded status code", True),
    ],
)
def test_status_wording_and_retries_follow_es_anthropic_handler(status: int, wording: str, retried: bool) -> None:
    service = AnthropicService.__new__(AnthropicService)  # the hooks need no context
    assert service.describe_status(failed(status)) == wording
    assert service.is_retryable(failed(status)) is retried


def test_the_429_wording_names_every_rate_limit_header() -> None:
    service = AnthropicService.__new__(AnthropicService)
    assert service.is_retryable(failed(429))
    assert service.describe_status(failed(429)) == (
        "Received a rate limit status code. Token limit [unknown], remaining tokens [unknown], tokens reset [unknown]. "
        "Request limit [unknown], remaining requests [unknown], request reset [unknown]. Retry after [unknown]"
    )
    headers = {f"anthropic-ratelimit-{k}": k for k in ("tokens-remaining", "tokens-reset", "requests-remaining")}
    assert service.describe_status(failed(429, headers | {"retry-after": "7"})) == (
        "Received a rate limit status code. Token limit [unknown], remaining tokens [tokens-remaining], tokens reset "
        "[tokens-reset]. Request limit [unknown], remaining requests [requests-remaining], request reset [unknown]. "
        "Retry after [7]"
    )
