"""Who is calling: the Authorization header checked against the native users, ES's way."""

from __future__ import annotations

import base64
import binascii
import logging
from dataclasses import dataclass

from inferd.auth.passwords import PasswordVerifier, generate_password, hash_password
from inferd.auth.privileges import Action, granting_privileges, roles_grant
from inferd.core.errors import AuthenticationError, AuthorizationError
from inferd.store.base import UserRecord, UserStore

log = logging.getLogger(__name__)

ELASTIC_USER = "elastic"
# No TLS yet, so no Bearer challenge (ES offers Bearer only when its token service is on).
WWW_AUTHENTICATE = ('Basic realm="security", charset="UTF-8"', "ApiKey")


@dataclass(frozen=True)
class Principal:
    username: str
    roles: tuple[str, ...]


ANONYMOUS_SUPERUSER = Principal("_anonymous", ("superuser",))


def _unauthenticated(reason: str, **extra: object) -> AuthenticationError:
    return AuthenticationError(reason, headers={"WWW-Authenticate": list(WWW_AUTHENTICATE)}, extra=extra)


class Authenticator:
    def __init__(self, users: UserStore) -> None:
        self._users = users
        self._verifier = PasswordVerifier()

    async def authenticate(self, authorization: str | None, uri: str) -> Principal:
        if not authorization or not authorization.strip():
            raise _unauthenticated(f"missing authentication credentials for REST request [{uri}]")
        scheme, _, credentials = authorization.strip().partition(" ")
        scheme = scheme.lower()
        if scheme == "basic":
            return await self._basic(credentials.strip(), uri)
        if scheme in ("apikey", "bearer"):
            kind = "API key" if scheme == "apikey" else "Bearer token"
            raise _unauthenticated(
                "unable to authenticate with provided credentials and anonymous access is not allowed for this request",
                additional_unsuccessful_credentials=f"{kind}: {kind} authentication is not enabled on this server",
            )
        raise _unauthenticated(f"missing authentication credentials for REST request [{uri}]")

    async def _basic(self, credentials: str, uri: str) -> Principal:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise _unauthenticated("invalid basic authentication header encoding") from None
        username, sep, password = decoded.partition(":")
        if not sep or not username:
            raise _unauthenticated("invalid basic authentication header value")
        user = await self._users.get_user(username)
        if user is None or not user.enabled or not self._verifier.verify(username, user.password_hash, password):
            raise _unauthenticated(f"unable to authenticate user [{username}] for REST request [{uri}]")
        return Principal(user.username, user.roles)


def authorize(principal: Principal, action: Action) -> None:
    if roles_grant(principal.roles, action):
        return
    raise AuthorizationError(
        f"action [{action.value}] is unauthorized for user [{principal.username}] "
        f"with effective roles [{','.join(sorted(principal.roles))}], this action is granted by the cluster "
        f"privileges [{','.join(granting_privileges(action))}]"
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
