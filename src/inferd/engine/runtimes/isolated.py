"""Encoder runtimes in a process of their own, as Elasticsearch runs its models in `pytorch_inference`.

A runtime's own Python steps (tokenizing, padding, pooling, building SPLADE's {token: weight}
maps) need the GIL. In the server's process they wait for it whenever the event loop or another
allocation holds it, and while every model thread waits a core has nothing to run. In a child
process the runtime has a GIL of its own: the allocation's thread in the server sends texts,
receives results and waits with the GIL released (docs/performance.md measures the difference).

The child is `python -m inferd.engine.runtimes.isolated <fd>`, talking over a socket pair with
`multiprocessing.connection` framing (pickles; both ends are this package). Calls are answered in
the order they were sent, so a caller may send the next batch before it collects the previous
result: the child then never waits for the server between batches. A child that dies (the OOM
killer, a fault in native code) takes the calls in flight with it; each is sent once more, to a new
child, as encoder calls are pure functions of their arguments, and fails only if that one dies too
or cannot start. Generative models stay in the server's process: they stream tokens through a
callback.
"""

from __future__ import annotations

import builtins
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferd.core.errors import EngineError, InferdError
from inferd.core.tasks import InputType
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.runtimes import load_runtime
from inferd.engine.runtimes.base import ModelRuntime, SparseVector

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 10.0


class ChildGone(EngineError):
    """The process running a model stopped with the call in flight: no error the model raised."""


def load_isolated(spec: ModelSpec, folder: Path, num_threads: int) -> ModelRuntime:
    """`load_runtime`, with every model but a generative one loaded in a child process."""
    if spec.runtime is Runtime.CAUSAL_LM:
        return load_runtime(spec, folder, num_threads)
    return ProcessRuntime(spec, folder, num_threads)


class _Reply:
    __slots__ = ("done", "ok", "value")

    def __init__(self) -> None:
        self.done = False
        self.ok = False
        self.value: Any = None


class _Child:
    """One child process and the calls sent to it that it has not answered yet, oldest first."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.model_id = spec.model_id
        ours, theirs = socket.socketpair()
        try:
            # The same interpreter, environment and working directory: it imports this very package.
            self.process = subprocess.Popen(  # noqa: S603 (our own interpreter and module, no user input)
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self.sock = ours  # kept to shut down: that wakes a thread blocked reading, which close does not
        self.conn = Connection(os.dup(ours.fileno()))
        self.waiting: deque[_Reply] = deque()
        self.receive_lock = threading.Lock()
        try:
            self.info: dict[str, Any] = self.send("load", (spec, str(folder), num_threads))()
        except BaseException:
            self.stop(kill=True)
            raise

    @property
    def alive(self) -> bool:
        return not self.conn.closed and self.process.poll() is None

    def send(self, method: str, args: tuple[Any, ...]) -> Callable[[], Any]:
        """Send one call (callers serialise their sends); returns the step that waits for its answer."""
        reply = _Reply()
        self.waiting.append(reply)
        try:
            self.conn.send((method, args))
        except OSError as exc:
            self.waiting.remove(reply)
            raise self.gone(exc) from exc

        def wait() -> Any:
            self.wait(reply)
            if reply.ok:
                return reply.value
            raise reply.value

        return wait

    def wait(self, reply: _Reply) -> None:
        with self.receive_lock:
            while not reply.done:
                try:
                    ok, value = self.conn.recv()
                except (EOFError, OSError) as exc:
                    # Every call in flight on this child fails with the same error.
                    error = self.gone(exc)
                    for pending in (*self.waiting, reply):
                        pending.done, pending.ok, pending.value = True, False, error
                    self.waiting.clear()
                    return
                except Exception as exc:  # an answer read whole that does not unpickle here fails its call only
                    reason = f"model [{self.model_id}] gave an answer the server cannot read: {exc}"
                    ok, value = False, EngineError(reason)
                first = self.waiting.popleft()
                first.done, first.ok = True, ok
                first.value = value if ok or isinstance(value, BaseException) else _rebuild(*value)

    def gone(self, cause: BaseException) -> ChildGone:
        try:
            code = self.process.wait(1.0)
        except subprocess.TimeoutExpired:
            code = None
        return ChildGone(
            f"the process running model [{self.model_id}] stopped (exit code {code}, {type(cause).__name__}) "
            "with this call in flight"
        )

    def stop(self, *, kill: bool = False) -> None:
        if not kill:
            try:
                self.conn.send(("close", ()))
            except OSError:
                kill = True
        if kill:
            self.process.kill()
        try:
            self.process.wait(CLOSE_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        with contextlib.suppress(OSError):  # already disconnected
            self.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()
        self.sock.close()


class ProcessRuntime:
    """Any encoder runtime's methods, each one a call answered by the runtime in a child process."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.spec = spec
        self.folder = folder
        self.num_threads = num_threads
        self._send_lock = threading.Lock()
        self._child: _Child | None = _Child(spec, folder, num_threads)
        self.dims: int | None = self._child.info["dims"]

    def _call(self, method: str, args: tuple[Any, ...]) -> Callable[[], Any]:
        """Send a call; returns the step that waits for its answer, sending it once more if the child dies."""
        try:
            wait = self._send(method, args)
        except ChildGone as exc:
            self._retrying(method, exc)
            return self._send(method, args)

        def answer() -> Any:
            try:
                return wait()
            except ChildGone as exc:
                self._retrying(method, exc)
                return self._send(method, args)()

        return answer

    def _retrying(self, method: str, cause: ChildGone) -> None:
        log.warning("%s; sending the [%s] call once more, to a new process", cause.reason, method)

    def _send(self, method: str, args: tuple[Any, ...]) -> Callable[[], Any]:
        with self._send_lock:
            child = self._child
            if child is None:
                raise EngineError(f"model [{self.spec.model_id}] was unloaded")
            if not child.alive:
                child.stop(kill=True)  # its waiting calls have failed or fail now
                self._child = child = _Child(self.spec, self.folder, self.num_threads)
            return child.send(method, args)

    # -- the runtime protocols ----------------------------------------------------------------

    def embed(self, texts: Sequence[str], input_type: InputType | None) -> npt.NDArray[np.float32]:
        vectors: npt.NDArray[np.float32] = self._call("embed", (list(texts), input_type))()
        return vectors

    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        vectors: list[SparseVector] = self._call("sparse", (list(texts),))()
        return vectors

    def sparse_in_steps(self, texts: Sequence[str]) -> Callable[[], list[SparseVector]]:
        # The finisher thread collects the answer while the model thread sends the next batch.
        return self._call("sparse", (list(texts),))

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        scores: list[float] = self._call("score", (query, list(documents)))()
        return scores

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        counts: list[int] = self._call("count_tokens", (list(texts),))()
        return counts

    def close(self) -> None:
        with self._send_lock:
            child, self._child = self._child, None
        if child is not None:
            child.stop()


def _rebuild(name: str, message: str) -> BaseException:
    """An error the child raised, as the same class where it is a builtin one."""
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception) and not issubclass(cls, OSError):
        with contextlib.suppress(TypeError):  # a few (UnicodeDecodeError) take more than a message
            return cls(message)
    return RuntimeError(f"{name}: {message}")


def _describe(exc: Exception) -> BaseException | tuple[str, str]:
    """What the server gets of an error: ours whole (status, type and all), any other by class name and message."""
    if isinstance(exc, InferdError):
        return exc
    return type(exc).__name__, str(exc)


def _serve(conn: Connection) -> None:
    """The child: load the runtime, then answer calls until told to close or the server goes."""
    runtime: Any = None
    try:
        while True:
            try:
                method, args = conn.recv()
            except (EOFError, OSError):
                return
            if method == "close":
                return
            try:
                if method == "load":
                    spec, folder, num_threads = args
                    runtime = load_runtime(spec, Path(folder), num_threads)
                    result: Any = {"dims": getattr(runtime, "dims", None)}
                else:
                    result = getattr(runtime, method)(*args)
            except Exception as exc:
                answer: tuple[bool, Any] = (False, _describe(exc))
            else:
                answer = (True, result)
            try:
                conn.send(answer)
            except OSError:
                return  # the server is gone
            except Exception as exc:  # a result that cannot be pickled fails its call, not the child
                conn.send((False, _describe(exc)))
    finally:
        if runtime is not None:
            runtime.close()


if __name__ == "__main__":
    # Ctrl-C reaches the whole process group; the server decides when its models stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _serve(Connection(int(sys.argv[1])))
