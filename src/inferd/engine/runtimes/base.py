"""What a model runtime offers the engine.

A runtime is one loaded copy of a model. Each allocation of a deployment owns one and calls it
from one worker thread at a time, so runtimes need not be thread-safe; they must release the GIL
while they compute (onnxruntime, ctypes and torch all do). `num_threads` is the number of
threads the runtime may use for one call, part of the machine-wide thread budget.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from inferd.core.tasks import InputType
from inferd.engine.catalog import ModelSpec


@dataclass(frozen=True)
class SparseVector:
    weights: dict[str, float]
    is_truncated: bool


class ModelRuntime(Protocol):
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens each text will take (after truncation), for the batcher's token budget."""

    def close(self) -> None:
        """Release the model (memory, threads)."""


class EmbeddingRuntime(ModelRuntime, Protocol):
    dims: int

    def embed(self, texts: Sequence[str], input_type: InputType | None) -> npt.NDArray[np.float32]:
        """One L2-normalised row per text, in a new array (the engine reads it on another thread)."""


class SparseRuntime(ModelRuntime, Protocol):
    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        """ELSER-shaped {token: weight} per text, special tokens dropped."""

    def sparse_in_steps(self, texts: Sequence[str]) -> Callable[[], list[SparseVector]]:
        """`sparse` in two steps: runs the model now, and returns the step that builds the vectors.

        The engine runs that second step on another thread while the model takes its next batch.
        """


class RerankRuntime(ModelRuntime, Protocol):
    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        """One relevance score per document, in input order (higher is more relevant)."""


class GenerativeRuntime(ModelRuntime, Protocol):
    def generate(
        self,
        messages: Sequence[dict[str, Any]],
        *,
        max_new_tokens: int,
        stop: Sequence[str] = (),
        on_text: Callable[[str], None] | None = None,
    ) -> str:
        """Greedy chat completion of `messages`; `on_text` receives the text as it is produced."""


RuntimeLoader = Callable[[ModelSpec, Path, int], ModelRuntime]
