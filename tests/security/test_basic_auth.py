"""Basic authentication of the built-in `elastic` superuser, answered exactly as Elasticsearch 8/9 does."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.servers import PASSWORD, RunningServer, SubprocessServer, ThreadedServer

BASIC_CHALLENGE = 'Basic realm="security", charset="UTF-8"'
CHALLENGES = [BASIC_CHALLENGE, "ApiKey"]
ANONYMOUS_NOT_ALLOWED = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
)
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m", "api_key": "sk-auth"}}


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_unauthenticated(response: httpx.Response, reason: str) -> dict[str, Any]:
    """ES's 401: security_exception, two WWW-Authenticate challenges (also in the body), no product header."""
    error = assert_es_error(response, 401, "security_exception", reason)
    assert response.headers.get_list("www-authenticate") == CHALLENGES
    assert error["header"] == {"WWW-Authenticate": CHALLENGES}
    assert error["root_cause"][0]["header"] == {"WWW-Authenticate": CHALLENGES}
    assert "x-elastic-product" not in response.headers
    assert "stack_trace" not in error
    return error


@pytest.fixture
def anon(server: RunningServer) -> Iterator[httpx.Client]:
    """A client that sends no credentials."""
    with server.http(auth=None) as client:
        yield client


def status(server: RunningServer, password: str | None, user: str = "elastic") -> int:
    """The status of `GET /` with these credentials (None: no credentials)."""
    auth = (user, password) if password is not None else None
    with server.http(auth=auth) as client:
        return client.get("/").status_code


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_") and k != "ELASTIC_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "inferd", *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


# -- missing credentials ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "uri"),
    [
        ("GET", "/"),
        ("GET", "/_inference"),
        ("GET", "/_inference/_all?pretty"),
        ("GET", "/_inference/my%20id?filter_path=endpoints.service&human=true"),
        ("HEAD", "/"),
        ("DELETE", "/_inference/text_embedding/some-id?force=true"),
        ("POST", "/_inference/text_embedding/some-id"),
    ],
)
def test_no_credentials_is_401_with_the_raw_uri(anon: httpx.Client, method: str, uri: str) -> None:
    response = anon.request(method, uri)
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate") == CHALLENGES
    assert "x-elastic-product" not in response.headers
    if method != "HEAD":
        assert_unauthenticated(response, f"missing authentication credentials for REST request [{uri}]")


def test_no_credentials_body_shape(anon: httpx.Client) -> None:
    response = anon.get("/_inference")
    assert response.json() == {
        "error": {
            "root_cause": [
                {
                    "type": "security_exception",
                    "reason": "missing authentication credentials for REST request [/_inference]",
                    "header": {"WWW-Authenticate": CHALLENGES},
                }
            ],
            "type": "security_exception",
            "reason": "missing authentication credentials for REST request [/_inference]",
            "header": {"WWW-Authenticate": CHALLENGES},
        },
        "status": 401,
    }


def test_error_trace_is_ignored_on_401(anon: httpx.Client) -> None:
    assert_unauthenticated(
        anon.get("/_inference?error_trace=true"),
        "missing authentication credentials for REST request [/_inference?error_trace=true]",
    )


def test_unauthenticated_put_changes_nothing(anon: httpx.Client, http: httpx.Client) -> None:
    assert_unauthenticated(
        anon.put("/_inference/text_embedding/auth-put", json=ENDPOINT_BODY),
        "missing authentication credentials for REST request [/_inference/text_embedding/auth-put]",
    )
    assert_es_error(
        http.get("/_inference/auth-put"), 404, "resource_not_found_exception", "Inference endpoint not found [auth-put]"
    )


def test_unauthenticated_delete_changes_nothing(anon: httpx.Client, http: httpx.Client) -> None:
    assert http.put("/_inference/text_embedding/auth-del", json=ENDPOINT_BODY).status_code == 200
    assert_unauthenticated(
        anon.delete("/_inference/auth-del"),
        "missing authentication credentials for REST request [/_inference/auth-del]",
    )
    assert http.get("/_inference/auth-del").status_code == 200


def test_unknown_route_without_credentials_is_401(anon: httpx.Client) -> None:
    """Authentication runs before routing, as in ES: an unknown path does not reveal itself."""
    assert_unauthenticated(
        anon.get("/_no_such_api/x?v=1"),
        "missing authentication credentials for REST request [/_no_such_api/x?v=1]",
    )
    assert_unauthenticated(
        anon.patch("/_inference"),
        "missing authentication credentials for REST request [/_inference]",
    )


def test_empty_authorization_header_is_missing_credentials(anon: httpx.Client) -> None:
    assert_unauthenticated(
        anon.get("/", headers={"Authorization": ""}), "missing authentication credentials for REST request [/]"
    )


# -- wrong credentials -----------------------------------------------------------------------------


def test_wrong_password(anon: httpx.Client) -> None:
    assert_unauthenticated(
        anon.get("/_inference/_all?pretty", headers={"Authorization": basic("elastic", "not-the-password")}),
        "unable to authenticate user [elastic] for REST request [/_inference/_all?pretty]",
    )


def test_unknown_user(anon: httpx.Client) -> None:
    assert_unauthenticated(
        anon.get("/", headers={"Authorization": basic("nobody", PASSWORD)}),
        "unable to authenticate user [nobody] for REST request [/]",
    )


def test_password_is_case_sensitive(anon: httpx.Client) -> None:
    assert_unauthenticated(
        anon.get("/", headers={"Authorization": basic("elastic", PASSWORD.upper())}),
        "unable to authenticate user [elastic] for REST request [/]",
    )


def test_wrong_password_put_changes_nothing(anon: httpx.Client, http: httpx.Client) -> None:
    assert_unauthenticated(
        anon.put(
            "/_inference/text_embedding/auth-wrong",
            json=ENDPOINT_BODY,
            headers={"Authorization": basic("elastic", "nope")},
        ),
        "unable to authenticate user [elastic] for REST request [/_inference/text_embedding/auth-wrong]",
    )
    assert http.get("/_inference/auth-wrong").status_code == 404


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Basic !!!not-base64!!!", "invalid basic authentication header encoding"),
        ("Basic " + base64.b64encode(b"no-colon-here").decode(), "invalid basic authentication header value"),
    ],
    ids=["bad-base64", "no-colon"],
)
def test_malformed_basic_header(anon: httpx.Client, header: str, reason: str) -> None:
    assert_unauthenticated(anon.get("/", headers={"Authorization": header}), reason)


@pytest.mark.parametrize(
    ("header", "kind"),
    [("ApiKey " + base64.b64encode(b"id:key").decode(), "API key"), ("Bearer some-token", "Bearer token")],
    ids=["ApiKey", "Bearer"],
)
def test_api_key_and_bearer_are_rejected(anon: httpx.Client, header: str, kind: str) -> None:
    error = assert_unauthenticated(anon.get("/_inference", headers={"Authorization": header}), ANONYMOUS_NOT_ALLOWED)
    unsuccessful = error["additional_unsuccessful_credentials"]
    assert isinstance(unsuccessful, str)
    assert unsuccessful.startswith(f"{kind}: ")
    assert error["root_cause"][0]["additional_unsuccessful_credentials"] == unsuccessful


def test_right_credentials_get_the_product_header(http: httpx.Client) -> None:
    response = http.get("/")
    assert response.status_code == 200
    assert response.headers["x-elastic-product"] == "Elasticsearch"
    assert "www-authenticate" not in response.headers


def test_basic_scheme_is_case_insensitive(anon: httpx.Client) -> None:
    header = basic("elastic", PASSWORD).replace("Basic", "basic")
    assert anon.get("/", headers={"Authorization": header}).status_code == 200


# -- the elastic password ----------------------------------------------------------------------------


def test_first_start_generates_a_password_once(data_dir: Path) -> None:
    with ThreadedServer(data_dir, security=True, password=None) as running:
        assert len(running.generated_passwords) == 1
        generated = running.generated_passwords[0]
        assert len(generated) >= 16
        assert status(running, generated) == 200
        assert status(running, PASSWORD) == 401
        assert status(running, None) == 401

    with ThreadedServer(data_dir, security=True, password=None) as running:
        assert running.generated_passwords == []
        assert status(running, generated) == 200


def test_generated_passwords_differ_between_data_dirs(tmp_path: Path) -> None:
    with (
        ThreadedServer(tmp_path / "a", password=None) as first,
        ThreadedServer(tmp_path / "b", password=None) as second,
    ):
        assert len(first.generated_passwords) == len(second.generated_passwords) == 1
        assert first.generated_passwords != second.generated_passwords


def test_configured_password_is_not_printed(data_dir: Path) -> None:
    with ThreadedServer(data_dir, password="configured-pw-1") as running:
        assert running.generated_passwords == []
        assert status(running, "configured-pw-1") == 200


def test_elastic_password_set_later_does_not_change_it(data_dir: Path) -> None:
    with ThreadedServer(data_dir, password="first-password") as running:
        assert status(running, "first-password") == 200
    with ThreadedServer(data_dir, password="second-password") as running:
        assert running.generated_passwords == []
        assert status(running, "second-password") == 401
        assert status(running, "first-password") == 200


def test_elastic_password_set_after_a_generated_one_does_not_change_it(data_dir: Path) -> None:
    with ThreadedServer(data_dir, password=None) as running:
        (generated,) = running.generated_passwords
    with ThreadedServer(data_dir, password="late-password") as running:
        assert status(running, "late-password") == 401
        assert status(running, generated) == 200


# -- security off ------------------------------------------------------------------------------------


def test_security_off_serves_requests_without_credentials(data_dir: Path) -> None:
    with ThreadedServer(data_dir, security=False) as running, running.http(auth=None) as client:
        root = client.get("/")
        assert root.status_code == 200
        assert root.headers["x-elastic-product"] == "Elasticsearch"
        body = {
            "service": "elasticsearch",
            "service_settings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1},
        }
        put = client.put("/_inference/text_embedding/open", json=body)
        assert put.status_code == 200, put.text
        assert client.get("/_inference/open").json()["endpoints"] == [put.json()]
        # Credentials, even wrong ones, are not checked when security is off (as in ES).
        wrong = client.get("/_inference/open", headers={"Authorization": basic("elastic", "whatever")})
        assert wrong.status_code == 200
        # Unknown routes get the routing answer, not a 401.
        unknown = client.get("/_nope")
        assert unknown.status_code == 400
        assert unknown.json() == {"error": "no handler found for uri [/_nope] and method [GET]"}
    assert running.generated_passwords == []


@pytest.mark.slow
def test_no_security_flag(data_dir: Path) -> None:
    proc = SubprocessServer(data_dir, args=["--no-security"])
    try:
        running = proc.start()
        with running.http(auth=None) as client:
            assert client.get("/").status_code == 200
            assert client.get("/_inference").status_code == 200
    finally:
        proc.stop()


# -- the `inferd` command ----------------------------------------------------------------------------


GENERATED = re.compile(r"generated:\s*\n\s*(\S+)\s*\n")


@pytest.mark.slow
def test_serve_prints_the_generated_password_once(data_dir: Path) -> None:
    first = SubprocessServer(data_dir)
    first.env.pop("ELASTIC_PASSWORD", None)
    first.env.pop("INFERD_ELASTIC_PASSWORD", None)
    try:
        running = first.start()
        assert status(running, None) == 401
    finally:
        first.stop()
    found = GENERATED.findall(first.output)
    assert len(found) == 1, first.output
    generated = found[0]
    assert first.output.count(generated) == 1

    second = SubprocessServer(data_dir, env={"ELASTIC_PASSWORD": "set-too-late"})
    try:
        running = second.start()
        assert status(running, generated) == 200
        assert status(running, "set-too-late") == 401
    finally:
        second.stop()
    assert generated not in second.output
    assert not GENERATED.search(second.output), second.output


def test_reset_password_works_on_a_live_server(data_dir: Path) -> None:
    with ThreadedServer(data_dir) as running:
        assert status(running, PASSWORD) == 200
        result = run_cli("users", "reset-password", "elastic", "--data-dir", str(data_dir), "--password", "new-pw-42")
        assert result.returncode == 0, result.stderr
        assert "new-pw-42" not in result.stdout
        assert status(running, "new-pw-42") == 200
        # The server cached the old credential; the change made by another process reaches it
        # through the security version, checked once a second.
        deadline = time.monotonic() + 5
        while status(running, PASSWORD) != 401:
            assert time.monotonic() < deadline, "the old password still works 5 s after the reset"
            time.sleep(0.2)
    with ThreadedServer(data_dir) as running:
        assert status(running, "new-pw-42") == 200
        assert status(running, PASSWORD) == 401


def test_reset_password_generates_and_prints_one(data_dir: Path) -> None:
    with ThreadedServer(data_dir):
        pass
    result = run_cli("users", "reset-password", "elastic", "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr
    match = re.search(r"New password for \[elastic\]: (\S+)", result.stdout)
    assert match, result.stdout
    with ThreadedServer(data_dir) as running:
        assert status(running, match.group(1)) == 200
        assert status(running, PASSWORD) == 401


def test_reset_password_of_unknown_user_fails(data_dir: Path) -> None:
    with ThreadedServer(data_dir):
        pass
    result = run_cli("users", "reset-password", "nobody", "--data-dir", str(data_dir), "--password", "x-y-z-1")
    assert result.returncode != 0
    assert "user [nobody] does not exist" in result.stderr
    with ThreadedServer(data_dir) as running:
        assert status(running, PASSWORD) == 200
        assert status(running, "x-y-z-1", user="nobody") == 401
