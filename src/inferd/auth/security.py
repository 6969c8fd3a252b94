"""The security APIs' behaviour for users, roles and `_authenticate`, with Elasticsearch's rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inferd.auth.authenticator import RESERVED_USERS
from inferd.auth.passwords import hash_password, is_supported_hash
from inferd.auth.principal import Principal
from inferd.auth.roles import BUILTIN_ROLES, name_problem, parse_role_body, render_role
from inferd.core.errors import ActionRequestValidationError, IllegalArgument, ParseError, ValidationError
from inferd.core.json_locations import token_name
from inferd.store.base import RoleRecord, RoleStore, UserRecord, UserStore

MIN_PASSWORD_LENGTH = 6
USER_FIELDS = {
    "username": str,
    "password": str,
    "password_hash": str,
    "roles": list,
    "full_name": str,
    "email": str,
    "metadata": dict,
    "enabled": bool,
}
_TYPE_WORD = {str: "string", list: "array", dict: "object", bool: "boolean"}


def _password_hash(body: Mapping[str, Any]) -> str | None:
    """The hash to store from `password` or `password_hash`, validated as ES does."""
    password, given_hash = body.get("password"), body.get("password_hash")
    if password is not None and given_hash is not None:
        raise ValidationError(["password_hash has already been set"])
    if given_hash is not None:
        if not is_supported_hash(given_hash):
            raise IllegalArgument(
                "The provided password hash is not a hash or it could not be resolved to a supported hash "
                "algorithm. The supported password hash algorithms are [argon2id]"
            )
        return str(given_hash)
    if password is None:
        return None
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValidationError([f"passwords must be at least [{MIN_PASSWORD_LENGTH}] characters long"])
    return hash_password(password)


def _parse_fields(body: Mapping[str, Any], what: str, fields: Mapping[str, type]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in body.items():
        if key not in fields:
            raise ParseError(f"failed to parse {what} request. unexpected field [{key}]")
        expected = fields[key]
        if key == "roles" and isinstance(value, str):
            value = [r.strip() for r in value.split(",") if r.strip()]
        if value is not None and not isinstance(value, expected):
            raise ParseError(
                f"expected field [{key}] to be of type {_TYPE_WORD[expected]}, but found [{token_name(value)}] instead"
            )
        out[key] = value
    return out


def render_user(user: UserRecord) -> dict[str, Any]:
    metadata = dict(user.metadata)
    if user.username in RESERVED_USERS:
        metadata["_reserved"] = True
    return {
        "username": user.username,
        "roles": list(user.roles),
        "full_name": user.full_name,
        "email": user.email,
        "metadata": metadata,
        "enabled": user.enabled,
    }


class SecurityService:
    def __init__(self, users: UserStore, roles: RoleStore) -> None:
        self._users = users
        self._roles = roles

    # -- users -------------------------------------------------------------------------------

    async def put_user(self, username: str, body: Mapping[str, Any]) -> bool:
        fields = _parse_fields(body, "add user", USER_FIELDS)
        if fields.get("username") not in (None, username):
            raise IllegalArgument(f"[username] in source does not match the username provided [{username}]")
        password_hash = _password_hash(fields)
        problems = []
        if fields.get("roles") is None:
            problems.append("roles are missing")
        if any(str(k).startswith("_") for k in fields.get("metadata") or {}):
            problems.append("metadata keys may not start with [_]")
        if problems:
            raise ActionRequestValidationError(problems)
        if username in RESERVED_USERS:
            raise ActionRequestValidationError([f"user [{username}] is reserved and only the password can be changed"])
        problems = [p for p in [name_problem("User", username)] if p]
        problems += [p for r in fields["roles"] if (p := name_problem("Role", str(r)))]
        if problems:
            raise ActionRequestValidationError(problems)
        existing = await self._users.get_user(username)
        if existing is None and password_hash is None:
            raise ValidationError(["password must be specified unless you are updating an existing user"])
        record = UserRecord(
            username=username,
            password_hash=password_hash or (existing.password_hash if existing else ""),
            roles=tuple(str(r) for r in fields["roles"]),
            full_name=fields.get("full_name"),
            email=fields.get("email"),
            metadata=dict(fields.get("metadata") or {}),
            enabled=fields.get("enabled") is not False,
        )
        return await self._users.put_user(record)

    async def get_users(self, names: list[str]) -> tuple[int, dict[str, Any]]:
        if not names:
            return 200, {u.username: render_user(u) for u in await self._users.list_users()}
        found = {}
        for name in names:
            user = await self._users.get_user(name)
            if user is not None:
                found[name] = render_user(user)
        return (200 if found else 404), found

    async def delete_user(self, username: str) -> tuple[int, dict[str, Any]]:
        if username in RESERVED_USERS:
            raise IllegalArgument(f"user [{username}] is reserved and cannot be deleted")
        found = await self._users.delete_user(username)
        return (200 if found else 404), {"found": found}

    async def change_password(self, username: str, body: Mapping[str, Any]) -> None:
        fields = _parse_fields(body, "change password", {"password": str, "password_hash": str})
        if fields.get("password") is None and fields.get("password_hash") is None:
            raise ActionRequestValidationError(["password is missing"])
        password_hash = _password_hash(fields)
        assert password_hash is not None
        if not await self._users.set_password_hash(username, password_hash):
            raise ValidationError(["user must exist in order to change password"])

    async def set_enabled(self, actor: Principal, username: str, enabled: bool) -> None:
        if actor.api_key is None and actor.username == username:
            raise IllegalArgument("users may not update the enabled status of their own account")
        if not await self._users.set_enabled(username, enabled):
            raise ValidationError([f"only existing users can be {'enabled' if enabled else 'disabled'}"])

    async def authenticate(self, principal: Principal) -> dict[str, Any]:
        metadata = dict(principal.metadata)
        if principal.api_key is None and principal.username in RESERVED_USERS:
            metadata["_reserved"] = True
        body: dict[str, Any] = {
            "username": principal.username,
            "roles": list(principal.roles),
            "full_name": principal.full_name,
            "email": principal.email,
            "metadata": metadata,
            "enabled": True,
            "authentication_realm": principal.realm.to_dict(),
            "lookup_realm": principal.realm.to_dict(),
            "authentication_type": principal.authentication_type,
        }
        if principal.api_key is not None:
            body["api_key"] = {"id": principal.api_key.id, "name": principal.api_key.name}
        return body

    # -- roles -------------------------------------------------------------------------------

    async def put_role(self, name: str, body: Mapping[str, Any]) -> bool:
        problem = name_problem("Role", name)
        if problem:
            raise ActionRequestValidationError([problem])
        if name in BUILTIN_ROLES:
            raise ActionRequestValidationError([f"Role [{name}] is reserved and may not be used."])
        descriptor = parse_role_body(name, body)
        return await self._roles.put_role(RoleRecord(name, descriptor))

    async def get_roles(self, names: list[str]) -> tuple[int, dict[str, Any]]:
        custom = {r.name: r.descriptor for r in await self._roles.list_roles()}
        every = {**BUILTIN_ROLES, **custom}
        if not names:
            return 200, {n: render_role(d) for n, d in every.items()}
        found = {n: render_role(every[n]) for n in names if n in every}
        return (200 if found else 404), found

    async def delete_role(self, name: str) -> tuple[int, dict[str, Any]]:
        if name in BUILTIN_ROLES:
            raise IllegalArgument(f"role [{name}] is reserved and cannot be deleted")
        found = await self._roles.delete_role(name)
        return (200 if found else 404), {"found": found}
