"""Who is calling and what they may do: the authenticated principal and ES's denial messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from inferd.auth.privileges import CONDITIONAL_PRIVILEGES, Action, granting_privileges
from inferd.auth.roles import EndpointScope, Grant, RoleSet
from inferd.core.errors import AuthorizationError


@dataclass(frozen=True)
class Realm:
    name: str
    type: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "type": self.type}


NATIVE_REALM = Realm("default_native", "native")
RESERVED_REALM = Realm("reserved", "reserved")
API_KEY_REALM = Realm("_es_api_key", "_es_api_key")
ANONYMOUS_REALM = Realm("__anonymous", "anonymous")


@dataclass(frozen=True)
class ApiKeyRef:
    id: str
    name: str
    owner_realm: Realm
    expiration_ms: int | None = None


@dataclass(frozen=True)
class Principal:
    username: str
    roles: tuple[str, ...]
    realm: Realm
    authentication_type: str  # "realm", "api_key" or "anonymous"
    role_set: RoleSet
    full_name: str | None = None
    email: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    missing_roles: tuple[str, ...] = ()
    # API keys: the key itself, and the owner's roles at creation, which bound the key's own.
    api_key: ApiKeyRef | None = None
    limited_by: RoleSet | None = None

    @property
    def effective_roles(self) -> list[str]:
        return sorted(name for name, _ in self.role_set.descriptors)

    def grant(self, action: str) -> Grant | None:
        if action == Action.AUTHENTICATE:
            return Grant(EndpointScope(), own_keys_only=False)  # every caller may ask who they are
        granted = self._role_grant(action)
        if granted is None and self.api_key is not None and action == Action.GET_API_KEY:
            return Grant(EndpointScope(), own_keys_only=True)  # a key may always read itself
        return granted

    def _role_grant(self, action: str) -> Grant | None:
        own = self.role_set.grant(action)
        if own is None or self.limited_by is None:
            return own
        bound = self.limited_by.grant(action)
        if bound is None:
            return None
        return Grant(own.scope.intersect(bound.scope), own_keys_only=own.own_keys_only or bound.own_keys_only)

    def describe(self) -> str:
        """How ES names the caller in a denial."""
        if self.api_key is not None:
            return f"API key id [{self.api_key.id}] of user [{self.username}]"
        text = f"user [{self.username}] with effective roles [{','.join(self.effective_roles)}]"
        if self.missing_roles:
            text += f" (assigned roles [{','.join(sorted(self.missing_roles))}] were not found)"
        return text


def denied(
    principal: Principal, action: str, *, inference_id: str | None = None, own_keys_would_do: bool | None = None
) -> AuthorizationError:
    """ES's 403. Like ES, conditional privileges are named only if they would grant this request:
    `own_keys_would_do` says whether the request is about the caller's own keys (None: not known,
    which an API key never is: a key owns no other keys)."""
    if inference_id is not None:
        return AuthorizationError(
            f"action [{action}] is unauthorized for {principal.describe()} on inference endpoint [{inference_id}]"
        )
    if own_keys_would_do is None:
        # Creating a key is always one's own; other key actions never are for a key.
        own_keys_would_do = action == Action.CREATE_API_KEY or principal.api_key is None
    conditional_ok = own_keys_would_do
    privileges = ",".join(p for p in granting_privileges(action) if conditional_ok or p not in CONDITIONAL_PRIVILEGES)
    return AuthorizationError(
        f"action [{action}] is unauthorized for {principal.describe()}, "
        f"this action is granted by the cluster privileges [{privileges}]"
    )
