"""The registry on SQLAlchemy: a SQLite file by default (WAL, fsync on commit).

Calls run in worker threads so the event loop never waits on disk. Writes take SQLite's write
lock at BEGIN (BEGIN IMMEDIATE), so two concurrent creates of one id serialise and the second
fails on the primary key instead of on a lock upgrade.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import anyio.to_thread
import orjson
from anyio import CapacityLimiter
from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.exc import IntegrityError

from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.errors import AlreadyExists, InferdError, NotFound
from inferd.core.tasks import TaskType
from inferd.store.base import UserRecord
from inferd.store.crypto import SecretsCipher
from inferd.store.schema import (
    MIGRATIONS,
    SCHEMA_MIGRATIONS_DDL,
    endpoint_secrets,
    endpoints,
    meta,
    schema_migrations,
    users,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


def _now() -> str:
    return datetime.now(UTC).isoformat()


def sqlite_engine(path: Path) -> Engine:
    engine = create_engine(f"sqlite:///{path}", connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves, below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before it is acknowledged, so it survives power loss, not only kill -9.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

    return engine


def migrate(engine: Engine) -> int:
    """Apply pending migrations in order; returns the schema version."""
    with engine.connect().execution_options(write=True) as conn:
        with conn.begin():
            conn.exec_driver_sql(SCHEMA_MIGRATIONS_DDL)
        for version, description, statements in MIGRATIONS:
            with conn.begin():
                # Checked inside the write transaction, so two processes starting at once apply each
                # migration exactly once.
                done = conn.execute(
                    select(schema_migrations.c.version).where(schema_migrations.c.version == version)
                ).first()
                if done:
                    continue
                log.info("applying registry migration %d: %s", version, description)
                for statement in statements:
                    conn.exec_driver_sql(statement)
                conn.execute(
                    insert(schema_migrations).values(version=version, description=description, applied_at=_now())
                )
    return MIGRATIONS[-1][0]


def _config_from_row(row: Any) -> EndpointConfig:
    config = orjson.loads(row.config)
    return EndpointConfig(
        inference_id=row.inference_id,
        task_type=TaskType(row.task_type),
        service=row.service,
        service_settings=config.get("service_settings", {}),
        task_settings=config.get("task_settings", {}),
        chunking_settings=config.get("chunking_settings"),
    )


def _config_json(config: EndpointConfig) -> str:
    body: dict[str, Any] = {
        "service_settings": config.service_settings,
        "task_settings": config.task_settings,
    }
    if config.chunking_settings is not None:
        body["chunking_settings"] = config.chunking_settings
    return orjson.dumps(body).decode()


class SqlStore:
    """EndpointStore, UserStore and MetaStore over one SQLAlchemy engine."""

    def __init__(self, engine: Engine, cipher: SecretsCipher, *, threads: int = 8) -> None:
        self._engine = engine
        self._cipher = cipher
        self._limiter = CapacityLimiter(threads)

    async def _run(self, fn: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(fn, limiter=self._limiter)

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self._engine.connect().execution_options(write=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    async def close(self) -> None:
        await self._run(self._engine.dispose)

    # -- endpoints -------------------------------------------------------------------------

    async def create(self, config: EndpointConfig, secrets: EndpointSecrets) -> None:
        def run() -> None:
            now = _now()
            try:
                with self._write() as conn:
                    self._insert(conn, config, secrets, now)
            except IntegrityError:
                raise AlreadyExists(f"Inference endpoint [{config.inference_id}] already exists") from None

        await self._run(run)

    def _insert(self, conn: Connection, config: EndpointConfig, secrets: EndpointSecrets, now: str) -> None:
        conn.execute(
            insert(endpoints).values(
                inference_id=config.inference_id,
                task_type=config.task_type.value,
                service=config.service,
                config=_config_json(config),
                created_at=now,
                updated_at=now,
            )
        )
        conn.execute(
            insert(endpoint_secrets).values(
                inference_id=config.inference_id,
                ciphertext=self._cipher.encrypt(config.inference_id, secrets.values),
            )
        )

    async def get(self, inference_id: str) -> EndpointConfig | None:
        def run() -> EndpointConfig | None:
            with self._read() as conn:
                row = conn.execute(select(endpoints).where(endpoints.c.inference_id == inference_id)).first()
            return _config_from_row(row) if row else None

        return await self._run(run)

    async def get_with_secrets(self, inference_id: str) -> tuple[EndpointConfig, EndpointSecrets] | None:
        def run() -> tuple[EndpointConfig, EndpointSecrets] | None:
            with self._read() as conn:
                row = conn.execute(
                    select(endpoints, endpoint_secrets.c.ciphertext)
                    .join(endpoint_secrets, endpoint_secrets.c.inference_id == endpoints.c.inference_id, isouter=True)
                    .where(endpoints.c.inference_id == inference_id)
                ).first()
            if row is None:
                return None
            if row.ciphertext is None:
                raise InferdError(
                    f"Inference endpoint [{inference_id}] is in an invalid state (its secrets are missing), "
                    "try deleting and reinitializing the service"
                )
            return _config_from_row(row), EndpointSecrets(self._cipher.decrypt(inference_id, row.ciphertext))

        return await self._run(run)

    async def list(self, task_type: TaskType | None = None) -> list[EndpointConfig]:
        def run() -> list[EndpointConfig]:
            query = select(endpoints).order_by(endpoints.c.inference_id)
            if task_type is not None:
                query = query.where(endpoints.c.task_type == task_type.value)
            with self._read() as conn:
                return [_config_from_row(r) for r in conn.execute(query)]

        return await self._run(run)

    async def replace(self, config: EndpointConfig, secrets: EndpointSecrets | None) -> None:
        def run() -> None:
            now = _now()
            with self._write() as conn:
                result = conn.execute(
                    update(endpoints)
                    .where(endpoints.c.inference_id == config.inference_id)
                    .values(
                        task_type=config.task_type.value,
                        service=config.service,
                        config=_config_json(config),
                        updated_at=now,
                    )
                )
                if result.rowcount == 0:
                    raise NotFound(f"Inference endpoint not found [{config.inference_id}]")
                if secrets is not None:
                    conn.execute(
                        update(endpoint_secrets)
                        .where(endpoint_secrets.c.inference_id == config.inference_id)
                        .values(ciphertext=self._cipher.encrypt(config.inference_id, secrets.values))
                    )

        await self._run(run)

    async def delete(self, inference_id: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                conn.execute(delete(endpoint_secrets).where(endpoint_secrets.c.inference_id == inference_id))
                result = conn.execute(delete(endpoints).where(endpoints.c.inference_id == inference_id))
            return bool(result.rowcount)

        return await self._run(run)

    # -- users -----------------------------------------------------------------------------

    async def get_user(self, username: str) -> UserRecord | None:
        def run() -> UserRecord | None:
            with self._read() as conn:
                row = conn.execute(select(users).where(users.c.username == username)).first()
            if row is None:
                return None
            return UserRecord(
                username=row.username,
                password_hash=row.password_hash,
                roles=tuple(orjson.loads(row.roles)),
                full_name=row.full_name,
                email=row.email,
                metadata=orjson.loads(row.metadata),
                enabled=bool(row.enabled),
            )

        return await self._run(run)

    async def create_user(self, user: UserRecord) -> bool:
        def run() -> bool:
            try:
                with self._write() as conn:
                    conn.execute(
                        insert(users).values(
                            username=user.username,
                            password_hash=user.password_hash,
                            roles=orjson.dumps(list(user.roles)).decode(),
                            full_name=user.full_name,
                            email=user.email,
                            metadata=orjson.dumps(user.metadata).decode(),
                            enabled=user.enabled,
                        )
                    )
            except IntegrityError:
                return False
            return True

        return await self._run(run)

    async def set_password_hash(self, username: str, password_hash: str) -> bool:
        def run() -> bool:
            with self._write() as conn:
                result = conn.execute(
                    update(users).where(users.c.username == username).values(password_hash=password_hash)
                )
            return bool(result.rowcount)

        return await self._run(run)

    # -- meta ------------------------------------------------------------------------------

    async def get_or_create_meta(self, key: str, value: str) -> str:
        def run() -> str:
            with self._write() as conn:
                row = conn.execute(select(meta.c.value).where(meta.c.key == key)).first()
                if row is not None:
                    return str(row.value)
                conn.execute(insert(meta).values(key=key, value=value))
                return value

        return await self._run(run)


def open_sqlite_store(path: Path, cipher: SecretsCipher) -> SqlStore:
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sqlite_engine(path)
    migrate(engine)
    return SqlStore(engine, cipher)
