"""Storage interfaces. The API and core talk to these, never to a database engine.

A store keeps endpoint configs and their secrets in separate places, writes both in one
transaction, and never overwrites on create: of two creates of one id exactly one wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.tasks import TaskType


class EndpointStore(Protocol):
    async def create(self, config: EndpointConfig, secrets: EndpointSecrets) -> None:
        """Insert config and secrets together; raise AlreadyExists if the id is taken."""

    async def get(self, inference_id: str) -> EndpointConfig | None:
        """The config only; secrets are never read on this path."""

    async def get_with_secrets(self, inference_id: str) -> tuple[EndpointConfig, EndpointSecrets] | None: ...

    async def list(self, task_type: TaskType | None = None) -> list[EndpointConfig]:
        """Configs sorted by inference_id, optionally of one task type."""

    async def replace(self, config: EndpointConfig, secrets: EndpointSecrets | None) -> None:
        """Overwrite an existing endpoint (its secrets too when given); raise NotFound if it is gone."""

    async def delete(self, inference_id: str) -> bool:
        """Remove config and secrets; False if there was nothing to remove."""


@dataclass(frozen=True)
class UserRecord:
    username: str
    password_hash: str
    roles: tuple[str, ...]
    full_name: str | None = None
    email: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True


class UserStore(Protocol):
    async def get_user(self, username: str) -> UserRecord | None: ...

    async def list_users(self) -> list[UserRecord]:
        """Every native user, sorted by name."""

    async def create_user(self, user: UserRecord) -> bool:
        """Insert; False if the username is taken (the existing row is left alone)."""

    async def put_user(self, user: UserRecord) -> bool:
        """Insert or replace; True if it was created."""

    async def delete_user(self, username: str) -> bool: ...

    async def set_password_hash(self, username: str, password_hash: str) -> bool: ...

    async def set_enabled(self, username: str, enabled: bool) -> bool: ...

    async def security_version(self) -> int:
        """A counter every user, role or API key change increments (to invalidate caches anywhere)."""


@dataclass(frozen=True)
class RoleRecord:
    name: str
    descriptor: dict[str, Any]


class RoleStore(Protocol):
    async def get_roles(self, names: Iterable[str]) -> dict[str, RoleRecord]:
        """The stored roles among `names` (missing ones are simply absent)."""

    async def list_roles(self) -> list[RoleRecord]: ...

    async def put_role(self, role: RoleRecord) -> bool:
        """Insert or replace; True if it was created."""

    async def delete_role(self, name: str) -> bool: ...


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    name: str
    secret_hash: str
    owner: str
    realm: str
    realm_type: str
    creation_ms: int
    expiration_ms: int | None
    invalidated: bool
    invalidation_ms: int | None
    metadata: dict[str, Any]
    # The key's own role descriptors, and the owner's at creation time (the key's upper bound).
    role_descriptors: dict[str, dict[str, Any]]
    limited_by: dict[str, dict[str, Any]]


@dataclass(frozen=True)
class ApiKeyQuery:
    ids: tuple[str, ...] = ()
    name: str | None = None  # exact, or a prefix ending in '*'
    owner: str | None = None
    realm: str | None = None
    active_only: bool = False
    now_ms: int = 0


class ApiKeyStore(Protocol):
    async def create_api_key(self, key: ApiKeyRecord) -> None: ...

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None: ...

    async def find_api_keys(self, query: ApiKeyQuery) -> list[ApiKeyRecord]:
        """Matching keys, sorted by creation time."""

    async def invalidate_api_keys(self, ids: Iterable[str], now_ms: int) -> list[str]:
        """Mark the given still-valid keys invalidated; returns the ids this call invalidated."""


class MetaStore(Protocol):
    async def get_or_create_meta(self, key: str, value: str) -> str:
        """The stored value of `key`, storing `value` first if there is none."""


class Store(EndpointStore, UserStore, RoleStore, ApiKeyStore, MetaStore, Protocol):
    async def close(self) -> None: ...
