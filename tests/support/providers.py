"""What the provider test files (tests/services/test_<provider>.py) share.

Each of those files runs one fake provider (tests/fakes/) and one inferd server trusting loopback,
and repeats the same scenarios with its own paths, bodies and error shapes. This module holds the
plumbing behind their `fake` / `inferd` / `http` fixtures, the ES messages that do not depend on the
provider, SSE frame helpers, and the scenarios whose steps and assertions are the same for every
provider: the caller passes what differs (path, endpoint body, the fake's scripted answer).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import assert_es_error
from tests.fakes.harness import FakeProvider
from tests.support.servers import RunningServer, ThreadedServer

# Also covers a `url` that is a base with no path: the guard matches it as if it ended in "/".
LOOPBACK = r"http://127\.0\.0\.1:\d+/.*"
MAX_RETRIES = 3
FAST_RETRIES: dict[str, Any] = {
    "http_retry_initial_delay": 0.01,
    "http_retry_max_delay": 0.05,
    "http_max_retries": MAX_RETRIES,
}
BOM = b"\xef\xbb\xbf"
CREATION_FAILED = "Could not complete inference endpoint creation as validation call to service threw an exception."
DONE = b"event: message\ndata: [DONE]\n\n"

F = TypeVar("F", bound=FakeProvider)


# -- fixture bodies: each test file declares `fake`, `inferd` and `http` and delegates here ----------


def serve_fake(fake: F) -> Iterator[F]:
    """The fake provider, running on loopback for as long as the fixture lives."""
    with fake:
        yield fake


def serve_inferd(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[RunningServer]:
    """An inferd server that may call loopback (where the fakes run) and retries fast."""
    data = tmp_path_factory.mktemp(name)
    with ThreadedServer(data, trusted_url_patterns=[LOOPBACK], **FAST_RETRIES) as running:
        yield running


def client_for(inferd: RunningServer, fake: FakeProvider, service: str) -> Iterator[httpx.Client]:
    """A client for one test: the fake's log, script and cancel flag start empty; the service's endpoints go after."""
    fake.requests.clear()
    fake.script.clear()
    fake.stream_cancelled.clear()
    with inferd.http() as client:
        yield client
        for ep in client.get("/_inference/_all").json()["endpoints"]:
            if ep["service"] == service:
                client.delete(f"/_inference/{ep['inference_id']}")


# -- requests ------------------------------------------------------------------------------------


def put(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """PUT an endpoint that must be created; returns it."""
    response = http.put(path, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def put_without_validation(data_dir: Path, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """PUT on a fresh server started with skip_validate_and_start (and loopback trusted); returns the endpoint."""
    server = ThreadedServer(data_dir, trusted_url_patterns=[LOOPBACK], skip_validate_and_start=True)
    with server as running, running.http() as client:
        return put(client, path, body)


def inference_id_of(path: str) -> str:
    """The inference id that ends a /_inference/<task>/<id> path."""
    return path.rsplit("/", 1)[-1]


# -- ES messages that are the same for every provider --------------------------------------------


def dimensions_mismatch(size: int, declared: int, inference_id: str) -> str:
    return (
        f"The retrieved embeddings size [{size}] does not match the size specified in the settings [{declared}]. "
        f"Please recreate the [{inference_id}] configuration with the correct dimensions"
    )


def non_public_address(url: str, address: str) -> str:
    return (
        f"The url [{url}] resolves to the non-public address [{address}], which inferd does not call; "
        "an operator can allow it with a matching pattern in INFERD_TRUSTED_URL_PATTERNS"
    )


# -- SSE -----------------------------------------------------------------------------------------


def event(data: dict[str, Any] | str, name: str = "message") -> bytes:
    """One SSE frame exactly as inferd writes it (ES's BOM first, compact JSON)."""
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return BOM + f"event: {name}\ndata: {payload}\n\n".encode()


def sse_frames(response: httpx.Response) -> list[bytes]:
    """The frames of an SSE answer, each without its BOM."""
    return [f for f in response.content.split(BOM) if f]


def error_event(response: httpx.Response) -> Any:
    """The decoded data of the error event that opens an SSE answer."""
    name, data = response.content.removeprefix(BOM).split(b"\n", 1)
    assert name == b"event: error"
    return json.loads(data.removeprefix(b"data: "))


def first_delta_then_error(response: httpx.Response) -> Any:
    """A completion stream that sent the delta "ONE" and then one error event: returns that event's data."""
    assert response.status_code == 200
    frames = sse_frames(response)
    assert frames[0] == b'event: message\ndata: {"completion":[{"delta":"ONE"}]}\n\n'
    assert len(frames) == 2
    name, data = frames[1].split(b"\n", 1)
    assert name == b"event: error"
    return json.loads(data.removeprefix(b"data: "))


def chat_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    """The chat.completion.chunk objects of a chat_completion stream that ended with [DONE]."""
    frames = sse_frames(response)
    assert frames[-1] == DONE
    return [json.loads(f.removeprefix(b"event: message\ndata: ")) for f in frames[:-1]]


# -- _services -----------------------------------------------------------------------------------


def services_entry(http: httpx.Client, service: str) -> dict[str, Any]:
    """The one GET _inference/_services entry of a service."""
    (entry,) = [e for e in http.get("/_inference/_services").json() if e["service"] == service]
    return dict(entry)


def api_key_configuration(task_types: list[str]) -> dict[str, Any]:
    """The `api_key` configuration of a service with ES's default secret settings."""
    return {
        "description": "API Key for the provider you're connecting to.",
        "label": "API Key",
        "required": True,
        "sensitive": True,
        "updatable": True,
        "type": "str",
        "supported_task_types": task_types,
    }


# -- scenarios every provider repeats --------------------------------------------------------------


def assert_creation_fails(http: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    """PUT fails its validation call with ES's creation error and leaves no endpoint; returns the error's cause."""
    error = assert_es_error(http.put(path, json=body), 400, "status_exception", CREATION_FAILED)
    assert http.get(f"/_inference/{inference_id_of(path)}").status_code == 404
    return dict(error["caused_by"])


def assert_connection_refused(http: httpx.Client, path: str, body: dict[str, Any], cause: str) -> None:
    """PUT with a `url` where nothing listens: the creation fails, its cause starting with `cause`."""
    assert assert_creation_fails(http, path, body)["reason"].startswith(cause)


def assert_rate_limit_holds(http: httpx.Client, fake: FakeProvider, path: str, body: dict[str, Any]) -> None:
    """With 3 requests a minute, the validation call and two inferences take the slots; the fourth waits for one
    until its timeout and never reaches the provider."""
    limited = {**body["service_settings"], "rate_limit": {"requests_per_minute": 3}}
    put(http, path, {**body, "service_settings": limited})
    for _ in range(2):  # the validation call at PUT took the first slot
        response = http.post(path, json={"input": "x"})
        assert response.status_code == 200, response.text
    before = len(fake.requests)
    response = http.post(f"{path}?timeout=500ms", json={"input": "x"})
    assert response.status_code == 408
    assert len(fake.requests) == before  # the fourth call waited for a slot and never reached the provider


def assert_retry_after_is_waited_out(
    http: httpx.Client,
    fake: FakeProvider,
    path: str,
    body: dict[str, Any],
    rate_limited: Any,
    *,
    retry_after: str = "0.5",
    headers: dict[str, str] | None = None,
) -> None:
    """One 429 (the provider's `rate_limited` body) with Retry-After: inferd waits that long, retries once, succeeds."""
    put(http, path, body)
    fake.requests.clear()
    fake.then(429, rate_limited, headers={"Retry-After": retry_after, **(headers or {})})
    started = time.monotonic()
    response = http.post(path, json={"input": "x"})
    assert response.status_code == 200, response.text
    assert len(fake.requests) == 2
    assert time.monotonic() - started >= float(retry_after)  # the provider's Retry-After was waited out


def assert_request_timeout(http: httpx.Client, fake: FakeProvider, path: str, body: dict[str, Any], late: Any) -> None:
    """The provider answers `late` after 3s: the request's ?timeout=300ms is a 408 first."""
    put(http, path, body)
    fake.then(200, late, delay=3)
    assert_es_error(
        http.post(f"{path}?timeout=300ms", json={"input": "x"}),
        408,
        "status_exception",
        "Request timed out after [300ms]",
    )


def assert_completion_stream_is_byte_exact(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    """A completion endpoint streams "hello big world" (the fakes upper-case it word by word) in ES's exact bytes."""
    put(http, path, body)
    response = http.post(f"{path}/_stream", json={"input": "hello big world"})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    assert response.content == b"".join(
        [
            event({"completion": [{"delta": "HELLO"}]}),
            event({"completion": [{"delta": " BIG"}]}),
            event({"completion": [{"delta": " WORLD"}]}),
            event("[DONE]"),
        ]
    )


def assert_disconnect_cancels_upstream(
    inferd: RunningServer,
    fake: FakeProvider,
    http: httpx.Client,
    path: str,
    body: dict[str, Any],
    request: dict[str, Any],
) -> None:
    """A client that reads one chunk of a slow stream and hangs up cancels the call to the provider."""
    put(http, path, body)
    with (
        inferd.http() as client,
        client.stream("POST", f"{path}/_stream", json=request) as response,
    ):
        next(response.iter_bytes())
    assert fake.stream_cancelled.wait(timeout=10), "the upstream stream was not cancelled"


def assert_ssrf_guard_refuses(
    data_dir: Path, path: str, body_for: Callable[[str], dict[str, Any]], refused: Sequence[tuple[str, str]]
) -> None:
    """On a server that trusts no pattern, a PUT whose url (body_for(url)) resolves to each non-public address
    is refused, and no endpoint is left."""
    with ThreadedServer(data_dir) as running, running.http() as client:
        for url, address in refused:
            assert_es_error(
                client.put(path, json=body_for(url)), 400, "status_exception", non_public_address(url, address)
            )
        assert client.get(f"/_inference/{inference_id_of(path)}").status_code == 404
