"""Hashing of passwords (argon2id) and API key secrets (PBKDF2), with a cache of recent checks.

Both are slow on purpose, so checking them on every request would cap the server's throughput.
Like Elasticsearch's realm and API-key caches, a successful check is remembered as a keyed hash
of the secret next to the stored hash it was checked against; a changed secret (a different
stored hash) misses the cache. All comparisons are constant-time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()
PBKDF2_PREFIX = "pbkdf2_sha256"
# API key secrets are random (128+ bits), so fewer PBKDF2 rounds than a password needs are plenty.
PBKDF2_ROUNDS = 10_000
# A valid hash of a random password: checked when a user does not exist, so that an unknown user
# takes as long to refuse as a wrong password (no user enumeration by timing).
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def is_supported_hash(value: str) -> bool:
    return value.startswith("$argon2")


def hash_api_key_secret(secret: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, PBKDF2_ROUNDS)
    return f"{PBKDF2_PREFIX}${PBKDF2_ROUNDS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def generate_password(length: int = 20) -> str:
    alphabet = string.ascii_letters + string.digits + "_-*+="
    return "".join(secrets.choice(alphabet) for _ in range(length))


def _check(stored_hash: str, secret: str) -> bool:
    if stored_hash.startswith(PBKDF2_PREFIX + "$"):
        try:
            _, rounds, salt, digest = stored_hash.split("$")
            expected = base64.b64decode(digest)
            actual = hashlib.pbkdf2_hmac("sha256", secret.encode(), base64.b64decode(salt), int(rounds))
        except ValueError:
            return False
        return hmac.compare_digest(expected, actual)
    try:
        return bool(_hasher.verify(stored_hash, secret))
    except (VerificationError, InvalidHashError):
        return False


class SecretVerifier:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, str], bytes] = {}
        self._max_entries = max_entries

    def _digest(self, secret: str) -> bytes:
        return hmac.new(self._key, secret.encode(), hashlib.sha256).digest()

    def verify(self, identity: str, stored_hash: str, secret: str) -> bool:
        key = (identity, stored_hash)
        digest = self._digest(secret)
        cached = self._cache.get(key)
        if cached is not None and hmac.compare_digest(cached, digest):
            return True
        # A miss costs a full check, so a wrong password for a cached user takes as long as any other.
        if not _check(stored_hash, secret):
            return False
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[key] = digest
        return True

    def burn(self, secret: str) -> None:
        """Spend the time a real check takes, for a user that does not exist."""
        _check(_DUMMY_HASH, secret)
