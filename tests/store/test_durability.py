"""The registry survives restarts and crashes; secrets are encrypted at rest under a key file or a configured key."""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.fernet import Fernet

from inferd.store.schema import MIGRATIONS
from tests.conftest import assert_es_error
from tests.support.sample_service import SampleService, embed
from tests.support.servers import RunningServer, SubprocessServer, ThreadedServer

REPO_ROOT = Path(__file__).resolve().parents[2]

EMBEDDING_BODY: dict[str, Any] = {
    "service": "test_service",
    "service_settings": {"model": "m-durable", "api_key": "sk-durable-1", "dimensions": 6},
    "task_settings": {"user": "u-1"},
    "chunking_settings": {"strategy": "word", "max_chunk_size": 120, "overlap": 40},
}

# An endpoint of a built-in service, so a subprocess server (which lacks the test service) can store it.
BUILTIN_BODY: dict[str, Any] = {
    "service": "elasticsearch",
    "service_settings": {"model_id": ".multilingual-e5-small", "num_allocations": 2, "num_threads": 1},
}


def put_ok(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = client.put(path, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


def get_one(client: httpx.Client, inference_id: str) -> dict[str, Any]:
    response = client.get(f"/_inference/{inference_id}")
    assert response.status_code == 200, response.text
    (endpoint,) = response.json()["endpoints"]
    return dict(endpoint)


def embed_ok(client: httpx.Client, inference_id: str, text: str = "hello world") -> list[float]:
    response = client.post(f"/_inference/text_embedding/{inference_id}", json={"input": text})
    assert response.status_code == 200, response.text
    return list(response.json()["text_embedding"][0]["embedding"])


def sqlite_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return list(con.execute(sql).fetchall())
    finally:
        con.close()


@pytest.fixture
def plugin_path(tmp_path: Path) -> str:
    """A PYTHONPATH on which `inferd serve` finds the test service through the `inferd.services` entry point."""
    dist = tmp_path / "plugin" / "inferd_test_plugin-0.0.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: inferd-test-plugin\nVersion: 0.0.0\n")
    (dist / "entry_points.txt").write_text(
        "[inferd.services]\ntest_service = tests.support.sample_service:SampleService\n"
    )
    return os.pathsep.join([str(dist.parent), str(REPO_ROOT)])


@pytest.fixture
def subprocesses() -> Iterator[list[SubprocessServer]]:
    """Subprocess servers registered here are stopped at the end of the test, whatever happens."""
    started: list[SubprocessServer] = []
    yield started
    for proc in started:
        proc.stop()


def start(
    subprocesses: list[SubprocessServer], data_dir: Path, **kwargs: Any
) -> tuple[SubprocessServer, RunningServer]:
    proc = SubprocessServer(data_dir, **kwargs)
    subprocesses.append(proc)
    return proc, proc.start()


# -- restarts ----------------------------------------------------------------------------------


def test_endpoints_survive_a_clean_restart(data_dir: Path) -> None:
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        created = put_ok(client, "/_inference/text_embedding/durable-emb", EMBEDDING_BODY)
        put_ok(
            client,
            "/_inference/sparse_embedding/durable-builtin",
            {
                **BUILTIN_BODY,
                "service_settings": {"model_id": ".elser_model_2", "num_allocations": 1, "num_threads": 1},
            },
        )
        listing = client.get("/_inference/_all").json()
        cluster_uuid = client.get("/").json()["cluster_uuid"]
        vector = embed_ok(client, "durable-emb")
    assert vector == embed("hello world", 6)

    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        assert client.get("/_inference/_all").json() == listing
        assert get_one(client, "durable-emb") == created
        assert created["service_settings"]["dimensions"] == 6
        assert created["task_settings"]["user"] == "u-1"
        assert created["chunking_settings"] == {"strategy": "word", "max_chunk_size": 120, "overlap": 40}
        # The secrets came back too: the endpoint still answers.
        assert embed_ok(client, "durable-emb") == vector
        # The cluster keeps its identity across restarts.
        assert client.get("/").json()["cluster_uuid"] == cluster_uuid


def test_delete_and_update_survive_a_restart(data_dir: Path) -> None:
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        put_ok(client, "/_inference/text_embedding/keep-me", EMBEDDING_BODY)
        put_ok(client, "/_inference/text_embedding/drop-me", EMBEDDING_BODY)
        updated = client.put("/_inference/keep-me/_update", json={"service_settings": {"dimensions": 3}})
        assert updated.status_code == 200, updated.text
        assert client.delete("/_inference/drop-me").json()["acknowledged"] is True

    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        assert get_one(client, "keep-me")["service_settings"]["dimensions"] == 3
        assert embed_ok(client, "keep-me") == embed("hello world", 3)
        assert_es_error(
            client.get("/_inference/drop-me"),
            404,
            "resource_not_found_exception",
            "Inference endpoint not found [drop-me]",
        )


def test_data_dir_is_created_when_missing(tmp_path: Path) -> None:
    nested = tmp_path / "does" / "not" / "exist" / "yet"
    assert not nested.parent.exists()
    with ThreadedServer(nested) as running, running.http() as client:
        assert client.get("/").status_code == 200
        put_ok(client, "/_inference/text_embedding/in-nested", BUILTIN_BODY)
    assert nested.is_dir()
    assert (nested / "inferd.db").is_file()
    with ThreadedServer(nested) as running, running.http() as client:
        assert get_one(client, "in-nested")["service_settings"]["num_allocations"] == 2


def test_schema_migrations_are_recorded_once(data_dir: Path) -> None:
    with ThreadedServer(data_dir):
        pass
    db = data_dir / "inferd.db"
    first = sqlite_rows(db, "SELECT version, applied_at FROM schema_migrations ORDER BY version")
    assert [version for version, _ in first] == [version for version, _, _ in MIGRATIONS]
    with ThreadedServer(data_dir) as running, running.http() as client:
        assert client.get("/").status_code == 200
    # The second start found every migration applied and did not apply (or record) any again.
    assert sqlite_rows(db, "SELECT version, applied_at FROM schema_migrations ORDER BY version") == first


def test_registry_is_in_wal_mode(data_dir: Path) -> None:
    with ThreadedServer(data_dir) as running, running.http() as client:
        put_ok(client, "/_inference/text_embedding/wal-check", BUILTIN_BODY)
        assert sqlite_rows(data_dir / "inferd.db", "PRAGMA journal_mode") == [("wal",)]
    assert sqlite_rows(data_dir / "inferd.db", "PRAGMA journal_mode") == [("wal",)]


def test_configs_and_secrets_are_stored_apart(data_dir: Path) -> None:
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        put_ok(client, "/_inference/text_embedding/apart", EMBEDDING_BODY)
    db = data_dir / "inferd.db"
    (config,) = sqlite_rows(db, "SELECT config FROM endpoints WHERE inference_id = 'apart'")
    assert "api_key" not in config[0]
    assert "m-durable" in config[0]
    (secret,) = sqlite_rows(db, "SELECT ciphertext FROM endpoint_secrets WHERE inference_id = 'apart'")
    assert "sk-durable-1" not in secret[0]


# -- concurrency -------------------------------------------------------------------------------


@pytest.mark.parametrize("attempt", range(3))
def test_concurrent_puts_of_one_id_exactly_one_wins(server: RunningServer, attempt: int) -> None:
    inference_id = f"race-{attempt}"
    contenders = 8
    barrier = threading.Barrier(contenders)
    responses: list[httpx.Response | None] = [None] * contenders

    def contend(i: int) -> None:
        body = {"service": "test_service", "service_settings": {"model": f"model-{i}", "api_key": f"sk-{i}"}}
        with server.http() as client:
            barrier.wait(timeout=10)
            responses[i] = client.put(f"/_inference/text_embedding/{inference_id}", json=body)

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(r is not None for r in responses)
    winners = [i for i, r in enumerate(responses) if r is not None and r.status_code == 200]
    assert len(winners) == 1, [r.text for r in responses if r is not None]
    for i, r in enumerate(responses):
        if i != winners[0]:
            assert r is not None
            assert_es_error(
                r,
                400,
                "resource_already_exists_exception",
                f"Inference endpoint [{inference_id}] already exists",
            )
    with server.http() as client:
        stored = get_one(client, inference_id)
    winner = responses[winners[0]]
    assert winner is not None
    assert stored == winner.json()
    assert stored["service_settings"]["model"] == f"model-{winners[0]}"


# -- crashes and signals -----------------------------------------------------------------------


@pytest.mark.slow
def test_acknowledged_put_survives_kill_9(data_dir: Path, subprocesses: list[SubprocessServer]) -> None:
    proc, running = start(subprocesses, data_dir)
    with running.http() as client:
        created = put_ok(client, "/_inference/text_embedding/crash-safe", BUILTIN_BODY)
    assert proc.kill(signal.SIGKILL) == -signal.SIGKILL

    _, running = start(subprocesses, data_dir)
    with running.http() as client:
        assert get_one(client, "crash-safe") == created
        assert created["service_settings"]["num_allocations"] == 2
        assert created["service_settings"]["model_id"] == ".multilingual-e5-small"


@pytest.mark.slow
def test_acknowledged_secrets_survive_kill_9(
    data_dir: Path, plugin_path: str, subprocesses: list[SubprocessServer]
) -> None:
    """With the test service loaded as a plugin, the crashed server's secrets still decrypt after restart."""
    env = {"PYTHONPATH": plugin_path}
    proc, running = start(subprocesses, data_dir, env=env)
    with running.http() as client:
        created = put_ok(client, "/_inference/text_embedding/crash-secret", EMBEDDING_BODY)
        updated = client.put("/_inference/crash-secret/_update", json={"service_settings": {"api_key": "sk-rotated"}})
        assert updated.status_code == 200, updated.text
    assert proc.kill(signal.SIGKILL) == -signal.SIGKILL

    _, running = start(subprocesses, data_dir, env=env)
    with running.http() as client:
        assert get_one(client, "crash-secret") == created
        assert embed_ok(client, "crash-secret") == embed("hello world", 6)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_shuts_down_cleanly(data_dir: Path, subprocesses: list[SubprocessServer], sig: int) -> None:
    proc, running = start(subprocesses, data_dir)
    with running.http() as client:
        created = put_ok(client, "/_inference/text_embedding/after-signal", BUILTIN_BODY)
    code = proc.kill(sig)
    assert code == 0, proc.output
    assert "Traceback" not in proc.output, proc.output

    _, running = start(subprocesses, data_dir)
    with running.http() as client:
        assert get_one(client, "after-signal") == created


# -- secrets at rest ---------------------------------------------------------------------------


def test_secrets_key_file_is_created_with_mode_0600(data_dir: Path) -> None:
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        put_ok(client, "/_inference/text_embedding/keyed", EMBEDDING_BODY)
    key_file = data_dir / "secrets.key"
    assert key_file.is_file()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes().strip()
    Fernet(key)  # a well-formed Fernet key
    # A restart reuses the key rather than making a new one, so the stored secrets still decrypt.
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        assert embed_ok(client, "keyed") == embed("hello world", 6)
    assert key_file.read_bytes().strip() == key


def test_secrets_key_from_environment_replaces_the_key_file(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INFERD_SECRETS_KEY", Fernet.generate_key().decode())
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        put_ok(client, "/_inference/text_embedding/env-keyed", EMBEDDING_BODY)
        assert embed_ok(client, "env-keyed") == embed("hello world", 6)
    assert not (data_dir / "secrets.key").exists()
    with ThreadedServer(data_dir, extra_services=[SampleService]) as running, running.http() as client:
        assert embed_ok(client, "env-keyed") == embed("hello world", 6)
    assert not (data_dir / "secrets.key").exists()


def test_wrong_secrets_key_cannot_read_stored_secrets(data_dir: Path) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with (
        ThreadedServer(data_dir, secrets_key=key_a, extra_services=[SampleService]) as running,
        running.http() as client,
    ):
        created = put_ok(client, "/_inference/text_embedding/locked", EMBEDDING_BODY)

    with (
        ThreadedServer(data_dir, secrets_key=key_b, extra_services=[SampleService]) as running,
        running.http() as client,
    ):
        # GET renders the config only, so it still works.
        assert get_one(client, "locked") == created
        assert_es_error(
            client.post("/_inference/text_embedding/locked", json={"input": "x"}),
            500,
            "exception",
            "Failed to decrypt the secrets of inference endpoint [locked]: "
            "the secrets key does not match the one they were stored with",
        )
        # The server stays up and keeps serving.
        assert client.get("/").status_code == 200
        assert get_one(client, "locked") == created


def test_secrets_key_rotation(data_dir: Path) -> None:
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with (
        ThreadedServer(data_dir, secrets_key=key_a, extra_services=[SampleService]) as running,
        running.http() as client,
    ):
        put_ok(client, "/_inference/text_embedding/rotated", EMBEDDING_BODY)

    # New key first, old key still listed: the old secrets decrypt.
    with (
        ThreadedServer(data_dir, secrets_key=f"{key_b},{key_a}", extra_services=[SampleService]) as running,
        running.http() as client,
    ):
        assert embed_ok(client, "rotated") == embed("hello world", 6)
        # Secrets written now are encrypted under the newest key.
        response = client.put("/_inference/rotated/_update", json={"service_settings": {"api_key": "sk-new"}})
        assert response.status_code == 200, response.text

    with (
        ThreadedServer(data_dir, secrets_key=key_b, extra_services=[SampleService]) as running,
        running.http() as client,
    ):
        assert embed_ok(client, "rotated") == embed("hello world", 6)


def test_an_older_registry_is_migrated_in_order(data_dir: Path) -> None:
    """A registry left at version 1 (as the first release wrote it) gets the later migrations on start."""
    import sqlite3

    from inferd.store.sql_base import sqlite_engine

    data_dir.mkdir(parents=True)
    engine = sqlite_engine(data_dir / "inferd.db")
    with engine.connect().execution_options(write=True) as conn, conn.begin():
        conn.exec_driver_sql(
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
            "applied_at VARCHAR(40) NOT NULL)"
        )
        version, description, statements = MIGRATIONS[0]
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.exec_driver_sql(
            "INSERT INTO schema_migrations VALUES (?, ?, ?)", (version, description, "2026-01-01T00:00:00")
        )
    engine.dispose()
    with ThreadedServer(data_dir) as running, running.http() as client:
        assert client.get("/_security/role").status_code == 200
    con = sqlite3.connect(data_dir / "inferd.db")
    try:
        versions = [v for (v,) in con.execute("SELECT version FROM schema_migrations ORDER BY version")]
        tables = {t for (t,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()
    assert versions == [v for v, _, _ in MIGRATIONS]
    assert {"roles", "api_keys"} <= tables
