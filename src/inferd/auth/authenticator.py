"""Authentication: the Authorization header checked against native users or API keys, ES's way."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Mapping
from typing import Any

from inferd.auth.passwords import SecretVerifier, generate_password, hash_password
from inferd.auth.principal import (
    ANONYMOUS_REALM,
    API_KEY_REALM,
    NATIVE_REALM,
    RESERVED_REALM,
    ApiKeyRef,
    Principal,
    Realm,
)
from inferd.auth.roles import BUILTIN_ROLES, RoleSet
from inferd.auth.throttle import FailureThrottle
from inferd.core.errors import AuthenticationError
from inferd.store.base import ApiKeyStore, RoleStore, UserRecord, UserStore

log = logging.getLogger(__name__)

ELASTIC_USER = "elastic"
RESERVED_USERS = frozenset({ELASTIC_USER})
# No TLS token service, so no Bearer challenge (ES offers Bearer only when its token service is on).
WWW_AUTHENTICATE = ('Basic realm="security", charset="UTF-8"', "ApiKey")
ANONYMOUS_REASON = (
    "unable to authenticate with provided credentials and anonymous access is not allowed for this request"
)

ANONYMOUS_SUPERUSER = Principal(
    username="_anonymous",
    roles=("superuser",),
    realm=ANONYMOUS_REALM,
    authentication_type="anonymous",
    role_set=RoleSet.of({"superuser": BUILTIN_ROLES["superuser"]}),
)


def unauthenticated(reason: str, **extra: object) -> AuthenticationError:
    return AuthenticationError(reason, headers={"WWW-Authenticate": list(WWW_AUTHENTICATE)}, extra=extra)


def _api_key_failure(message: str) -> AuthenticationError:
    return unauthenticated(ANONYMOUS_REASON, additional_unsuccessful_credentials=f"API key: {message}")


def claimed_username(authorization: str | None) -> str | None:
    """The user name a Basic header claims (for the audit trail); None for anything else."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")[0]
    except (binascii.Error, UnicodeDecodeError):
        return None
    return username or None


def _expired(principal: Principal) -> bool:
    expiration = principal.api_key.expiration_ms if principal.api_key else None
    return expiration is not None and expiration <= now_ms()


def _throttle_key(principal: Principal) -> str:
    return f"api_key:{principal.api_key.id}" if principal.api_key else principal.username


def realm_of(username: str) -> Realm:
    return RESERVED_REALM if username in RESERVED_USERS else NATIVE_REALM


def now_ms() -> int:
    return int(time.time() * 1000)


# How long an authenticated principal is reused without reading the store (ES caches realm users
# for 20 minutes). Security changes made on this node clear the cache at once.
PRINCIPAL_CACHE_SECONDS = 30.0
VERSION_CHECK_SECONDS = 1.0


class Authenticator:
    def __init__(self, users: UserStore, roles: RoleStore, api_keys: ApiKeyStore, throttle: FailureThrottle) -> None:
        self._users = users
        self._roles = roles
        self._api_keys = api_keys
        self._throttle = throttle
        self._verifier = SecretVerifier()
        self._digest_key = secrets.token_bytes(32)
        self._cache: dict[bytes, tuple[float, Principal]] = {}
        self._version = -1
        self._version_checked = -VERSION_CHECK_SECONDS
        self._generation = 0  # bumped by every invalidation: a lookup that raced one is not cached

    def invalidate(self) -> None:
        """Forget every cached principal (a user, role or API key changed)."""
        self._generation += 1
        self._cache.clear()

    async def _check_version(self) -> None:
        # At most once a second, one read of the security version: a change made elsewhere (another
        # node, `inferd users reset-password`) empties this node's cache within a second.
        now = time.monotonic()
        if now - self._version_checked < VERSION_CHECK_SECONDS:
            return
        self._version_checked = now
        version = await self._users.security_version()
        if version != self._version:
            self._version = version
            self.invalidate()

    async def authenticate(self, authorization: str | None, uri: str, address: str) -> Principal:
        if not authorization or not authorization.strip():
            raise unauthenticated(f"missing authentication credentials for REST request [{uri}]")
        # Keyed by a keyed digest of the header: the credentials themselves are never kept.
        key = hmac.new(self._digest_key, authorization.encode(), hashlib.sha256).digest()
        await self._check_version()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > time.monotonic() and not _expired(hit[1]):
            # A throttled user (or key) stays locked out even with a cached, correct credential.
            self._check_throttle(_throttle_key(hit[1]), address)
            return hit[1]
        generation = self._generation
        principal = await self._authenticate(authorization, uri, address)
        if generation == self._generation:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (time.monotonic() + PRINCIPAL_CACHE_SECONDS, principal)
        return principal

    async def _authenticate(self, authorization: str, uri: str, address: str) -> Principal:
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return await self._basic(credentials.strip(), uri, address)
        if scheme == "apikey":
            return await self._api_key(credentials.strip(), address)
        if scheme == "bearer":
            raise unauthenticated(
                ANONYMOUS_REASON, additional_unsuccessful_credentials="Bearer token: tokens are not enabled"
            )
        raise unauthenticated(f"missing authentication credentials for REST request [{uri}]")

    def _check_throttle(self, username: str | None, address: str) -> None:
        wait = self._throttle.retry_after(username, address)
        if wait is not None:
            who = f"user [{username}]" if username else "this address"
            raise AuthenticationError(
                f"too many failed authentication attempts for {who} from [{address}]; try again in [{wait}s]",
                headers={"WWW-Authenticate": list(WWW_AUTHENTICATE), "Retry-After": str(wait)},
            )

    async def _basic(self, credentials: str, uri: str, address: str) -> Principal:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise unauthenticated("invalid basic authentication header encoding") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise unauthenticated("invalid basic authentication header value")
        self._check_throttle(username, address)
        user = await self._users.get_user(username)
        if user is None:
            self._verifier.burn(password)
            ok = False
        else:
            ok = self._verifier.verify(username, user.password_hash, password) and user.enabled
        if not ok or user is None:
            self._throttle.record_failure(username, address)
            raise unauthenticated(f"unable to authenticate user [{username}] for REST request [{uri}]")
        return await self.principal_for(user)

    async def principal_for(self, user: UserRecord) -> Principal:
        resolved, missing = await self.resolve_roles(user.roles)
        return Principal(
            username=user.username,
            roles=user.roles,
            realm=realm_of(user.username),
            authentication_type="realm",
            role_set=RoleSet.of(resolved),
            full_name=user.full_name,
            email=user.email,
            metadata=user.metadata,
            missing_roles=missing,
        )

    async def resolve_roles(self, names: tuple[str, ...]) -> tuple[dict[str, Mapping[str, Any]], tuple[str, ...]]:
        """Role descriptors by name (built-in first, then custom); names that resolve to nothing."""
        resolved: dict[str, Mapping[str, Any]] = {n: BUILTIN_ROLES[n] for n in names if n in BUILTIN_ROLES}
        custom = await self._roles.get_roles(n for n in names if n not in resolved)
        resolved.update({name: record.descriptor for name, record in custom.items()})
        return resolved, tuple(n for n in names if n not in resolved)

    async def _api_key(self, credentials: str, address: str) -> Principal:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _api_key_failure("invalid ApiKey value") from None
        key_id, sep, secret = decoded.partition(":")
        if not sep or not key_id:
            raise _api_key_failure("invalid ApiKey value")
        self._check_throttle(f"api_key:{key_id}", address)
        key = await self._api_keys.get_api_key(key_id)
        failure = None
        if key is None:
            self._verifier.burn(secret)
            failure = f"unable to find apikey with id {key_id}"
        elif key.invalidated:
            failure = f"api key [{key_id}] has been invalidated"
        elif not self._verifier.verify(f"api_key:{key_id}", key.secret_hash, secret):
            failure = f"invalid credentials for API key [{key_id}]"
        elif key.expiration_ms is not None and key.expiration_ms <= now_ms():
            failure = "api key is expired"
        if failure is not None or key is None:
            self._throttle.record_failure(f"api_key:{key_id}", address)
            raise _api_key_failure(failure or "")
        owner = await self._users.get_user(key.owner)
        # A key without role descriptors has exactly its owner's roles at creation time.
        own = key.role_descriptors or key.limited_by
        return Principal(
            username=key.owner,
            roles=(),
            realm=API_KEY_REALM,
            authentication_type="api_key",
            role_set=RoleSet.of(own),
            full_name=owner.full_name if owner else None,
            email=owner.email if owner else None,
            metadata=owner.metadata if owner else {},
            api_key=ApiKeyRef(key.id, key.name, Realm(key.realm, key.realm_type), key.expiration_ms),
            limited_by=RoleSet.of(key.limited_by),
        )


async def bootstrap_elastic_user(users: UserStore, configured_password: str | None) -> str | None:
    """Create the `elastic` superuser on first start; returns a generated password to print once."""
    if await users.get_user(ELASTIC_USER) is not None:
        return None
    password = configured_password or generate_password()
    created = await users.create_user(
        UserRecord(username=ELASTIC_USER, password_hash=hash_password(password), roles=("superuser",))
    )
    if not created:  # another process bootstrapped it first
        return None
    return None if configured_password else password
