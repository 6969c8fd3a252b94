"""The `inferd` command: serve, and admin commands that work on the data dir directly."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import sys
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


GIL_SWITCH_INTERVAL_S = 0.001


class _GracefulServer(uvicorn.Server):
    """uvicorn's server, ending with status 0 after a graceful shutdown on SIGTERM or SIGINT.

    uvicorn stops accepting, finishes in-flight requests and runs the shutdown, then re-raises the
    signal so that the process dies by it, which a supervisor reads as a crash.
    """

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        # A model thread that returns from onnxruntime or numpy waits for the GIL until the event
        # loop or a finisher lets go of it, at the latest after this interval (Python's default is
        # 5 ms). Served SPLADE with one-thread allocations, on a 2-core host: 10 A/B pairs of 5 vs
        # 1 ms all read faster with 1 ms (+3 to +23 %), with less idle CPU under load; one two-thread
        # allocation read the same (docs/performance.md).
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        await super().startup(sockets)
        # What the server built to start (imports, settings, store, app) lives as long as the process.
        # Frozen, it stays out of the collector's full passes, which hold the GIL, and with it the model
        # threads, for as long as they walk every tracked object.
        gc.freeze()

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


@main.group()
def models() -> None:
    """Download, list and delete the local models of the `elasticsearch` service."""


@models.command("download")
@click.argument("model_ids", nargs=-1)
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR).")
def models_download(model_ids: tuple[str, ...], data_dir: Path | None) -> None:
    """Fetch models ahead of time (all built-in models for this platform when no id is given)."""
    from inferd.core.errors import InferdError
    from inferd.engine.catalog import BUILTIN_MODELS, current_platform
    from inferd.engine.fetch import ModelDelivery

    delivery = ModelDelivery(_settings(data_dir=data_dir))
    if model_ids:
        specs = [delivery.spec(model_id) for model_id in model_ids]
        unknown = [model_id for model_id, spec in zip(model_ids, specs, strict=True) if spec is None]
        if unknown:
            raise click.ClickException(f"unknown model [{', '.join(unknown)}]; `inferd models list` shows the models")
    else:
        specs = [s for s in BUILTIN_MODELS.values() if s.platform in (None, current_platform())]
    failed = []
    for spec in specs:
        assert spec is not None
        if delivery.is_ready(spec):
            click.echo(f"[{spec.model_id}] is already downloaded ({delivery.folder(spec)})")
            continue
        bars = _ProgressBars()
        try:
            folder = asyncio.run(delivery.ensure(spec, bars))
        except InferdError as exc:
            failed.append(spec.model_id)
            click.echo(f"error: {exc.reason}", err=True)
            continue
        finally:
            bars.close()
        click.echo(f"[{spec.model_id}] downloaded to {folder}")
    if failed:
        raise click.ClickException(f"could not download [{', '.join(failed)}]")


class _ProgressBars:
    """One click progress bar per stage of a model download (download, check, unpack, convert)."""

    def __init__(self) -> None:
        self.stage: str | None = None
        self.bar: Any = None
        self.done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self.stage:
            self.close()
            self.stage, self.done = stage, 0
            if total <= 0:
                click.echo(f"{stage} ...", err=True)  # size not known (yet): at least say what is going on
        if self.bar is None and total > 0:
            self.bar = click.progressbar(length=total, label=stage, file=sys.stderr)
            self.bar.__enter__()
        if self.bar is not None:
            self.bar.update(done - self.done)
            self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


@models.command("list")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR).")
def models_list(data_dir: Path | None) -> None:
    """List the built-in and imported models, and whether their files are downloaded."""
    from inferd.engine.fetch import ModelDelivery

    delivery = ModelDelivery(_settings(data_dir=data_dir))
    rows = [("MODEL ID", "TASK TYPES", "RUNTIME", "SOURCE", "DOWNLOADED", "SIZE")]
    for spec in delivery.all_specs():
        size = delivery.size(spec)
        rows.append(
            (
                spec.model_id,
                ",".join(t.value for t in spec.task_types),
                spec.runtime.value,
                "imported" if spec.imported else "built-in",
                "no" if size is None else "yes",
                "-" if size is None else _human_size(size),
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@models.command("delete")
@click.argument("model_id")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR).")
def models_delete(model_id: str, data_dir: Path | None) -> None:
    """Delete a model's files (an imported model is removed; a built-in one can be downloaded again)."""
    from inferd.engine.fetch import ModelDelivery

    delivery = ModelDelivery(_settings(data_dir=data_dir))
    spec = delivery.spec(model_id)
    if not delivery.delete(model_id):
        problem = "is not downloaded" if spec is not None else "does not exist"
        raise click.ClickException(f"model [{model_id}] {problem}")
    sharing = [s.model_id for s in delivery.all_specs() if spec and s.folder_name == spec.folder_name and s is not spec]
    also = f" (its files were shared with [{', '.join(sharing)}])" if sharing else ""
    click.echo(f"Deleted the files of [{model_id}]{also}")


# --- inferd models import (bring your own model, the Eland way) --------------------------------

_IMPORT_TASKS = ("text_embedding", "sparse_embedding", "rerank")
_ML_ID_MAX = 64  # ES's limit for trained model ids
_ML_ID = r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?"  # ES's MlStrings.isValidId


def _check_model_id(model_id: str) -> None:
    """ES's trained-model id rules, checked before a conversion that can take a while."""
    import re

    if not re.fullmatch(_ML_ID, model_id):
        raise click.BadParameter(
            f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
            "underscores; must start and end with alphanumeric",
            param_hint="--model-id",
        )
    if len(model_id) > _ML_ID_MAX:
        raise click.BadParameter(
            f"Invalid model_id; '{model_id}' cannot contain more than {_ML_ID_MAX} characters.",
            param_hint="--model-id",
        )


@models.command("import")
@click.argument("folder", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--model-id", required=True, help="Id of the model in the service settings' `model_id`.")
@click.option("--task-type", required=True, type=click.Choice(_IMPORT_TASKS), help="The task the model serves.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Data folder (INFERD_DATA_DIR).")
def models_import(folder: Path, model_id: str, task_type: str, data_dir: Path | None) -> None:
    """Import a local Hugging Face model folder (safetensors or ONNX, with its tokenizer).

    The model is exported to ONNX, checked against torch on fixed texts, loaded and run once by
    the runtime that will serve it, then stored in the data dir as MODEL_ID.
    """
    import itertools
    import tempfile

    from inferd.core.errors import InferdError
    from inferd.engine.convert import ConversionError, prepare_import
    from inferd.engine.fetch import ModelDelivery

    _check_model_id(model_id)
    settings = _settings(data_dir=data_dir)
    delivery = ModelDelivery(settings)
    if delivery.spec(model_id) is not None:
        raise click.ClickException(f"Trained machine learning model [{model_id}] already exists")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    steps = itertools.count(1)

    def progress(step: str) -> None:
        click.echo(f"[{next(steps)}] {step}", err=True)

    try:
        # Inside the data dir, so the finished folder is moved into place rather than copied.
        with tempfile.TemporaryDirectory(prefix=".import-", dir=settings.data_dir) as tmp:
            prepared = Path(tmp) / "model"
            spec = prepare_import(folder, prepared, model_id, task_type, progress)
            progress("storing it")
            stored = delivery.save_imported(spec, prepared, move=True)
    except ConversionError as exc:
        raise click.ClickException(f"cannot import [{folder}]: {exc}") from None
    except InferdError as exc:
        raise click.ClickException(exc.reason) from None
    click.echo(f"Imported [{model_id}] ({task_type}; {spec.extra['check']}) into {stored}")


if __name__ == "__main__":
    main()
