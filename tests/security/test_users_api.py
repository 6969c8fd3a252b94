"""Native users (`/_security/user*`) and `_authenticate`, answered as Elasticsearch 8/9 answers them.

Raw HTTP pins the wire (status, body, field order, exact error reasons); the official clients
(elasticsearch 9.x and elasticsearch8 8.x) prove the same calls work from Python applications.
Tests that could break the `elastic` user run on a server of their own.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import elasticsearch
import elasticsearch8
import httpx
import pytest
from argon2 import PasswordHasher

from tests.conftest import assert_es_error
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer

USER_PASSWORD = "user-pass-123"
CHALLENGES = ['Basic realm="security", charset="UTF-8"', "ApiKey"]
NAME_RULE = (
    "names must be at least 1 and no more than 507 characters. They can contain alphanumeric characters "
    "(a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the Basic Latin (ASCII) block. "
    "Leading or trailing whitespace is not allowed."
)
BAD_HASH = (
    "The provided password hash is not a hash or it could not be resolved to a supported hash algorithm. "
    "The supported password hash algorithms are [argon2id]"
)
USER_FIELDS = ["username", "roles", "full_name", "email", "metadata", "enabled"]
AUTHENTICATE_FIELDS = [
    *USER_FIELDS,
    "authentication_realm",
    "lookup_realm",
    "authentication_type",
]
ELASTIC_USER = {
    "username": "elastic",
    "roles": ["superuser"],
    "full_name": None,
    "email": None,
    "metadata": {"_reserved": True},
    "enabled": True,
}
NATIVE_REALM = {"name": "default_native", "type": "native"}
RESERVED_REALM = {"name": "reserved", "type": "reserved"}
INFERENCE_GET_GRANTED_BY = "[monitor_inference,manage_inference,monitor,manage,all]"
LIBS = [pytest.param(elasticsearch, id="es9"), pytest.param(elasticsearch8, id="es8")]
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-users-api"}}


def unique(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def user_path(username: str, suffix: str = "") -> str:
    return f"/_security/user/{quote(username, safe='')}{suffix}"


def put_user(http: httpx.Client, username: str, roles: list[str] | None = None, **fields: Any) -> None:
    body = {"password": USER_PASSWORD, "roles": roles if roles is not None else [], **fields}
    response = http.put(user_path(username), json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"created": True}


def login_status(server: RunningServer, username: str, password: str) -> int:
    with server.http(auth=(username, password)) as client:
        return client.get("/_security/_authenticate").status_code


def get_user(http: httpx.Client, username: str) -> dict[str, Any]:
    response = http.get(user_path(username))
    assert response.status_code == 200, response.text
    return dict(response.json()[username])


def assert_user_missing(http: httpx.Client, username: str) -> None:
    response = http.get(user_path(username))
    assert response.status_code == 404
    assert response.json() == {}


def assert_unauthenticated(response: httpx.Response, reason: str) -> None:
    error = assert_es_error(response, 401, "security_exception", reason)
    assert response.headers.get_list("www-authenticate") == CHALLENGES
    assert error["header"] == {"WWW-Authenticate": CHALLENGES}
    assert "x-elastic-product" not in response.headers


def assert_forbidden(response: httpx.Response, reason: str) -> None:
    assert_es_error(response, 403, "security_exception", reason)
    assert "x-elastic-product" not in response.headers


def denial(action: str, user: str, roles: str, granted_by: str) -> str:
    return (
        f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}], "
        f"this action is granted by the cluster privileges {granted_by}"
    )


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RunningServer]:
    """A server of its own, for tests that change (or could break) the `elastic` user."""
    with ThreadedServer(tmp_path / "own-data") as running:
        yield running


@pytest.fixture
def own_http(own_server: RunningServer) -> Iterator[httpx.Client]:
    with own_server.http() as client:
        yield client


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture
def admin(server: RunningServer, lib: ModuleType) -> Iterator[Any]:
    client = lib.Elasticsearch(server.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    yield client
    client.close()


# -- create and update -------------------------------------------------------------------------


def test_put_user_creates_then_updates(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    body = {
        "password": USER_PASSWORD,
        "roles": ["inference_user"],
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "metadata": {"team": "analytics", "level": 3},
    }
    first = http.put(user_path(name), json=body)
    assert first.status_code == 200
    assert first.json() == {"created": True}
    stored = get_user(http, name)
    assert list(stored) == USER_FIELDS
    assert stored == {
        "username": name,
        "roles": ["inference_user"],
        "full_name": "Ada Lovelace",
        "email": "ada@example.com",
        "metadata": {"team": "analytics", "level": 3},
        "enabled": True,
    }

    second = http.post(user_path(name), json={"roles": ["inference_admin"], "full_name": None, "metadata": {}})
    assert second.status_code == 200
    assert second.json() == {"created": False}
    assert get_user(http, name) == {
        "username": name,
        "roles": ["inference_admin"],
        "full_name": None,
        "email": None,
        "metadata": {},
        "enabled": True,
    }
    # No password in the update: the old one still works.
    assert login_status(server, name, USER_PASSWORD) == 200


def test_put_user_accepts_refresh(http: httpx.Client) -> None:
    name = unique()
    response = http.put(user_path(name) + "?refresh=wait_for", json={"password": USER_PASSWORD, "roles": []})
    assert response.status_code == 200
    assert response.json() == {"created": True}


def test_update_with_a_new_password_replaces_the_old_one(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    assert login_status(server, name, USER_PASSWORD) == 200
    response = http.put(user_path(name), json={"password": "brand-new-pass", "roles": []})
    assert response.json() == {"created": False}
    assert login_status(server, name, USER_PASSWORD) == 401
    assert login_status(server, name, "brand-new-pass") == 200


def test_role_change_takes_effect_at_once(http: httpx.Client, server: RunningServer) -> None:
    name, endpoint = unique(), unique("ep")
    put_user(http, name, roles=["inference_user"])
    with server.http(auth=(name, USER_PASSWORD)) as client:
        assert_forbidden(
            client.put(f"/_inference/text_embedding/{endpoint}", json=ENDPOINT_BODY),
            denial("cluster:admin/xpack/inference/put", name, "inference_user", "[manage_inference,manage,all]"),
        )
        assert http.put(user_path(name), json={"roles": ["inference_admin"]}).json() == {"created": False}
        assert client.put(f"/_inference/text_embedding/{endpoint}", json=ENDPOINT_BODY).status_code == 200


def test_users_through_the_clients(admin: Any, lib: ModuleType, server: RunningServer) -> None:
    first, second = unique(), unique()
    created = admin.security.put_user(
        username=first, password=USER_PASSWORD, roles=["inference_user"], full_name="First", refresh=True
    )
    assert created.body == {"created": True}
    assert admin.security.put_user(username=first, roles=["inference_admin"]).body == {"created": False}
    assert admin.security.put_user(username=second, password=USER_PASSWORD, roles=[]).body == {"created": True}

    # An update replaces the whole user (as ES's update-without-password does): full_name is gone.
    one = admin.security.get_user(username=first).body
    assert one == {
        first: {
            "username": first,
            "roles": ["inference_admin"],
            "full_name": None,
            "email": None,
            "metadata": {},
            "enabled": True,
        }
    }
    both = admin.security.get_user(username=[first, second]).body
    assert set(both) == {first, second}
    everyone = admin.security.get_user().body
    assert {first, second, "elastic"} <= set(everyone)

    assert admin.security.delete_user(username=second).body == {"found": True}
    with pytest.raises(lib.NotFoundError) as missing_delete:
        admin.security.delete_user(username=second)
    assert missing_delete.value.meta.status == 404
    assert missing_delete.value.body == {"found": False}
    with pytest.raises(lib.NotFoundError) as missing_get:
        admin.security.get_user(username=second)
    assert missing_get.value.body == {}
    assert login_status(server, first, USER_PASSWORD) == 200


# -- password rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("password", ["", "a", "12345"])
def test_short_passwords_are_rejected(http: httpx.Client, password: str) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"password": password, "roles": []}),
        400,
        "validation_exception",
        "Validation Failed: 1: passwords must be at least [6] characters long;",
    )
    assert_user_missing(http, name)


def test_six_characters_are_enough(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    response = http.put(user_path(name), json={"password": "123456", "roles": []})
    assert response.json() == {"created": True}
    assert login_status(server, name, "123456") == 200


def test_short_password_on_update_changes_nothing(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    assert_es_error(
        http.put(user_path(name), json={"password": "short", "roles": ["superuser"]}),
        400,
        "validation_exception",
        "Validation Failed: 1: passwords must be at least [6] characters long;",
    )
    assert get_user(http, name)["roles"] == []
    assert login_status(server, name, USER_PASSWORD) == 200


def test_a_new_user_needs_a_password(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"roles": ["inference_user"]}),
        400,
        "validation_exception",
        "Validation Failed: 1: password must be specified unless you are updating an existing user;",
    )
    assert_user_missing(http, name)


def test_password_and_hash_together_are_rejected(http: httpx.Client) -> None:
    name = unique()
    body = {"password": USER_PASSWORD, "password_hash": PasswordHasher().hash("other-pass-1"), "roles": []}
    assert_es_error(
        http.put(user_path(name), json=body),
        400,
        "validation_exception",
        "Validation Failed: 1: password_hash has already been set;",
    )
    assert_user_missing(http, name)


def test_argon2_hash_made_here_is_accepted(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    password_hash = PasswordHasher().hash("hashed-elsewhere-1")
    response = http.put(user_path(name), json={"password_hash": password_hash, "roles": []})
    assert response.status_code == 200
    assert response.json() == {"created": True}
    assert login_status(server, name, "hashed-elsewhere-1") == 200
    assert login_status(server, name, password_hash) == 401


@pytest.mark.parametrize(
    "password_hash",
    [
        "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy",  # bcrypt
        "not-a-hash-at-all",
        "{PBKDF2}10000$c2FsdA==$aGFzaA==",
    ],
    ids=["bcrypt", "garbage", "pbkdf2"],
)
def test_unsupported_password_hashes_are_rejected(http: httpx.Client, password_hash: str) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"password_hash": password_hash, "roles": []}),
        400,
        "illegal_argument_exception",
        BAD_HASH,
    )
    assert_user_missing(http, name)


def test_passwords_are_not_stored_in_clear(http: httpx.Client, server: RunningServer) -> None:
    name, password = unique(), f"clear-text-{uuid.uuid4().hex}"
    http.put(user_path(name), json={"password": password, "roles": []})
    blobs = b"".join(p.read_bytes() for p in server.data_dir.rglob("*") if p.is_file())
    assert name.encode() in blobs  # the user is in the files we read
    assert password.encode() not in blobs


# -- roles and names ---------------------------------------------------------------------------


def test_roles_are_required(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"password": USER_PASSWORD}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: roles are missing;",
    )
    assert_user_missing(http, name)


def test_roles_are_required_on_update_too(http: httpx.Client) -> None:
    name = unique()
    put_user(http, name, roles=["inference_user"])
    assert_es_error(
        http.put(user_path(name), json={"full_name": "No Roles"}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: roles are missing;",
    )
    assert get_user(http, name)["full_name"] is None


def test_roles_may_be_a_comma_separated_string(http: httpx.Client) -> None:
    name = unique()
    response = http.put(user_path(name), json={"password": USER_PASSWORD, "roles": "inference_user,inference_admin"})
    assert response.json() == {"created": True}
    assert get_user(http, name)["roles"] == ["inference_user", "inference_admin"]


def test_unknown_roles_are_accepted_and_reported_in_denials(http: httpx.Client, server: RunningServer) -> None:
    name, role = unique(), unique("no-such-role")
    put_user(http, name, roles=[role])
    assert get_user(http, name)["roles"] == [role]
    with server.http(auth=(name, USER_PASSWORD)) as client:
        assert_forbidden(
            client.get("/_inference"),
            f"action [cluster:monitor/xpack/inference/get] is unauthorized for user [{name}] with effective roles [] "
            f"(assigned roles [{role}] were not found), this action is granted by the cluster privileges "
            f"{INFERENCE_GET_GRANTED_BY}",
        )


@pytest.mark.parametrize(
    "username",
    [" leading", "trailing ", "tab\there", "ünicode", "a" * 508],
    ids=["leading-space", "trailing-space", "control-char", "non-ascii", "too-long"],
)
def test_invalid_usernames(http: httpx.Client, username: str) -> None:
    assert_es_error(
        http.put(user_path(username), json={"password": USER_PASSWORD, "roles": []}),
        400,
        "action_request_validation_exception",
        f"Validation Failed: 1: User {NAME_RULE};",
    )
    assert username not in http.get("/_security/user").json()


@pytest.mark.parametrize(
    "username",
    ["a", "b" * 507, "with inner space", "_leading_underscore", "p.u-n_c@t!~(x)"],
    ids=["one-char", "507-chars", "space", "underscore", "punctuation"],
)
def test_valid_usernames(http: httpx.Client, server: RunningServer, username: str) -> None:
    response = http.put(user_path(username), json={"password": USER_PASSWORD, "roles": []})
    assert response.status_code == 200, response.text
    assert response.json() == {"created": True}
    assert get_user(http, username)["username"] == username
    with server.http(auth=(username, USER_PASSWORD)) as client:
        assert client.get("/_security/_authenticate").json()["username"] == username
    assert http.delete(user_path(username)).json() == {"found": True}


def test_role_names_in_a_user_are_validated(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"password": USER_PASSWORD, "roles": ["inference_user", " padded"]}),
        400,
        "action_request_validation_exception",
        f"Validation Failed: 1: Role {NAME_RULE};",
    )
    assert_user_missing(http, name)


def test_metadata_keys_may_not_start_with_underscore(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"password": USER_PASSWORD, "roles": [], "metadata": {"_internal": 1}}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: metadata keys may not start with [_];",
    )
    assert_user_missing(http, name)


# -- body parsing ------------------------------------------------------------------------------


@pytest.mark.parametrize("field", ["foo", "Password", "role"])
def test_unknown_body_field(http: httpx.Client, field: str) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={field: "x", "password": USER_PASSWORD, "roles": []}),
        400,
        "parse_exception",
        f"failed to parse add user request. unexpected field [{field}]",
    )
    assert_user_missing(http, name)


@pytest.mark.parametrize(
    ("field", "value", "expected", "token"),
    [
        ("password", 123456789, "string", "VALUE_NUMBER"),
        ("password_hash", {"h": 1}, "string", "START_OBJECT"),
        ("full_name", 5, "string", "VALUE_NUMBER"),
        ("email", True, "string", "VALUE_BOOLEAN"),
        ("metadata", ["a"], "object", "START_ARRAY"),
        ("metadata", "text", "object", "VALUE_STRING"),
        ("enabled", "yes", "boolean", "VALUE_STRING"),
        ("enabled", 1, "boolean", "VALUE_NUMBER"),
        ("username", 7, "string", "VALUE_NUMBER"),
    ],
)
def test_wrong_value_types(http: httpx.Client, field: str, value: object, expected: str, token: str) -> None:
    name = unique()
    body = {field: value, "roles": []}
    if field != "password":
        body["password"] = USER_PASSWORD
    assert_es_error(
        http.put(user_path(name), json=body),
        400,
        "parse_exception",
        f"expected field [{field}] to be of type {expected}, but found [{token}] instead",
    )
    assert_user_missing(http, name)


def test_username_in_the_body_must_match_the_path(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(user_path(name), json={"username": "someone-else", "password": USER_PASSWORD, "roles": []}),
        400,
        "illegal_argument_exception",
        f"[username] in source does not match the username provided [{name}]",
    )
    assert_user_missing(http, name)
    same = http.put(user_path(name), json={"username": name, "password": USER_PASSWORD, "roles": []})
    assert same.json() == {"created": True}


# -- the reserved elastic user -----------------------------------------------------------------


def test_get_elastic(http: httpx.Client) -> None:
    response = http.get("/_security/user/elastic")
    assert response.status_code == 200
    assert response.json() == {"elastic": ELASTIC_USER}
    assert list(response.json()["elastic"]) == USER_FIELDS


@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["inference_user"]},
        {"roles": ["superuser"], "password": "new-elastic-pass"},
        {"roles": ["superuser"], "full_name": "The Boss"},
    ],
    ids=["roles", "password", "full_name"],
)
def test_elastic_cannot_be_changed_with_put(own_server: RunningServer, own_http: httpx.Client, body: object) -> None:
    assert_es_error(
        own_http.put("/_security/user/elastic", json=body),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: user [elastic] is reserved and only the password can be changed;",
    )
    assert own_http.get("/_security/user/elastic").json() == {"elastic": ELASTIC_USER}
    assert login_status(own_server, "elastic", PASSWORD) == 200


def test_elastic_cannot_be_deleted(own_server: RunningServer, own_http: httpx.Client) -> None:
    assert_es_error(
        own_http.delete("/_security/user/elastic"),
        400,
        "illegal_argument_exception",
        "user [elastic] is reserved and cannot be deleted",
    )
    assert own_http.get("/_security/user/elastic").json() == {"elastic": ELASTIC_USER}
    assert login_status(own_server, "elastic", PASSWORD) == 200


def test_elastic_password_can_change(own_server: RunningServer, own_http: httpx.Client) -> None:
    response = own_http.post("/_security/user/elastic/_password", json={"password": "elastic-pass-2"})
    assert response.status_code == 200
    assert response.json() == {}
    assert login_status(own_server, "elastic", PASSWORD) == 401
    assert login_status(own_server, "elastic", "elastic-pass-2") == 200
    with own_server.http(auth=("elastic", "elastic-pass-2")) as client:
        assert client.get("/_security/user/elastic").json() == {"elastic": ELASTIC_USER}


def test_elastic_password_changes_through_the_clients(tmp_path: Path, lib: ModuleType) -> None:
    with ThreadedServer(tmp_path / "data") as running:
        client = lib.Elasticsearch(running.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
        try:
            assert client.security.change_password(username="elastic", password="elastic-pass-3").body == {}
        finally:
            client.close()
        assert login_status(running, "elastic", PASSWORD) == 401
        assert login_status(running, "elastic", "elastic-pass-3") == 200


def test_elastic_can_be_disabled_by_another_superuser(own_server: RunningServer, own_http: httpx.Client) -> None:
    put_user(own_http, "admin2", roles=["superuser"])
    with own_server.http(auth=("admin2", USER_PASSWORD)) as admin2:
        assert admin2.post("/_security/user/elastic/_disable").json() == {}
        assert admin2.get("/_security/user/elastic").json()["elastic"]["enabled"] is False
        with own_server.http() as elastic:
            assert_unauthenticated(
                elastic.get("/_security/_authenticate"),
                "unable to authenticate user [elastic] for REST request [/_security/_authenticate]",
            )
        assert admin2.put("/_security/user/elastic/_enable").json() == {}
    assert login_status(own_server, "elastic", PASSWORD) == 200
    assert own_http.get("/_security/user/elastic").json() == {"elastic": ELASTIC_USER}


@pytest.mark.parametrize("change", ["_disable", "_enable"])
def test_elastic_cannot_change_its_own_enabled_status(
    own_server: RunningServer, own_http: httpx.Client, change: str
) -> None:
    assert_es_error(
        own_http.post(f"/_security/user/elastic/{change}"),
        400,
        "illegal_argument_exception",
        "users may not update the enabled status of their own account",
    )
    assert login_status(own_server, "elastic", PASSWORD) == 200


# -- GET ---------------------------------------------------------------------------------------


def test_get_all_users(http: httpx.Client) -> None:
    name = unique()
    put_user(http, name, roles=["inference_user"], email="x@example.com")
    response = http.get("/_security/user")
    assert response.status_code == 200
    users = response.json()
    assert users["elastic"] == ELASTIC_USER
    assert users[name] == {
        "username": name,
        "roles": ["inference_user"],
        "full_name": None,
        "email": "x@example.com",
        "metadata": {},
        "enabled": True,
    }
    assert all(user["username"] == key for key, user in users.items())


def test_get_comma_separated_users(http: httpx.Client) -> None:
    first, second, missing = unique(), unique(), unique("missing")
    put_user(http, first)
    put_user(http, second)
    both = http.get(f"/_security/user/{first},{second}")
    assert both.status_code == 200
    assert list(both.json()) == [first, second]
    some = http.get(f"/_security/user/{first},{missing},elastic")
    assert some.status_code == 200
    assert set(some.json()) == {first, "elastic"}


def test_get_missing_users_is_404_with_an_empty_object(http: httpx.Client) -> None:
    for path in (f"/_security/user/{unique('missing')}", f"/_security/user/{unique('m1')},{unique('m2')}"):
        response = http.get(path)
        assert response.status_code == 404
        assert response.json() == {}


# -- DELETE ------------------------------------------------------------------------------------


def test_delete_user(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    response = http.delete(user_path(name))
    assert response.status_code == 200
    assert response.json() == {"found": True}
    assert_user_missing(http, name)
    assert login_status(server, name, USER_PASSWORD) == 401
    again = http.delete(user_path(name))
    assert again.status_code == 404
    assert again.json() == {"found": False}


# -- change password ---------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
@pytest.mark.parametrize("with_name", [True, False], ids=["by-name", "current-user"])
def test_user_without_privileges_changes_own_password(
    http: httpx.Client, server: RunningServer, method: str, with_name: bool
) -> None:
    name = unique()
    put_user(http, name)
    path = user_path(name, "/_password") if with_name else "/_security/user/_password"
    with server.http(auth=(name, USER_PASSWORD)) as client:
        response = client.request(method, path, json={"password": "changed-pass-1"})
    assert response.status_code == 200, response.text
    assert response.json() == {}
    assert login_status(server, name, USER_PASSWORD) == 401
    assert login_status(server, name, "changed-pass-1") == 200


def test_own_password_changes_through_the_clients(http: httpx.Client, server: RunningServer, lib: ModuleType) -> None:
    name = unique()
    put_user(http, name)
    client = lib.Elasticsearch(server.url, basic_auth=(name, USER_PASSWORD), request_timeout=30)
    try:
        assert client.security.change_password(username=name, password="changed-pass-2").body == {}
    finally:
        client.close()
    client = lib.Elasticsearch(server.url, basic_auth=(name, "changed-pass-2"), request_timeout=30)
    try:
        assert client.security.authenticate().body["username"] == name
        assert client.security.change_password(password="changed-pass-3").body == {}  # /_security/user/_password
    finally:
        client.close()
    assert login_status(server, name, "changed-pass-2") == 401
    assert login_status(server, name, "changed-pass-3") == 200


def test_own_password_can_be_set_from_a_hash(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    with server.http(auth=(name, USER_PASSWORD)) as client:
        response = client.post(
            "/_security/user/_password", json={"password_hash": PasswordHasher().hash("from-hash-1")}
        )
    assert response.json() == {}
    assert login_status(server, name, "from-hash-1") == 200


@pytest.mark.parametrize("roles", [[], ["inference_admin"]], ids=["no-roles", "inference_admin"])
def test_changing_another_users_password_needs_manage_security(
    http: httpx.Client, server: RunningServer, roles: list[str]
) -> None:
    caller, target = unique(), unique()
    put_user(http, caller, roles=roles)
    put_user(http, target)
    with server.http(auth=(caller, USER_PASSWORD)) as client:
        assert_forbidden(
            client.post(user_path(target, "/_password"), json={"password": "hijacked-1"}),
            denial(
                "cluster:admin/xpack/security/user/change_password", caller, ",".join(roles), "[manage_security,all]"
            ),
        )
    assert login_status(server, target, USER_PASSWORD) == 200
    assert login_status(server, target, "hijacked-1") == 401


def test_superuser_changes_another_users_password(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    assert http.put(user_path(name, "/_password"), json={"password": "set-by-admin"}).json() == {}
    assert login_status(server, name, "set-by-admin") == 200
    assert login_status(server, name, USER_PASSWORD) == 401


@pytest.mark.parametrize(
    ("body", "status", "es_type", "reason"),
    [
        ({"foo": "x"}, 400, "parse_exception", "failed to parse change password request. unexpected field [foo]"),
        ({}, 400, "action_request_validation_exception", "Validation Failed: 1: password is missing;"),
        (
            {"password": "short"},
            400,
            "validation_exception",
            "Validation Failed: 1: passwords must be at least [6] characters long;",
        ),
        ({"password_hash": "garbage"}, 400, "illegal_argument_exception", BAD_HASH),
        (
            {"password": "abcdefgh", "password_hash": PasswordHasher().hash("abcdefgh")},
            400,
            "validation_exception",
            "Validation Failed: 1: password_hash has already been set;",
        ),
    ],
    ids=["unknown-field", "missing", "short", "bad-hash", "both"],
)
def test_change_password_errors_change_nothing(
    http: httpx.Client, server: RunningServer, body: object, status: int, es_type: str, reason: str
) -> None:
    name = unique()
    put_user(http, name)
    assert_es_error(http.post(user_path(name, "/_password"), json=body), status, es_type, reason)
    assert login_status(server, name, USER_PASSWORD) == 200


def test_change_password_of_a_missing_user(http: httpx.Client) -> None:
    name = unique("missing")
    assert_es_error(
        http.post(user_path(name, "/_password"), json={"password": "whatever-1"}),
        400,
        "validation_exception",
        "Validation Failed: 1: user must exist in order to change password;",
    )
    assert_user_missing(http, name)


# -- enable / disable --------------------------------------------------------------------------


def test_disable_then_enable(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name, roles=["inference_user"])
    disabled = http.post(user_path(name, "/_disable"))
    assert disabled.status_code == 200
    assert disabled.json() == {}
    assert get_user(http, name)["enabled"] is False
    with server.http(auth=(name, USER_PASSWORD)) as client:
        assert_unauthenticated(
            client.get("/_security/_authenticate"),
            f"unable to authenticate user [{name}] for REST request [/_security/_authenticate]",
        )
        assert_unauthenticated(
            client.get("/_inference?pretty"),
            f"unable to authenticate user [{name}] for REST request [/_inference?pretty]",
        )
    enabled = http.put(user_path(name, "/_enable"))
    assert enabled.status_code == 200
    assert enabled.json() == {}
    assert get_user(http, name)["enabled"] is True
    assert login_status(server, name, USER_PASSWORD) == 200


def test_enable_and_disable_through_the_clients(admin: Any, http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name)
    assert admin.security.disable_user(username=name).body == {}
    assert login_status(server, name, USER_PASSWORD) == 401
    assert admin.security.enable_user(username=name, refresh=True).body == {}
    assert login_status(server, name, USER_PASSWORD) == 200


def test_a_user_created_disabled_cannot_authenticate(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    response = http.put(user_path(name), json={"password": USER_PASSWORD, "roles": [], "enabled": False})
    assert response.json() == {"created": True}
    assert get_user(http, name)["enabled"] is False
    assert login_status(server, name, USER_PASSWORD) == 401


@pytest.mark.parametrize(("change", "word"), [("_enable", "enabled"), ("_disable", "disabled")])
def test_enable_or_disable_a_missing_user(http: httpx.Client, change: str, word: str) -> None:
    name = unique("missing")
    assert_es_error(
        http.post(user_path(name, f"/{change}")),
        400,
        "validation_exception",
        f"Validation Failed: 1: only existing users can be {word};",
    )
    assert_user_missing(http, name)


def test_a_superuser_cannot_disable_itself(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name, roles=["superuser"])
    with server.http(auth=(name, USER_PASSWORD)) as client:
        assert_es_error(
            client.post(user_path(name, "/_disable")),
            400,
            "illegal_argument_exception",
            "users may not update the enabled status of their own account",
        )
    assert get_user(http, name)["enabled"] is True


def test_disabling_others_needs_manage_security(http: httpx.Client, server: RunningServer) -> None:
    caller, target = unique(), unique()
    put_user(http, caller, roles=["inference_admin"])
    put_user(http, target)
    with server.http(auth=(caller, USER_PASSWORD)) as client:
        assert_forbidden(
            client.post(user_path(target, "/_disable")),
            denial("cluster:admin/xpack/security/user/set_enabled", caller, "inference_admin", "[manage_security,all]"),
        )
    assert get_user(http, target)["enabled"] is True


# -- _authenticate -----------------------------------------------------------------------------


def test_authenticate_elastic(http: httpx.Client) -> None:
    response = http.get("/_security/_authenticate")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == AUTHENTICATE_FIELDS
    assert body == {
        **ELASTIC_USER,
        "authentication_realm": RESERVED_REALM,
        "lookup_realm": RESERVED_REALM,
        "authentication_type": "realm",
    }


def test_authenticate_native_user_without_privileges(http: httpx.Client, server: RunningServer) -> None:
    name = unique()
    put_user(http, name, full_name="Grace Hopper", email="grace@example.com", metadata={"unit": 7})
    with server.http(auth=(name, USER_PASSWORD)) as client:
        response = client.get("/_security/_authenticate")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == AUTHENTICATE_FIELDS
    assert list(body["authentication_realm"]) == ["name", "type"]
    assert body == {
        "username": name,
        "roles": [],
        "full_name": "Grace Hopper",
        "email": "grace@example.com",
        "metadata": {"unit": 7},
        "enabled": True,
        "authentication_realm": NATIVE_REALM,
        "lookup_realm": NATIVE_REALM,
        "authentication_type": "realm",
    }


def test_authenticate_through_the_clients(http: httpx.Client, server: RunningServer, lib: ModuleType) -> None:
    name = unique()
    put_user(http, name, roles=["inference_user", "inference_admin"])
    client = lib.Elasticsearch(server.url, basic_auth=(name, USER_PASSWORD), request_timeout=30)
    try:
        body = client.security.authenticate().body
    finally:
        client.close()
    assert body == {
        "username": name,
        "roles": ["inference_user", "inference_admin"],
        "full_name": None,
        "email": None,
        "metadata": {},
        "enabled": True,
        "authentication_realm": NATIVE_REALM,
        "lookup_realm": NATIVE_REALM,
        "authentication_type": "realm",
    }


def test_authenticate_with_a_wrong_password_through_the_clients(
    http: httpx.Client, server: RunningServer, lib: ModuleType
) -> None:
    name = unique()
    put_user(http, name)
    client = lib.Elasticsearch(server.url, basic_auth=(name, "wrong-password"), request_timeout=30)
    try:
        with pytest.raises(lib.AuthenticationException) as failure:
            client.security.authenticate()
    finally:
        client.close()
    assert failure.value.meta.status == 401
    assert failure.value.body["error"]["reason"] == (
        f"unable to authenticate user [{name}] for REST request [/_security/_authenticate]"
    )
