"""Encoder runtimes in a child process: the same answers as in the server's process, errors that keep
their class and reason, calls answered in the order sent, and a child that dies is replaced.

The model folders are tiny hand-built graphs, so these tests need no model data; the `models` suite
serves the built-in models the same way (`model_processes` is on by default).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from inferd.core.errors import EngineError
from inferd.core.tasks import InputType
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.runtimes import load_runtime
from inferd.engine.runtimes.isolated import ProcessRuntime, load_isolated
from tests.support.onnx_graphs import pooled_weights, pooled_weights_named_token_logits, word_tokenizer
from tests.support.processes import gone, model_processes, wait_for

TEXTS = ["hello world", "world", "hello hello world", "", "world world hello"]


def spec(runtime: Runtime) -> ModelSpec:
    return ModelSpec("my-model", (), "test", runtime, imported=True)


def save(graph: object, folder: Path) -> Path:
    from onnx import helper
    from onnx import save as save_model

    folder.mkdir(parents=True, exist_ok=True)
    word_tokenizer(folder / "tokenizer.json")
    save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / "model.onnx"))
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return save(pooled_weights(7, seed=5), tmp_path / "model")


@pytest.fixture
def isolated(folder: Path) -> Iterator[ProcessRuntime]:
    runtime = load_isolated(spec(Runtime.ONNX_SPARSE), folder, 1)
    assert isinstance(runtime, ProcessRuntime)
    yield runtime
    runtime.close()


def child_pid(runtime: ProcessRuntime) -> int:
    assert runtime._child is not None
    return runtime._child.process.pid


def test_a_child_answers_as_the_runtime_in_the_servers_process_would(folder: Path, isolated: ProcessRuntime) -> None:
    local = load_runtime(spec(Runtime.ONNX_SPARSE), folder, 1)
    try:
        assert isolated.sparse(TEXTS) == local.sparse(TEXTS)  # type: ignore[attr-defined]
        assert isolated.count_tokens(TEXTS) == local.count_tokens(TEXTS)
    finally:
        local.close()
    assert isolated.sparse([]) == []
    assert child_pid(isolated) != os.getpid()


def test_embeddings_and_scores_come_back_whole(folder: Path) -> None:
    embedding = load_isolated(spec(Runtime.ONNX_EMBEDDING), folder, 1)
    local = load_runtime(spec(Runtime.ONNX_EMBEDDING), folder, 1)
    try:
        assert isinstance(embedding, ProcessRuntime)
        assert embedding.dims == local.dims == 7  # type: ignore[attr-defined]
        vectors = embedding.embed(TEXTS[:3], InputType.INGEST)
        assert vectors.dtype == np.float32
        np.testing.assert_array_equal(vectors, local.embed(TEXTS[:3], InputType.INGEST))  # type: ignore[attr-defined]
    finally:
        embedding.close()
        local.close()
    cross_encoder = load_isolated(spec(Runtime.ONNX_CROSS_ENCODER), folder, 1)
    try:
        scores = cross_encoder.score("hello", ["world", "hello world"])  # type: ignore[attr-defined]
        assert len(scores) == 2 and all(0.0 <= s <= 1.0 for s in scores)
    finally:
        cross_encoder.close()


def test_calls_sent_before_their_answers_are_collected_come_back_in_order(isolated: ProcessRuntime) -> None:
    expected = [isolated.sparse([text]) for text in TEXTS]
    # The model thread sends batch after batch; the finisher collects them later, here last one first.
    steps = [isolated.sparse_in_steps([text]) for text in TEXTS]
    assert [step() for step in reversed(steps)] == list(reversed(expected))


def test_a_load_error_keeps_its_class_and_reason(tmp_path: Path) -> None:
    word_tokenizer(tmp_path / "tokenizer.json")
    with pytest.raises(EngineError) as in_process:
        load_runtime(spec(Runtime.ONNX_SPARSE), tmp_path, 1)
    with pytest.raises(EngineError) as in_child:
        load_isolated(spec(Runtime.ONNX_SPARSE), tmp_path, 1)
    assert in_child.value.reason == in_process.value.reason
    assert "the file" in in_child.value.reason and "model.onnx] is missing" in in_child.value.reason
    assert (in_child.value.status, in_child.value.es_type) == (500, "status_exception")


def test_a_failed_call_keeps_its_error_and_the_child_serves_on(tmp_path: Path) -> None:
    folder = save(pooled_weights_named_token_logits(7, seed=3), tmp_path / "bad")
    runtime = load_isolated(spec(Runtime.ONNX_SPARSE), folder, 1)
    assert isinstance(runtime, ProcessRuntime)
    try:
        pid = child_pid(runtime)
        for _ in range(2):
            with pytest.raises(EngineError, match=r"^model \[my-model\] gives the wrong output: \[token_logits\]"):
                runtime.sparse(["hello world", "hello"])
        with pytest.raises(AttributeError, match="has no attribute 'embed'"):  # a builtin class, rebuilt by name
            runtime.embed(["hello"], None)
        assert child_pid(runtime) == pid
    finally:
        runtime.close()


def test_an_answer_that_cannot_be_pickled_fails_its_call_and_the_child_serves_on(isolated: ProcessRuntime) -> None:
    pid = child_pid(isolated)
    with pytest.raises(TypeError, match="cannot pickle"):  # the runtime itself holds an onnxruntime session
        isolated._call("__reduce_ex__", (2,))()
    assert isolated.sparse(["hello"]) and child_pid(isolated) == pid


def test_a_call_in_flight_when_its_child_dies_is_sent_once_more_to_a_new_one(isolated: ProcessRuntime) -> None:
    expected = isolated.sparse(TEXTS)
    pid = child_pid(isolated)
    os.kill(pid, signal.SIGSTOP)  # the calls below are sent but cannot be answered
    first, second = isolated.sparse_in_steps(TEXTS), isolated.sparse_in_steps(TEXTS[:2])
    os.kill(pid, signal.SIGKILL)
    assert first() == expected
    assert second() == expected[:2]
    assert child_pid(isolated) != pid
    assert gone(pid)


def test_a_call_whose_child_dies_fails_with_the_reason_a_new_child_cannot_start(
    folder: Path, isolated: ProcessRuntime
) -> None:
    expected = isolated.sparse(TEXTS)
    pid = child_pid(isolated)
    os.kill(pid, signal.SIGSTOP)
    step = isolated.sparse_in_steps(TEXTS)
    (folder / "model.onnx").rename(folder / "moved.onnx")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(EngineError, match=r"model \[my-model\] cannot be loaded: the file .* is missing"):
        step()
    (folder / "moved.onnx").rename(folder / "model.onnx")
    assert isolated.sparse(TEXTS) == expected  # the next call starts a child again


def test_a_call_is_sent_at_most_twice(folder: Path, isolated: ProcessRuntime) -> None:
    """A call that kills its child kills the next one too: it fails rather than crash children forever."""
    pid = child_pid(isolated)
    os.kill(pid, signal.SIGSTOP)
    step = isolated.sparse_in_steps(TEXTS)
    # The second child's model file is a FIFO: its load blocks until the test kills that child too.
    (folder / "model.onnx").rename(folder / "moved.onnx")
    os.mkfifo(folder / "model.onnx")
    os.kill(pid, signal.SIGKILL)
    killed: list[int] = []
    killer = threading.Thread(target=lambda: killed.append(kill_the_next_child(pid)))
    killer.start()
    try:
        with pytest.raises(EngineError, match=r"process running model \[my-model\] stopped \(exit code -9"):
            step()
    finally:
        killer.join()
        (folder / "model.onnx").unlink()
        (folder / "moved.onnx").rename(folder / "model.onnx")
    assert killed and gone(killed[0])  # the call was sent a second time, to the child the test killed
    assert isolated.sparse(TEXTS)


def kill_the_next_child(previous: int) -> int:
    wait_for(lambda: model_processes() - {previous})
    (child,) = model_processes() - {previous}
    os.kill(child, signal.SIGKILL)
    return child


def test_close_stops_the_child_and_later_calls_are_errors(isolated: ProcessRuntime) -> None:
    pid = child_pid(isolated)
    isolated.close()
    assert gone(pid)
    with pytest.raises(EngineError, match="was unloaded"):
        isolated.sparse(TEXTS)
    isolated.close()  # twice is harmless


def test_a_child_exits_when_the_server_process_dies(folder: Path) -> None:
    code = f"""
import pathlib, sys, time
from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.runtimes.isolated import load_isolated
model = ModelSpec("m", (), "test", Runtime.ONNX_SPARSE, imported=True)
runtime = load_isolated(model, pathlib.Path({str(folder)!r}), 1)
print(runtime._child.process.pid, flush=True)
time.sleep(60)
"""
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True) as server:
        try:
            assert server.stdout is not None
            pid = int(server.stdout.readline())
            assert not gone(pid)
        finally:
            server.kill()
    wait_for(lambda: gone(pid))  # the model process does not outlive the server


def test_generative_models_stay_in_the_servers_process(tmp_path: Path) -> None:
    """They stream tokens through a callback; the in-process loader's own error shows which way it went."""
    with pytest.raises(EngineError) as in_process:
        load_runtime(spec(Runtime.CAUSAL_LM), tmp_path, 1)
    with pytest.raises(EngineError) as isolated:
        load_isolated(spec(Runtime.CAUSAL_LM), tmp_path, 1)
    assert isolated.value.reason == in_process.value.reason
