"""The audit trail: `<data-dir>/audit.json`, one JSON object per line in Elasticsearch's audit field names,
recording who did what and whether it was allowed, and never a secret."""

from __future__ import annotations

import base64
import datetime
import json
import re
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.sample_service import SampleService
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer

AUDIT_FILE = "audit.json"
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2},\d{3}\+0000")
Event = dict[str, Any]


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def audit_path(running: RunningServer) -> Path:
    return running.data_dir / AUDIT_FILE


def read_events(path: Path) -> list[Event]:
    """The complete lines written so far (a line still being written is left for the next read)."""
    if not path.exists():
        return []
    *complete, _partial = path.read_text(encoding="utf-8").split("\n")
    events = [json.loads(line) for line in complete]
    assert all(isinstance(e, dict) for e in events)
    return events


def matches(**fields: Any) -> Callable[[Event], bool]:
    return lambda event: all(event.get(k) == v for k, v in fields.items())


def wait_for_events(path: Path, predicate: Callable[[Event], bool], count: int = 1, timeout: float = 10) -> list[Event]:
    """The events that match, once there are `count` of them: the trail is written asynchronously."""
    deadline = time.monotonic() + timeout
    while True:
        events = read_events(path)
        found = [e for e in events if predicate(e)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(found)} of {count} audit events in {path}; last events: {events[-5:]}")
        time.sleep(0.02)


def wait_for_event(path: Path, predicate: Callable[[Event], bool]) -> Event:
    return wait_for_events(path, predicate)[0]


def assert_common(event: Event) -> None:
    """Every line: ES's `type` and `timestamp` (UTC, `yyyy-MM-ddTHH:mm:ss,SSS+0000`)."""
    assert event["type"] == "audit", event
    assert TIMESTAMP.fullmatch(event["timestamp"]), event["timestamp"]
    stamped = datetime.datetime.strptime(event["timestamp"], "%Y-%m-%dT%H:%M:%S,%f%z")
    assert abs(datetime.datetime.now(datetime.UTC) - stamped) < datetime.timedelta(minutes=5), event["timestamp"]


def assert_request_fields(event: Event, method: str, path: str) -> None:
    assert event["request.method"] == method, event
    assert event["url.path"] == path, event
    assert event["origin.type"] == "rest", event
    assert event["origin.address"] == "127.0.0.1", event
    assert isinstance(event["request.id"], str), event
    assert event["request.id"], event


def put_user(admin: httpx.Client, username: str, password: str, roles: list[str]) -> None:
    response = admin.put(f"/_security/user/{username}", json={"password": password, "roles": roles})
    assert response.status_code == 200, response.text


def put_role(admin: httpx.Client, name: str, body: dict[str, Any]) -> None:
    response = admin.put(f"/_security/role/{name}", json=body)
    assert response.status_code == 200, response.text


def endpoint_body(api_key: str = "sk-audit") -> dict[str, Any]:
    return {"service": "test_service", "service_settings": {"model": "m-audit", "api_key": api_key}}


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server of this module's own, security and the audit trail on (the default)."""
    with ThreadedServer(tmp_path_factory.mktemp("audit-data"), extra_services=[SampleService]) as running:
        yield running


@pytest.fixture
def admin(audited: RunningServer) -> Iterator[httpx.Client]:
    with audited.http() as client:
        yield client


@pytest.fixture
def anon(audited: RunningServer) -> Iterator[httpx.Client]:
    with audited.http(auth=None) as client:
        yield client


# -- access granted and denied -----------------------------------------------------------------------


def test_an_allowed_call_is_recorded_as_access_granted(
    audited: RunningServer, admin: httpx.Client, anon: httpx.Client
) -> None:
    user, opaque = unique("viewer"), unique("opaque")
    put_user(admin, user, "viewer-password", ["inference_user"])
    response = anon.get("/_inference/_all", headers={**basic(user, "viewer-password"), "X-Opaque-Id": opaque})
    assert response.status_code == 200, response.text

    event = wait_for_event(audit_path(audited), matches(**{"event.action": "access_granted", "user.name": user}))
    assert_common(event)
    assert event["event.type"] == "transport"
    assert event["action"] == "cluster:monitor/xpack/inference/get"
    assert event["user.roles"] == ["inference_user"]
    assert event["user.realm"] == "default_native"
    assert event["opaque_id"] == opaque
    assert_request_fields(event, "GET", "/_inference/_all")


def test_each_request_has_its_own_request_id(audited: RunningServer, admin: httpx.Client, anon: httpx.Client) -> None:
    user = unique("twice")
    put_user(admin, user, "twice-password", ["inference_user"])
    for _ in range(2):
        assert anon.get("/_inference/_all", headers=basic(user, "twice-password")).status_code == 200
    events = wait_for_events(audit_path(audited), matches(**{"user.name": user}), count=2)
    assert len(events) == 2
    assert events[0]["request.id"] != events[1]["request.id"]


def test_a_403_is_recorded_as_access_denied(audited: RunningServer, admin: httpx.Client, anon: httpx.Client) -> None:
    user, inference_id = unique("reader"), unique("denied-put")
    put_user(admin, user, "reader-password", ["inference_user"])
    response = anon.put(
        f"/_inference/text_embedding/{inference_id}", json=endpoint_body(), headers=basic(user, "reader-password")
    )
    assert_es_error(response, 403, "security_exception")
    assert admin.get(f"/_inference/{inference_id}").status_code == 404

    event = wait_for_event(audit_path(audited), matches(**{"event.action": "access_denied", "user.name": user}))
    assert_common(event)
    assert event["event.type"] == "transport"
    assert event["action"] == "cluster:admin/xpack/inference/put"
    assert event["user.roles"] == ["inference_user"]
    assert_request_fields(event, "PUT", f"/_inference/text_embedding/{inference_id}")


def test_an_endpoint_scope_denial_names_the_inference_id(
    audited: RunningServer, admin: httpx.Client, anon: httpx.Client
) -> None:
    role, user = unique("scoped-role"), unique("scoped")
    allowed, other = unique("allowed"), unique("other")
    put_role(admin, role, {"cluster": ["monitor_inference"], "inference_ids": ["allowed-*"]})
    put_user(admin, user, "scoped-password", [role])
    for inference_id in (allowed, other):
        assert admin.put(f"/_inference/text_embedding/{inference_id}", json=endpoint_body()).status_code == 200
    try:
        ok = anon.get(f"/_inference/{allowed}", headers=basic(user, "scoped-password"))
        assert ok.status_code == 200, ok.text
        denied = anon.get(f"/_inference/{other}", headers=basic(user, "scoped-password"))
        assert_es_error(
            denied,
            403,
            "security_exception",
            f"action [cluster:monitor/xpack/inference/get] is unauthorized for user [{user}] "
            f"with effective roles [{role}] on inference endpoint [{other}]",
        )
        event = wait_for_event(
            audit_path(audited), matches(**{"event.action": "access_denied", "user.name": user, "inference.id": other})
        )
        assert_common(event)
        assert event["action"] == "cluster:monitor/xpack/inference/get"
        assert event["user.roles"] == [role]
        assert_request_fields(event, "GET", f"/_inference/{other}")
        # The allowed endpoint is not recorded as denied.
        denials = [
            e
            for e in read_events(audit_path(audited))
            if e.get("user.name") == user and e["event.action"] == "access_denied"
        ]
        assert [e.get("inference.id") for e in denials] == [other]
    finally:
        for inference_id in (allowed, other):
            admin.delete(f"/_inference/{inference_id}")


# -- authentication failures -------------------------------------------------------------------------


def test_a_wrong_password_is_recorded_as_authentication_failed(
    audited: RunningServer, admin: httpx.Client, anon: httpx.Client
) -> None:
    user = unique("mistyped")
    put_user(admin, user, "right-password", ["inference_user"])
    path = f"/_inference/{unique('probe')}"
    response = anon.get(path, headers=basic(user, "wrong-password"))
    assert_es_error(
        response, 401, "security_exception", f"unable to authenticate user [{user}] for REST request [{path}]"
    )

    event = wait_for_event(audit_path(audited), matches(**{"event.action": "authentication_failed", "user.name": user}))
    assert_common(event)
    assert event["event.type"] == "rest"
    assert_request_fields(event, "GET", path)


def test_a_missing_authorization_header_is_recorded_as_anonymous_access_denied(
    audited: RunningServer, anon: httpx.Client
) -> None:
    path = f"/_inference/{unique('no-header')}"
    response = anon.get(path)
    assert_es_error(
        response, 401, "security_exception", f"missing authentication credentials for REST request [{path}]"
    )

    # As ES names it: a request without credentials is anonymous access, refused.
    event = wait_for_event(
        audit_path(audited), matches(**{"event.action": "anonymous_access_denied", "url.path": path})
    )
    assert_common(event)
    assert event["event.type"] == "rest"
    assert event.get("user.name") is None
    assert_request_fields(event, "GET", path)


# -- security configuration changes ------------------------------------------------------------------


def config_change(path: Path, action: str, url_path: str, method: str) -> Event:
    event = wait_for_event(
        path,
        matches(
            **{
                "event.type": "security_config_change",
                "event.action": action,
                "url.path": url_path,
                "request.method": method,
            }
        ),
    )
    assert_common(event)
    assert event["user.name"] == "elastic"
    assert event["user.roles"] == ["superuser"]
    assert_request_fields(event, method, url_path)
    return event


def mentions(event: Event, value: str) -> bool:
    """Whether the event names `value` anywhere other than the acting user."""
    return value in json.dumps({k: v for k, v in event.items() if k != "user.name"})


def test_user_changes_are_recorded(audited: RunningServer, admin: httpx.Client) -> None:
    user = unique("changed")
    path = audit_path(audited)
    put_user(admin, user, "first-password", ["inference_user"])
    assert admin.post(f"/_security/user/{user}/_password", json={"password": "second-password"}).status_code == 200
    assert admin.put(f"/_security/user/{user}/_disable").status_code == 200
    assert admin.put(f"/_security/user/{user}/_enable").status_code == 200
    deleted = admin.delete(f"/_security/user/{user}")
    assert deleted.json() == {"found": True}

    for action, url_path, method in [
        ("put_user", f"/_security/user/{user}", "PUT"),
        ("change_password", f"/_security/user/{user}/_password", "POST"),
        ("change_disable_user", f"/_security/user/{user}/_disable", "PUT"),
        ("change_enable_user", f"/_security/user/{user}/_enable", "PUT"),
        ("delete_user", f"/_security/user/{user}", "DELETE"),
    ]:
        event = config_change(path, action, url_path, method)
        assert mentions(event, user), event


def test_role_changes_are_recorded(audited: RunningServer, admin: httpx.Client) -> None:
    role = unique("audited-role")
    path = audit_path(audited)
    put_role(admin, role, {"cluster": ["monitor_inference"]})
    assert admin.delete(f"/_security/role/{role}").json() == {"found": True}
    for action, method in [("put_role", "PUT"), ("delete_role", "DELETE")]:
        event = config_change(path, action, f"/_security/role/{role}", method)
        assert mentions(event, role), event


def test_api_key_changes_are_recorded(audited: RunningServer, admin: httpx.Client) -> None:
    name = unique("audited-key")
    path = audit_path(audited)
    created = admin.post("/_security/api_key", json={"name": name})
    assert created.status_code == 200, created.text
    key_id = created.json()["id"]
    invalidated = admin.request("DELETE", "/_security/api_key", json={"ids": [key_id]})
    assert invalidated.json()["invalidated_api_keys"] == [key_id]

    # As ES records it: the change under "create", the caller in the usual fields.
    create_event = wait_for_event(
        path,
        lambda e: (
            e.get("event.action") == "create_apikey" and e.get("create") == {"apikey": {"id": key_id, "name": name}}
        ),
    )
    assert_common(create_event)
    assert create_event["event.type"] == "security_config_change"
    assert create_event["user.name"] == "elastic"
    assert_request_fields(create_event, "POST", "/_security/api_key")
    invalidate_event = wait_for_event(
        path, lambda e: e.get("event.action") == "invalidate_apikeys" and mentions(e, key_id)
    )
    assert_common(invalidate_event)
    assert invalidate_event["event.type"] == "security_config_change"
    assert invalidate_event["user.name"] == "elastic"
    assert invalidate_event["invalidate"] == {"apikeys": {"ids": [key_id]}}
    assert_request_fields(invalidate_event, "DELETE", "/_security/api_key")


def test_a_call_with_an_api_key_names_the_key(audited: RunningServer, admin: httpx.Client, anon: httpx.Client) -> None:
    name = unique("caller-key")
    created = admin.post("/_security/api_key", json={"name": name}).json()
    response = anon.get("/_inference/_all", headers={"Authorization": f"ApiKey {created['encoded']}"})
    assert response.status_code == 200, response.text
    event = wait_for_event(
        audit_path(audited), matches(**{"event.action": "access_granted", "apikey.id": created["id"]})
    )
    assert_common(event)
    assert event["apikey.name"] == name
    assert event["user.name"] == "elastic"
    assert event["action"] == "cluster:monitor/xpack/inference/get"
    assert_request_fields(event, "GET", "/_inference/_all")


# -- no secrets, ever --------------------------------------------------------------------------------


def test_no_secret_ever_reaches_the_audit_file(audited: RunningServer, admin: httpx.Client, anon: httpx.Client) -> None:
    user, inference_id = unique("secretive"), unique("secret-endpoint")
    first_password, second_password = f"pw1-{uuid.uuid4().hex}", f"pw2-{uuid.uuid4().hex}"
    wrong_password, wrong_secret = f"wrong-{uuid.uuid4().hex}", f"wrongsecret{uuid.uuid4().hex[:11]}"
    provider_key, updated_provider_key = f"sk-prov-{uuid.uuid4().hex}", f"sk-upd-{uuid.uuid4().hex}"
    path = audit_path(audited)

    role = unique("key-owner")
    put_role(admin, role, {"cluster": ["manage_inference", "manage_own_api_key"]})
    put_user(admin, user, first_password, [role])
    assert anon.get("/_inference/_all", headers=basic(user, first_password)).status_code == 200
    changed = anon.post(
        "/_security/user/_password", json={"password": second_password}, headers=basic(user, first_password)
    )
    assert changed.status_code == 200, changed.text
    assert anon.get("/_security/_authenticate", headers=basic(user, wrong_password)).status_code == 401
    user_auth = basic(user, second_password)
    key = anon.post("/_security/api_key", json={"name": unique("secret-key")}, headers=user_auth)
    assert key.status_code == 200, key.text
    key_id, key_secret, encoded = key.json()["id"], key.json()["api_key"], key.json()["encoded"]
    key_auth = {"Authorization": f"ApiKey {encoded}"}
    bad_key = base64.b64encode(f"{key_id}:{wrong_secret}".encode()).decode()
    assert anon.get("/_inference/_all", headers={"Authorization": f"ApiKey {bad_key}"}).status_code == 401
    put = anon.put(f"/_inference/text_embedding/{inference_id}", json=endpoint_body(provider_key), headers=key_auth)
    assert put.status_code == 200, put.text
    try:
        update = anon.put(
            f"/_inference/{inference_id}/_update",
            json={"service_settings": {"api_key": updated_provider_key}},
            headers=user_auth,
        )
        assert update.status_code == 200, update.text
        assert anon.post(f"/_inference/{inference_id}", json={"input": "x"}, headers=key_auth).status_code == 200
        # A last, recognisable call: once it is in the file, everything before it is too.
        marker = f"/_inference/{unique('marker')}"
        assert anon.get(marker, headers=user_auth).status_code == 404
        wait_for_event(path, matches(**{"url.path": marker, "event.action": "access_granted"}))
    finally:
        admin.delete(f"/_inference/{inference_id}")

    text = path.read_text(encoding="utf-8")
    assert user in text and key_id in text and inference_id in text  # this is the right file
    secrets = [
        PASSWORD,
        first_password,
        second_password,
        wrong_password,
        key_secret,
        encoded,
        wrong_secret,
        bad_key,
        provider_key,
        updated_provider_key,
        basic(user, first_password)["Authorization"].split()[1],
        basic(user, second_password)["Authorization"].split()[1],
        basic("elastic", PASSWORD)["Authorization"].split()[1],
    ]
    for secret in secrets:
        assert secret not in text, f"secret {secret!r} in the audit trail"
    assert "$argon2" not in text
    assert "pbkdf2" not in text


def test_every_line_is_one_audit_object(audited: RunningServer, anon: httpx.Client) -> None:
    path = f"/_inference/{unique('lines')}"
    anon.get(path)
    wait_for_event(audit_path(audited), matches(**{"url.path": path}))
    lines = audit_path(audited).read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline
    assert len(lines) > 2
    for line in lines[:-1]:
        event = json.loads(line)
        assert isinstance(event, dict), line
        assert_common(event)
        assert event["event.type"] in {"rest", "transport", "security_config_change"}, event
        assert isinstance(event["event.action"], str), event


# -- on and off ----------------------------------------------------------------------------------------


def exercise(running: RunningServer) -> None:
    """Calls that would be audited: granted, denied, failed, and a security change."""
    with running.http() as admin, running.http(auth=None) as anon:
        assert admin.get("/_inference/_all").status_code == 200
        if running.password is None:
            return
        put_user(admin, "someone", "someone-password", [])
        assert anon.get("/", headers=basic("someone", "someone-password")).status_code == 403
        assert anon.get("/", headers=basic("someone", "wrong-password")).status_code == 401
        assert anon.get("/").status_code == 401


def test_audit_false_writes_no_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ThreadedServer(data_dir, audit=False) as running:
        exercise(running)
        time.sleep(0.3)  # what an asynchronous writer would have had time to write
    assert data_dir.is_dir()
    assert not (data_dir / AUDIT_FILE).exists()
    assert not [p.name for p in data_dir.iterdir() if "audit" in p.name]


def test_security_off_writes_no_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ThreadedServer(data_dir, security=False) as running:
        exercise(running)
        time.sleep(0.3)
    assert data_dir.is_dir()
    assert not (data_dir / AUDIT_FILE).exists()
    assert not [p.name for p in data_dir.iterdir() if "audit" in p.name]


def test_the_file_is_appended_to_across_restarts(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first_path, second_path = f"/_inference/{unique('first')}", f"/_inference/{unique('second')}"
    with ThreadedServer(data_dir) as running, running.http() as client:
        assert client.get(first_path).status_code == 404
        wait_for_event(data_dir / AUDIT_FILE, matches(**{"url.path": first_path}))
    with ThreadedServer(data_dir) as running, running.http() as client:
        assert client.get(second_path).status_code == 404
        wait_for_event(data_dir / AUDIT_FILE, matches(**{"url.path": second_path}))
    paths = [e.get("url.path") for e in read_events(data_dir / AUDIT_FILE)]
    assert first_path in paths
    assert paths.index(first_path) < paths.index(second_path)
