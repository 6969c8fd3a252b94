"""SQLAlchemy plumbing shared by the registry's tables: the engine, migrations, threads, transactions.

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
from anyio import CapacityLimiter
from sqlalchemy import Connection, Engine, create_engine, event, insert, select

from inferd.store.schema import MIGRATIONS, SCHEMA_MIGRATIONS_DDL, schema_migrations

log = logging.getLogger(__name__)
T = TypeVar("T")


def now_iso() -> str:
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
                    insert(schema_migrations).values(version=version, description=description, applied_at=now_iso())
                )
    return MIGRATIONS[-1][0]


class SqlBase:
    def __init__(self, engine: Engine, *, threads: int = 8) -> None:
        self._engine = engine
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
