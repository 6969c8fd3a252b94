"""The `inferd` command: serve, and admin commands that work on the data dir directly."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from types import FrameType
from typing import Any

import click
import uvicorn
from pydantic import ValidationError

from inferd.settings import ServerSettings, settings_markdown_table


def _settings(**overrides: Any) -> ServerSettings:
    try:
        return ServerSettings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # Only locations and messages: pydantic's own text quotes input values, which may hold passwords.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


@click.group()
@click.version_option(package_name="inferd")
def main() -> None:
    """inferd: a server for the Elasticsearch Inference API."""


@main.command()
@click.option("--host", help="Address to listen on (INFERD_HOST, default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (INFERD_PORT, default 9200).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR, default ./data).")
@click.option("--security/--no-security", default=None, help="Require authentication (INFERD_SECURITY, default on).")
@click.option("--log-level", type=click.Choice(["critical", "error", "warning", "info", "debug"]), help="Log level.")
@click.option("--ssl-certfile", type=click.Path(path_type=Path, exists=True), help="TLS certificate (PEM).")
@click.option("--ssl-keyfile", type=click.Path(path_type=Path, exists=True), help="TLS private key (PEM).")
@click.option(
    "--trusted-url-patterns",
    help="Comma-separated regular expressions of provider URLs allowed to resolve to non-public addresses.",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    security: bool | None,
    log_level: str | None,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
    trusted_url_patterns: str | None,
) -> None:
    """Start the HTTP server."""
    from inferd.app import build_app, uvicorn_config

    settings = _settings(
        host=host,
        port=port,
        data_dir=data_dir,
        security=security,
        log_level=log_level,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
        trusted_url_patterns=trusted_url_patterns,
    )
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not settings.security:
        logging.getLogger("inferd").warning("security is OFF: every request is served without authentication")
    _GracefulServer(uvicorn_config(build_app(settings), settings)).run()


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, ending with status 0 after a graceful shutdown on SIGTERM or SIGINT.

    uvicorn stops accepting, finishes in-flight requests and runs the shutdown, then re-raises the
    signal so that the process dies by it, which a supervisor reads as a crash.
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


@main.command("config-docs")
def config_docs() -> None:
    """Print the configuration table (Markdown), generated from the settings declarations."""
    click.echo(settings_markdown_table(), nl=False)


@main.group()
def users() -> None:
    """Manage native users."""


@users.command("reset-password")
@click.argument("username")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR).")
@click.option("--password", "-p", help="The new password; generated and printed if not given.")
def reset_password(username: str, data_dir: Path | None, password: str | None) -> None:
    """Set a user's password directly in the registry (like elasticsearch-reset-password)."""
    from inferd.app import open_store
    from inferd.auth.passwords import generate_password, hash_password

    settings = _settings(data_dir=data_dir)
    store = open_store(settings)
    new_password = password or generate_password()

    async def run() -> bool:
        try:
            return await store.set_password_hash(username, hash_password(new_password))
        finally:
            await store.close()

    if not asyncio.run(run()):
        raise click.ClickException(f"user [{username}] does not exist")
    if password is None:
        click.echo(f"New password for [{username}]: {new_password}")
    else:
        click.echo(f"Password for [{username}] changed.")


if __name__ == "__main__":
    main()
