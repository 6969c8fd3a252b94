"""Routes x principals: who gets 200, 401 or 403, with ES's exact reasons, through the official 9.x client.

The users, roles and API keys are created once for the module on the shared server (and removed at
the end); each cell creates what its route acts on with `elastic` and checks that a refused call
changed nothing. Routes the client has no method for (`_services`, `_stream`) go through raw HTTP.
"""

from __future__ import annotations

import base64
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import elasticsearch
import httpx
import pytest
from elastic_transport import ApiResponse

from tests.conftest import assert_es_error
from tests.support.servers import PASSWORD, RunningServer

USER_PASSWORD = "mx-password-1"
BASIC_CHALLENGE = 'Basic realm="security", charset="UTF-8"'
CHALLENGES = [BASIC_CHALLENGE, "ApiKey"]
ANONYMOUS_NOT_ALLOWED = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
)
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m", "api_key": "sk-matrix-secret"}}

# Cluster privileges that grant each action, least to most privileged (ES's ClusterPrivilegeResolver order).
MAIN_BY = "monitor,manage,all"
INFERENCE_READ_BY = "monitor_inference,manage_inference,monitor,manage,all"
INFERENCE_WRITE_BY = "manage_inference,manage,all"
SECURITY_WRITE_BY = "manage_security,all"
SECURITY_READ_BY = "read_security,manage_security,all"
# manage_own_api_key is conditional in ES: it is named only when it would grant this very request, which
# for an owner-scoped get/invalidate is true for a user and never for an API key ("API keys cannot own keys").
KEY_CREATE_BY = "manage_own_api_key,manage_api_key,manage_security,all"
KEY_GET_OWN_BY_USER = "manage_own_api_key,read_security,manage_api_key,manage_security,all"
KEY_GET_OWN_BY_KEY = "read_security,manage_api_key,manage_security,all"
KEY_INVALIDATE_OWN_BY_USER = "manage_own_api_key,manage_api_key,manage_security,all"
KEY_INVALIDATE_OWN_BY_KEY = "manage_api_key,manage_security,all"
DERIVED_KEY = "creating derived api keys requires an explicit role descriptor that is empty (has no privileges)"

# -- principals ----------------------------------------------------------------------------------

ROLES: dict[str, dict[str, Any]] = {
    "mx-custom-role": {"cluster": ["monitor_inference", "manage_own_api_key"]},
    "mx-manage-role": {"cluster": ["manage"]},
    "mx-security-role": {"cluster": ["manage_security"]},
    "mx-own-keys-role": {"cluster": ["manage_own_api_key"]},
}
USERS: dict[str, list[str]] = {
    "mx-admin": ["inference_admin"],
    "mx-user": ["inference_user"],
    "mx-custom": ["mx-custom-role"],
    "mx-noroles": [],
    "mx-ghost": ["mx-ghost-role"],
    "mx-manage": ["mx-manage-role"],
    "mx-security": ["mx-security-role"],
    # An inference_user who may also make keys for itself (a key's owner needs manage_own_api_key).
    "mx-keyowner": ["inference_user", "mx-own-keys-role"],
    "mx-disabled": ["inference_admin"],
}


@dataclass(frozen=True)
class Who:
    name: str
    username: str
    password: str | None = None
    encoded: str | None = None  # API key credentials
    key_id: str | None = None
    roles: str = ""  # the effective roles a 403 names for a user
    missing: str = ""  # assigned roles that do not exist
    # For 401s: None for a Basic failure ("unable to authenticate user"), else the API-key message.
    key_failure: str | None = None

    @property
    def is_key(self) -> bool:
        return self.encoded is not None

    def client(self, server: RunningServer) -> elasticsearch.Elasticsearch:
        if self.encoded is not None:
            return elasticsearch.Elasticsearch(server.url, api_key=self.encoded, request_timeout=30)
        assert self.password is not None
        return elasticsearch.Elasticsearch(server.url, basic_auth=(self.username, self.password), request_timeout=30)

    def http(self, server: RunningServer) -> httpx.Client:
        if self.encoded is not None:
            return server.http(auth=None, headers={"Authorization": f"ApiKey {self.encoded}"})
        assert self.password is not None
        return server.http(auth=(self.username, self.password))

    def subject(self) -> str:
        """How a 403 names this caller."""
        if self.key_id is not None:
            return f"API key id [{self.key_id}] of user [{self.username}]"
        text = f"user [{self.username}] with effective roles [{self.roles}]"
        return text + (f" (assigned roles [{self.missing}] were not found)" if self.missing else "")


@dataclass
class Principals:
    server: RunningServer
    who: dict[str, Who] = field(default_factory=dict)
    clients: dict[str, elasticsearch.Elasticsearch] = field(default_factory=dict)
    key_ids: list[str] = field(default_factory=list)


def _create_key(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_security/api_key", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def principals(server: RunningServer) -> Iterator[Principals]:
    made = Principals(server)
    with server.http() as admin:
        # The key that will have expired by the time the cells run, made first so no sleep is needed later.
        expired = _create_key(admin, {"name": "mx-expired", "expiration": "1s"})
        made_at = time.monotonic()
        for name, descriptor in ROLES.items():
            assert admin.put(f"/_security/role/{name}", json=descriptor).status_code == 200
        for username, roles in USERS.items():
            response = admin.put(f"/_security/user/{username}", json={"password": USER_PASSWORD, "roles": roles})
            assert response.status_code == 200, response.text
        limited = _create_key(
            admin, {"name": "mx-limited", "role_descriptors": {"mx-monitor-only": {"cluster": ["monitor_inference"]}}}
        )
        invalidated = _create_key(admin, {"name": "mx-invalidated"})
        response = admin.request("DELETE", "/_security/api_key", json={"ids": [invalidated["id"]]})
        assert response.json()["invalidated_api_keys"] == [invalidated["id"]]
        with server.http(auth=("mx-keyowner", USER_PASSWORD)) as owner:
            owned = _create_key(owner, {"name": "mx-owned"})
            broad = _create_key(owner, {"name": "mx-owned-broad", "role_descriptors": {"all": {"cluster": ["all"]}}})
        assert admin.put("/_security/user/mx-disabled/_disable").status_code == 200

        def wrong_secret(key: dict[str, Any]) -> str:
            return base64.b64encode(f"{key['id']}:{'x' * 22}".encode()).decode()

        unknown_id = "mxUnknownKeyId000000"
        made.who = {
            w.name: w
            for w in [
                Who("superuser", "elastic", PASSWORD),
                Who("inference_admin", "mx-admin", USER_PASSWORD, roles="inference_admin"),
                Who("inference_user", "mx-user", USER_PASSWORD, roles="inference_user"),
                Who("custom_role", "mx-custom", USER_PASSWORD, roles="mx-custom-role"),
                Who("no_roles", "mx-noroles", USER_PASSWORD, roles=""),
                Who("unknown_role", "mx-ghost", USER_PASSWORD, missing="mx-ghost-role"),
                Who("manage", "mx-manage", USER_PASSWORD, roles="mx-manage-role"),
                Who("manage_security", "mx-security", USER_PASSWORD, roles="mx-security-role"),
                Who("key_limited", "elastic", encoded=limited["encoded"], key_id=limited["id"]),
                Who("key_of_inference_user", "mx-keyowner", encoded=owned["encoded"], key_id=owned["id"]),
                Who("key_broader_than_owner", "mx-keyowner", encoded=broad["encoded"], key_id=broad["id"]),
                Who(
                    "key_expired",
                    "elastic",
                    encoded=expired["encoded"],
                    key_id=expired["id"],
                    key_failure="api key is expired",
                ),
                Who(
                    "key_invalidated",
                    "elastic",
                    encoded=invalidated["encoded"],
                    key_id=invalidated["id"],
                    key_failure=f"api key [{invalidated['id']}] has been invalidated",
                ),
                Who(
                    "key_wrong_secret",
                    "elastic",
                    encoded=wrong_secret(limited),
                    key_id=limited["id"],
                    key_failure=f"invalid credentials for API key [{limited['id']}]",
                ),
                Who(
                    "key_unknown",
                    "elastic",
                    encoded=base64.b64encode(f"{unknown_id}:{'y' * 22}".encode()).decode(),
                    key_id=unknown_id,
                    key_failure=f"unable to find apikey with id {unknown_id}",
                ),
                Who("wrong_password", "elastic", PASSWORD + "-wrong"),
                Who("disabled_user", "mx-disabled", USER_PASSWORD),
                Who("unknown_user", "mx-nobody", USER_PASSWORD),
            ]
        }
        made.key_ids = [expired["id"], limited["id"], invalidated["id"], owned["id"], broad["id"]]
        made.clients = {name: w.client(server) for name, w in made.who.items()}
        # Let the 1s key run out.
        time.sleep(max(0.0, 1.2 - (time.monotonic() - made_at)))
        try:
            yield made
        finally:
            for client in made.clients.values():
                client.close()
            admin.request("DELETE", "/_security/api_key", json={"ids": made.key_ids})
            for username in USERS:
                admin.request("DELETE", "/_security/api_key", json={"username": username})
                admin.delete(f"/_security/user/{username}")
            for name in ROLES:
                admin.delete(f"/_security/role/{name}")


# -- routes --------------------------------------------------------------------------------------


@dataclass
class Cell:
    """What one matrix cell acts on: unique names, made with `elastic` before the call."""

    uid: str
    target: str = ""
    key_id: str = ""
    cleanup: list[Callable[[httpx.Client], object]] = field(default_factory=list)


@dataclass(frozen=True)
class Observed:
    status: int
    body: Any
    headers: dict[str, str]
    text: str = ""


Setup = Callable[[httpx.Client, Cell], None]
Check = Callable[[httpx.Client, Cell, Observed, Who], None]


def _nothing(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Route:
    name: str
    action: str
    granted_by: str
    uri: Callable[[Cell], str]
    client_call: Callable[[elasticsearch.Elasticsearch, Cell], ApiResponse[Any]] | None = None
    http_call: Callable[[httpx.Client, Cell], httpx.Response] | None = None
    setup: Setup = _nothing
    allowed: Check = _nothing
    unchanged: Callable[[httpx.Client, Cell], None] = _nothing
    granted_by_key: str | None = None  # when ES names other privileges for an API-key caller


def _new_endpoint_id(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-ep-{cell.uid}"


def _make_endpoint(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-ep-{cell.uid}"
    response = admin.put(f"/_inference/completion/{cell.target}", json=ENDPOINT_BODY)
    assert response.status_code == 200, response.text


def _endpoint_exists(admin: httpx.Client, cell: Cell) -> None:
    response = admin.get(f"/_inference/{cell.target}")
    assert response.status_code == 200, response.text
    assert response.json()["endpoints"][0]["service_settings"]["rate_limit"] == {"requests_per_minute": 3000}


def _endpoint_absent(admin: httpx.Client, cell: Cell) -> None:
    assert_es_error(
        admin.get(f"/_inference/{cell.target}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{cell.target}]",
    )


def _make_user(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-target-{cell.uid}"
    response = admin.put(f"/_security/user/{cell.target}", json={"password": USER_PASSWORD, "roles": []})
    assert response.status_code == 200, response.text
    cell.cleanup.append(lambda a: a.delete(f"/_security/user/{cell.target}"))


def _new_user_name(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-new-{cell.uid}"
    cell.cleanup.append(lambda a: a.delete(f"/_security/user/{cell.target}"))


def _user(admin: httpx.Client, cell: Cell) -> httpx.Response:
    return admin.get(f"/_security/user/{cell.target}")


def _user_unchanged(admin: httpx.Client, cell: Cell) -> None:
    response = _user(admin, cell)
    assert response.status_code == 200, response.text
    assert response.json()[cell.target]["enabled"] is True


def _can_log_in(admin: httpx.Client, username: str, password: str) -> int:
    with httpx.Client(base_url=admin.base_url, auth=(username, password), timeout=30) as client:
        return client.get("/_security/_authenticate").status_code


def _make_role(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-target-role-{cell.uid}"
    assert admin.put(f"/_security/role/{cell.target}", json={"cluster": ["monitor"]}).status_code == 200
    cell.cleanup.append(lambda a: a.delete(f"/_security/role/{cell.target}"))


def _new_role_name(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-new-role-{cell.uid}"
    cell.cleanup.append(lambda a: a.delete(f"/_security/role/{cell.target}"))


def _keys_named(admin: httpx.Client, name: str) -> list[dict[str, Any]]:
    response = admin.get("/_security/api_key", params={"name": name})
    assert response.status_code == 200, response.text
    return list(response.json()["api_keys"])


def _new_key_name(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-made-{cell.uid}"
    cell.cleanup.append(lambda a: a.request("DELETE", "/_security/api_key", json={"name": cell.target}))


def _elastic_key(admin: httpx.Client, cell: Cell) -> None:
    cell.target = f"mx-elastic-{cell.uid}"
    cell.key_id = _create_key(admin, {"name": cell.target})["id"]
    cell.cleanup.append(lambda a: a.request("DELETE", "/_security/api_key", json={"ids": [cell.key_id]}))


def _key_still_valid(admin: httpx.Client, cell: Cell) -> None:
    assert [k["invalidated"] for k in _keys_named(admin, cell.target)] == [False]


# allowed-checks: the call did what it says -------------------------------------------------------


def _check_main(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body["tagline"] == "You Know, for Search"


def _check_listed(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert cell.target in [e["inference_id"] for e in seen.body["endpoints"]]


def _check_got(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    [endpoint] = seen.body["endpoints"]
    assert endpoint["inference_id"] == cell.target
    assert "api_key" not in endpoint["service_settings"]


def _check_services(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert "test_service" in [s["service"] for s in seen.body]


def _check_put(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body["inference_id"] == cell.target
    assert admin.get(f"/_inference/{cell.target}").status_code == 200


def _check_updated(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body["service_settings"]["rate_limit"] == {"requests_per_minute": 77}
    stored = admin.get(f"/_inference/{cell.target}").json()["endpoints"][0]
    assert stored["service_settings"]["rate_limit"] == {"requests_per_minute": 77}


def _check_deleted(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"acknowledged": True, "pipelines": [], "indexes": []}
    _endpoint_absent(admin, cell)


def _check_inferred(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"completion": [{"result": "HELLO MATRIX"}]}


def _check_streamed(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.headers["content-type"] == "text/event-stream"
    assert '"delta":"HELLO"' in seen.text
    assert seen.text.endswith("data: [DONE]\n\n")


def _check_authenticated(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body["username"] == who.username
    assert seen.body["authentication_type"] == ("api_key" if who.is_key else "realm")
    if who.is_key:
        assert seen.body["api_key"]["id"] == who.key_id


def _check_user_created(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"created": True}
    assert _user(admin, cell).json()[cell.target]["roles"] == ["inference_user"]


def _check_users_listed(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert {"elastic", "mx-user", "mx-disabled"} <= set(seen.body)
    assert seen.body["elastic"]["metadata"] == {"_reserved": True}


def _check_user_deleted(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"found": True}
    assert _user(admin, cell).status_code == 404


def _check_role_created(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"role": {"created": True}}
    assert admin.get(f"/_security/role/{cell.target}").json()[cell.target]["cluster"] == ["monitor_inference"]


def _check_roles_listed(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert {"superuser", "inference_admin", "inference_user", "mx-custom-role"} <= set(seen.body)


def _check_role_deleted(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {"found": True}
    assert admin.get(f"/_security/role/{cell.target}").status_code == 404


def _check_key_created(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    body = seen.body
    assert list(body) == ["id", "name", "api_key", "encoded"]
    assert (len(body["id"]), len(body["api_key"]), body["name"]) == (20, 22, cell.target)
    assert base64.b64decode(body["encoded"]).decode() == f"{body['id']}:{body['api_key']}"
    [stored] = _keys_named(admin, cell.target)
    assert (stored["id"], stored["username"], stored["invalidated"]) == (body["id"], who.username, False)


def _check_own_keys(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    keys = seen.body["api_keys"]
    assert {k["username"] for k in keys} <= {who.username}
    if who.username == "elastic":
        assert "mx-limited" in [k["name"] for k in keys]


def _check_own_invalidated(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    # The key with this name belongs to elastic: only elastic's "owner" invalidation may reach it.
    mine = who.username == "elastic"
    assert seen.body == {
        "invalidated_api_keys": [cell.key_id] if mine else [],
        "previously_invalidated_api_keys": [],
        "error_count": 0,
    }
    assert [k["invalidated"] for k in _keys_named(admin, cell.target)] == [mine]


def _check_password_changed(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {}
    assert _can_log_in(admin, cell.target, "mx-changed-1") == 200
    assert _can_log_in(admin, cell.target, USER_PASSWORD) == 401


def _password_unchanged(admin: httpx.Client, cell: Cell) -> None:
    assert _can_log_in(admin, cell.target, USER_PASSWORD) == 200


def _check_disabled(admin: httpx.Client, cell: Cell, seen: Observed, who: Who) -> None:
    assert seen.body == {}
    assert _user(admin, cell).json()[cell.target]["enabled"] is False


UPDATE_BODY = {"service_settings": {"rate_limit": {"requests_per_minute": 77}}}


def _routes() -> dict[str, Route]:
    table = [
        Route(
            "main",
            "cluster:monitor/main",
            MAIN_BY,
            uri=lambda c: "/",
            client_call=lambda es, c: es.info(),
            allowed=_check_main,
        ),
        Route(
            "list_endpoints",
            "cluster:monitor/xpack/inference/get",
            INFERENCE_READ_BY,
            uri=lambda c: "/_inference",
            client_call=lambda es, c: es.inference.get(),
            setup=_make_endpoint,
            allowed=_check_listed,
        ),
        Route(
            "get_endpoint",
            "cluster:monitor/xpack/inference/get",
            INFERENCE_READ_BY,
            uri=lambda c: f"/_inference/{c.target}",
            client_call=lambda es, c: es.inference.get(inference_id=c.target),
            setup=_make_endpoint,
            allowed=_check_got,
        ),
        Route(
            "services",
            "cluster:monitor/xpack/inference/services/get",
            INFERENCE_READ_BY,
            uri=lambda c: "/_inference/_services",
            http_call=lambda h, c: h.get("/_inference/_services"),
            allowed=_check_services,
        ),
        Route(
            "put_endpoint",
            "cluster:admin/xpack/inference/put",
            INFERENCE_WRITE_BY,
            uri=lambda c: f"/_inference/completion/{c.target}",
            client_call=lambda es, c: es.inference.put(
                task_type="completion", inference_id=c.target, inference_config=ENDPOINT_BODY
            ),
            setup=_new_endpoint_id,
            allowed=_check_put,
            unchanged=_endpoint_absent,
        ),
        Route(
            "update_endpoint",
            "cluster:admin/xpack/inference/update",
            INFERENCE_WRITE_BY,
            uri=lambda c: f"/_inference/{c.target}/_update",
            client_call=lambda es, c: es.inference.update(inference_id=c.target, inference_config=UPDATE_BODY),
            setup=_make_endpoint,
            allowed=_check_updated,
            unchanged=_endpoint_exists,
        ),
        Route(
            "delete_endpoint",
            "cluster:admin/xpack/inference/delete",
            INFERENCE_WRITE_BY,
            uri=lambda c: f"/_inference/{c.target}",
            client_call=lambda es, c: es.inference.delete(inference_id=c.target),
            setup=_make_endpoint,
            allowed=_check_deleted,
            unchanged=_endpoint_exists,
        ),
        Route(
            "infer",
            "cluster:monitor/xpack/inference/post",
            INFERENCE_READ_BY,
            uri=lambda c: f"/_inference/completion/{c.target}",
            client_call=lambda es, c: es.inference.completion(inference_id=c.target, input="hello matrix"),
            setup=_make_endpoint,
            allowed=_check_inferred,
        ),
        Route(
            "stream",
            "cluster:monitor/xpack/inference/post/stream",
            INFERENCE_READ_BY,
            uri=lambda c: f"/_inference/completion/{c.target}/_stream",
            http_call=lambda h, c: h.post(f"/_inference/completion/{c.target}/_stream", json={"input": "hello matrix"}),
            setup=_make_endpoint,
            allowed=_check_streamed,
        ),
        Route(
            "authenticate",
            "cluster:admin/xpack/security/user/authenticate",
            "",
            uri=lambda c: "/_security/_authenticate",
            client_call=lambda es, c: es.security.authenticate(),
            allowed=_check_authenticated,
        ),
        Route(
            "put_user",
            "cluster:admin/xpack/security/user/put",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/user/{c.target}",
            client_call=lambda es, c: es.security.put_user(
                username=c.target, password="mx-new-pass", roles=["inference_user"]
            ),
            setup=_new_user_name,
            allowed=_check_user_created,
            unchanged=lambda a, c: assert_404_empty(_user(a, c)),
        ),
        Route(
            "get_users",
            "cluster:admin/xpack/security/user/get",
            SECURITY_READ_BY,
            uri=lambda c: "/_security/user",
            client_call=lambda es, c: es.security.get_user(),
            allowed=_check_users_listed,
        ),
        Route(
            "delete_user",
            "cluster:admin/xpack/security/user/delete",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/user/{c.target}",
            client_call=lambda es, c: es.security.delete_user(username=c.target),
            setup=_make_user,
            allowed=_check_user_deleted,
            unchanged=_user_unchanged,
        ),
        Route(
            "change_password",
            "cluster:admin/xpack/security/user/change_password",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/user/{c.target}/_password",
            client_call=lambda es, c: es.security.change_password(username=c.target, password="mx-changed-1"),
            setup=_make_user,
            allowed=_check_password_changed,
            unchanged=_password_unchanged,
        ),
        Route(
            "disable_user",
            "cluster:admin/xpack/security/user/set_enabled",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/user/{c.target}/_disable",
            client_call=lambda es, c: es.security.disable_user(username=c.target),
            setup=_make_user,
            allowed=_check_disabled,
            unchanged=_user_unchanged,
        ),
        Route(
            "put_role",
            "cluster:admin/xpack/security/role/put",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/role/{c.target}",
            client_call=lambda es, c: es.security.put_role(name=c.target, cluster=["monitor_inference"]),
            setup=_new_role_name,
            allowed=_check_role_created,
            unchanged=lambda a, c: assert_404_empty(a.get(f"/_security/role/{c.target}")),
        ),
        Route(
            "get_roles",
            "cluster:admin/xpack/security/role/get",
            SECURITY_READ_BY,
            uri=lambda c: "/_security/role",
            client_call=lambda es, c: es.security.get_role(),
            allowed=_check_roles_listed,
        ),
        Route(
            "delete_role",
            "cluster:admin/xpack/security/role/delete",
            SECURITY_WRITE_BY,
            uri=lambda c: f"/_security/role/{c.target}",
            client_call=lambda es, c: es.security.delete_role(name=c.target),
            setup=_make_role,
            allowed=_check_role_deleted,
            unchanged=lambda a, c: assert_ok(a.get(f"/_security/role/{c.target}")),
        ),
        Route(
            "create_api_key",
            "cluster:admin/xpack/security/api_key/create",
            KEY_CREATE_BY,
            uri=lambda c: "/_security/api_key",
            client_call=lambda es, c: es.security.create_api_key(name=c.target),
            setup=_new_key_name,
            allowed=_check_key_created,
            unchanged=lambda a, c: assert_equal(_keys_named(a, c.target), []),
        ),
        Route(
            "get_own_api_keys",
            "cluster:admin/xpack/security/api_key/get",
            KEY_GET_OWN_BY_USER,
            uri=lambda c: "/_security/api_key?owner=true",
            client_call=lambda es, c: es.security.get_api_key(owner=True),
            allowed=_check_own_keys,
            granted_by_key=KEY_GET_OWN_BY_KEY,
        ),
        Route(
            "invalidate_own_api_keys",
            "cluster:admin/xpack/security/api_key/invalidate",
            KEY_INVALIDATE_OWN_BY_USER,
            uri=lambda c: "/_security/api_key",
            client_call=lambda es, c: es.security.invalidate_api_key(name=c.target, owner=True),
            setup=_elastic_key,
            allowed=_check_own_invalidated,
            unchanged=_key_still_valid,
            granted_by_key=KEY_INVALIDATE_OWN_BY_KEY,
        ),
    ]
    return {r.name: r for r in table}


def assert_404_empty(response: httpx.Response) -> None:
    assert (response.status_code, response.json()) == (404, {}), response.text


def assert_ok(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text


def assert_equal(actual: object, expected: object) -> None:
    assert actual == expected


ROUTES = _routes()
ROUTE_NAMES = list(ROUTES)

# -- expectations ----------------------------------------------------------------------------------

INFERENCE_READ = {"list_endpoints", "get_endpoint", "services", "infer", "stream"}
INFERENCE_WRITE = {"put_endpoint", "update_endpoint", "delete_endpoint"}
USERS_AND_ROLES = {
    "put_user",
    "get_users",
    "delete_user",
    "change_password",
    "disable_user",
    "put_role",
    "get_roles",
    "delete_role",
}
OWN_KEYS = {"create_api_key", "get_own_api_keys", "invalidate_own_api_keys"}
EVERYONE = {"authenticate"}

ALLOWED: dict[str, set[str]] = {
    "superuser": set(ROUTE_NAMES),
    "inference_admin": INFERENCE_READ | INFERENCE_WRITE | EVERYONE,
    "inference_user": INFERENCE_READ | EVERYONE,
    "custom_role": INFERENCE_READ | OWN_KEYS | EVERYONE,
    "no_roles": EVERYONE,
    "unknown_role": EVERYONE,
    "manage": {"main"} | INFERENCE_READ | INFERENCE_WRITE | EVERYONE,
    "manage_security": USERS_AND_ROLES | OWN_KEYS | EVERYONE,
    "key_limited": INFERENCE_READ | EVERYONE,
    # Bounded by the owner's roles at creation (inference_user + manage_own_api_key) whatever the key asks for.
    "key_of_inference_user": INFERENCE_READ | EVERYONE,
    "key_broader_than_owner": INFERENCE_READ | EVERYONE,
}
# Authorized, then refused by the create action itself: an API key may only derive a key with no privileges.
BAD_REQUEST = {("key_of_inference_user", "create_api_key"), ("key_broader_than_owner", "create_api_key")}
UNAUTHENTICATED = [
    "key_expired",
    "key_invalidated",
    "key_wrong_secret",
    "key_unknown",
    "wrong_password",
    "disabled_user",
    "unknown_user",
]
CELLS = [(who, route) for who in [*ALLOWED, *UNAUTHENTICATED] for route in ROUTE_NAMES]


def call(principals: Principals, who: Who, route: Route, cell: Cell) -> Observed:
    if route.http_call is not None:
        with who.http(principals.server) as client:
            response = route.http_call(client, cell)
        try:
            body = response.json()
        except ValueError:
            body = None
        return Observed(response.status_code, body, dict(response.headers), response.text)
    assert route.client_call is not None
    try:
        result = route.client_call(principals.clients[who.name], cell)
    except elasticsearch.ApiError as exc:
        return Observed(exc.meta.status, exc.body, dict(exc.meta.headers))
    return Observed(result.meta.status, result.body, dict(result.meta.headers))


def error_of(seen: Observed, status: int, es_type: str, reason: str) -> dict[str, Any]:
    assert seen.status == status, seen.body
    assert seen.body["status"] == status
    error = seen.body["error"]
    assert (error["type"], error["reason"]) == (es_type, reason)
    assert (error["root_cause"][0]["type"], error["root_cause"][0]["reason"]) == (es_type, reason)
    return dict(error)


def lower_keys(headers: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


@pytest.mark.parametrize(("who_name", "route_name"), CELLS, ids=[f"{w}-{r}" for w, r in CELLS])
def test_matrix(principals: Principals, http: httpx.Client, who_name: str, route_name: str) -> None:
    who = principals.who[who_name]
    route = ROUTES[route_name]
    cell = Cell(uuid.uuid4().hex[:10])
    try:
        route.setup(http, cell)
        seen = call(principals, who, route, cell)
        headers = lower_keys(seen.headers)
        if who_name in UNAUTHENTICATED:
            if who.key_failure is None:
                reason = f"unable to authenticate user [{who.username}] for REST request [{route.uri(cell)}]"
            else:
                reason = ANONYMOUS_NOT_ALLOWED
            error = error_of(seen, 401, "security_exception", reason)
            if who.key_failure is not None:
                assert error["additional_unsuccessful_credentials"] == f"API key: {who.key_failure}"
            assert error["header"] == {"WWW-Authenticate": CHALLENGES}
            assert "ApiKey" in headers["www-authenticate"]
            assert "x-elastic-product" not in headers
            route.unchanged(http, cell)
        elif (who_name, route_name) in BAD_REQUEST:
            error_of(seen, 400, "illegal_argument_exception", DERIVED_KEY)
            assert headers["x-elastic-product"] == "Elasticsearch"
            route.unchanged(http, cell)
        elif route_name in ALLOWED[who_name]:
            assert seen.status == 200, seen.body or seen.text
            assert headers["x-elastic-product"] == "Elasticsearch"
            route.allowed(http, cell, seen, who)
        else:
            granted_by = route.granted_by_key if who.is_key and route.granted_by_key else route.granted_by
            reason = (
                f"action [{route.action}] is unauthorized for {who.subject()}, "
                f"this action is granted by the cluster privileges [{granted_by}]"
            )
            error = error_of(seen, 403, "security_exception", reason)
            assert "header" not in error
            assert "x-elastic-product" not in headers
            assert "www-authenticate" not in headers
            route.unchanged(http, cell)
    finally:
        for undo in cell.cleanup:
            undo(http)


# -- beyond the matrix -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("who_name", "method", "query", "body", "action", "granted_by"),
    [
        # manage_own_api_key does not grant a request for every key, so ES does not name it.
        ("custom_role", "GET", {}, None, "api_key/get", KEY_GET_OWN_BY_KEY),
        ("custom_role", "GET", {"username": "mx-custom", "realm_name": "reserved"}, None, "api_key/get",
         KEY_GET_OWN_BY_KEY),
        ("custom_role", "DELETE", {}, {"name": "mx-limited"}, "api_key/invalidate", KEY_INVALIDATE_OWN_BY_KEY),
        ("inference_admin", "DELETE", {}, {"ids": ["mxUnknownKeyId0"]}, "api_key/invalidate",
         KEY_INVALIDATE_OWN_BY_KEY),
    ],
    ids=["custom-get-all", "custom-own-name-other-realm", "custom-invalidate-by-name", "admin-invalidate-by-id"],
)  # fmt: skip
def test_keys_of_others_are_denied_naming_only_privileges_that_grant_the_request(
    principals: Principals,
    http: httpx.Client,
    who_name: str,
    method: str,
    query: dict[str, str],
    body: dict[str, Any] | None,
    action: str,
    granted_by: str,
) -> None:
    who = principals.who[who_name]
    with who.http(principals.server) as client:
        response = client.request(method, "/_security/api_key", params=query, json=body)
    reason = (
        f"action [cluster:admin/xpack/security/{action}] is unauthorized for {who.subject()}, "
        f"this action is granted by the cluster privileges [{granted_by}]"
    )
    assert_es_error(response, 403, "security_exception", reason)
    assert [k["invalidated"] for k in _keys_named(http, "mx-limited")] == [False]


def test_manage_own_api_key_reaches_own_keys_by_username_and_realm(principals: Principals) -> None:
    who = principals.who["custom_role"]
    with who.http(principals.server) as client:
        made = _create_key(client, {"name": "mx-custom-own"})
        try:
            mine = client.get("/_security/api_key", params={"username": "mx-custom", "realm_name": "default_native"})
            assert mine.status_code == 200, mine.text
            assert [k["id"] for k in mine.json()["api_keys"] if k["name"] == "mx-custom-own"] == [made["id"]]
            assert {k["username"] for k in mine.json()["api_keys"]} == {"mx-custom"}
            # A key may read itself by id even without manage_own_api_key over its owner's keys.
            with principals.server.http(auth=None, headers={"Authorization": f"ApiKey {made['encoded']}"}) as key:
                itself = key.get("/_security/api_key", params={"id": made["id"]})
            assert itself.status_code == 200, itself.text
            assert [k["id"] for k in itself.json()["api_keys"]] == [made["id"]]
        finally:
            client.request("DELETE", "/_security/api_key", json={"ids": [made["id"]]})


def test_api_key_cannot_invalidate_its_owners_other_keys(principals: Principals, http: httpx.Client) -> None:
    """ES: an API key never owns other keys, so `owner=true` from a key with manage_own_api_key is refused."""
    username = "mx-sibling-owner"
    body = {"password": USER_PASSWORD, "roles": ["mx-own-keys-role"]}
    assert http.put(f"/_security/user/{username}", json=body).status_code == 200
    try:
        with principals.server.http(auth=(username, USER_PASSWORD)) as owner:
            sibling = _create_key(owner, {"name": "mx-sibling"})["id"]
            holder = _create_key(owner, {"name": "mx-holder"})
        with principals.server.http(auth=None, headers={"Authorization": f"ApiKey {holder['encoded']}"}) as key:
            response = key.request("DELETE", "/_security/api_key", json={"owner": True})
        assert_es_error(
            response,
            403,
            "security_exception",
            "action [cluster:admin/xpack/security/api_key/invalidate] is unauthorized for "
            f"API key id [{holder['id']}] of user [{username}], "
            f"this action is granted by the cluster privileges [{KEY_INVALIDATE_OWN_BY_KEY}]",
        )
        assert [(k["id"], k["invalidated"]) for k in _keys_named(http, "mx-sibling")] == [(sibling, False)]
    finally:
        http.request("DELETE", "/_security/api_key", json={"username": username})
        http.delete(f"/_security/user/{username}")


def test_roles_granted_at_use_time_follow_the_stored_role(principals: Principals, http: httpx.Client) -> None:
    """A user's custom role is resolved on each request: changing the role changes the answer."""
    role, username = "mx-changing-role", "mx-changing"
    assert http.put(f"/_security/role/{role}", json={"cluster": ["monitor_inference"]}).status_code == 200
    assert http.put(f"/_security/user/{username}", json={"password": USER_PASSWORD, "roles": [role]}).status_code == 200
    try:
        with principals.server.http(auth=(username, USER_PASSWORD)) as client:
            assert client.get("/_inference").status_code == 200
            assert http.put(f"/_security/role/{role}", json={"cluster": ["monitor"]}).status_code == 200
            assert client.get("/").status_code == 200
            assert http.delete(f"/_security/role/{role}").json() == {"found": True}
            assert_es_error(
                client.get("/_inference"),
                403,
                "security_exception",
                f"action [cluster:monitor/xpack/inference/get] is unauthorized for user [{username}] with effective "
                f"roles [] (assigned roles [{role}] were not found), this action is granted by the cluster "
                f"privileges [{INFERENCE_READ_BY}]",
            )
    finally:
        http.delete(f"/_security/user/{username}")
        http.delete(f"/_security/role/{role}")


def test_unknown_role_alongside_a_known_one(principals: Principals, http: httpx.Client) -> None:
    username = "mx-half-ghost"
    body = {"password": USER_PASSWORD, "roles": ["mx-ghost-role", "inference_user"]}
    assert http.put(f"/_security/user/{username}", json=body).status_code == 200
    try:
        with principals.server.http(auth=(username, USER_PASSWORD)) as client:
            assert client.get("/_inference").status_code == 200
            assert_es_error(
                client.put("/_inference/completion/mx-half-ghost-ep", json=ENDPOINT_BODY),
                403,
                "security_exception",
                f"action [cluster:admin/xpack/inference/put] is unauthorized for user [{username}] with effective "
                "roles [inference_user] (assigned roles [mx-ghost-role] were not found), this action is granted "
                f"by the cluster privileges [{INFERENCE_WRITE_BY}]",
            )
        assert http.get("/_inference/mx-half-ghost-ep").status_code == 404
    finally:
        http.delete(f"/_security/user/{username}")


def test_several_roles_are_listed_sorted(principals: Principals, http: httpx.Client) -> None:
    username = "mx-many"
    body = {"password": USER_PASSWORD, "roles": ["mx-security-role", "inference_user", "mx-custom-role"]}
    assert http.put(f"/_security/user/{username}", json=body).status_code == 200
    try:
        with principals.server.http(auth=(username, USER_PASSWORD)) as client:
            assert_es_error(
                client.get("/"),
                403,
                "security_exception",
                f"action [cluster:monitor/main] is unauthorized for user [{username}] with effective roles "
                f"[inference_user,mx-custom-role,mx-security-role], this action is granted by the cluster "
                f"privileges [{MAIN_BY}]",
            )
    finally:
        http.delete(f"/_security/user/{username}")


def test_own_password_needs_no_privilege_but_not_through_an_api_key(principals: Principals, http: httpx.Client) -> None:
    username = "mx-self"
    assert http.put(f"/_security/user/{username}", json={"password": USER_PASSWORD, "roles": []}).status_code == 200
    try:
        es = elasticsearch.Elasticsearch(principals.server.url, basic_auth=(username, USER_PASSWORD))
        with es:
            assert es.security.change_password(username=username, password="mx-self-new").body == {}
        assert _can_log_in(http, username, "mx-self-new") == 200
        # The same call from an API key of that user (its roles give it nothing) is an ordinary action.
        key = principals.who["key_of_inference_user"]
        with key.http(principals.server) as client:
            response = client.put("/_security/user/mx-keyowner/_password", json={"password": "mx-hijacked"})
        assert_es_error(
            response,
            403,
            "security_exception",
            "action [cluster:admin/xpack/security/user/change_password] is unauthorized for "
            f"{key.subject()}, this action is granted by the cluster privileges [{SECURITY_WRITE_BY}]",
        )
        assert _can_log_in(http, "mx-keyowner", USER_PASSWORD) == 200
    finally:
        http.delete(f"/_security/user/{username}")


def test_api_key_may_read_itself_without_any_privilege(principals: Principals) -> None:
    """ES grants every API key `GET /_security/api_key?id=<its own id>` (RBACEngine's same-user check)."""
    who = principals.who["key_limited"]
    with who.http(principals.server) as client:
        itself = client.get("/_security/api_key", params={"id": who.key_id})
        assert itself.status_code == 200, itself.text
        [info] = itself.json()["api_keys"]
        assert (info["id"], info["name"], info["username"]) == (who.key_id, "mx-limited", "elastic")
        assert info["role_descriptors"]["mx-monitor-only"]["cluster"] == ["monitor_inference"]
        # Another key's id is not "itself".
        other = principals.who["key_of_inference_user"].key_id
        assert_es_error(
            client.get("/_security/api_key", params={"id": other}),
            403,
            "security_exception",
            f"action [cluster:admin/xpack/security/api_key/get] is unauthorized for {who.subject()}, "
            f"this action is granted by the cluster privileges [{KEY_GET_OWN_BY_KEY}]",
        )
