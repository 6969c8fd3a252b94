"""The registry on SQLAlchemy: a SQLite file by default (WAL, fsync on commit).

One store object serves every table; each group of tables has its own module.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, insert, select

from inferd.store.crypto import SecretsCipher
from inferd.store.schema import meta
from inferd.store.sql_base import migrate, sqlite_engine
from inferd.store.sql_endpoints import SqlEndpoints
from inferd.store.sql_security import SqlApiKeys, SqlRoles, SqlSecurityVersion, SqlUsers


class SqlStore(SqlEndpoints, SqlUsers, SqlRoles, SqlApiKeys, SqlSecurityVersion):
    """Every store interface (endpoints, users, roles, API keys, meta) over one SQLAlchemy engine."""

    def __init__(self, engine: Engine, cipher: SecretsCipher, *, threads: int = 8) -> None:
        super().__init__(engine, threads=threads)
        self._cipher = cipher

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
