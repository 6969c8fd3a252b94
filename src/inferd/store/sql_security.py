"""Native users, custom roles and API keys on SQLAlchemy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from inferd.store.base import ApiKeyQuery, ApiKeyRecord, RoleRecord, UserRecord
from inferd.store.schema import api_keys, meta, roles, users
from inferd.store.sql_base import SqlBase, now_iso


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _user_from_row(row: Any) -> UserRecord:
    return UserRecord(
        username=row.username,
        password_hash=row.password_hash,
        roles=tuple(orjson.loads(row.roles)),
        full_name=row.full_name,
        email=row.email,
        metadata=orjson.loads(row.metadata),
        enabled=bool(row.enabled),
    )


def _user_values(user: UserRecord) -> dict[str, Any]:
    return {
        "password_hash": user.password_hash,
        "roles": _json(list(user.roles)),
        "full_name": user.full_name,
        "email": user.email,
        "metadata": _json(user.metadata),
        "enabled": user.enabled,
    }


def _key_from_row(row: Any) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=row.id,
        name=row.name,
        secret_hash=row.secret_hash,
        owner=row.owner,
        realm=row.realm,
        realm_type=row.realm_type,
        creation_ms=row.creation_ms,
        expiration_ms=row.expiration_ms,
        invalidated=bool(row.invalidated),
        invalidation_ms=row.invalidation_ms,
        metadata=orjson.loads(row.metadata),
        role_descriptors=orjson.loads(row.role_descriptors),
        limited_by=orjson.loads(row.limited_by),
    )


SECURITY_VERSION = "security_version"


def bump_security_version(conn: Connection) -> None:
    """Counts security changes, in the same transaction, so every node (and the CLI) can tell."""
    row = conn.execute(select(meta.c.value).where(meta.c.key == SECURITY_VERSION)).first()
    if row is None:
        conn.execute(insert(meta).values(key=SECURITY_VERSION, value="1"))
    else:
        conn.execute(update(meta).where(meta.c.key == SECURITY_VERSION).values(value=str(int(row.value) + 1)))


class SqlSecurityVersion(SqlBase):
    async def security_version(self) -> int:
        def run() -> int:
            with self._read() as conn:
                row = conn.execute(select(meta.c.value).where(meta.c.key == SECURITY_VERSION)).first()
            return int(row.value) if row else 0

        return await self._run(run)


class SqlUsers(SqlBase):
    async def get_user(self, username: str) -> UserRecord | None:
        def run() -> UserRecord | None:
            with self._read() as conn:
                row = conn.execute(select(users).where(users.c.username == username)).first()
            return _user_from_row(row) if row else None

        return await self._run(run)

    async def list_users(self) -> list[UserRecord]:
        def run() -> list[UserRecord]:
            with self._read() as conn:
                return [_user_from_row(r) for r in conn.execute(select(users).order_by(users.c.username))]

        return await self._run(run)

    async def create_user(self, user: UserRecord) -> bool:
        def run() -> bool:
            try:
                with self._write() as conn:
                    conn.execute(insert(users).values(username=user.username, **_user_values(user)))
            except IntegrityError:
                return False
            return True

        return await self._run(run)

    async def put_user(self, user: UserRecord) -> bool:
        def run() -> bool:
            with self._write() as conn:
                bump_security_version(conn)
                result = conn.execute(
                    update(users).where(users.c.username == user.username).values(**_user_values(user))
                )
                if result.rowcount:
                    return False
                conn.execute(insert(users).values(username=user.username, **_user_values(user)))
                return True

        return await self._run(run)

    async def delete_user(self, username: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                bump_security_version(conn)
                return bool(conn.execute(delete(users).where(users.c.username == username)).rowcount)

        return await self._run(run)

    async def set_password_hash(self, username: str, password_hash: str) -> bool:
        return await self._update_user(username, password_hash=password_hash)

    async def set_enabled(self, username: str, enabled: bool) -> bool:
        return await self._update_user(username, enabled=enabled)

    async def _update_user(self, username: str, **values: Any) -> bool:
        def run() -> bool:
            with self._write() as conn:
                bump_security_version(conn)
                result = conn.execute(update(users).where(users.c.username == username).values(**values))
            return bool(result.rowcount)

        return await self._run(run)


class SqlRoles(SqlBase):
    async def get_roles(self, names: Iterable[str]) -> dict[str, RoleRecord]:
        wanted = list(set(names))

        def run() -> dict[str, RoleRecord]:
            if not wanted:
                return {}
            with self._read() as conn:
                rows = conn.execute(select(roles).where(roles.c.name.in_(wanted)))
                return {r.name: RoleRecord(r.name, orjson.loads(r.descriptor)) for r in rows}

        return await self._run(run)

    async def list_roles(self) -> list[RoleRecord]:
        def run() -> list[RoleRecord]:
            with self._read() as conn:
                rows = conn.execute(select(roles).order_by(roles.c.name))
                return [RoleRecord(r.name, orjson.loads(r.descriptor)) for r in rows]

        return await self._run(run)

    async def put_role(self, role: RoleRecord) -> bool:
        def run() -> bool:
            values = {"descriptor": _json(role.descriptor), "updated_at": now_iso()}
            with self._write() as conn:
                bump_security_version(conn)
                if conn.execute(update(roles).where(roles.c.name == role.name).values(**values)).rowcount:
                    return False
                conn.execute(insert(roles).values(name=role.name, **values))
                return True

        return await self._run(run)

    async def delete_role(self, name: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                bump_security_version(conn)
                return bool(conn.execute(delete(roles).where(roles.c.name == name)).rowcount)

        return await self._run(run)


class SqlApiKeys(SqlBase):
    async def create_api_key(self, key: ApiKeyRecord) -> None:
        def run() -> None:
            with self._write() as conn:
                conn.execute(
                    insert(api_keys).values(
                        id=key.id,
                        name=key.name,
                        secret_hash=key.secret_hash,
                        owner=key.owner,
                        realm=key.realm,
                        realm_type=key.realm_type,
                        creation_ms=key.creation_ms,
                        expiration_ms=key.expiration_ms,
                        invalidated=key.invalidated,
                        invalidation_ms=key.invalidation_ms,
                        metadata=_json(key.metadata),
                        role_descriptors=_json(key.role_descriptors),
                        limited_by=_json(key.limited_by),
                    )
                )

        await self._run(run)

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        def run() -> ApiKeyRecord | None:
            with self._read() as conn:
                row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
            return _key_from_row(row) if row else None

        return await self._run(run)

    async def find_api_keys(self, query: ApiKeyQuery) -> list[ApiKeyRecord]:
        def run() -> list[ApiKeyRecord]:
            stmt = select(api_keys).order_by(api_keys.c.creation_ms, api_keys.c.id)
            if query.ids:
                stmt = stmt.where(api_keys.c.id.in_(query.ids))
            if query.name is not None and query.name != "*":
                if query.name.endswith("*"):
                    prefix = query.name[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
                    stmt = stmt.where(api_keys.c.name.like(prefix + "%", escape="\\"))
                else:
                    stmt = stmt.where(api_keys.c.name == query.name)
            if query.owner is not None:
                stmt = stmt.where(api_keys.c.owner == query.owner)
            if query.realm is not None:
                stmt = stmt.where(api_keys.c.realm == query.realm)
            if query.active_only:
                stmt = stmt.where(api_keys.c.invalidated.is_(False)).where(
                    (api_keys.c.expiration_ms.is_(None)) | (api_keys.c.expiration_ms > query.now_ms)
                )
            with self._read() as conn:
                return [_key_from_row(r) for r in conn.execute(stmt)]

        return await self._run(run)

    async def invalidate_api_keys(self, ids: Iterable[str], now_ms: int) -> list[str]:
        wanted = list(dict.fromkeys(ids))

        def run() -> list[str]:
            done: list[str] = []
            with self._write() as conn:
                bump_security_version(conn)
                for key_id in wanted:
                    result = conn.execute(
                        update(api_keys)
                        .where(api_keys.c.id == key_id, api_keys.c.invalidated.is_(False))
                        .values(invalidated=True, invalidation_ms=now_ms)
                    )
                    if result.rowcount:
                        done.append(key_id)
            return done

        return await self._run(run)
