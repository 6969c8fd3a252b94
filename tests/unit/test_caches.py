"""The hot-path caches (resolved endpoints, authenticated principals) never keep what a concurrent
change made stale: a lookup that was in flight while the change happened is not cached."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest

from inferd.auth import throttle as throttle_module
from inferd.auth.authenticator import Authenticator
from inferd.auth.passwords import hash_password
from inferd.auth.throttle import FailureThrottle
from inferd.core.endpoint import EndpointConfig
from inferd.core.endpoints import EndpointManager
from inferd.core.tasks import TaskType
from inferd.store.base import UserRecord


class PausingEndpointStore:
    def __init__(self) -> None:
        self.config = EndpointConfig("e", TaskType.TEXT_EMBEDDING, "svc", {}, {}, None)
        self.gate: asyncio.Event | None = None
        self.reads = 0

    async def get_with_secrets(self, inference_id: str) -> tuple[EndpointConfig, None]:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.config, None


class OneService:
    def default_endpoint(self, inference_id: str) -> None:
        return None

    def get(self, name: str) -> object:
        return object()


def test_an_endpoint_lookup_that_raced_a_change_is_not_cached() -> None:
    async def scenario() -> None:
        store = PausingEndpointStore()
        manager = EndpointManager(store, OneService())  # type: ignore[arg-type]
        store.gate = asyncio.Event()
        lookup = asyncio.create_task(manager.resolve("e"))
        await asyncio.sleep(0)  # the lookup now waits inside the store
        manager.forget("e")  # the endpoint changed (updated or deleted) meanwhile
        store.gate.set()
        await lookup
        store.gate = None
        await manager.resolve("e")
        assert store.reads == 2, "the raced lookup was cached"
        await manager.resolve("e")
        assert store.reads == 2, "an ordinary lookup is cached"

    asyncio.run(scenario())


class PausingUsers:
    def __init__(self) -> None:
        self.user = UserRecord("alice", hash_password("alice-password"), ())
        self.gate: asyncio.Event | None = None
        self.reads = 0

    async def get_user(self, username: str) -> UserRecord | None:
        self.reads += 1
        if self.gate is not None:
            await self.gate.wait()
        return self.user

    async def security_version(self) -> int:
        return 0


class NoRoles:
    async def get_roles(self, names: Any) -> dict[str, Any]:
        return {}


def test_a_login_that_raced_a_security_change_is_not_cached() -> None:
    header = "Basic " + base64.b64encode(b"alice:alice-password").decode()

    async def scenario() -> None:
        users = PausingUsers()
        throttle = FailureThrottle("100/minute", "100/minute")
        authenticator = Authenticator(users, NoRoles(), None, throttle)  # type: ignore[arg-type]
        users.gate = asyncio.Event()
        login = asyncio.create_task(authenticator.authenticate(header, "/", "127.0.0.1"))
        await asyncio.sleep(0)
        authenticator.invalidate()  # e.g. alice's roles changed meanwhile
        users.gate.set()
        await login
        users.gate = None
        await authenticator.authenticate(header, "/", "127.0.0.1")
        assert users.reads == 2, "the raced login was cached"
        await authenticator.authenticate(header, "/", "127.0.0.1")
        assert users.reads == 2, "an ordinary login is cached"

    asyncio.run(scenario())


def test_the_throttle_skips_addresses_without_failures_but_never_forgets_a_recent_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(throttle_module, "_MAX_ADDRESSES", 3)
    throttle = FailureThrottle("2/minute", "3/minute")
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"):  # the 4th prunes: all still in the window
        throttle.record_failure("alice", address)
    throttle.record_failure("alice", "10.0.0.1")
    wait = throttle.retry_after("alice", "10.0.0.1")
    assert wait is not None and 1 <= wait <= 60
    assert throttle.retry_after("bob", "10.0.0.1") is None  # the address has 2 failures, under its 3
    assert throttle.retry_after("alice", "10.0.0.2") is None
    assert throttle.retry_after("alice", "192.0.2.9") is None  # never failed
