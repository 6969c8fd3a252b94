"""Roles (`/_security/role*`) and what they grant, answered as Elasticsearch 8/9 answers them.

Beyond ES, a role may carry `inference_ids` patterns that limit it to some inference endpoints.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from types import ModuleType
from typing import Any
from urllib.parse import quote

import elasticsearch
import elasticsearch8
import httpx
import pytest

from tests.conftest import assert_es_error, make_embedding_endpoint
from tests.support.servers import PASSWORD, RunningServer

USER_PASSWORD = "role-user-pass"
BUILTIN_ROLES = {"superuser": ["all"], "inference_admin": ["manage_inference"], "inference_user": ["monitor_inference"]}
ROLE_FIELDS = ["cluster", "indices", "applications", "run_as", "metadata", "transient_metadata"]
NAME_RULE = (
    "Role names must be at least 1 and no more than 507 characters. They can contain alphanumeric characters "
    "(a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the Basic Latin (ASCII) block. "
    "Leading or trailing whitespace is not allowed."
)
# The cluster privileges inferd implements (issue 5), and pairs (less, more) in ES's least-to-most order.
PRIVILEGES = {
    "all",
    "manage",
    "monitor",
    "manage_inference",
    "monitor_inference",
    "manage_security",
    "read_security",
    "manage_api_key",
    "manage_own_api_key",
}
LESS_THAN_MORE = [
    ("monitor", "manage"),
    ("manage", "all"),
    ("monitor_inference", "manage_inference"),
    ("manage_inference", "manage"),
    ("monitor_inference", "monitor"),
    ("read_security", "manage_security"),
    ("manage_api_key", "manage_security"),
    ("manage_security", "all"),
]
INFERENCE_GET = "cluster:monitor/xpack/inference/get"
INFERENCE_POST = "cluster:monitor/xpack/inference/post"
INFERENCE_PUT = "cluster:admin/xpack/inference/put"
LIBS = [pytest.param(elasticsearch, id="es9"), pytest.param(elasticsearch8, id="es8")]
ENDPOINT_BODY = {"service": "test_service", "service_settings": {"model": "m1", "api_key": "sk-roles-api"}}


def unique(prefix: str = "role") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def role_path(name: str) -> str:
    return f"/_security/role/{quote(name, safe='')}"


def put_role(http: httpx.Client, name: str, body: dict[str, Any]) -> None:
    response = http.put(role_path(name), json=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"role": {"created": True}}


def put_user(http: httpx.Client, roles: list[str]) -> str:
    name = unique("user")
    response = http.put(f"/_security/user/{name}", json={"password": USER_PASSWORD, "roles": roles})
    assert response.status_code == 200, response.text
    return name


def descriptor(cluster: list[str], metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """A role as ES renders it in GET role."""
    return {
        "cluster": cluster,
        "indices": [],
        "applications": [],
        "run_as": [],
        "metadata": metadata or {},
        "transient_metadata": {"enabled": True},
    }


def assert_role_missing(http: httpx.Client, name: str) -> None:
    response = http.get(role_path(name))
    assert response.status_code == 404
    assert response.json() == {}


def assert_forbidden(response: httpx.Response, reason: str) -> None:
    assert_es_error(response, 403, "security_exception", reason)
    assert "x-elastic-product" not in response.headers


def denial(action: str, user: str, roles: str, granted_by: str) -> str:
    return (
        f"action [{action}] is unauthorized for user [{user}] with effective roles [{roles}], "
        f"this action is granted by the cluster privileges {granted_by}"
    )


@pytest.fixture
def as_user(server: RunningServer) -> Iterator[Any]:
    """as_user(name) -> an httpx client authenticated as that user (closed after the test)."""
    clients: list[httpx.Client] = []

    def make(name: str) -> httpx.Client:
        client = server.http(auth=(name, USER_PASSWORD))
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture(params=LIBS)
def admin(server: RunningServer, request: pytest.FixtureRequest) -> Iterator[Any]:
    lib: ModuleType = request.param
    client = lib.Elasticsearch(server.url, basic_auth=("elastic", PASSWORD), request_timeout=30)
    yield client
    client.close()


# -- create, update, read ----------------------------------------------------------------------


def test_put_role_creates_then_updates(http: httpx.Client) -> None:
    name = unique()
    first = http.put(role_path(name), json={"cluster": ["monitor_inference"], "metadata": {"team": "a", "n": 1}})
    assert first.status_code == 200
    assert first.json() == {"role": {"created": True}}
    got = http.get(role_path(name))
    assert got.status_code == 200
    assert got.json() == {name: descriptor(["monitor_inference"], {"team": "a", "n": 1})}
    assert list(got.json()[name]) == ROLE_FIELDS

    second = http.post(role_path(name), json={"cluster": ["manage_inference", "read_security"]})
    assert second.status_code == 200
    assert second.json() == {"role": {"created": False}}
    assert http.get(role_path(name)).json() == {name: descriptor(["manage_inference", "read_security"])}


def test_put_role_accepts_refresh(http: httpx.Client) -> None:
    name = unique()
    response = http.put(role_path(name) + "?refresh=true", json={"cluster": []})
    assert response.json() == {"role": {"created": True}}
    assert http.get(role_path(name)).json() == {name: descriptor([])}


def test_roles_through_the_clients(admin: Any, http: httpx.Client) -> None:
    lib = elasticsearch if isinstance(admin, elasticsearch.Elasticsearch) else elasticsearch8
    first, second = unique(), unique()
    created = admin.security.put_role(name=first, cluster=["monitor_inference"], metadata={"owner": "qa"})
    assert created.body == {"role": {"created": True}}
    assert admin.security.put_role(name=first, cluster=["manage_inference"], refresh=True).body == {
        "role": {"created": False}
    }
    assert admin.security.put_role(name=second, cluster=["cluster:monitor/xpack/inference/get"]).body == {
        "role": {"created": True}
    }

    assert admin.security.get_role(name=first).body == {first: descriptor(["manage_inference"])}
    both = admin.security.get_role(name=[first, second, "inference_user"]).body
    assert set(both) == {first, second, "inference_user"}
    assert both[second]["cluster"] == ["cluster:monitor/xpack/inference/get"]
    assert {first, second, *BUILTIN_ROLES} <= set(admin.security.get_role().body)

    assert admin.security.delete_role(name=second).body == {"found": True}
    with pytest.raises(lib.NotFoundError) as missing_delete:
        admin.security.delete_role(name=second)
    assert missing_delete.value.meta.status == 404
    assert missing_delete.value.body == {"found": False}
    with pytest.raises(lib.NotFoundError) as missing_get:
        admin.security.get_role(name=second)
    assert missing_get.value.body == {}
    assert_role_missing(http, second)


def test_get_all_roles_includes_the_builtin_roles(http: httpx.Client) -> None:
    custom = unique()
    put_role(http, custom, {"cluster": ["monitor_inference"]})
    response = http.get("/_security/role")
    assert response.status_code == 200
    roles = response.json()
    for name, cluster in BUILTIN_ROLES.items():
        assert roles[name]["cluster"] == cluster
        assert roles[name]["metadata"]["_reserved"] is True
        assert roles[name]["transient_metadata"] == {"enabled": True}
        assert roles[name]["run_as"] == (["*"] if name == "superuser" else [])
    assert roles[custom] == descriptor(["monitor_inference"])
    assert "_reserved" not in roles[custom]["metadata"]


@pytest.mark.parametrize("name", sorted(BUILTIN_ROLES))
def test_get_a_builtin_role_by_name(http: httpx.Client, name: str) -> None:
    response = http.get(role_path(name))
    assert response.status_code == 200
    assert list(response.json()) == [name]
    role = response.json()[name]
    assert role["cluster"] == BUILTIN_ROLES[name]
    assert role["metadata"]["_reserved"] is True
    assert role["transient_metadata"] == {"enabled": True}


def test_get_comma_separated_roles(http: httpx.Client) -> None:
    first, second, missing = unique(), unique(), unique("missing")
    put_role(http, first, {"cluster": ["monitor"]})
    put_role(http, second, {"cluster": ["manage"]})
    both = http.get(f"/_security/role/{first},{second}")
    assert both.status_code == 200
    assert both.json() == {first: descriptor(["monitor"]), second: descriptor(["manage"])}
    some = http.get(f"/_security/role/{missing},{first},superuser")
    assert some.status_code == 200
    assert set(some.json()) == {first, "superuser"}


def test_get_missing_roles_is_404_with_an_empty_object(http: httpx.Client) -> None:
    for path in (role_path(unique("missing")), f"/_security/role/{unique('m1')},{unique('m2')}"):
        response = http.get(path)
        assert response.status_code == 404
        assert response.json() == {}


# -- delete ------------------------------------------------------------------------------------


def test_delete_role(http: httpx.Client) -> None:
    name = unique()
    put_role(http, name, {"cluster": ["monitor"]})
    response = http.delete(role_path(name))
    assert response.status_code == 200
    assert response.json() == {"found": True}
    assert_role_missing(http, name)
    again = http.delete(role_path(name))
    assert again.status_code == 404
    assert again.json() == {"found": False}


@pytest.mark.parametrize("name", sorted(BUILTIN_ROLES))
def test_builtin_roles_cannot_be_deleted(http: httpx.Client, name: str) -> None:
    assert_es_error(
        http.delete(role_path(name)),
        400,
        "illegal_argument_exception",
        f"role [{name}] is reserved and cannot be deleted",
    )
    assert http.get(role_path(name)).json()[name]["cluster"] == BUILTIN_ROLES[name]


def test_deleting_a_role_takes_it_from_its_users(http: httpx.Client, as_user: Any) -> None:
    role = unique()
    put_role(http, role, {"cluster": ["monitor_inference"]})
    user = put_user(http, [role])
    client = as_user(user)
    assert client.get("/_inference").status_code == 200
    http.delete(role_path(role))
    assert_forbidden(
        client.get("/_inference"),
        f"action [{INFERENCE_GET}] is unauthorized for user [{user}] with effective roles [] "
        f"(assigned roles [{role}] were not found), this action is granted by the cluster privileges "
        "[monitor_inference,manage_inference,monitor,manage,all]",
    )


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILTIN_ROLES))
def test_reserved_role_names_cannot_be_used(http: httpx.Client, name: str) -> None:
    assert_es_error(
        http.put(role_path(name), json={"cluster": ["monitor"]}),
        400,
        "action_request_validation_exception",
        f"Validation Failed: 1: Role [{name}] is reserved and may not be used.;",
    )
    assert http.get(role_path(name)).json()[name]["cluster"] == BUILTIN_ROLES[name]


def test_unknown_cluster_privilege(http: httpx.Client) -> None:
    name = unique()
    response = http.put(role_path(name), json={"cluster": ["monitor_inference", "read_everything"]})
    error = assert_es_error(response, 400, "action_request_validation_exception")
    prefix = (
        "Validation Failed: 1: unknown cluster privilege [read_everything]. a privilege must be either one of the "
        "predefined cluster privilege names ["
    )
    suffix = "] or a pattern over one of the available cluster actions;"
    reason = error["reason"]
    assert reason.startswith(prefix), reason
    assert reason.endswith(suffix), reason
    listed = reason[len(prefix) : -len(suffix)].split(",")
    assert set(listed) == PRIVILEGES
    assert len(listed) == len(PRIVILEGES)
    for less, more in LESS_THAN_MORE:
        assert listed.index(less) < listed.index(more), (less, more, listed)
    assert listed[-1] == "all"
    assert_role_missing(http, name)


def test_privilege_names_are_case_insensitive(http: httpx.Client, as_user: Any) -> None:
    role = unique()
    response = http.put(role_path(role), json={"cluster": ["Monitor_Inference"]})
    assert response.json() == {"role": {"created": True}}
    assert as_user(put_user(http, [role])).get("/_inference").status_code == 200


def test_cluster_action_patterns_are_accepted_and_effective(http: httpx.Client, as_user: Any) -> None:
    role, endpoint = unique(), unique("ep")
    make_embedding_endpoint(http, endpoint)
    put_role(http, role, {"cluster": [INFERENCE_GET]})
    assert http.get(role_path(role)).json()[role]["cluster"] == [INFERENCE_GET]
    user = put_user(http, [role])
    client = as_user(user)
    assert client.get("/_inference").status_code == 200
    listed = client.get(f"/_inference/{endpoint}")
    assert listed.status_code == 200
    assert [e["inference_id"] for e in listed.json()["endpoints"]] == [endpoint]
    assert_forbidden(
        client.post(f"/_inference/text_embedding/{endpoint}", json={"input": "hello"}),
        denial(INFERENCE_POST, user, role, "[monitor_inference,manage_inference,monitor,manage,all]"),
    )
    assert_forbidden(
        client.put(f"/_inference/text_embedding/{unique('ep')}", json=ENDPOINT_BODY),
        denial(INFERENCE_PUT, user, role, "[manage_inference,manage,all]"),
    )


def test_cluster_action_wildcards(http: httpx.Client, as_user: Any) -> None:
    role, endpoint = unique(), unique("ep")
    put_role(http, role, {"cluster": ["cluster:admin/xpack/inference/*"]})
    user = put_user(http, [role])
    client = as_user(user)
    assert client.put(f"/_inference/text_embedding/{endpoint}", json=ENDPOINT_BODY).status_code == 200
    assert_forbidden(
        client.get(f"/_inference/{endpoint}"),
        denial(INFERENCE_GET, user, role, "[monitor_inference,manage_inference,monitor,manage,all]"),
    )
    assert client.delete(f"/_inference/{endpoint}").status_code == 200


def test_a_user_gets_the_union_of_their_roles(http: httpx.Client, as_user: Any) -> None:
    reader, writer, endpoint = f"zz-{unique()}", f"aa-{unique()}", unique("ep")
    put_role(http, reader, {"cluster": [INFERENCE_GET]})
    put_role(http, writer, {"cluster": [INFERENCE_PUT]})
    user = put_user(http, [reader, writer])
    client = as_user(user)
    assert client.put(f"/_inference/text_embedding/{endpoint}", json=ENDPOINT_BODY).status_code == 200
    assert client.get(f"/_inference/{endpoint}").status_code == 200
    assert_forbidden(
        client.post(f"/_inference/text_embedding/{endpoint}", json={"input": "x"}),
        denial(INFERENCE_POST, user, f"{writer},{reader}", "[monitor_inference,manage_inference,monitor,manage,all]"),
    )


def test_inference_ids_are_stored_returned_and_applied(http: httpx.Client, as_user: Any) -> None:
    role, tag = unique(), uuid.uuid4().hex[:8]
    inside, outside = f"team-{tag}-emb", f"other-{tag}-emb"
    make_embedding_endpoint(http, inside)
    make_embedding_endpoint(http, outside)
    put_role(http, role, {"cluster": ["monitor_inference"], "inference_ids": [f"team-{tag}-*"]})
    stored = http.get(role_path(role)).json()[role]
    assert stored["inference_ids"] == [f"team-{tag}-*"]
    assert stored["cluster"] == ["monitor_inference"]
    assert stored["transient_metadata"] == {"enabled": True}

    user = put_user(http, [role])
    client = as_user(user)
    seen = {e["inference_id"] for e in client.get("/_inference/_all").json()["endpoints"]}
    assert inside in seen
    assert outside not in seen
    assert client.get(f"/_inference/{inside}").status_code == 200
    assert_forbidden(
        client.get(f"/_inference/{outside}"),
        f"action [{INFERENCE_GET}] is unauthorized for user [{user}] with effective roles [{role}] "
        f"on inference endpoint [{outside}]",
    )


@pytest.mark.parametrize("field", ["foo", "Cluster", "inference_id"])
def test_unknown_role_field(http: httpx.Client, field: str) -> None:
    name = unique()
    assert_es_error(
        http.put(role_path(name), json={"cluster": ["monitor"], field: ["x"]}),
        400,
        "parse_exception",
        f"failed to parse role [{name}]. unexpected field [{field}]",
    )
    assert_role_missing(http, name)


def test_metadata_keys_may_not_start_with_underscore(http: httpx.Client) -> None:
    name = unique()
    assert_es_error(
        http.put(role_path(name), json={"cluster": ["monitor"], "metadata": {"ok": 1, "_reserved": True}}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: role descriptor metadata keys may not start with [_];",
    )
    assert_role_missing(http, name)


def test_transient_metadata_is_accepted_and_dropped(http: httpx.Client) -> None:
    name = unique()
    put_role(http, name, {"cluster": ["monitor"], "transient_metadata": {"enabled": False, "x": 1}})
    assert http.get(role_path(name)).json() == {name: descriptor(["monitor"])}


@pytest.mark.parametrize(
    "name",
    [" leading", "trailing ", "ünicode", "x" * 508],
    ids=["leading-space", "trailing-space", "non-ascii", "too-long"],
)
def test_invalid_role_names(http: httpx.Client, name: str) -> None:
    assert_es_error(
        http.put(role_path(name), json={"cluster": ["monitor"]}),
        400,
        "action_request_validation_exception",
        f"Validation Failed: 1: {NAME_RULE};",
    )
    assert name not in http.get("/_security/role").json()


def test_longest_role_name_is_accepted(http: httpx.Client) -> None:
    name = "r" * 507
    put_role(http, name, {"cluster": ["monitor"]})
    assert http.get(role_path(name)).json() == {name: descriptor(["monitor"])}
    assert http.delete(role_path(name)).json() == {"found": True}


def test_description_length(http: httpx.Client) -> None:
    too_long, longest = unique(), unique()
    assert_es_error(
        http.put(role_path(too_long), json={"cluster": [], "description": "d" * 1001}),
        400,
        "action_request_validation_exception",
        "Validation Failed: 1: Role description must be less than 1000 characters.;",
    )
    assert_role_missing(http, too_long)
    put_role(http, longest, {"cluster": [], "description": "d" * 1000})
    assert http.get(role_path(longest)).json()[longest]["description"] == "d" * 1000


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"privileges": ["read"]}, "indices privileges must refer to at least one index name or index name pattern"),
        (
            {"names": [], "privileges": ["read"]},
            "indices privileges must refer to at least one index name or index name pattern",
        ),
        ({"names": ["logs-*"]}, "indices privileges must define at least one privilege"),
    ],
    ids=["no-names", "empty-names", "no-privileges"],
)
def test_indices_entries_are_checked(http: httpx.Client, entry: dict[str, Any], reason: str) -> None:
    name = unique()
    assert_es_error(http.put(role_path(name), json={"indices": [entry]}), 400, "illegal_argument_exception", reason)
    assert_role_missing(http, name)


def test_index_alias_and_indices_rendering(http: httpx.Client) -> None:
    name = unique()
    put_role(http, name, {"index": [{"names": ["logs-*"], "privileges": ["read"]}]})
    role = http.get(role_path(name)).json()[name]
    assert role["indices"] == [{"names": ["logs-*"], "privileges": ["read"], "allow_restricted_indices": False}]
    assert list(role) == ROLE_FIELDS


# -- which privileges grant the security APIs ---------------------------------------------------


def test_manage_does_not_grant_the_security_apis(http: httpx.Client, as_user: Any) -> None:
    role = unique()
    put_role(http, role, {"cluster": ["manage"]})
    user = put_user(http, [role])
    client = as_user(user)
    assert client.put(f"/_inference/text_embedding/{unique('ep')}", json=ENDPOINT_BODY).status_code == 200
    assert_forbidden(
        client.put(role_path(unique()), json={"cluster": ["all"]}),
        denial("cluster:admin/xpack/security/role/put", user, role, "[manage_security,all]"),
    )
    assert_forbidden(
        client.get("/_security/user"),
        denial("cluster:admin/xpack/security/user/get", user, role, "[read_security,manage_security,all]"),
    )


def test_read_security_reads_but_cannot_write(http: httpx.Client, as_user: Any) -> None:
    role, victim = unique(), unique()
    put_role(http, role, {"cluster": ["read_security"]})
    put_role(http, victim, {"cluster": ["monitor"]})
    user = put_user(http, [role])
    client = as_user(user)
    assert client.get("/_security/role").status_code == 200
    assert client.get(role_path(victim)).json() == {victim: descriptor(["monitor"])}
    assert client.get("/_security/user").status_code == 200
    assert_forbidden(
        client.delete(role_path(victim)),
        denial("cluster:admin/xpack/security/role/delete", user, role, "[manage_security,all]"),
    )
    assert_forbidden(
        client.put(role_path(victim), json={"cluster": ["all"]}),
        denial("cluster:admin/xpack/security/role/put", user, role, "[manage_security,all]"),
    )
    assert http.get(role_path(victim)).json() == {victim: descriptor(["monitor"])}


def test_manage_security_manages_roles_but_not_inference(http: httpx.Client, as_user: Any) -> None:
    role, made = unique(), unique()
    put_role(http, role, {"cluster": ["manage_security"]})
    user = put_user(http, [role])
    client = as_user(user)
    assert client.put(role_path(made), json={"cluster": ["monitor"]}).json() == {"role": {"created": True}}
    assert client.delete(role_path(made)).json() == {"found": True}
    assert_forbidden(
        client.get("/_inference"),
        denial(INFERENCE_GET, user, role, "[monitor_inference,manage_inference,monitor,manage,all]"),
    )
