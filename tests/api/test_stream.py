"""Streaming inference (`_stream`, server-sent events) and unified chat completion, through the real server.

The endpoints use the test-only `test_service` (tests/support/sample_service.py):
- a completion stream yields the words of the joined input, upper-cased, each after the first with a
  leading space, and fails when it reaches the word `FAIL`;
- a chat stream yields one `chat.completion.chunk` per word of the last message (upper-cased), then a
  closing chunk with `finish_reason` and `usage`.

ES writes each event as: a UTF-8 BOM, `event: <message|error>\\n`, `data: <one-line JSON>\\n`, `\\n`
(`ServerSentEventsRestActionListener`), and ends a good stream with `data: [DONE]`.
"""

from __future__ import annotations

import base64
import json
import socket
import struct
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.servers import RunningServer

BOM = b"\xef\xbb\xbf"
JSON = {"Content-Type": "application/json"}


# -- helpers ---------------------------------------------------------------------------------------


def sse(event: str, data: bytes) -> bytes:
    return BOM + b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


DONE = sse("message", b"[DONE]")


def deltas_stream(deltas: list[str]) -> bytes:
    return b"".join(sse("message", compact({"completion": [{"delta": d}]})) for d in deltas) + DONE


def es_error(es_type: str, reason: str, status: int) -> dict[str, Any]:
    cause = {"type": es_type, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}, "status": status}


def unified_error(code: str, message: str, es_type: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": es_type}}


def split_events(body: bytes) -> list[tuple[str, bytes]]:
    """(event, data) pairs; every event must start with a BOM and have exactly one data line."""
    assert body.endswith(b"\n\n"), body
    events = []
    for frame in body[:-2].split(b"\n\n"):
        assert frame.startswith(BOM), frame
        event_line, data_line = frame[len(BOM) :].split(b"\n")
        assert event_line.startswith(b"event: ") and data_line.startswith(b"data: "), frame
        events.append((event_line[len(b"event: ") :].decode(), data_line[len(b"data: ") :]))
    return events


def put_endpoint(http: httpx.Client, task_type: str, inference_id: str, **service_settings: Any) -> None:
    body = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-test", **service_settings}}
    response = http.put(f"/_inference/{task_type}/{inference_id}", json=body)
    assert response.status_code == 200, response.text


def media_type(response: httpx.Response) -> str:
    return response.headers["content-type"].split(";")[0].strip()


def assert_sse_response(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, response.content
    assert media_type(response) == "text/event-stream"
    assert response.headers["x-elastic-product"] == "Elasticsearch"


def assert_single_error_event(response: httpx.Response, status: int, data: dict[str, Any]) -> None:
    assert_sse_response(response, status)
    assert split_events(response.content) == [("error", compact(data))]
    assert response.content == sse("error", compact(data))


def raw_exchange(
    server: RunningServer, path: str, body: bytes, *, read_all: bool = True
) -> tuple[bytes, socket.socket]:
    """A hand-written HTTP/1.1 POST; returns what was read (all of it, or the first bytes) and the socket."""
    url = httpx.URL(server.url)
    assert server.auth is not None
    token = base64.b64encode(":".join(server.auth).encode()).decode()
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nAuthorization: Basic {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock = socket.create_connection((url.host, url.port or 80), timeout=10)
    sock.sendall(head.encode() + body)
    received = b""
    while True:
        data = sock.recv(65536)
        if not data:
            break
        received += data
        if not read_all and b"\r\n\r\n" in received and len(received) > 200:
            break
    return received, sock


def parse_chunked(raw: bytes) -> tuple[str, dict[str, str], list[bytes]]:
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    assert headers.get("transfer-encoding") == "chunked", headers
    chunks = []
    while True:
        size_line, _, rest = rest.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        chunks.append(rest[:size])
        assert rest[size : size + 2] == b"\r\n"
        rest = rest[size + 2 :]
    return status_line, headers, chunks


# -- completion streams ----------------------------------------------------------------------------


def test_stream_content_type_is_exactly_event_stream(http: httpx.Client) -> None:
    # ES's ServerSentEventSpec.MIME_TYPE, with no charset parameter, for streams and SSE errors alike.
    put_endpoint(http, "completion", "st-compl-ctype")
    ok = http.post("/_inference/completion/st-compl-ctype/_stream", json={"input": "a"})
    missing = http.post("/_inference/completion/st-ctype-missing/_stream", json={"input": "a"})
    assert (ok.status_code, missing.status_code) == (200, 404)
    assert ok.headers["content-type"] == "text/event-stream"
    assert missing.headers["content-type"] == "text/event-stream"


@pytest.mark.parametrize("route", ["/_inference/completion/st-compl/_stream", "/_inference/st-compl/_stream"])
def test_completion_stream_is_byte_exact(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "completion", "st-compl")
    response = http.post(route, json={"input": "hello there world"})
    assert_sse_response(response, 200)
    expected = (
        BOM
        + b'event: message\ndata: {"completion":[{"delta":"HELLO"}]}\n\n'
        + BOM
        + b'event: message\ndata: {"completion":[{"delta":" THERE"}]}\n\n'
        + BOM
        + b'event: message\ndata: {"completion":[{"delta":" WORLD"}]}\n\n'
        + BOM
        + b"event: message\ndata: [DONE]\n\n"
    )
    assert response.content == expected
    assert response.content == deltas_stream(["HELLO", " THERE", " WORLD"])


def test_completion_stream_of_an_input_list_and_non_ascii(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-list")
    response = http.post("/_inference/completion/st-compl-list/_stream", json={"input": ["ça", "va"]})
    assert_sse_response(response, 200)
    assert response.content == deltas_stream(["ÇA", " VA"])
    events = split_events(response.content)
    assert [json.loads(d) for e, d in events[:-1]] == [
        {"completion": [{"delta": "ÇA"}]},
        {"completion": [{"delta": " VA"}]},
    ]
    assert events[-1] == ("message", b"[DONE]")


def test_completion_stream_events_are_sent_one_by_one(http: httpx.Client, server: RunningServer) -> None:
    put_endpoint(http, "completion", "st-compl-chunks")
    raw, sock = raw_exchange(server, "/_inference/completion/st-compl-chunks/_stream", b'{"input":"a b c d"}')
    sock.close()
    status_line, headers, chunks = parse_chunked(raw)
    assert status_line == "HTTP/1.1 200 OK"
    assert headers["content-type"].split(";")[0] == "text/event-stream"
    assert "content-length" not in headers
    # Each event is flushed as its own HTTP chunk, as it is produced, not buffered into one body.
    assert chunks == [sse("message", compact({"completion": [{"delta": d}]})) for d in ("A", " B", " C", " D")] + [DONE]


def test_completion_stream_read_incrementally(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-incr")
    words = [f"w{i}" for i in range(200)]
    expected = [compact({"completion": [{"delta": ("" if i == 0 else " ") + w.upper()}]}) for i, w in enumerate(words)]
    seen: list[tuple[str, bytes]] = []
    with http.stream("POST", "/_inference/completion/st-compl-incr/_stream", json={"input": " ".join(words)}) as r:
        assert r.status_code == 200
        assert media_type(r) == "text/event-stream"
        buffer = b""
        for piece in r.iter_bytes():
            buffer += piece
            while b"\n\n" in buffer:
                frame, buffer = buffer.split(b"\n\n", 1)
                seen.extend(split_events(frame + b"\n\n"))
    assert seen == [("message", data) for data in expected] + [("message", b"[DONE]")]


def test_mid_stream_failure_is_an_error_event_after_the_deltas(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-fail")
    response = http.post("/_inference/completion/st-compl-fail/_stream", json={"input": "one two FAIL three"})
    # The stream had started, so the status stays 200 and the failure is the last event, with no [DONE].
    assert_sse_response(response, 200)
    error = es_error("status_exception", "the test service failed mid-stream", 500)
    assert response.content == (
        sse("message", b'{"completion":[{"delta":"ONE"}]}')
        + sse("message", b'{"completion":[{"delta":" TWO"}]}')
        + sse("error", compact(error))
    )
    # The server is still fine.
    again = http.post("/_inference/completion/st-compl-fail/_stream", json={"input": "one two"})
    assert again.content == deltas_stream(["ONE", " TWO"])


# -- streaming refused -----------------------------------------------------------------------------


def test_streaming_a_service_without_streaming_is_405(http: httpx.Client) -> None:
    # The elser alias streams nothing (the elasticsearch service streams its local chat model's tasks).
    body = {"service": "elser", "service_settings": {"num_allocations": 1, "num_threads": 1}}
    put = http.put("/_inference/sparse_embedding/st-es-elser", json=body)
    assert put.status_code == 200, put.text
    for route in ("/_inference/st-es-elser/_stream", "/_inference/sparse_embedding/st-es-elser/_stream"):
        response = http.post(route, json={"input": "hi"})
        error = es_error("status_exception", "Streaming is not allowed for service [elser].", 405)
        assert_single_error_event(response, 405, error)
        assert response.content.startswith(BOM + b'event: error\ndata: {"error":{"root_cause":[')
        assert response.content.endswith(b',"status":405}\n\n')


def test_streaming_a_task_the_service_cannot_stream_is_405(http: httpx.Client) -> None:
    put_endpoint(http, "text_embedding", "st-te")
    reason = (
        "Streaming is not allowed for service [test_service] and task [text_embedding]. "
        "Supported tasks: [completion,chat_completion]"
    )
    for route in ("/_inference/st-te/_stream", "/_inference/text_embedding/st-te/_stream"):
        assert_single_error_event(
            http.post(route, json={"input": "hi"}), 405, es_error("status_exception", reason, 405)
        )
    # Nothing changed: the endpoint still answers non-streamed.
    assert http.post("/_inference/st-te", json={"input": "hi"}).status_code == 200


@pytest.mark.parametrize("route", ["/_inference/st-missing/_stream", "/_inference/completion/st-missing/_stream"])
def test_unknown_endpoint_on_stream_is_a_404_error_event(http: httpx.Client, route: str) -> None:
    response = http.post(route, json={"input": "hi"})
    error = es_error("resource_not_found_exception", "Inference endpoint not found [st-missing]", 404)
    assert_single_error_event(response, 404, error)


def test_task_mismatch_on_stream_is_an_error_event(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-mismatch")
    response = http.post("/_inference/text_embedding/st-compl-mismatch/_stream", json={"input": "hi"})
    reason = "Incompatible task_type, the requested type [text_embedding] does not match the model type [completion]"
    assert_single_error_event(response, 400, es_error("status_exception", reason, 400))


def test_request_validation_on_stream_is_an_error_event(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-invalid")
    response = http.post("/_inference/completion/st-compl-invalid/_stream", json={"input": []})
    error = es_error(
        "action_request_validation_exception", "Validation Failed: 1: Field [input] cannot be an empty array;", 400
    )
    assert_single_error_event(response, 400, error)


def test_unknown_body_field_on_stream_is_an_error_event(http: httpx.Client) -> None:
    # ES 8.18+/9.x parses the body in TransportInferenceActionProxy, behind the SSE listener.
    put_endpoint(http, "completion", "st-compl-badbody")
    response = http.post(
        "/_inference/completion/st-compl-badbody/_stream", content=b'{"input":"a","foo":1}', headers=JSON
    )
    error = es_error("x_content_parse_exception", "[1:14] [cluster:internal/xpack/inference] unknown field [foo]", 400)
    assert_single_error_event(response, 400, error)


@pytest.mark.parametrize(
    ("path", "body", "es_type", "reason"),
    [
        ("/_inference/completion/st-compl-rest/_stream", None, "parse_exception", "request body is required"),
        (
            "/_inference/completion/st-compl-rest/_stream?timeout=abc",
            b'{"input":"a"}',
            "illegal_argument_exception",
            "failed to parse setting [timeout] with value [abc] as a time value: unit is missing or unrecognized",
        ),
        ("/_inference/bogus/st-compl-rest/_stream", b'{"input":"a"}', "status_exception", "Unknown task_type [bogus]"),
    ],
)
def test_rest_layer_errors_on_stream_are_plain_json(
    http: httpx.Client, path: str, body: bytes | None, es_type: str, reason: str
) -> None:
    # Checked by ES's REST handler (BaseInferenceAction.prepareRequest) before anything streams.
    put_endpoint(http, "completion", "st-compl-rest")
    response = http.post(path, content=body, headers=JSON if body is not None else None)
    assert_es_error(response, 400, es_type, reason)


# -- client disconnects ----------------------------------------------------------------------------


def test_client_disconnecting_mid_stream_does_not_break_the_server(http: httpx.Client, server: RunningServer) -> None:
    put_endpoint(http, "completion", "st-compl-drop")
    long_input = " ".join(f"w{i}" for i in range(20000))
    # A raw socket that reads the first bytes and hangs up, with a reset.
    _, sock = raw_exchange(
        server,
        "/_inference/completion/st-compl-drop/_stream",
        json.dumps({"input": long_input}).encode(),
        read_all=False,
    )
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    # An httpx stream closed after the first piece.
    with http.stream("POST", "/_inference/completion/st-compl-drop/_stream", json={"input": long_input}) as r:
        assert r.status_code == 200
        first = next(r.iter_bytes())
        assert first.startswith(BOM + b'event: message\ndata: {"completion":[{"delta":"W0"}]}\n\n')
    # Next requests work, streamed and not.
    again = http.post("/_inference/st-compl-drop/_stream", json={"input": "still here"})
    assert again.content == deltas_stream(["STILL", " HERE"])
    assert http.post("/_inference/st-compl-drop", json={"input": "ok"}).json() == {"completion": [{"result": "OK"}]}
    assert http.get("/").status_code == 200


# -- chat completion (unified, OpenAI-shaped) -----------------------------------------------------------


def chat_chunks(words: list[str], model: str) -> list[dict[str, Any]]:
    chunks: list[dict[str, Any]] = []
    for i, word in enumerate(words):
        delta: dict[str, Any] = {"content": ("" if i == 0 else " ") + word}
        if i == 0:
            delta["role"] = "assistant"
        chunks.append(
            {
                "id": "chatcmpl-test",
                "choices": [{"delta": delta, "index": 0}],
                "model": model,
                "object": "chat.completion.chunk",
            }
        )
    chunks.append(
        {
            "id": "chatcmpl-test",
            "choices": [{"delta": {}, "finish_reason": "stop", "index": 0}],
            "model": model,
            "object": "chat.completion.chunk",
            "usage": {"completion_tokens": len(words), "prompt_tokens": len(words), "total_tokens": 2 * len(words)},
        }
    )
    return chunks


@pytest.mark.parametrize("route", ["/_inference/chat_completion/st-chat/_stream", "/_inference/st-chat/_stream"])
def test_chat_completion_stream(http: httpx.Client, route: str) -> None:
    put_endpoint(http, "chat_completion", "st-chat")
    body = {
        "messages": [
            {"role": "system", "content": "be loud"},
            {"role": "user", "content": [{"type": "text", "text": "ignored"}]},
            {"role": "user", "content": "hi you"},
        ],
        "max_completion_tokens": 20,
        "temperature": 0.5,
        "stop": ["x"],
    }
    response = http.post(route, json=body)
    assert_sse_response(response, 200)
    expected = chat_chunks(["HI", "YOU"], "m1")
    # Each data line is the chunk object itself, not wrapped (ES's StreamingUnifiedChatCompletionResults).
    assert response.content == b"".join(sse("message", compact(c)) for c in expected) + DONE
    events = split_events(response.content)
    assert all(json.loads(data)["object"] == "chat.completion.chunk" for _, data in events[:-1])


def test_chat_completion_model_in_the_request_overrides_the_endpoint(http: httpx.Client) -> None:
    put_endpoint(http, "chat_completion", "st-chat-model")
    body = {"messages": [{"role": "user", "content": "hey"}], "model": "gpt-x"}
    response = http.post("/_inference/chat_completion/st-chat-model/_stream", json=body)
    assert_sse_response(response, 200)
    assert response.content == b"".join(sse("message", compact(c)) for c in chat_chunks(["HEY"], "gpt-x")) + DONE


def test_chat_completion_without_messages(http: httpx.Client) -> None:
    put_endpoint(http, "chat_completion", "st-chat-nomsg")
    # ES: ConstructingObjectParser's "Required [messages]" (IllegalArgumentException), raised in
    # TransportInferenceActionProxy and formatted as a unified error on the SSE channel.
    response = http.post("/_inference/chat_completion/st-chat-nomsg/_stream", json={"model": "x"})
    assert_single_error_event(
        response, 400, unified_error("bad_request", "Required [messages]", "illegal_argument_exception")
    )


def test_completion_endpoint_through_the_chat_route(http: httpx.Client) -> None:
    put_endpoint(http, "completion", "st-compl-as-chat")
    body = {"messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/_inference/chat_completion/st-compl-as-chat/_stream", json=body)
    message = (
        "Incompatible task_type for unified API, the requested type [chat_completion] must be one of [chat_completion]"
    )
    assert_single_error_event(response, 400, unified_error("bad_request", message, "status_exception"))
    # The completion endpoint still streams on its own route.
    assert http.post("/_inference/st-compl-as-chat/_stream", json={"input": "hi"}).content == deltas_stream(["HI"])


def test_unknown_endpoint_on_the_chat_route_is_a_unified_error(http: httpx.Client) -> None:
    body = {"messages": [{"role": "user", "content": "hi"}]}
    response = http.post("/_inference/chat_completion/st-chat-missing/_stream", json=body)
    error = unified_error("not_found", "Inference endpoint not found [st-chat-missing]", "resource_not_found_exception")
    assert_single_error_event(response, 404, error)
    # ES's key order: code, message, (param,) type.
    assert response.content == sse(
        "error",
        b'{"error":{"code":"not_found","message":"Inference endpoint not found [st-chat-missing]",'
        b'"type":"resource_not_found_exception"}}',
    )
