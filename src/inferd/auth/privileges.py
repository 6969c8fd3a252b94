"""Cluster privileges, built-in roles, and the action each route performs.

Action names and privilege patterns follow Elasticsearch, so a denial reads exactly like ES's.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
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


# privilege -> action patterns it grants; order is the order ES lists granting privileges in.
CLUSTER_PRIVILEGES: dict[str, tuple[str, ...]] = {
    "monitor_inference": ("cluster:monitor/xpack/inference*",),
    "manage_inference": ("cluster:admin/xpack/inference/*", "cluster:monitor/xpack/inference*"),
    "monitor": ("cluster:monitor/*",),
    "manage": ("cluster:monitor/*", "cluster:admin/*"),
    "all": ("cluster:*",),
}


@dataclass(frozen=True)
class RoleDescriptor:
    name: str
    cluster: tuple[str, ...]


BUILTIN_ROLES: dict[str, RoleDescriptor] = {
    "superuser": RoleDescriptor("superuser", ("all",)),
    "inference_admin": RoleDescriptor("inference_admin", ("manage_inference",)),
    "inference_user": RoleDescriptor("inference_user", ("monitor_inference",)),
}


def privilege_grants(privilege: str, action: str) -> bool:
    return any(fnmatch.fnmatchcase(action, p) for p in CLUSTER_PRIVILEGES.get(privilege, ()))


def granting_privileges(action: str) -> list[str]:
    return [p for p in CLUSTER_PRIVILEGES if privilege_grants(p, action)]


def roles_grant(roles: tuple[str, ...], action: str) -> bool:
    for role_name in roles:
        role = BUILTIN_ROLES.get(role_name)
        if role and any(privilege_grants(p, action) for p in role.cluster):
            return True
    return False
