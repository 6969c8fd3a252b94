"""The `inferd` command: its help, version, generated docs, and the environment variables `serve` reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from tests.support.servers import free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def clean_env(**extra: str) -> dict[str, str]:
    """The test environment without any inferd settings, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("INFERD_") and k != "ELASTIC_PASSWORD"}
    return {**env, **extra}


def inferd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inferd", *args],
        env=clean_env(),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def serve(env: dict[str, str], cwd: Path, url: str, *args: str) -> Iterator[Path]:
    """`inferd serve` started by hand (no flags unless given); yields the path of its output log."""
    log = cwd / "serve.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "inferd", "serve", *args], env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"inferd serve exited early: {log.read_text()}")
            try:
                httpx.get(url + "/", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"inferd serve did not answer on {url}: {log.read_text()}") from None
                time.sleep(0.05)
        yield log
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


# -- help, version, docs ---------------------------------------------------------------------------


def readme_config_table() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.count(START) == 1 and readme.count(END) == 1, "README must hold one config table"
    table = readme.split(START, 1)[1].split(END, 1)[0]
    return table.lstrip("\n")


def test_config_docs_matches_the_readme() -> None:
    result = inferd("config-docs")
    assert result.returncode == 0, result.stderr
    assert result.stdout == readme_config_table()


def test_config_docs_lists_the_settings_of_the_issue() -> None:
    table = inferd("config-docs").stdout
    lines = table.splitlines()
    assert lines[0].startswith("| ")
    assert set(lines[1].replace("|", "")) <= {"-", " "}
    for env_var, flag in [
        ("`INFERD_HOST`", "`--host`"),
        ("`INFERD_PORT`", "`--port`"),
        ("`INFERD_DATA_DIR`", "`--data-dir`"),
        ("`INFERD_SECURITY`", "`--no-security`"),
        ("`ELASTIC_PASSWORD`", ""),
        ("`INFERD_SECRETS_KEY`", ""),
    ]:
        row = next((line for line in lines if env_var in line), None)
        assert row is not None, f"{env_var} missing from:\n{table}"
        assert flag in row
    assert "`9200`" in next(line for line in lines if "`INFERD_PORT`" in line)


def test_version() -> None:
    result = inferd("--version")
    assert result.returncode == 0, result.stderr
    assert version("inferd") in result.stdout


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "inferd"
    assert script.is_file(), f"no `inferd` console script next to {sys.executable}"
    result = subprocess.run(
        [str(script), "--version"], env=clean_env(), capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert version("inferd") in result.stdout


def test_top_level_help_lists_the_commands() -> None:
    result = inferd("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "config-docs", "users"):
        assert command in result.stdout


def test_serve_help_lists_its_options() -> None:
    result = inferd("serve", "--help")
    assert result.returncode == 0, result.stderr
    for option in ("--host", "--port", "--data-dir", "--no-security", "--log-level"):
        assert option in result.stdout, result.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = inferd("serve", "--no-such-option")
    assert result.returncode == 2
    assert "--no-such-option" in result.stderr


# -- environment variables -------------------------------------------------------------------------


@pytest.mark.slow
def test_serve_honours_environment_variables(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "env" / "data-dir"
    env = clean_env(
        INFERD_PORT=str(port),
        INFERD_DATA_DIR=str(data_dir),
        INFERD_SECURITY="false",
        INFERD_CLUSTER_NAME="from-env",
    )
    with serve(env, tmp_path, f"http://127.0.0.1:{port}") as log:
        root = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
        assert root.status_code == 200, root.text  # no credentials needed: INFERD_SECURITY=false
        assert root.json()["cluster_name"] == "from-env"
        body = {
            "service": "elasticsearch",
            "service_settings": {"model_id": ".multilingual-e5-small", "num_allocations": 1, "num_threads": 1},
        }
        put = httpx.put(f"http://127.0.0.1:{port}/_inference/text_embedding/env-ep", json=body, timeout=10)
        assert put.status_code == 200, put.text
    assert (data_dir / "inferd.db").is_file(), log.read_text()
    assert not (tmp_path / "data").exists()  # the default ./data was not used


@pytest.mark.slow
def test_serve_honours_inferd_host(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        INFERD_HOST="127.0.0.2", INFERD_PORT=str(port), INFERD_DATA_DIR=str(tmp_path / "d"), INFERD_SECURITY="false"
    )
    with serve(env, tmp_path, f"http://127.0.0.2:{port}"):
        assert httpx.get(f"http://127.0.0.2:{port}/", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)


@pytest.mark.slow
def test_flags_override_environment_variables(tmp_path: Path) -> None:
    env_port, flag_port = free_port(), free_port()
    env = clean_env(INFERD_PORT=str(env_port), INFERD_DATA_DIR=str(tmp_path / "env-dir"), INFERD_SECURITY="false")
    flag_dir = tmp_path / "flag-dir"
    with serve(env, tmp_path, f"http://127.0.0.1:{flag_port}", "--port", str(flag_port), "--data-dir", str(flag_dir)):
        assert httpx.get(f"http://127.0.0.1:{flag_port}/", timeout=5).status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{env_port}/", timeout=5)
    assert (flag_dir / "inferd.db").is_file()
    assert not (tmp_path / "env-dir").exists()


@pytest.mark.slow
def test_security_is_on_by_default(tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(INFERD_PORT=str(port), INFERD_DATA_DIR=str(tmp_path / "d"), ELASTIC_PASSWORD="pw-from-env-1")
    with serve(env, tmp_path, f"http://127.0.0.1:{port}"):
        assert httpx.get(f"http://127.0.0.1:{port}/", timeout=5).status_code == 401
        assert httpx.get(f"http://127.0.0.1:{port}/", auth=("elastic", "pw-from-env-1"), timeout=5).status_code == 200


TUNING_PROBE = """
import asyncio, gc, sys
from pathlib import Path
from inferd.app import build_app, uvicorn_config
from inferd.cli import _GracefulServer
from inferd.settings import ServerSettings

async def main():
    before = (sys.getswitchinterval(), gc.get_freeze_count())
    settings = ServerSettings(data_dir=Path(sys.argv[1]), port=int(sys.argv[2]), security=False)
    server = _GracefulServer(uvicorn_config(build_app(settings), settings))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    print(*before, sys.getswitchinterval(), gc.get_freeze_count())
    server.should_exit = True
    await task

asyncio.run(main())
"""


def test_serve_shortens_the_gil_switch_interval_and_freezes_start_up_objects(tmp_path: Path) -> None:
    # In a process of its own: both settings are process-wide.
    done = subprocess.run(
        [sys.executable, "-c", TUNING_PROBE, str(tmp_path / "d"), str(free_port())],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    interval_before, frozen_before, interval, frozen = done.stdout.split()
    assert float(interval_before) == 0.005 and int(frozen_before) == 0  # Python's defaults
    assert float(interval) == 0.001
    assert int(frozen) > 10_000  # the imports, settings, store and app built to start
