"""Model runtimes, chosen by the model's `Runtime` kind.

Each module is imported only when a model of its kind loads: onnxruntime, the E5 engine and torch
cost memory and start-up time that a server without such a model should not pay.
"""

from __future__ import annotations

import os
from pathlib import Path

from inferd.engine.catalog import ModelSpec, Runtime
from inferd.engine.runtimes.base import ModelRuntime


def load_runtime(spec: ModelSpec, folder: Path, num_threads: int) -> ModelRuntime:
    """Load `spec`'s files from `folder` for one allocation that may use `num_threads` threads."""
    # The tokenizers library would otherwise spread each batch over a thread pool of every core:
    # threads outside the budget, which on a busy server compete with the event loop and leave the
    # model thread waiting on them. Tokenizing costs ~2 % of a batch; one thread does it.
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    runtime = spec.runtime
    if runtime in (Runtime.E5, Runtime.E5_RERANK):
        from inferd.engine.runtimes import e5

        if runtime is Runtime.E5:
            return e5.E5Runtime(spec, folder, num_threads)
        return e5.E5RerankRuntime(spec, folder, num_threads)
    if runtime in (Runtime.ONNX_EMBEDDING, Runtime.ONNX_SPARSE, Runtime.ONNX_CROSS_ENCODER):
        from inferd.engine.runtimes import onnx

        if runtime is Runtime.ONNX_EMBEDDING:
            return onnx.OnnxEmbeddingRuntime(spec, folder, num_threads)
        if runtime is Runtime.ONNX_SPARSE:
            return onnx.OnnxSparseRuntime(spec, folder, num_threads)
        return onnx.OnnxCrossEncoderRuntime(spec, folder, num_threads)
    if runtime is Runtime.CAUSAL_LM:
        from inferd.engine.runtimes.causal_lm import CausalLmRuntime

        return CausalLmRuntime(spec, folder, num_threads)
    raise ValueError(f"no runtime for [{runtime}] (model [{spec.model_id}])")
