"""Roles with `inference_ids`: which inference endpoints a user or API key may see and use.

Beyond Elasticsearch: a role that lists `inference_ids` patterns covers only matching endpoints. GET
lists are filtered (defaults included), and any call on one endpoint outside the scope is a 403 that
names the endpoint, before the endpoint is even looked up. Several roles add up per action; an API
key gets the intersection of its own descriptors and its owner's roles at creation.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import elasticsearch
import httpx
import pytest
from elastic_transport import ApiResponse

from tests.conftest import DEFAULT_IDS, assert_es_error
from tests.support.servers import RunningServer

USER_PASSWORD = "scope-password-1"
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m", "api_key": "sk-scope-secret"}}
UPDATE_BODY = {"service_settings": {"rate_limit": {"requests_per_minute": 77}}}
# The endpoints each test works on (the autouse fixture removes them afterwards).
ENDPOINTS = {"team-a-1": "completion", "team-a-2": "text_embedding", "team-b-1": "completion", "other-1": "completion"}
COMPLETION_DEFAULTS = {"test-default-completion"}

ROLES: dict[str, dict[str, Any]] = {
    "sc-team-a": {"cluster": ["manage_inference"], "inference_ids": ["team-a-*"]},
    "sc-team-b-read": {"cluster": ["monitor_inference"], "inference_ids": ["team-b-*"]},
    "sc-defaults": {"cluster": ["monitor_inference"], "inference_ids": ["test-default-*", "team-a-1"]},
    "sc-own-keys": {"cluster": ["manage_own_api_key"]},
}
USERS: dict[str, list[str]] = {
    "sc-a": ["sc-team-a"],
    "sc-ab": ["sc-team-a", "sc-team-b-read"],
    "sc-defaults": ["sc-defaults"],
    "sc-b-plus-user": ["sc-team-b-read", "inference_user"],
    "sc-a-keys": ["sc-team-a", "sc-own-keys"],
}


@dataclass(frozen=True)
class Who:
    name: str
    username: str
    password: str | None = None
    encoded: str | None = None
    key_id: str | None = None
    roles: str = ""

    def subject(self) -> str:
        if self.key_id is not None:
            return f"API key id [{self.key_id}] of user [{self.username}]"
        return f"user [{self.username}] with effective roles [{self.roles}]"

    def http(self, server: RunningServer) -> httpx.Client:
        if self.encoded is not None:
            return server.http(auth=None, headers={"Authorization": f"ApiKey {self.encoded}"})
        assert self.password is not None
        return server.http(auth=(self.username, self.password))

    def client(self, server: RunningServer) -> elasticsearch.Elasticsearch:
        if self.encoded is not None:
            return elasticsearch.Elasticsearch(server.url, api_key=self.encoded, request_timeout=30)
        assert self.password is not None
        return elasticsearch.Elasticsearch(server.url, basic_auth=(self.username, self.password), request_timeout=30)


@dataclass
class Scoped:
    server: RunningServer
    who: dict[str, Who] = field(default_factory=dict)
    clients: dict[str, elasticsearch.Elasticsearch] = field(default_factory=dict)


def _create_key(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/_security/api_key", json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="module")
def scoped(server: RunningServer) -> Iterator[Scoped]:
    made = Scoped(server)
    with server.http() as admin:
        for name, descriptor in ROLES.items():
            assert admin.put(f"/_security/role/{name}", json=descriptor).status_code == 200
        for username, roles in USERS.items():
            response = admin.put(f"/_security/user/{username}", json={"password": USER_PASSWORD, "roles": roles})
            assert response.status_code == 200, response.text
        only_a = {"only-a": {"cluster": ["manage_inference"], "inference_ids": ["team-a-*"]}}
        key_a = _create_key(admin, {"name": "sc-elastic-only-a", "role_descriptors": only_a})
        with server.http(auth=("sc-a-keys", USER_PASSWORD)) as owner:
            broad = _create_key(
                owner, {"name": "sc-broad", "role_descriptors": {"broad": {"cluster": ["manage_inference"]}}}
            )
            only_b = {"b": {"cluster": ["manage_inference"], "inference_ids": ["team-b-*", "other-*"]}}
            key_b = _create_key(owner, {"name": "sc-only-b", "role_descriptors": only_b})
            plain = _create_key(owner, {"name": "sc-plain"})
        keys = {
            "key_a_of_elastic": ("elastic", key_a),
            "key_broad_of_a": ("sc-a-keys", broad),
            "key_b_of_a": ("sc-a-keys", key_b),
            "key_plain_of_a": ("sc-a-keys", plain),
        }
        made.who = {
            "elastic": Who("elastic", "elastic", server.password),
            "sc-a": Who("sc-a", "sc-a", USER_PASSWORD, roles="sc-team-a"),
            "sc-ab": Who("sc-ab", "sc-ab", USER_PASSWORD, roles="sc-team-a,sc-team-b-read"),
            "sc-defaults": Who("sc-defaults", "sc-defaults", USER_PASSWORD, roles="sc-defaults"),
            "sc-b-plus-user": Who(
                "sc-b-plus-user", "sc-b-plus-user", USER_PASSWORD, roles="inference_user,sc-team-b-read"
            ),
            **{
                name: Who(name, owner_name, encoded=key["encoded"], key_id=key["id"])
                for name, (owner_name, key) in keys.items()
            },
        }
        made.clients = {name: w.client(server) for name, w in made.who.items()}
        try:
            yield made
        finally:
            for client in made.clients.values():
                client.close()
            admin.request("DELETE", "/_security/api_key", json={"ids": [k["id"] for _, k in keys.values()]})
            for username in USERS:
                admin.delete(f"/_security/user/{username}")
            for name in ROLES:
                admin.delete(f"/_security/role/{name}")


@pytest.fixture
def endpoints(http: httpx.Client) -> dict[str, str]:
    for inference_id, task in ENDPOINTS.items():
        response = http.put(f"/_inference/{task}/{inference_id}", json=ENDPOINT_BODY)
        assert response.status_code == 200, response.text
    return ENDPOINTS


# -- GET lists -----------------------------------------------------------------------------------

EVERYTHING = sorted(DEFAULT_IDS | set(ENDPOINTS))
VISIBLE: dict[str, list[str]] = {
    "elastic": EVERYTHING,
    "sc-a": ["team-a-1", "team-a-2"],
    "sc-ab": ["team-a-1", "team-a-2", "team-b-1"],
    "sc-defaults": ["team-a-1", "test-default-completion"],
    "sc-b-plus-user": EVERYTHING,  # inference_user covers every endpoint, so the union does too
    "key_a_of_elastic": ["team-a-1", "team-a-2"],
    "key_broad_of_a": ["team-a-1", "team-a-2"],  # the owner's team-a-* still bounds it
    "key_b_of_a": [],  # team-b-* of the key meets team-a-* of its owner: nothing
    "key_plain_of_a": ["team-a-1", "team-a-2"],
}
COMPLETION_IDS = {i for i, task in ENDPOINTS.items() if task == "completion"} | COMPLETION_DEFAULTS
LISTS: dict[str, tuple[Callable[[Scoped, str], list[str]], bool]] = {
    "client-get": (lambda s, w: _ids(s.clients[w].inference.get().body), False),
    "client-completion-_all": (
        lambda s, w: _ids(s.clients[w].inference.get(task_type="completion", inference_id="_all").body),
        True,
    ),
    "http-_all": (lambda s, w: _http_ids(s, w, "/_inference/_all"), False),
    "http-star": (lambda s, w: _http_ids(s, w, "/_inference/*"), False),
}


def _ids(body: dict[str, Any]) -> list[str]:
    return [e["inference_id"] for e in body["endpoints"]]


def _http_ids(scoped: Scoped, who: str, path: str) -> list[str]:
    with scoped.who[who].http(scoped.server) as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    return _ids(response.json())


@pytest.mark.parametrize("list_name", list(LISTS))
@pytest.mark.parametrize("who", list(VISIBLE))
def test_lists_show_only_endpoints_in_scope(
    scoped: Scoped, endpoints: dict[str, str], who: str, list_name: str
) -> None:
    listing, completion_only = LISTS[list_name]
    expected = [i for i in VISIBLE[who] if not completion_only or i in COMPLETION_IDS]
    assert listing(scoped, who) == expected


# -- calls on one endpoint -------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    action: str
    call: Callable[[Scoped, str, str], tuple[int, Any, str]]
    allowed: Callable[[httpx.Client, str, Any, str], None]
    unchanged: Callable[[httpx.Client, str], None]


def _client_call(fn: Callable[[elasticsearch.Elasticsearch, str], ApiResponse[Any]]) -> Any:
    def run(scoped: Scoped, who: str, inference_id: str) -> tuple[int, Any, str]:
        try:
            result = fn(scoped.clients[who], inference_id)
        except elasticsearch.ApiError as exc:
            return exc.meta.status, exc.body, ""
        return result.meta.status, result.body, ""

    return run


def _stream(scoped: Scoped, who: str, inference_id: str) -> tuple[int, Any, str]:
    with scoped.who[who].http(scoped.server) as client:
        response = client.post(f"/_inference/completion/{inference_id}/_stream", json={"input": "scoped call"})
    body = response.json() if response.headers["content-type"].startswith("application/json") else None
    return response.status_code, body, response.text


def _stored(admin: httpx.Client, inference_id: str) -> dict[str, Any]:
    response = admin.get(f"/_inference/{inference_id}")
    assert response.status_code == 200, response.text
    return dict(response.json()["endpoints"][0])


def _untouched(admin: httpx.Client, inference_id: str) -> None:
    assert _stored(admin, inference_id)["service_settings"]["rate_limit"] == {"requests_per_minute": 3000}


def _absent(admin: httpx.Client, inference_id: str) -> None:
    assert_es_error(
        admin.get(f"/_inference/{inference_id}"),
        404,
        "resource_not_found_exception",
        f"Inference endpoint not found [{inference_id}]",
    )


def _nothing(*_: object) -> None:
    return None


def _got(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert [e["inference_id"] for e in body["endpoints"]] == [inference_id]


def _put_done(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert body["inference_id"] == inference_id
    assert _stored(admin, inference_id)["task_type"] == "completion"


def _updated(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert _stored(admin, inference_id)["service_settings"]["rate_limit"] == {"requests_per_minute": 77}


def _deleted(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert body == {"acknowledged": True, "pipelines": [], "indexes": []}
    _absent(admin, inference_id)


def _inferred(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert body == {"completion": [{"result": "SCOPED CALL"}]}


def _streamed(admin: httpx.Client, inference_id: str, body: Any, text: str) -> None:
    assert '"delta":"SCOPED"' in text
    assert text.endswith("data: [DONE]\n\n")


OPS: dict[str, Op] = {
    "get": Op(
        "cluster:monitor/xpack/inference/get",
        _client_call(lambda es, i: es.inference.get(inference_id=i)),
        _got,
        _nothing,
    ),
    "get_typed": Op(
        "cluster:monitor/xpack/inference/get",
        _client_call(lambda es, i: es.inference.get(task_type="completion", inference_id=i)),
        _got,
        _nothing,
    ),
    "put": Op(
        "cluster:admin/xpack/inference/put",
        _client_call(
            lambda es, i: es.inference.put(task_type="completion", inference_id=i, inference_config=ENDPOINT_BODY)
        ),
        _put_done,
        _absent,
    ),
    "update": Op(
        "cluster:admin/xpack/inference/update",
        _client_call(lambda es, i: es.inference.update(inference_id=i, inference_config=UPDATE_BODY)),
        _updated,
        _untouched,
    ),
    "delete": Op(
        "cluster:admin/xpack/inference/delete",
        _client_call(lambda es, i: es.inference.delete(inference_id=i)),
        _deleted,
        _untouched,
    ),
    "infer": Op(
        "cluster:monitor/xpack/inference/post",
        _client_call(lambda es, i: es.inference.completion(inference_id=i, input="scoped call")),
        _inferred,
        _nothing,
    ),
    "stream": Op("cluster:monitor/xpack/inference/post/stream", _stream, _streamed, _nothing),
}


def _target(op: str, family: str) -> str:
    """The id an op acts on: a fresh one for PUT, else the test's existing endpoint of that family."""
    return f"{family}-new-{uuid.uuid4().hex[:8]}" if op == "put" else f"{family}-1"


DENIED = [
    *[("sc-a", op, "team-b") for op in OPS],
    *[("sc-a", op, "other") for op in ("get", "infer")],
    # sc-team-b-read only reads team-b; sc-team-a's manage_inference does not reach it.
    *[("sc-ab", op, "team-b") for op in ("put", "update", "delete")],
    *[("sc-ab", op, "other") for op in OPS],
    *[("key_a_of_elastic", op, "team-b") for op in OPS],
    *[("key_broad_of_a", op, "team-b") for op in OPS],
    *[("key_b_of_a", op, "team-b") for op in OPS],
    *[("key_b_of_a", op, "team-a") for op in OPS],
    *[("key_plain_of_a", op, "team-b") for op in ("get", "put", "delete", "infer")],
]
ALLOWED = [
    *[("sc-a", op, "team-a") for op in OPS],
    *[("sc-ab", op, "team-b") for op in ("get", "get_typed", "infer", "stream")],
    *[("sc-ab", op, "team-a") for op in ("put", "update")],
    *[("sc-b-plus-user", op, "other") for op in ("get", "infer", "stream")],
    *[("key_a_of_elastic", op, "team-a") for op in OPS],
    *[("key_broad_of_a", op, "team-a") for op in OPS],
    *[("key_plain_of_a", op, "team-a") for op in ("get", "update", "infer")],
]


@pytest.mark.parametrize(("who", "op", "family"), DENIED, ids=[f"{w}-{o}-{f}" for w, o, f in DENIED])
def test_call_outside_scope_is_403_naming_the_endpoint_and_changes_nothing(
    scoped: Scoped, endpoints: dict[str, str], http: httpx.Client, who: str, op: str, family: str
) -> None:
    spec = OPS[op]
    inference_id = _target(op, family)
    status, body, _ = spec.call(scoped, who, inference_id)
    reason = (
        f"action [{spec.action}] is unauthorized for {scoped.who[who].subject()} on inference endpoint [{inference_id}]"
    )
    assert status == 403, body
    assert body == {
        "error": {
            "root_cause": [{"type": "security_exception", "reason": reason}],
            "type": "security_exception",
            "reason": reason,
        },
        "status": 403,
    }
    spec.unchanged(http, inference_id)


@pytest.mark.parametrize(("who", "op", "family"), ALLOWED, ids=[f"{w}-{o}-{f}" for w, o, f in ALLOWED])
def test_call_inside_scope_is_allowed(
    scoped: Scoped, endpoints: dict[str, str], http: httpx.Client, who: str, op: str, family: str
) -> None:
    spec = OPS[op]
    inference_id = _target(op, family)
    status, body, text = spec.call(scoped, who, inference_id)
    assert status == 200, body or text
    spec.allowed(http, inference_id, body, text)


def test_scope_is_checked_before_the_endpoint_is_looked_up(scoped: Scoped, endpoints: dict[str, str]) -> None:
    """Out of scope answers 403 whether or not the endpoint exists, so a scope does not reveal ids."""
    with scoped.who["sc-a"].http(scoped.server) as client:
        assert_es_error(
            client.get("/_inference/team-b-missing"),
            403,
            "security_exception",
            "action [cluster:monitor/xpack/inference/get] is unauthorized for user [sc-a] with effective roles "
            "[sc-team-a] on inference endpoint [team-b-missing]",
        )
        assert_es_error(
            client.get("/_inference/team-a-missing"),
            404,
            "resource_not_found_exception",
            "Inference endpoint not found [team-a-missing]",
        )


@pytest.mark.parametrize(
    ("method", "path", "action"),
    [
        ("GET", "/_inference/completion/test-default-completion", "cluster:monitor/xpack/inference/get"),
        ("POST", "/_inference/test-default-completion", "cluster:monitor/xpack/inference/post"),
        ("DELETE", "/_inference/test-default-completion?force=true", "cluster:admin/xpack/inference/delete"),
        ("PUT", "/_inference/.elser-2-elasticsearch/_update", "cluster:admin/xpack/inference/update"),
    ],
)
def test_default_endpoints_are_scoped_too(
    scoped: Scoped, http: httpx.Client, method: str, path: str, action: str
) -> None:
    inference_id = path.split("?")[0].removesuffix("/_update").rsplit("/", 1)[1]
    body = {"input": "x"} if method == "POST" else UPDATE_BODY if method == "PUT" else None
    with scoped.who["sc-a"].http(scoped.server) as client:
        response = client.request(method, path, json=body)
    assert_es_error(
        response,
        403,
        "security_exception",
        f"action [{action}] is unauthorized for user [sc-a] with effective roles [sc-team-a] "
        f"on inference endpoint [{inference_id}]",
    )
    assert inference_id in [e["inference_id"] for e in http.get("/_inference").json()["endpoints"]]


def test_a_role_scoped_to_defaults_may_use_them(scoped: Scoped) -> None:
    es = scoped.clients["sc-defaults"]
    assert es.inference.completion(inference_id="test-default-completion", input="hi").body == {
        "completion": [{"result": "HI"}]
    }
    with pytest.raises(elasticsearch.AuthorizationException) as caught:
        es.inference.get(inference_id=".elser-2-elasticsearch")
    assert caught.value.meta.status == 403
    assert caught.value.body["error"]["reason"] == (
        "action [cluster:monitor/xpack/inference/get] is unauthorized for user [sc-defaults] with effective roles "
        "[sc-defaults] on inference endpoint [.elser-2-elasticsearch]"
    )


def test_non_endpoint_actions_are_not_scoped(scoped: Scoped) -> None:
    """`_services` is not about one endpoint: a scoped role's monitor_inference reaches it; other actions keep
    ES's cluster-privilege denial."""
    with scoped.who["sc-a"].http(scoped.server) as client:
        services = client.get("/_inference/_services")
        assert services.status_code == 200, services.text
        assert "test_service" in [s["service"] for s in services.json()]
        assert_es_error(
            client.get("/"),
            403,
            "security_exception",
            "action [cluster:monitor/main] is unauthorized for user [sc-a] with effective roles [sc-team-a], "
            "this action is granted by the cluster privileges [monitor,manage,all]",
        )


def test_role_shows_its_inference_ids(scoped: Scoped) -> None:
    roles = scoped.clients["elastic"].security.get_role(name="sc-team-a,sc-team-b-read").body
    assert roles["sc-team-a"]["cluster"] == ["manage_inference"]
    assert roles["sc-team-a"]["inference_ids"] == ["team-a-*"]
    assert roles["sc-team-b-read"]["inference_ids"] == ["team-b-*"]


def test_key_scope_is_fixed_at_creation_by_the_owners_roles(
    scoped: Scoped, endpoints: dict[str, str], http: httpx.Client
) -> None:
    """Widening the owner's role later widens the owner, not the keys it made before (their `limited_by`)."""
    role, username = "sc-snapshot-role", "sc-snapshot"
    assert http.put(f"/_security/role/{role}", json=ROLES["sc-team-a"]).status_code == 200
    body = {"password": USER_PASSWORD, "roles": [role, "sc-own-keys"]}
    assert http.put(f"/_security/user/{username}", json=body).status_code == 200
    try:
        with scoped.server.http(auth=(username, USER_PASSWORD)) as owner:
            key = _create_key(owner, {"name": "sc-snapshot-key"})
            widened = {"cluster": ["manage_inference"], "inference_ids": ["team-*"]}
            assert http.put(f"/_security/role/{role}", json=widened).status_code == 200
            assert owner.get("/_inference/team-b-1").status_code == 200
        with scoped.server.http(auth=None, headers={"Authorization": f"ApiKey {key['encoded']}"}) as client:
            assert _ids(client.get("/_inference").json()) == ["team-a-1", "team-a-2"]
            assert_es_error(
                client.get("/_inference/team-b-1"),
                403,
                "security_exception",
                f"action [cluster:monitor/xpack/inference/get] is unauthorized for API key id [{key['id']}] "
                f"of user [{username}] on inference endpoint [team-b-1]",
            )
    finally:
        http.request("DELETE", "/_security/api_key", json={"username": username})
        http.delete(f"/_security/user/{username}")
        http.delete(f"/_security/role/{role}")


# -- audit -----------------------------------------------------------------------------------------


def _audit_lines(path: Path, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    """The audit entries that match, waiting briefly for the background writer."""
    deadline = time.monotonic() + 5
    while True:
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        found = [entry for entry in map(json.loads, lines) if match(entry)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_audit_records_the_denied_endpoint(scoped: Scoped, endpoints: dict[str, str]) -> None:
    denied_id = f"team-b-audit-{uuid.uuid4().hex[:8]}"
    with scoped.who["sc-a"].http(scoped.server) as client:
        assert client.get(f"/_inference/{denied_id}").status_code == 403
        assert client.get("/_inference/team-a-1").status_code == 200
    audit = scoped.server.data_dir / "audit.json"
    [denied] = _audit_lines(audit, lambda e: e.get("inference.id") == denied_id)
    assert denied["type"] == "audit"
    assert denied["event.type"] == "transport"
    assert denied["event.action"] == "access_denied"
    assert denied["action"] == "cluster:monitor/xpack/inference/get"
    assert denied["user.name"] == "sc-a"
    assert denied["user.roles"] == ["sc-team-a"]
    assert denied["url.path"] == f"/_inference/{denied_id}"
    assert denied["request.method"] == "GET"
    assert denied["origin.address"] == "127.0.0.1"
    assert USER_PASSWORD not in json.dumps(denied)
    granted = _audit_lines(
        audit,
        lambda e: (
            e.get("inference.id") == "team-a-1"
            and e.get("user.name") == "sc-a"
            and e.get("url.path") == "/_inference/team-a-1"
        ),
    )
    assert granted
    assert {e["event.action"] for e in granted} == {"access_granted"}


def test_audit_records_the_api_key_denied_on_an_endpoint(scoped: Scoped, endpoints: dict[str, str]) -> None:
    who = scoped.who["key_broad_of_a"]
    denied_id = f"team-b-audit-key-{uuid.uuid4().hex[:8]}"
    with who.http(scoped.server) as client:
        assert client.put(f"/_inference/completion/{denied_id}", json=ENDPOINT_BODY).status_code == 403
    [denied] = _audit_lines(scoped.server.data_dir / "audit.json", lambda e: e.get("inference.id") == denied_id)
    assert denied["event.action"] == "access_denied"
    assert denied["action"] == "cluster:admin/xpack/inference/put"
    assert denied["user.name"] == "sc-a-keys"
    assert denied["apikey.id"] == who.key_id
    assert denied["request.method"] == "PUT"
    assert who.encoded is not None
    key_secret = base64.b64decode(who.encoded).decode().partition(":")[2]
    line = json.dumps(denied)
    assert len(key_secret) == 22
    assert key_secret not in line
    assert who.encoded not in line
    assert "sk-scope-secret" not in line
