"""API keys: create, get and invalidate with Elasticsearch's request rules and response shapes.

A key's secret is shown once, at creation, and stored only as a salted hash. A key is bounded by
its owner's roles at creation (`limited_by`); its own `role_descriptors` can only narrow that.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from inferd.auth.authenticator import now_ms
from inferd.auth.passwords import hash_api_key_secret
from inferd.auth.principal import Principal, denied
from inferd.auth.privileges import Action
from inferd.auth.roles import Grant, parse_role_body, render_role
from inferd.core.errors import ActionRequestValidationError, IllegalArgument, XContentParseError
from inferd.core.json_locations import KeyLocator, token_name
from inferd.core.suggest import did_you_mean
from inferd.store.base import ApiKeyQuery, ApiKeyRecord, ApiKeyStore

CREATE_PARSER = "api_key_request"
CREATE_FIELDS = ("name", "expiration", "role_descriptors", "metadata")
INVALIDATE_PARSER = "invalidate_api_key"
INVALIDATE_FIELDS = ("ids", "name", "username", "realm_name", "owner")
GET_PARAMS = ("id", "name", "username", "realm_name", "owner", "active_only", "with_limited_by", "with_profile_uid")


def _urlsafe_id(n_bytes: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n_bytes)).decode().rstrip("=")


def render_key(key: ApiKeyRecord, *, with_limited_by: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"id": key.id, "name": key.name, "type": "rest", "creation": key.creation_ms}
    if key.expiration_ms is not None:
        body["expiration"] = key.expiration_ms
    body["invalidated"] = key.invalidated
    if key.invalidation_ms is not None:
        body["invalidation"] = key.invalidation_ms
    body.update(
        username=key.owner,
        realm=key.realm,
        realm_type=key.realm_type,
        metadata=key.metadata,
        role_descriptors={name: render_role(d) for name, d in key.role_descriptors.items()},
    )
    if with_limited_by:
        body["limited_by"] = [{name: render_role(d) for name, d in key.limited_by.items()}]
    return body


def _name_problems(name: str) -> list[str]:
    if not name:
        return ["api key name is required"]
    problems = []
    if len(name) > 256:
        problems.append("api key name may not be more than 256 characters long")
    if name != name.strip():
        problems.append("api key name may not begin or end with whitespace")
    if name.startswith("_"):
        problems.append("api key name may not begin with an underscore")
    return problems


class ApiKeyService:
    def __init__(self, store: ApiKeyStore, parse_time_value: Any) -> None:
        self._store = store
        self._parse_time_value = parse_time_value

    async def create(self, caller: Principal, body: Mapping[str, Any], raw: bytes) -> dict[str, Any]:
        locate = KeyLocator(raw)
        for key in body:
            if key not in CREATE_FIELDS:
                raise XContentParseError(
                    f"{locate.key(key)} [{CREATE_PARSER}] unknown field [{key}]"
                    f"{did_you_mean(key, CREATE_FIELDS, arrow=False)}"
                )
        name = body.get("name")
        if name is None:
            raise IllegalArgument("Required [name]")
        if not isinstance(name, str):
            raise XContentParseError(
                f"{locate.value('name')} [{CREATE_PARSER}] name doesn't support values of type: {token_name(name)}"
            )
        descriptors_body = body.get("role_descriptors") or {}
        metadata = body.get("metadata") or {}
        if not isinstance(descriptors_body, dict) or not isinstance(metadata, dict):
            bad = "role_descriptors" if not isinstance(descriptors_body, dict) else "metadata"
            raise XContentParseError(f"{locate.value(bad)} [{CREATE_PARSER}] failed to parse field [{bad}]")
        problems = _name_problems(name)
        if any(str(k).startswith("_") for k in metadata):
            problems.append("API key metadata keys may not start with [_]")
        if problems:
            raise ActionRequestValidationError(problems)
        descriptors = {
            role: parse_role_body(role, d if isinstance(d, dict) else {}) for role, d in descriptors_body.items()
        }
        if caller.api_key is not None and (not descriptors or any(_grants_anything(d) for d in descriptors.values())):
            raise IllegalArgument(
                "creating derived api keys requires an explicit role descriptor that is empty (has no privileges)"
            )
        created = now_ms()
        expiration_ms = None
        if body.get("expiration") is not None:
            try:
                seconds = self._parse_time_value("expiration", str(body["expiration"]))
            except IllegalArgument as exc:
                # Parsed inside ES's request builder, which wraps what it throws.
                raise XContentParseError(
                    f"Failed to build [{CREATE_PARSER}] after last required field arrived", caused_by=exc
                ) from None
            expiration_ms = created + int(seconds) * 1000
        key_id, secret = _urlsafe_id(15), _urlsafe_id(16)
        owner_realm = caller.api_key.owner_realm if caller.api_key else caller.realm
        record = ApiKeyRecord(
            id=key_id,
            name=name,
            secret_hash=hash_api_key_secret(secret),
            owner=caller.username,
            realm=owner_realm.name,
            realm_type=owner_realm.type,
            creation_ms=created,
            expiration_ms=expiration_ms,
            invalidated=False,
            invalidation_ms=None,
            metadata=dict(metadata),
            role_descriptors=descriptors,
            limited_by={n: dict(d) for n, d in caller.role_set.descriptors},
        )
        await self._store.create_api_key(record)
        response: dict[str, Any] = {"id": key_id, "name": name}
        if expiration_ms is not None:
            response["expiration"] = expiration_ms
        response["api_key"] = secret
        response["encoded"] = base64.b64encode(f"{key_id}:{secret}".encode()).decode()
        return response

    async def get(self, caller: Principal, grant: Grant, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        key_id, name = params.get("id"), params.get("name")
        username, realm = params.get("username"), params.get("realm_name")
        owner = _flag(params.get("owner"))
        problems = []
        if (key_id or name) and (username or realm):
            problems.append(
                "username or realm name must not be specified when the api key id or api key name is specified"
            )
        if owner and (username or realm):
            problems.append("neither username nor realm-name may be specified when retrieving owned API keys")
        if key_id and name:
            problems.append("only one of [api key id, api key name] can be specified")
        if problems:
            raise ActionRequestValidationError(problems)
        query = ApiKeyQuery(
            ids=(key_id,) if key_id else (),
            name=name,
            owner=username,
            realm=realm,
            active_only=_flag(params.get("active_only")),
            now_ms=now_ms(),
        )
        query = self._own_keys_query(caller, grant, Action.GET_API_KEY, query, owner=owner)
        keys = await self._store.find_api_keys(query)
        body = {"api_keys": [render_key(k, with_limited_by=_flag(params.get("with_limited_by"))) for k in keys]}
        if key_id and not keys:
            return 404, body
        return 200, body

    async def invalidate(
        self, caller: Principal, grant: Grant, body: Mapping[str, Any], raw: bytes = b""
    ) -> dict[str, Any]:
        locate = KeyLocator(raw)
        for key in body:
            if key not in INVALIDATE_FIELDS:
                raise XContentParseError(
                    f"{locate.key(key)} [{INVALIDATE_PARSER}] unknown field [{key}]"
                    f"{did_you_mean(key, INVALIDATE_FIELDS, arrow=False)}"
                )
        ids = body.get("ids")
        name, username, realm = body.get("name"), body.get("username"), body.get("realm_name")
        owner = body.get("owner") is True
        if ids is not None:
            _check_ids(ids)
        problems = []
        if not owner and not (ids or name or username or realm):
            problems.append(
                "One of [api key id(s), api key name, username, realm name] must be specified if [owner] flag is false"
            )
        if (ids or name) and (username or realm):
            problems.append(
                "username or realm name must not be specified when the api key id(s) or api key name are specified"
            )
        if owner and (username or realm):
            problems.append("neither username nor realm-name may be specified when invalidating owned API keys")
        if ids and name:
            problems.append("only one of [api key id(s), api key name] can be specified")
        if problems:
            raise ActionRequestValidationError(problems)
        query = ApiKeyQuery(ids=tuple(ids or ()), name=name, owner=username, realm=realm, active_only=False)
        query = self._own_keys_query(caller, grant, Action.INVALIDATE_API_KEY, query, owner=owner)
        keys = [k for k in await self._store.find_api_keys(query) if not k.invalidated]
        done = await self._store.invalidate_api_keys((k.id for k in keys), now_ms())
        return {"invalidated_api_keys": done, "previously_invalidated_api_keys": [], "error_count": 0}

    def _own_keys_query(
        self, caller: Principal, grant: Grant, action: Action, query: ApiKeyQuery, *, owner: bool
    ) -> ApiKeyQuery:
        """Limit a query to the caller's keys when asked to (owner=true), or when that is all they may touch."""
        own_realm = caller.api_key.owner_realm if caller.api_key else caller.realm
        if not grant.own_keys_only:
            return replace(query, owner=caller.username, realm=own_realm.name) if owner else query
        if caller.api_key is not None:
            # An API key owns no other keys; it may only read itself.
            if action == Action.GET_API_KEY and not owner and query.ids == (caller.api_key.id,):
                return query
            raise denied(caller, action, own_keys_would_do=False)
        if owner:
            return replace(query, owner=caller.username, realm=own_realm.name)
        if query.owner == caller.username and query.realm == own_realm.name:
            return query
        raise denied(caller, action, own_keys_would_do=False)


def _check_ids(ids: Any) -> None:
    """ES checks `ids` while building the request, so failures come wrapped in a parse error."""
    problem = None
    if not isinstance(ids, list):
        problem = "[ids] must be an array of API key ids"
    elif not ids:
        problem = "Field [ids] cannot be an empty array"
    else:
        blank = [i for i, value in enumerate(ids) if not isinstance(value, str) or not value.strip()]
        if len(blank) == 1:
            problem = f"Field [ids] must not contain blank id, but got blank id at index position: [{blank[0]}]"
        elif blank:
            positions = ", ".join(str(i) for i in blank)
            problem = f"Field [ids] must not contain blank ids, but got blank ids at index positions: [{positions}]"
    if problem:
        raise XContentParseError(
            f"Failed to build [{INVALIDATE_PARSER}] after last required field arrived",
            caused_by=ActionRequestValidationError([problem]),
        )


def _grants_anything(descriptor: Mapping[str, Any]) -> bool:
    return bool(descriptor.get("cluster") or descriptor.get("indices") or descriptor.get("applications"))


def _flag(value: str | None) -> bool:
    return value in ("", "true")
