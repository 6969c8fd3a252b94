"""A weightless engine for tests: deterministic runtimes behind the real batcher and deployments.

Like Infinity's debug engine, it lets the engine's behaviour (batching, 429, allocations, scale to
zero, resizing) be tested without model files. The runtimes record what they were asked, sleep a
configurable time per batch, and fail on demand.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inferd.core.errors import EngineError
from inferd.core.tasks import InputType, TaskType
from inferd.engine.catalog import BUILTIN_MODELS, ModelSpec, Runtime
from inferd.engine.engine import Engine, EngineLimits
from inferd.engine.runtimes.base import ModelRuntime, SparseVector

WORD = re.compile(r"\w+")


@dataclass
class Recorder:
    """What the fake runtimes saw, shared with the test."""

    batches: list[tuple[str, int]] = field(default_factory=list)  # (model id, batch size)
    loads: list[tuple[str, int]] = field(default_factory=list)  # (model id, threads)
    closes: list[str] = field(default_factory=list)
    delay: float = 0.0  # seconds per batch
    word_delay: float = 0.0  # seconds per generated word
    finish_delay: float = 0.0  # seconds to build a sparse batch's results, after the model ran
    steps: list[str] = field(default_factory=list)  # "ran <first text>", "finished <first text>", "closed <model>"
    words_generated: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def batch(self, model_id: str, size: int) -> None:
        with self.lock:
            self.batches.append((model_id, size))
        if self.delay:
            time.sleep(self.delay)

    def step(self, what: str) -> None:
        with self.lock:
            self.steps.append(what)


def vector(text: str, dims: int = 8) -> list[float]:
    """A unit vector from the text's hash, in float32 values (what a model returns)."""
    digest = hashlib.sha256(text.encode()).digest()
    raw = np.frombuffer(digest[:dims], dtype=np.uint8).astype(np.float32) + 1.0
    return [float(x) for x in (raw / np.linalg.norm(raw)).astype(np.float32)]


class FakeRuntime:
    def __init__(self, spec: ModelSpec, recorder: Recorder) -> None:
        self.spec = spec
        self.recorder = recorder
        self.dims = 8

    def _check(self, texts: Sequence[str]) -> None:
        if any("explode" in t for t in texts):
            raise RuntimeError("the fake model exploded")

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(WORD.findall(t)) + 2 for t in texts]

    def embed(self, texts: Sequence[str], input_type: InputType | None) -> npt.NDArray[np.float32]:
        self.recorder.batch(self.spec.model_id, len(texts))
        self._check(texts)
        prefix = "query: " if input_type is InputType.SEARCH else "passage: "
        return np.array([vector(prefix + t) for t in texts], dtype=np.float32)

    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.sparse_in_steps(texts)()

    def sparse_in_steps(self, texts: Sequence[str]) -> Callable[[], list[SparseVector]]:
        self.recorder.batch(self.spec.model_id, len(texts))
        self._check(texts)
        first = texts[0] if texts else ""
        self.recorder.step(f"ran {first}")

        def vectors() -> list[SparseVector]:
            time.sleep(self.recorder.finish_delay)
            self.recorder.step(f"finished {first}")
            if any("fizzle" in t for t in texts):
                raise RuntimeError("the fake model's results fizzled")
            out = []
            for text in texts:
                words = WORD.findall(text.lower())
                out.append(SparseVector({w: float(words.count(w)) for w in dict.fromkeys(words)}, len(words) > 20))
            return out

        return vectors

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        self.recorder.batch(self.spec.model_id, len(documents))
        self._check([query, *documents])
        wanted = set(WORD.findall(query.lower()))
        return [len(wanted & set(WORD.findall(d.lower()))) / (len(wanted) or 1) for d in documents]

    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        self.recorder.batch(self.spec.model_id, 1)
        text = str(messages[-1].get("content") or "")
        self._check([text])
        words = text.upper().split()[:max_new_tokens]
        out = ""
        for i, word in enumerate(words):
            if self.recorder.word_delay:
                time.sleep(self.recorder.word_delay)
            self.recorder.words_generated += 1
            piece = (" " if i else "") + word
            if any((out + piece).endswith(s) for s in stop):
                break
            out += piece
            if on_text is not None:
                on_text(piece)
        return out

    def close(self) -> None:
        self.recorder.closes.append(self.spec.model_id)
        self.recorder.step(f"closed {self.spec.model_id}")


class FakeDelivery:
    """The built-in catalog with no files: every model is 'downloaded' into an empty folder."""

    def __init__(self, root: Path, recorder: Recorder, *, broken: frozenset[str] = frozenset()) -> None:
        self.root = root
        self.recorder = recorder
        self.broken = broken
        self.extra: dict[str, ModelSpec] = {}

    def spec(self, model_id: str) -> ModelSpec | None:
        return BUILTIN_MODELS.get(model_id) or self.extra.get(model_id)

    async def ensure(self, spec: ModelSpec) -> Path:
        folder = self.root / spec.folder_name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def verify(self, spec: ModelSpec) -> Path:
        if spec.model_id in self.broken:
            raise EngineError(f"The files of model [{spec.model_id}] are missing or corrupted: [model.onnx]")
        return self.root / spec.folder_name


def fake_engine(
    root: Path,
    recorder: Recorder,
    *,
    threads: int = 8,
    idle_seconds: float = 300.0,
    max_queue: int = 1024,
    broken: frozenset[str] = frozenset(),
) -> Engine:
    from inferd.engine.batcher import BatchLimits

    def load(spec: ModelSpec, folder: Path, num_threads: int) -> ModelRuntime:
        recorder.loads.append((spec.model_id, num_threads))
        return FakeRuntime(spec, recorder)

    limits = EngineLimits(batch=BatchLimits(max_queue=max_queue), threads=threads, idle_seconds=idle_seconds)
    return Engine(FakeDelivery(root, recorder, broken=broken), load, limits)


CROSS_ENCODER = ModelSpec(
    "my-cross-encoder", (TaskType.RERANK,), "an imported cross-encoder", Runtime.ONNX_CROSS_ENCODER, imported=True
)
