"""API keys (`/_security/api_key`): create, use, get and invalidate, answered as Elasticsearch 8/9 answers them."""

from __future__ import annotations

import base64
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.conftest import assert_es_error
from tests.support.servers import PASSWORD, RunningServer, ThreadedServer

USER_PASSWORD = "key-owner-pass"
CHALLENGES = ['Basic realm="security", charset="UTF-8"', "ApiKey"]
ANONYMOUS_NOT_ALLOWED = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
)
URLSAFE = re.compile(r"^[A-Za-z0-9_-]+$")
CREATE_FIELDS = ["id", "name", "api_key", "encoded"]
# GET api key entry fields in ES's order (ApiKey.innerToXContent); `expiration` follows `creation` and
# `invalidation` follows `invalidated` when set, `limited_by` comes last when asked for.
KEY_FIELDS = [
    "id",
    "name",
    "type",
    "creation",
    "invalidated",
    "username",
    "realm",
    "realm_type",
    "metadata",
    "role_descriptors",
]
INVALIDATE_FIELDS = ["invalidated_api_keys", "previously_invalidated_api_keys", "error_count"]
NOTHING_INVALIDATED = {"invalidated_api_keys": [], "previously_invalidated_api_keys": [], "error_count": 0}
API_KEY_REALM = {"name": "_es_api_key", "type": "_es_api_key"}
INFERENCE_GET_GRANTED_BY = "[monitor_inference,manage_inference,monitor,manage,all]"
LIBS = [pytest.param(elasticsearch, id="es9"), pytest.param(elasticsearch8, id="es8")]
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-api-keys"}}


def unique(prefix: str = "key") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def now_ms() -> int:
    return int(time.time() * 1000)


def create_key(client: httpx.Client, name: str | None = None, **body: Any) -> dict[str, Any]:
    response = client.post("/_security/api_key", json={"name": name or unique(), **body})
    assert response.status_code == 200, response.text
    return dict(response.json())


def get_keys(client: httpx.Client, **params: str) -> list[dict[str, Any]]:
    response = client.get("/_security/api_key", params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["api_keys"])


def get_key(client: httpx.Client, key_id: str, **params: str) -> dict[str, Any]:
    keys = get_keys(client, id=key_id, **params)
    assert len(keys) == 1, keys
    return keys[0]


def invalidate(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.request("DELETE", "/_security/api_key", json=body)
    assert response.status_code == 200, response.text
    assert list(response.json()) == INVALIDATE_FIELDS
    return dict(response.json())


def role_descriptor(cluster: list[str]) -> dict[str, Any]:
    """A role descriptor as ES renders it inside an API key (GET api key)."""
    return {
        "cluster": cluster,
        "indices": [],
        "applications": [],
        "run_as": [],
        "metadata": {},
        "transient_metadata": {"enabled": True},
    }


def without_transient(descriptors: dict[str, Any]) -> dict[str, Any]:
    return {name: {k: v for k, v in d.items() if k != "transient_metadata"} for name, d in descriptors.items()}


def assert_key_rejected(response: httpx.Response, message: str) -> None:
    error = assert_es_error(response, 401, "security_exception", ANONYMOUS_NOT_ALLOWED)
    assert error["additional_unsuccessful_credentials"] == f"API key: {message}"
    assert error["root_cause"][0]["additional_unsuccessful_credentials"] == f"API key: {message}"
    assert response.headers.get_list("www-authenticate") == CHALLENGES
    assert "x-elastic-product" not in response.headers


def assert_forbidden(response: httpx.Response, reason: str) -> None:
    assert_es_error(response, 403, "security_exception", reason)
    assert "x-elastic-product" not in response.headers


def granted_by(reason: str, head: str) -> list[str]:
    """The privileges listed at the end of a 403 reason that starts with `head`."""
    prefix = f"{head}, this action is granted by the cluster privileges ["
    assert reason.startswith(prefix), reason
    assert reason.endswith("]"), reason
    return reason[len(prefix) : -1].split(",")


@pytest.fixture
def key_http(server: RunningServer) -> Iterator[Any]:
    """key_http(key) -> an httpx client that authenticates with that API key."""
    clients: list[httpx.Client] = []

    def make(key: dict[str, Any]) -> httpx.Client:
        client = server.http(auth=None, headers={"Authorization": f"ApiKey {key['encoded']}"})
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def make_user(http: httpx.Client, server: RunningServer) -> Iterator[Any]:
    """make_user(cluster, **fields) -> (username, client): a native user with one custom role of those privileges."""
    clients: list[httpx.Client] = []

    def make(cluster: list[str], **fields: Any) -> tuple[str, httpx.Client]:
        role, name = unique("role"), unique("owner")
        assert http.put(f"/_security/role/{role}", json={"cluster": cluster}).status_code == 200
        response = http.put(f"/_security/user/{name}", json={"password": USER_PASSWORD, "roles": [role], **fields})
        assert response.status_code == 200, response.text
        client = server.http(auth=(name, USER_PASSWORD))
        clients.append(client)
        return name, client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=LIBS)
def lib(request: pytest.FixtureRequest) -> ModuleType:
    module: ModuleType = request.param
    return module


@pytest.fixture
def admin(server: RunningServer, lib: ModuleType) -> Iterator[Any]:
    client = lib.Elasticsearch(server.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    yield client
    client.close()


# -- create ------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT"])
def test_create_response_shape(http: httpx.Client, method: str) -> None:
    name = unique()
    response = http.request(method, "/_security/api_key", json={"name": name})
    assert response.status_code == 200, response.text
    key = response.json()
    assert list(key) == CREATE_FIELDS
    assert key["name"] == name
    assert len(key["id"]) == 20
    assert len(key["api_key"]) == 22
    assert URLSAFE.match(key["id"])
    assert URLSAFE.match(key["api_key"])
    assert base64.b64decode(key["encoded"], validate=True).decode() == f"{key['id']}:{key['api_key']}"


def test_keys_are_unique(http: httpx.Client) -> None:
    keys = [create_key(http, "same-name") for _ in range(3)]
    assert len({k["id"] for k in keys}) == 3
    assert len({k["api_key"] for k in keys}) == 3


def test_create_with_expiration(http: httpx.Client) -> None:
    before = now_ms()
    key = create_key(http, expiration="1d")
    after = now_ms()
    assert list(key) == ["id", "name", "expiration", "api_key", "encoded"]
    assert before + 86_400_000 - 1000 <= key["expiration"] <= after + 86_400_000
    stored = get_key(http, key["id"])
    assert stored["expiration"] == key["expiration"]
    assert stored["creation"] <= stored["expiration"]


def test_create_through_the_clients(admin: Any, http: httpx.Client) -> None:
    name = unique()
    response = admin.security.create_api_key(name=name, expiration="2h", metadata={"app": "billing"}, refresh=True)
    key = response.body
    assert list(key) == ["id", "name", "expiration", "api_key", "encoded"]
    assert key["name"] == name
    assert base64.b64decode(key["encoded"]).decode() == f"{key['id']}:{key['api_key']}"
    no_expiry = admin.security.create_api_key(name=unique()).body
    assert list(no_expiry) == CREATE_FIELDS
    assert get_key(http, key["id"])["metadata"] == {"app": "billing"}


@pytest.mark.parametrize("body", [{}, {"expiration": "1d"}, {"metadata": {"a": 1}}], ids=["empty", "expiration", "md"])
def test_name_is_required(http: httpx.Client, body: dict[str, Any]) -> None:
    before = len(get_keys(http))
    assert_es_error(http.post("/_security/api_key", json=body), 400, "illegal_argument_exception", "Required [name]")
    assert len(get_keys(http)) == before


@pytest.mark.parametrize(
    ("name", "problems"),
    [
        ("", ["api key name is required"]),
        ("n" * 257, ["api key name may not be more than 256 characters long"]),
        (" leading", ["api key name may not begin or end with whitespace"]),
        ("trailing ", ["api key name may not begin or end with whitespace"]),
        ("_hidden", ["api key name may not begin with an underscore"]),
        (
            "_both ",
            ["api key name may not begin or end with whitespace", "api key name may not begin with an underscore"],
        ),
    ],
    ids=["empty", "too-long", "leading-space", "trailing-space", "underscore", "two-problems"],
)
def test_invalid_key_names(http: httpx.Client, name: str, problems: list[str]) -> None:
    before = len(get_keys(http))
    reason = "Validation Failed: " + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1))
    assert_es_error(
        http.post("/_security/api_key", json={"name": name}), 400, "action_request_validation_exception", reason
    )
    assert len(get_keys(http)) == before


def test_longest_key_name_is_accepted(http: httpx.Client) -> None:
    name = "n" * 256
    key = create_key(http, name)
    assert get_key(http, key["id"])["name"] == name


def test_metadata_keys_may_not_start_with_underscore(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.post("/_security/api_key", json={"name": name, "metadata": {"_secret": 1}}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: API key metadata keys may not start with [_];",
    )
    assert get_keys(http, name=name) == []


def test_bad_expiration(http: httpx.Client) -> None:
    """ES parses `expiration` in the builder of a ConstructingObjectParser, which wraps the IAE of TimeValue."""
    name = unique()
    response = http.post("/_security/api_key", json={"name": name, "expiration": "abc"})
    error = assert_es_error(
        response,
        400,
        "x_content_parse_exception",
        "Failed to build [api_key_request] after last required field arrived",
    )
    assert error["caused_by"] == {
        "type": "illegal_argument_exception",
        "reason": "failed to parse setting [expiration] with value [abc] as a time value: "
        "unit is missing or unrecognized",
    }
    assert get_keys(http, name=name) == []


def test_unknown_field(http: httpx.Client) -> None:
    response = http.post(
        "/_security/api_key", content=b'{"name":"x","bogus":1}', headers={"content-type": "application/json"}
    )
    assert_es_error(response, 400, "x_content_parse_exception", "[1:13] [api_key_request] unknown field [bogus]")


def test_unknown_privilege_in_role_descriptors(http: httpx.Client) -> None:
    name = unique()
    response = http.post(
        "/_security/api_key", json={"name": name, "role_descriptors": {"r": {"cluster": ["read_everything"]}}}
    )
    error = assert_es_error(response, 400, "action_request_validation_exception")
    assert error["reason"].startswith("Validation Failed: 1: unknown cluster privilege [read_everything]. ")
    assert get_keys(http, name=name) == []


def test_creating_keys_needs_a_privilege(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user([])
    response = client.post("/_security/api_key", json={"name": unique()})
    error = assert_es_error(response, 403, "security_exception")
    listed = granted_by(
        error["reason"],
        f"action [cluster:admin/xpack/security/api_key/create] is unauthorized for user [{user}] "
        f"with effective roles [{http.get(f'/_security/user/{user}').json()[user]['roles'][0]}]",
    )
    assert set(listed) == {"manage_own_api_key", "manage_api_key", "manage_security", "all"}
    assert listed[-2:] == ["manage_security", "all"]


# -- using a key -------------------------------------------------------------------------------


def test_authenticate_with_a_key(make_user: Any, key_http: Any) -> None:
    user, client = make_user(
        ["manage_own_api_key"], full_name="Key Owner", email="owner@example.com", metadata={"team": "blue"}
    )
    key = create_key(client, "my-api-key")
    response = key_http(key).get("/_security/_authenticate")
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == [
        "username",
        "roles",
        "full_name",
        "email",
        "metadata",
        "enabled",
        "authentication_realm",
        "lookup_realm",
        "authentication_type",
        "api_key",
    ]
    assert body == {
        "username": user,
        "roles": [],
        "full_name": "Key Owner",
        "email": "owner@example.com",
        "metadata": {"team": "blue"},
        "enabled": True,
        "authentication_realm": API_KEY_REALM,
        "lookup_realm": API_KEY_REALM,
        "authentication_type": "api_key",
        "api_key": {"id": key["id"], "name": "my-api-key"},
    }


@pytest.mark.parametrize("form", ["tuple", "encoded"])
def test_authenticate_with_a_key_through_the_clients(
    http: httpx.Client, server: RunningServer, lib: ModuleType, form: str
) -> None:
    key = create_key(http)
    credentials = (key["id"], key["api_key"]) if form == "tuple" else key["encoded"]
    client = lib.Elasticsearch(server.url, api_key=credentials, request_timeout=30)
    try:
        body = client.security.authenticate().body
        assert client.inference.get()["endpoints"] is not None
    finally:
        client.close()
    assert body["username"] == "elastic"
    assert body["authentication_type"] == "api_key"
    assert body["authentication_realm"] == API_KEY_REALM
    assert body["api_key"] == {"id": key["id"], "name": key["name"]}


def test_wrong_secret_and_unknown_id_are_401(http: httpx.Client, key_http: Any) -> None:
    key = create_key(http)
    wrong = base64.b64encode(f"{key['id']}:{'x' * 22}".encode()).decode()
    assert_key_rejected(
        key_http({"encoded": wrong}).get("/_security/_authenticate"), f"invalid credentials for API key [{key['id']}]"
    )
    unknown_id = "A" * 20
    unknown = base64.b64encode(f"{unknown_id}:{key['api_key']}".encode()).decode()
    assert_key_rejected(
        key_http({"encoded": unknown}).get("/_security/_authenticate"), f"unable to find apikey with id {unknown_id}"
    )
    assert key_http(key).get("/_security/_authenticate").status_code == 200


def test_wrong_secret_through_the_clients(http: httpx.Client, server: RunningServer, lib: ModuleType) -> None:
    key = create_key(http)
    client = lib.Elasticsearch(server.url, api_key=(key["id"], "y" * 22), request_timeout=30)
    try:
        with pytest.raises(lib.AuthenticationException) as failure:
            client.security.authenticate()
    finally:
        client.close()
    assert failure.value.meta.status == 401
    assert failure.value.body["error"]["additional_unsuccessful_credentials"] == (
        f"API key: invalid credentials for API key [{key['id']}]"
    )


def test_role_descriptors_limit_a_key(http: httpx.Client, key_http: Any) -> None:
    key = create_key(http, role_descriptors={"reader": {"cluster": ["monitor_inference"]}})
    client = key_http(key)
    assert client.get("/_inference").status_code == 200
    assert_forbidden(
        client.put(f"/_inference/text_embedding/{unique('ep')}", json=ENDPOINT_BODY),
        f"action [cluster:admin/xpack/inference/put] is unauthorized for API key id [{key['id']}] of user [elastic], "
        "this action is granted by the cluster privileges [manage_inference,manage,all]",
    )


def test_a_key_cannot_change_its_owners_password(make_user: Any, key_http: Any, server: RunningServer) -> None:
    user, client = make_user(["manage_own_api_key"])
    key = create_key(client)
    assert_forbidden(
        key_http(key).post(f"/_security/user/{user}/_password", json={"password": "stolen-pass-1"}),
        f"action [cluster:admin/xpack/security/user/change_password] is unauthorized for API key id [{key['id']}] "
        f"of user [{user}], this action is granted by the cluster privileges [manage_security,all]",
    )
    with server.http(auth=(user, USER_PASSWORD)) as again:
        assert again.get("/_security/_authenticate").status_code == 200


# -- GET ---------------------------------------------------------------------------------------


def test_get_by_id_shape(http: httpx.Client) -> None:
    before = now_ms()
    key = create_key(http)
    after = now_ms()
    response = http.get("/_security/api_key", params={"id": key["id"]})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["api_keys"]
    [entry] = body["api_keys"]
    assert list(entry) == KEY_FIELDS
    assert before <= entry["creation"] <= after
    assert entry == {
        "id": key["id"],
        "name": key["name"],
        "type": "rest",
        "creation": entry["creation"],
        "invalidated": False,
        "username": "elastic",
        "realm": "reserved",
        "realm_type": "reserved",
        "metadata": {},
        "role_descriptors": {},
    }


def test_get_shows_expiration_metadata_and_a_native_owner(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key"])
    key = create_key(client, expiration="3h", metadata={"env": "prod", "tags": ["a", "b"]})
    entry = get_key(http, key["id"])
    assert list(entry) == [*KEY_FIELDS[:4], "expiration", *KEY_FIELDS[4:]]
    assert entry["expiration"] == key["expiration"]
    assert entry["username"] == user
    assert entry["realm"] == "default_native"
    assert entry["realm_type"] == "native"
    assert entry["metadata"] == {"env": "prod", "tags": ["a", "b"]}


def test_get_by_name_and_prefix(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    first = create_key(http, f"pfx-{tag}-one")
    second = create_key(http, f"pfx-{tag}-two")
    other = create_key(http, f"other-{tag}")
    assert [k["id"] for k in get_keys(http, name=f"pfx-{tag}-one")] == [first["id"]]
    assert {k["id"] for k in get_keys(http, name=f"pfx-{tag}-*")} == {first["id"], second["id"]}
    everything = {k["id"] for k in get_keys(http, name="*")}
    assert {first["id"], second["id"], other["id"]} <= everything
    assert {first["id"], second["id"], other["id"]} <= {k["id"] for k in get_keys(http)}


def test_get_by_owner(make_user: Any, http: httpx.Client) -> None:
    _, client = make_user(["manage_own_api_key"])
    mine = create_key(client)
    elastics = create_key(http)
    assert [k["id"] for k in get_keys(client, owner="true")] == [mine["id"]]
    owned_by_elastic = {k["id"] for k in get_keys(http, owner="true")}
    assert elastics["id"] in owned_by_elastic
    assert mine["id"] not in owned_by_elastic


def test_get_by_username_and_realm(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key"])
    first, second = create_key(client), create_key(client)
    expected = {first["id"], second["id"]}
    assert {k["id"] for k in get_keys(http, username=user, realm_name="default_native")} == expected
    assert {k["id"] for k in get_keys(http, username=user)} == expected
    assert all(k["username"] == user for k in get_keys(http, username=user))
    assert not expected & {k["id"] for k in get_keys(http, realm_name="reserved")}
    assert get_keys(http, username=user, realm_name="reserved") == []


def test_active_only_hides_invalidated_and_expired_keys(http: httpx.Client, key_http: Any) -> None:
    tag = uuid.uuid4().hex[:8]
    revoked = create_key(http, f"act-{tag}-revoked")
    expiring = create_key(http, f"act-{tag}-expiring", expiration="1s")
    active = create_key(http, f"act-{tag}-active", expiration="1d")
    invalidate(http, {"ids": [revoked["id"]]})
    time.sleep(max(0.0, (expiring["expiration"] - now_ms()) / 1000) + 0.2)

    every = {k["id"]: k for k in get_keys(http, name=f"act-{tag}-*")}
    assert set(every) == {revoked["id"], expiring["id"], active["id"]}
    assert every[revoked["id"]]["invalidated"] is True
    assert every[expiring["id"]]["invalidated"] is False
    assert [k["id"] for k in get_keys(http, name=f"act-{tag}-*", active_only="true")] == [active["id"]]
    assert_key_rejected(key_http(expiring).get("/_security/_authenticate"), "api key is expired")
    assert key_http(active).get("/_security/_authenticate").status_code == 200


def test_with_limited_by(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key", "monitor_inference"])
    role = http.get(f"/_security/user/{user}").json()[user]["roles"][0]
    key = create_key(client, role_descriptors={"narrow": {"cluster": ["monitor_inference"]}})
    plain = get_key(http, key["id"])
    assert "limited_by" not in plain
    assert without_transient(plain["role_descriptors"]) == without_transient(
        {"narrow": role_descriptor(["monitor_inference"])}
    )
    entry = get_key(http, key["id"], with_limited_by="true")
    assert list(entry) == [*KEY_FIELDS, "limited_by"]
    assert len(entry["limited_by"]) == 1
    assert without_transient(entry["limited_by"][0]) == without_transient(
        {role: role_descriptor(["manage_own_api_key", "monitor_inference"])}
    )


def test_key_descriptors_render_like_roles(make_user: Any, http: httpx.Client) -> None:
    """ES renders role descriptors inside API keys with `transient_metadata` (spec example GetApiKey 1 and 2)."""
    user, client = make_user(["manage_own_api_key", "monitor_inference"])
    role = http.get(f"/_security/user/{user}").json()[user]["roles"][0]
    key = create_key(client, role_descriptors={"narrow": {"cluster": ["monitor_inference"]}})
    entry = get_key(http, key["id"], with_limited_by="true")
    assert entry["role_descriptors"] == {"narrow": role_descriptor(["monitor_inference"])}
    assert entry["limited_by"] == [{role: role_descriptor(["manage_own_api_key", "monitor_inference"])}]


def test_get_missing_id_is_404(http: httpx.Client) -> None:
    response = http.get("/_security/api_key", params={"id": "A" * 20})
    assert response.status_code == 404
    assert response.json() == {"api_keys": []}


@pytest.mark.parametrize(
    "params",
    [{"name": "no-such-key-*"}, {"username": "nobody-at-all"}, {"realm_name": "no-such-realm"}],
    ids=["name", "username", "realm"],
)
def test_get_without_matches_is_200_empty(http: httpx.Client, params: dict[str, str]) -> None:
    response = http.get("/_security/api_key", params=params)
    assert response.status_code == 200
    assert response.json() == {"api_keys": []}


@pytest.mark.parametrize(
    ("params", "problems"),
    [
        (
            {"id": "abc", "username": "elastic"},
            ["username or realm name must not be specified when the api key id or api key name is specified"],
        ),
        (
            {"name": "abc", "realm_name": "reserved"},
            ["username or realm name must not be specified when the api key id or api key name is specified"],
        ),
        (
            {"owner": "true", "username": "elastic"},
            ["neither username nor realm-name may be specified when retrieving owned API keys"],
        ),
        ({"id": "abc", "name": "abc"}, ["only one of [api key id, api key name] can be specified"]),
    ],
    ids=["id+username", "name+realm", "owner+username", "id+name"],
)
def test_get_validation(http: httpx.Client, params: dict[str, str], problems: list[str]) -> None:
    reason = "Validation Failed: " + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1))
    assert_es_error(http.get("/_security/api_key", params=params), 400, "action_request_validation_exception", reason)


def test_get_through_the_clients(admin: Any, lib: ModuleType) -> None:
    tag = uuid.uuid4().hex[:8]
    key = admin.security.create_api_key(name=f"cl-{tag}", metadata={"m": 1}).body
    by_id = admin.security.get_api_key(id=key["id"]).body
    assert [k["id"] for k in by_id["api_keys"]] == [key["id"]]
    assert by_id["api_keys"][0]["metadata"] == {"m": 1}
    assert [k["id"] for k in admin.security.get_api_key(name=f"cl-{tag}*").body["api_keys"]] == [key["id"]]
    assert key["id"] in {k["id"] for k in admin.security.get_api_key(owner=True).body["api_keys"]}
    limited = admin.security.get_api_key(id=key["id"], with_limited_by=True).body["api_keys"][0]
    assert list(limited)[-1] == "limited_by"
    assert set(limited["limited_by"][0]) == {"superuser"}
    active = admin.security.get_api_key(name=f"cl-{tag}*", active_only=True).body["api_keys"]
    assert [k["id"] for k in active] == [key["id"]]
    with pytest.raises(lib.NotFoundError) as missing:
        admin.security.get_api_key(id="B" * 20)
    assert missing.value.meta.status == 404
    assert missing.value.body == {"api_keys": []}


# -- invalidate --------------------------------------------------------------------------------


def test_invalidate_by_ids(http: httpx.Client, key_http: Any) -> None:
    first, second, kept = create_key(http), create_key(http), create_key(http)
    before = now_ms()
    result = invalidate(http, {"ids": [first["id"], second["id"]]})
    after = now_ms()
    assert sorted(result["invalidated_api_keys"]) == sorted([first["id"], second["id"]])
    assert result["previously_invalidated_api_keys"] == []
    assert result["error_count"] == 0
    assert invalidate(http, {"ids": [first["id"], second["id"]]}) == NOTHING_INVALIDATED

    entry = get_key(http, first["id"])
    assert list(entry) == [*KEY_FIELDS[:5], "invalidation", *KEY_FIELDS[5:]]
    assert entry["invalidated"] is True
    assert before <= entry["invalidation"] <= after
    assert get_key(http, kept["id"])["invalidated"] is False
    assert_key_rejected(
        key_http(first).get("/_security/_authenticate"), f"api key [{first['id']}] has been invalidated"
    )
    assert key_http(kept).get("/_security/_authenticate").status_code == 200


def test_invalidate_unknown_ids_is_not_an_error(http: httpx.Client) -> None:
    assert invalidate(http, {"ids": ["C" * 20]}) == NOTHING_INVALIDATED


def test_invalidate_by_name(http: httpx.Client) -> None:
    tag = uuid.uuid4().hex[:8]
    first, second = create_key(http, f"inv-{tag}"), create_key(http, f"inv-{tag}")
    other = create_key(http, f"inv-{tag}-other")
    result = invalidate(http, {"name": f"inv-{tag}"})
    assert sorted(result["invalidated_api_keys"]) == sorted([first["id"], second["id"]])
    assert invalidate(http, {"name": f"inv-{tag}"}) == NOTHING_INVALIDATED
    assert get_key(http, other["id"])["invalidated"] is False


def test_invalidate_by_username_and_realm(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key"])
    first, second = create_key(client), create_key(client)
    elastics = create_key(http)
    result = invalidate(http, {"username": user, "realm_name": "default_native"})
    assert sorted(result["invalidated_api_keys"]) == sorted([first["id"], second["id"]])
    assert invalidate(http, {"username": user}) == NOTHING_INVALIDATED
    assert get_key(http, elastics["id"])["invalidated"] is False


def test_invalidate_by_username_alone(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key"])
    key = create_key(client)
    assert invalidate(http, {"username": user})["invalidated_api_keys"] == [key["id"]]


def test_invalidate_own_keys_by_owner(make_user: Any, http: httpx.Client) -> None:
    _, client = make_user(["manage_own_api_key"])
    mine = create_key(client)
    elastics = create_key(http)
    result = invalidate(client, {"owner": True})
    assert result["invalidated_api_keys"] == [mine["id"]]
    assert invalidate(client, {"owner": True}) == NOTHING_INVALIDATED
    assert get_key(http, elastics["id"])["invalidated"] is False


def test_invalidate_through_the_clients(admin: Any, http: httpx.Client) -> None:
    by_id, by_name = create_key(http), create_key(http, unique("cl-inv"))
    result = admin.security.invalidate_api_key(ids=[by_id["id"]]).body
    assert result == {"invalidated_api_keys": [by_id["id"]], "previously_invalidated_api_keys": [], "error_count": 0}
    assert admin.security.invalidate_api_key(ids=[by_id["id"]]).body == NOTHING_INVALIDATED
    assert admin.security.invalidate_api_key(name=by_name["name"]).body["invalidated_api_keys"] == [by_name["id"]]
    assert get_key(http, by_name["id"])["invalidated"] is True


@pytest.mark.parametrize(
    ("body", "problems"),
    [
        ({}, ["One of [api key id(s), api key name, username, realm name] must be specified if [owner] flag is false"]),
        (
            {"owner": False},
            ["One of [api key id(s), api key name, username, realm name] must be specified if [owner] flag is false"],
        ),
        (
            {"ids": ["KEY"], "username": "elastic"},
            ["username or realm name must not be specified when the api key id(s) or api key name are specified"],
        ),
        (
            {"name": "NAME", "realm_name": "reserved"},
            ["username or realm name must not be specified when the api key id(s) or api key name are specified"],
        ),
        (
            {"owner": True, "realm_name": "reserved"},
            ["neither username nor realm-name may be specified when invalidating owned API keys"],
        ),
        ({"ids": ["KEY"], "name": "NAME"}, ["only one of [api key id(s), api key name] can be specified"]),
    ],
    ids=["empty", "owner-false", "ids+username", "name+realm", "owner+realm", "ids+name"],
)
def test_invalidate_validation_changes_nothing(
    http: httpx.Client, key_http: Any, body: dict[str, Any], problems: list[str]
) -> None:
    key = create_key(http)
    filled = {k: ([key["id"]] if v == ["KEY"] else key["name"] if v == "NAME" else v) for k, v in body.items()}
    reason = "Validation Failed: " + "".join(f"{i}: {p};" for i, p in enumerate(problems, 1))
    assert_es_error(
        http.request("DELETE", "/_security/api_key", json=filled), 400, "action_request_validation_exception", reason
    )
    assert key_http(key).get("/_security/_authenticate").status_code == 200


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([], "Field [ids] cannot be an empty array"),
        (["KEY", " "], "Field [ids] must not contain blank id, but got blank id at index position: [1]"),
        (["", "KEY", ""], "Field [ids] must not contain blank ids, but got blank ids at index positions: [0, 2]"),
    ],
    ids=["empty", "one-blank", "two-blanks"],
)
def test_invalidate_bad_ids(http: httpx.Client, key_http: Any, ids: list[str], problem: str) -> None:
    """ES checks `ids` in InvalidateApiKeyRequest's constructor, inside the REST parser's builder, so the
    ActionRequestValidationException arrives wrapped in an x_content_parse_exception; ES's root cause guess
    unwraps it again."""
    key = create_key(http)
    response = http.request("DELETE", "/_security/api_key", json={"ids": [key["id"] if i == "KEY" else i for i in ids]})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["status"] == 400
    reason = f"Validation Failed: 1: {problem};"
    assert body["error"]["root_cause"] == [{"type": "action_request_validation_exception", "reason": reason}]
    assert body["error"]["type"] == "x_content_parse_exception"
    assert body["error"]["reason"] == "Failed to build [invalidate_api_key] after last required field arrived"
    assert body["error"]["caused_by"] == {"type": "action_request_validation_exception", "reason": reason}
    assert key_http(key).get("/_security/_authenticate").status_code == 200


@pytest.mark.parametrize("field", ["foo", "id"])
def test_invalidate_unknown_field(http: httpx.Client, key_http: Any, field: str) -> None:
    """The body parser is strict; the single `id` is only accepted by the REST v7 compatibility parser."""
    key = create_key(http)
    content = f'{{"{field}":"{key["id"]}"}}'.encode()
    response = http.request(
        "DELETE", "/_security/api_key", content=content, headers={"content-type": "application/json"}
    )
    error = assert_es_error(response, 400, "x_content_parse_exception")
    assert error["reason"].startswith(f"[1:2] [invalidate_api_key] unknown field [{field}]"), error["reason"]
    assert key_http(key).get("/_security/_authenticate").status_code == 200


# -- manage_own_api_key ------------------------------------------------------------------------


def test_manage_own_api_key_covers_own_keys(make_user: Any, http: httpx.Client) -> None:
    user, client = make_user(["manage_own_api_key"])
    keys = {create_key(client)["id"] for _ in range(3)}
    assert {k["id"] for k in get_keys(client, owner="true")} == keys
    assert {k["id"] for k in get_keys(client, username=user, realm_name="default_native")} == keys
    result = invalidate(client, {"username": user, "realm_name": "default_native"})
    assert set(result["invalidated_api_keys"]) == keys
    assert all(k["invalidated"] for k in get_keys(http, username=user))


def test_manage_own_api_key_needs_owner_to_invalidate_by_id(make_user: Any, http: httpx.Client) -> None:
    """A user (unlike an API key) names its own keys with owner=true or its username and realm (ES's
    ManageOwnApiKeyClusterPrivilege); ids alone do not prove ownership."""
    user, client = make_user(["manage_own_api_key"])
    role = http.get(f"/_security/user/{user}").json()[user]["roles"][0]
    key = create_key(client)
    assert_forbidden(
        client.request("DELETE", "/_security/api_key", json={"ids": [key["id"]]}),
        f"action [cluster:admin/xpack/security/api_key/invalidate] is unauthorized for user [{user}] with effective "
        f"roles [{role}], this action is granted by the cluster privileges [manage_api_key,manage_security,all]",
    )
    assert get_key(http, key["id"])["invalidated"] is False
    assert invalidate(client, {"ids": [key["id"]], "owner": True})["invalidated_api_keys"] == [key["id"]]


def test_manage_own_api_key_is_denied_other_keys(make_user: Any, http: httpx.Client, key_http: Any) -> None:
    user, client = make_user(["manage_own_api_key"])
    role = http.get(f"/_security/user/{user}").json()[user]["roles"][0]
    others = create_key(http)
    head = "action [cluster:admin/xpack/security/api_key/{}] is unauthorized for user [%s] with effective roles [%s]"
    head = head % (user, role)
    for params in ({"id": others["id"]}, {}, {"username": "elastic", "realm_name": "reserved"}, {"name": "*"}):
        response = client.get("/_security/api_key", params=params)
        error = assert_es_error(response, 403, "security_exception")
        listed = granted_by(error["reason"], head.format("get"))
        assert set(listed) == {"read_security", "manage_api_key", "manage_security", "all"}, params
        assert listed[-3:] == ["manage_api_key", "manage_security", "all"]
    for body in ({"ids": [others["id"]]}, {"name": others["name"]}, {"username": "elastic"}):
        assert_forbidden(
            client.request("DELETE", "/_security/api_key", json=body),
            head.format("invalidate") + ", this action is granted by the cluster privileges "
            "[manage_api_key,manage_security,all]",
        )
    assert get_key(http, others["id"])["invalidated"] is False
    assert key_http(others).get("/_security/_authenticate").status_code == 200


# -- derived keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"role_descriptors": {}},
        {"role_descriptors": {"r": {"cluster": ["monitor_inference"]}}},
        {"role_descriptors": {"empty": {}, "r": {"cluster": ["all"]}}},
    ],
    ids=["no-descriptors", "empty-map", "granting", "one-granting"],
)
def test_derived_keys_need_an_empty_role_descriptor(http: httpx.Client, key_http: Any, body: dict[str, Any]) -> None:
    parent = create_key(http)
    name = unique("derived")
    assert_es_error(
        key_http(parent).post("/_security/api_key", json={"name": name, **body}),
        400,
        "illegal_argument_exception",
        "creating derived api keys requires an explicit role descriptor that is empty (has no privileges)",
    )
    assert get_keys(http, name=name) == []


def test_derived_key_with_an_empty_descriptor_has_no_privileges(http: httpx.Client, key_http: Any) -> None:
    parent = create_key(http)
    derived = key_http(parent).post(
        "/_security/api_key", json={"name": unique("derived"), "role_descriptors": {"n": {}}}
    )
    assert derived.status_code == 200, derived.text
    child = derived.json()
    assert list(child) == CREATE_FIELDS
    entry = get_key(http, child["id"])
    assert entry["username"] == "elastic"
    assert entry["realm"] == "reserved"
    assert_forbidden(
        key_http(child).get("/_inference"),
        f"action [cluster:monitor/xpack/inference/get] is unauthorized for API key id [{child['id']}] "
        f"of user [elastic], this action is granted by the cluster privileges {INFERENCE_GET_GRANTED_BY}",
    )
    assert key_http(child).get("/_security/_authenticate").json()["api_key"] == {
        "id": child["id"],
        "name": child["name"],
    }


# -- storage -----------------------------------------------------------------------------------


def test_keys_are_stored_hashed(http: httpx.Client, server: RunningServer) -> None:
    key = create_key(http, metadata={"purpose": "hash-check"})
    files = [p for p in server.data_dir.rglob("*") if p.is_file()]
    database = b"".join(p.read_bytes() for p in files if p.name.startswith("inferd.db"))
    assert key["id"].encode() in database  # the key is in the files we read
    everything = b"".join(p.read_bytes() for p in files)
    assert key["api_key"].encode() not in everything
    assert key["encoded"].encode() not in everything


def test_a_key_keeps_working_across_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with ThreadedServer(data) as running, running.http() as client:
        key = create_key(client, expiration="1d")
        revoked = create_key(client)
        invalidate(client, {"ids": [revoked["id"]]})
    with ThreadedServer(data) as running:
        with running.http(auth=None, headers={"Authorization": f"ApiKey {key['encoded']}"}) as client:
            response = client.get("/_security/_authenticate")
            assert response.status_code == 200
            assert response.json()["api_key"] == {"id": key["id"], "name": key["name"]}
        with running.http(auth=None, headers={"Authorization": f"ApiKey {revoked['encoded']}"}) as client:
            assert_key_rejected(
                client.get("/_security/_authenticate"), f"api key [{revoked['id']}] has been invalidated"
            )
        with running.http() as admin:
            entry = get_key(admin, key["id"])
            assert entry["expiration"] == key["expiration"]
            assert entry["invalidated"] is False
