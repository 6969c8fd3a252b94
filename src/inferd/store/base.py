"""Storage interfaces. The API and core talk to these, never to a database engine.

A store keeps endpoint configs and their secrets in separate places, writes both in one
transaction, and never overwrites on create: of two creates of one id exactly one wins.
"""

from __future__ import annotations

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

    async def create_user(self, user: UserRecord) -> bool:
        """Insert; False if the username is taken (the existing row is left alone)."""

    async def set_password_hash(self, username: str, password_hash: str) -> bool: ...


class MetaStore(Protocol):
    async def get_or_create_meta(self, key: str, value: str) -> str:
        """The stored value of `key`, storing `value` first if there is none."""


class Store(EndpointStore, UserStore, MetaStore, Protocol):
    async def close(self) -> None: ...
