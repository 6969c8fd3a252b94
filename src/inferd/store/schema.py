"""Tables and their ordered migrations.

Migrations are plain DDL that both SQLite and PostgreSQL accept, applied in order, each in its own
transaction, and recorded in `schema_migrations`. Never edit a released migration: add one.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Integer, MetaData, String, Table, Text

metadata = MetaData()

endpoints = Table(
    "endpoints",
    metadata,
    Column("inference_id", String(64), primary_key=True),
    Column("task_type", String(32), nullable=False),
    Column("service", String(128), nullable=False),
    Column("config", Text, nullable=False),  # JSON: service_settings, task_settings, chunking_settings
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

endpoint_secrets = Table(
    "endpoint_secrets",
    metadata,
    Column("inference_id", String(64), primary_key=True),
    Column("ciphertext", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("username", String(1024), primary_key=True),
    Column("password_hash", Text, nullable=False),
    Column("roles", Text, nullable=False),  # JSON list
    Column("full_name", Text),
    Column("email", Text),
    Column("metadata", Text, nullable=False),  # JSON object
    Column("enabled", Boolean, nullable=False),
)

roles = Table(
    "roles",
    metadata,
    Column("name", String(1024), primary_key=True),
    Column("descriptor", Text, nullable=False),  # JSON role descriptor
    Column("updated_at", String(40), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("name", String(1024), nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("owner", String(1024), nullable=False),
    Column("realm", String(256), nullable=False),
    Column("realm_type", String(256), nullable=False),
    Column("creation_ms", BigInteger, nullable=False),
    Column("expiration_ms", BigInteger),
    Column("invalidated", Boolean, nullable=False),
    Column("invalidation_ms", BigInteger),
    Column("metadata", Text, nullable=False),
    Column("role_descriptors", Text, nullable=False),
    Column("limited_by", Text, nullable=False),
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(128), primary_key=True),
    Column("value", Text, nullable=False),
)

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True),
    Column("description", Text, nullable=False),
    Column("applied_at", String(40), nullable=False),
)

# (version, description, statements)
MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "endpoints and their secrets in separate tables; users; meta",
        (
            """CREATE TABLE endpoints (
                inference_id VARCHAR(64) PRIMARY KEY,
                task_type VARCHAR(32) NOT NULL,
                service VARCHAR(128) NOT NULL,
                config TEXT NOT NULL,
                created_at VARCHAR(40) NOT NULL,
                updated_at VARCHAR(40) NOT NULL
            )""",
            "CREATE INDEX endpoints_task_type ON endpoints (task_type, inference_id)",
            """CREATE TABLE endpoint_secrets (
                inference_id VARCHAR(64) PRIMARY KEY REFERENCES endpoints (inference_id) ON DELETE CASCADE,
                ciphertext TEXT NOT NULL
            )""",
            """CREATE TABLE users (
                username VARCHAR(1024) PRIMARY KEY,
                password_hash TEXT NOT NULL,
                roles TEXT NOT NULL,
                full_name TEXT,
                email TEXT,
                metadata TEXT NOT NULL,
                enabled BOOLEAN NOT NULL
            )""",
            "CREATE TABLE meta (key VARCHAR(128) PRIMARY KEY, value TEXT NOT NULL)",
        ),
    ),
    (
        2,
        "custom roles and API keys",
        (
            """CREATE TABLE roles (
                name VARCHAR(1024) PRIMARY KEY,
                descriptor TEXT NOT NULL,
                updated_at VARCHAR(40) NOT NULL
            )""",
            """CREATE TABLE api_keys (
                id VARCHAR(64) PRIMARY KEY,
                name VARCHAR(1024) NOT NULL,
                secret_hash TEXT NOT NULL,
                owner VARCHAR(1024) NOT NULL,
                realm VARCHAR(256) NOT NULL,
                realm_type VARCHAR(256) NOT NULL,
                creation_ms BIGINT NOT NULL,
                expiration_ms BIGINT,
                invalidated BOOLEAN NOT NULL,
                invalidation_ms BIGINT,
                metadata TEXT NOT NULL,
                role_descriptors TEXT NOT NULL,
                limited_by TEXT NOT NULL
            )""",
            "CREATE INDEX api_keys_owner ON api_keys (owner, realm)",
            "CREATE INDEX api_keys_name ON api_keys (name)",
        ),
    ),
)

SCHEMA_MIGRATIONS_DDL = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at VARCHAR(40) NOT NULL
)"""
