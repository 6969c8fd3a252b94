"""Roles: ES role descriptors, the built-in roles, and what a set of roles permits.

Beyond Elasticsearch, a role may carry `inference_ids`: patterns of the inference endpoints it
applies to. A role without it applies to every endpoint.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from inferd.auth.privileges import (
    CONDITIONAL_PRIVILEGES,
    is_known_privilege,
    privilege_grants,
    unknown_privilege_message,
)
from inferd.core.errors import ActionRequestValidationError, IllegalArgument, ParseError
from inferd.core.json_locations import token_name

MAX_NAME_LENGTH = 507
ROLE_FIELDS = (
    "cluster",
    "indices",
    "applications",
    "global",
    "run_as",
    "metadata",
    "transient_metadata",
    "description",
    "remote_indices",
    "remote_cluster",
    "inference_ids",
)
FIELD_ALIASES = {"index": "indices", "application": "applications"}
_LIST_FIELDS = ("cluster", "indices", "applications", "run_as", "remote_indices", "remote_cluster", "inference_ids")


def _descriptor(cluster: list[str], description: str) -> dict[str, Any]:
    return {
        "cluster": cluster,
        "indices": [],
        "applications": [],
        "run_as": [],
        "metadata": {"_reserved": True},
        "description": description,
    }


BUILTIN_ROLES: dict[str, dict[str, Any]] = {
    "superuser": {
        **_descriptor(["all"], "Grants full access to inferd."),
        "indices": [{"names": ["*"], "privileges": ["all"], "allow_restricted_indices": False}],
        "applications": [{"application": "*", "privileges": ["*"], "resources": ["*"]}],
        "run_as": ["*"],
    },
    "inference_admin": _descriptor(["manage_inference"], "Manages and uses inference endpoints."),
    "inference_user": _descriptor(["monitor_inference"], "Lists and uses inference endpoints."),
}


def name_problem(kind: str, name: str) -> str | None:
    """ES's native-realm name rule for users ("User") and roles ("Role")."""
    ok = 1 <= len(name) <= MAX_NAME_LENGTH and all(0x20 <= ord(c) <= 0x7E for c in name) and name == name.strip()
    if ok:
        return None
    return (
        f"{kind} names must be at least 1 and no more than {MAX_NAME_LENGTH} characters. They can contain "
        "alphanumeric characters (a-z, A-Z, 0-9), spaces, punctuation, and printable symbols in the Basic "
        "Latin (ASCII) block. Leading or trailing whitespace is not allowed."
    )


def parse_role_body(name: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """A PUT role body -> the descriptor to store. Structure errors raise; validation collects."""
    descriptor: dict[str, Any] = {}
    for raw_key, value in body.items():
        key = FIELD_ALIASES.get(raw_key, raw_key)
        if key not in ROLE_FIELDS:
            raise ParseError(f"failed to parse role [{name}]. unexpected field [{raw_key}]")
        if key == "transient_metadata":
            continue  # accepted and dropped, as ES does
        if key in _LIST_FIELDS:
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list):
                raise ParseError(
                    f"failed to parse role [{name}]. expected field [{raw_key}] value to be an array, "
                    f"but found [{token_name(value)}] instead"
                )
        elif key in ("metadata", "global") and not isinstance(value, dict):
            raise ParseError(f"failed to parse role [{name}]. expected field [{raw_key}] to be an object")
        elif key == "description" and not isinstance(value, str):
            raise ParseError(f"failed to parse role [{name}]. expected field [{raw_key}] to be a string")
        descriptor[key] = value
    problems = validate_descriptor(descriptor)
    if problems:
        raise ActionRequestValidationError(problems)
    return normalise(descriptor)


def validate_descriptor(descriptor: Mapping[str, Any]) -> list[str]:
    problems = []
    for privilege in descriptor.get("cluster", []):
        if not isinstance(privilege, str) or not is_known_privilege(privilege.lower()):
            problems.append(unknown_privilege_message(str(privilege)))
    for entry in descriptor.get("indices", []):
        if not isinstance(entry, dict) or not entry.get("names"):
            raise IllegalArgument("indices privileges must refer to at least one index name or index name pattern")
        if not entry.get("privileges"):
            raise IllegalArgument("indices privileges must define at least one privilege")
    if any(str(k).startswith("_") for k in descriptor.get("metadata", {})):
        problems.append("role descriptor metadata keys may not start with [_]")
    if len(descriptor.get("description", "")) > 1000:
        problems.append("Role description must be less than 1000 characters.")
    patterns = descriptor.get("inference_ids", [])
    if any(not isinstance(p, str) or not p for p in patterns):
        problems.append("[inference_ids] must be a list of non-empty inference id patterns")
    return problems


def normalise(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """ES's rendering: every list present, cluster privileges lower-cased."""
    out: dict[str, Any] = {
        "cluster": [p.lower() if not p.startswith("cluster:") else p for p in descriptor.get("cluster", [])],
        "indices": [{"allow_restricted_indices": False, **entry} for entry in descriptor.get("indices", [])],
        "applications": list(descriptor.get("applications", [])),
        "run_as": list(descriptor.get("run_as", [])),
        "metadata": dict(descriptor.get("metadata", {})),
    }
    for key in ("global", "remote_indices", "remote_cluster", "description", "inference_ids"):
        if key in descriptor:
            out[key] = descriptor[key]
    return out


def render_role(descriptor: Mapping[str, Any]) -> dict[str, Any]:
    """GET role output: the descriptor plus ES's transient metadata."""
    out = dict(descriptor)
    out["transient_metadata"] = {"enabled": True}
    return out


# -- what roles permit -------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointScope:
    """Which inference endpoints an action may touch.

    Each clause is a set of patterns of which one must match; every clause must hold. No clause:
    every endpoint. An API key's scope is its own clause together with its owner's.
    """

    clauses: tuple[tuple[str, ...], ...] = ()

    @classmethod
    def matching(cls, patterns: Iterable[str] | None) -> EndpointScope:
        return cls() if patterns is None else cls((tuple(sorted(patterns)),))

    @property
    def unrestricted(self) -> bool:
        return not self.clauses

    def allows(self, inference_id: str) -> bool:
        return all(any(fnmatch.fnmatchcase(inference_id, p) for p in clause) for clause in self.clauses)

    def intersect(self, other: EndpointScope) -> EndpointScope:
        return EndpointScope(self.clauses + other.clauses)


@dataclass(frozen=True)
class Grant:
    scope: EndpointScope
    own_keys_only: bool  # granted only by manage_own_api_key


@dataclass(frozen=True)
class RoleSet:
    """The resolved role descriptors of a principal (or the bound of an API key)."""

    descriptors: tuple[tuple[str, Mapping[str, Any]], ...]
    # Each action's grant, worked out on first use: a principal (and so its role set) is cached
    # across requests, and matching every privilege pattern again was 4 % of the event loop's profile.
    _grants: dict[str, Grant | None] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def of(cls, descriptors: Mapping[str, Mapping[str, Any]]) -> RoleSet:
        return cls(tuple(sorted(descriptors.items())))

    def grant(self, action: str) -> Grant | None:
        try:
            return self._grants[action]
        except KeyError:
            granted = self._grants[action] = self._work_out_grant(action)
            return granted

    def _work_out_grant(self, action: str) -> Grant | None:
        patterns: set[str] = set()
        unrestricted = False
        unconditional = False
        granted = False
        for _, descriptor in self.descriptors:
            privileges = [p for p in descriptor.get("cluster", []) if privilege_grants(p, action)]
            if not privileges:
                continue
            granted = True
            unconditional = unconditional or any(p not in CONDITIONAL_PRIVILEGES for p in privileges)
            ids = descriptor.get("inference_ids")
            if ids is None:
                unrestricted = True
            else:
                patterns.update(ids)
        if not granted:
            return None
        scope = EndpointScope.matching(None if unrestricted else patterns)
        return Grant(scope, own_keys_only=not unconditional)


def resolve_builtin(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    return {n: BUILTIN_ROLES[n] for n in names if n in BUILTIN_ROLES}
