"""Cluster privileges and the action each route performs, named as Elasticsearch names them.

A denial reads exactly like ES's because actions, privilege patterns and the "least to most
privileged" order of granting privileges are the same.
"""

from __future__ import annotations

import fnmatch
import functools
from enum import StrEnum


class Action(StrEnum):
    MAIN = "cluster:monitor/main"
    GET_ENDPOINTS = "cluster:monitor/xpack/inference/get"
    GET_SERVICES = "cluster:monitor/xpack/inference/services/get"
    INFER = "cluster:monitor/xpack/inference/post"
    STREAM = "cluster:monitor/xpack/inference/post/stream"
    CHAT_COMPLETION = "cluster:monitor/xpack/inference/unified"
    PUT_ENDPOINT = "cluster:admin/xpack/inference/put"
    UPDATE_ENDPOINT = "cluster:admin/xpack/inference/update"
    DELETE_ENDPOINT = "cluster:admin/xpack/inference/delete"
    PUT_USER = "cluster:admin/xpack/security/user/put"
    GET_USERS = "cluster:admin/xpack/security/user/get"
    DELETE_USER = "cluster:admin/xpack/security/user/delete"
    CHANGE_PASSWORD = "cluster:admin/xpack/security/user/change_password"  # noqa: S105 - an action name
    SET_ENABLED = "cluster:admin/xpack/security/user/set_enabled"
    AUTHENTICATE = "cluster:admin/xpack/security/user/authenticate"
    PUT_ROLE = "cluster:admin/xpack/security/role/put"
    GET_ROLES = "cluster:admin/xpack/security/role/get"
    DELETE_ROLE = "cluster:admin/xpack/security/role/delete"
    CREATE_API_KEY = "cluster:admin/xpack/security/api_key/create"
    GET_API_KEY = "cluster:admin/xpack/security/api_key/get"
    INVALIDATE_API_KEY = "cluster:admin/xpack/security/api_key/invalidate"

    @property
    def is_inference(self) -> bool:
        return "/xpack/inference" in self.value


SECURITY_ACTIONS = "cluster:admin/xpack/security/*"
API_KEY_ACTIONS = "cluster:admin/xpack/security/api_key/*"

# privilege -> (granted action patterns, excluded action patterns)
CLUSTER_PRIVILEGES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "monitor_inference": (("cluster:monitor/xpack/inference*",), ()),
    "manage_inference": (("cluster:admin/xpack/inference/*", "cluster:monitor/xpack/inference*"), ()),
    "monitor": (("cluster:monitor/*",), ()),
    "manage": (("cluster:*",), (SECURITY_ACTIONS,)),  # ES's manage excludes the security APIs
    "read_security": (
        (
            "cluster:admin/xpack/security/user/get",
            "cluster:admin/xpack/security/role/get",
            "cluster:admin/xpack/security/api_key/get",
        ),
        (),
    ),
    "manage_security": ((SECURITY_ACTIONS,), ()),
    "manage_api_key": ((API_KEY_ACTIONS,), ()),
    # Conditional in ES: any API-key action, but only on the caller's own keys (checked by the caller).
    "manage_own_api_key": ((API_KEY_ACTIONS,), ()),
    "all": (("cluster:*",), ()),
}

# ES lists granting privileges from least to most privileged (by how many others each implies).
PRIVILEGE_ORDER = (
    "manage_own_api_key",
    "monitor_inference",
    "read_security",
    "manage_api_key",
    "manage_inference",
    "monitor",
    "manage",
    "manage_security",
    "all",
)
CONDITIONAL_PRIVILEGES = frozenset({"manage_own_api_key"})
assert set(PRIVILEGE_ORDER) == set(CLUSTER_PRIVILEGES)


@functools.lru_cache(maxsize=4096)
def privilege_grants(privilege: str, action: str) -> bool:
    """Whether a privilege name or a `cluster:...` action pattern grants `action`."""
    if privilege.startswith("cluster:"):
        return fnmatch.fnmatchcase(action, privilege if privilege.endswith("*") else privilege + "*")
    grants, excludes = CLUSTER_PRIVILEGES.get(privilege, ((), ()))
    return any(fnmatch.fnmatchcase(action, p) for p in grants) and not any(
        fnmatch.fnmatchcase(action, p) for p in excludes
    )


def granting_privileges(action: str) -> list[str]:
    return [p for p in PRIVILEGE_ORDER if privilege_grants(p, action)]


def is_known_privilege(name: str) -> bool:
    return name in CLUSTER_PRIVILEGES or name.startswith("cluster:")


def unknown_privilege_message(name: str) -> str:
    names = ",".join(PRIVILEGE_ORDER)
    return (
        f"unknown cluster privilege [{name}]. a privilege must be either one of the predefined cluster privilege "
        f"names [{names}] or a pattern over one of the available cluster actions"
    )
