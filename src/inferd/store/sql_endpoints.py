"""Endpoint configs and their encrypted secrets, in two tables written in one transaction."""

from __future__ import annotations

from typing import Any

import orjson
from sqlalchemy import Connection, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from inferd.core.endpoint import EndpointConfig, EndpointSecrets
from inferd.core.errors import AlreadyExists, InferdError, NotFound
from inferd.core.tasks import TaskType
from inferd.store.crypto import SecretsCipher
from inferd.store.schema import endpoint_secrets, endpoints
from inferd.store.sql_base import SqlBase, now_iso


def _config_from_row(row: Any) -> EndpointConfig:
    config = orjson.loads(row.config)
    return EndpointConfig(
        inference_id=row.inference_id,
        task_type=TaskType(row.task_type),
        service=row.service,
        service_settings=config.get("service_settings", {}),
        task_settings=config.get("task_settings", {}),
        chunking_settings=config.get("chunking_settings"),
        internal_settings=config.get("internal_settings", {}),
    )


def _config_json(config: EndpointConfig) -> str:
    body: dict[str, Any] = {
        "service_settings": config.service_settings,
        "task_settings": config.task_settings,
    }
    if config.chunking_settings is not None:
        body["chunking_settings"] = config.chunking_settings
    if config.internal_settings:
        body["internal_settings"] = config.internal_settings
    return orjson.dumps(body).decode()


class SqlEndpoints(SqlBase):
    _cipher: SecretsCipher

    async def create(self, config: EndpointConfig, secrets: EndpointSecrets) -> None:
        def run() -> None:
            now = now_iso()
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
            now = now_iso()
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
