"""Password hashing (argon2id) with an in-memory cache of recent successful checks.

argon2 is slow on purpose (tens of milliseconds), so checking it on every request would cap the
server's throughput. Like Elasticsearch's realm cache, a successful check is remembered as a
keyed hash of the password next to the stored hash it was checked against; a changed password
(a different stored hash) misses the cache.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def generate_password(length: int = 20) -> str:
    alphabet = string.ascii_letters + string.digits + "_-*+="
    return "".join(secrets.choice(alphabet) for _ in range(length))


class PasswordVerifier:
    def __init__(self, max_entries: int = 10_000) -> None:
        self._key = secrets.token_bytes(32)
        self._cache: dict[tuple[str, str], bytes] = {}
        self._max_entries = max_entries

    def _digest(self, password: str) -> bytes:
        return hmac.new(self._key, password.encode(), hashlib.sha256).digest()

    def verify(self, username: str, stored_hash: str, password: str) -> bool:
        key = (username, stored_hash)
        digest = self._digest(password)
        cached = self._cache.get(key)
        if cached is not None:
            return hmac.compare_digest(cached, digest)
        try:
            _hasher.verify(stored_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        if len(self._cache) >= self._max_entries:
            self._cache.clear()
        self._cache[key] = digest
        return True
