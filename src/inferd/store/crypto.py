"""Encryption of secret settings at rest (Fernet, with key rotation through MultiFernet)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from inferd.core.errors import InferdError


class SecretsCipher:
    """Encrypts one endpoint's secrets as a single token bound to its inference id.

    Fernet has no associated data, so the id goes inside the plaintext and is checked on the way
    out: a token copied onto another endpoint's row does not decrypt there.
    """

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def encrypt(self, inference_id: str, values: dict[str, Any]) -> str:
        plaintext = orjson.dumps({"id": inference_id, "secrets": values})
        return self._fernet.encrypt(plaintext).decode("ascii")

    def decrypt(self, inference_id: str, token: str) -> dict[str, Any]:
        try:
            payload = orjson.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken:
            raise InferdError(
                f"Failed to decrypt the secrets of inference endpoint [{inference_id}]: "
                "the secrets key does not match the one they were stored with"
            ) from None
        if payload.get("id") != inference_id:
            raise InferdError(f"The stored secrets of inference endpoint [{inference_id}] belong to another endpoint")
        secrets: dict[str, Any] = payload["secrets"]
        return secrets


def load_or_create_keys(configured: str | None, key_file: Path) -> list[bytes]:
    """Keys from the setting (comma-separated, newest first), else from a 0600 key file in the data dir."""
    if configured:
        keys = [k.strip().encode("ascii") for k in configured.split(",") if k.strip()]
        for k in keys:
            Fernet(k)  # fails early, with cryptography's message, on a malformed key
        return keys
    try:
        return [key_file.read_bytes().strip()]
    except FileNotFoundError:
        pass
    key = Fernet.generate_key()
    # O_EXCL: if another process created the file meanwhile, use theirs rather than overwrite it.
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return [key_file.read_bytes().strip()]
    with os.fdopen(fd, "wb") as f:
        f.write(key)
        f.flush()
        os.fsync(f.fileno())
    return [key]
