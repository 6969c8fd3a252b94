"""One-time conversions of model files to the ONNX graphs the runtimes serve, each checked numerically.

`python -m inferd.engine.convert <name> <folder>` runs a named conversion of a built-in model after
its files are unpacked (model delivery runs it in a subprocess, so torch never enters the server
process); it exits with status 1 and one clear line on stderr when it fails. `export_hf_folder` is
the conversion behind `inferd models import`.

Traps handled here (models.md §4): transformers 5's encoders take further positional arguments, so
the exported module is a small wrapper calling the model with keywords; and a fresh wrapper is in
training mode, which the exporter restores afterwards, switching dropout back on: every wrapper is
put in eval mode before the export and again before it computes the torch reference.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from inferd.core.errors import EngineError, InferdError
from inferd.core.tasks import TaskType
from inferd.engine.catalog import ModelSpec, Runtime

if TYPE_CHECKING:
    import torch

Progress = Callable[[str], None]
TASKS = ("text_embedding", "sparse_embedding", "rerank")
OPSET = 18
MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# A conversion's name is part of what a model folder records as its source (engine/fetch.py), so a
# conversion that changes takes a new name and the folders made by the older one are made again.
# v2: SPLADE pooled after the max and its head on real tokens only (twice the throughput).
# v3: the same without a scatter, which lost maxima with two or more threads.
# v4: the head on real tokens again, pooled by the runtime rather than the graph (`SpladeTokenLogits`).
SPLADE_INT8 = "splade_onnx_int8_v4"
MIN_EXPORT_COSINE = 0.999  # ONNX fp32 against torch: the same arithmetic, so anything lower is a broken export
MIN_INT8_COSINE = 0.99  # int8 against fp32 (models.md §6: check any quantized model before using it)
LOGIT_TOLERANCE = 1e-3
# Repeated calls of a graph with several threads: onnxruntime's kernels split work the same way
# each call, so a sound graph gives the same bits; the tolerance only leaves room for a kernel
# that sums in a different order, far below the 1e-1..1 errors a racing update makes.
REPEAT_CALLS = 8
REPEAT_TOLERANCE = 1e-4
CHECK_TEXTS = (
    "how to boil an egg",
    "Put the eggs in boiling water for eight minutes, then cool them in cold water.",
    "The software update fixes a security vulnerability in the network driver of the device.",
    "What is the capital of France?",
    "Paris is the capital and largest city of France.",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "a",
    "Elasticsearch is a distributed search and analytics engine built on Apache Lucene. " * 8,
)
CHECK_QUERY = "what temperature should water boil at"


class ConversionError(Exception):
    """A conversion that cannot be done or did not pass its check; the message is for the user."""


@dataclass(frozen=True)
class ExportResult:
    """What an export found out about the model, for its `ModelSpec`."""

    task: str
    source_format: str  # "safetensors" (exported and checked against torch) or "onnx" (copied)
    max_sequence_length: int
    dims: int | None
    pooling: str
    check: str  # the numerical check it passed, in words


def _quiet(_: str) -> None:
    pass


def _torch() -> Any:
    # transformers reads HF_HUB_OFFLINE when it is first imported: a mistake must fail fast, never
    # wait on a hub. Every `from_pretrained` below also passes local_files_only=True.
    os.environ["HF_HUB_OFFLINE"] = "1"
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # we show our own steps
    return torch, transformers


def _cosines(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    dots = (a64 * b64).sum(axis=1)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return np.where(norms > 0, dots / np.maximum(norms, 1e-30), 1.0)


def _inputs(tokenizer_path: Path, max_length: int, task: str) -> dict[str, npt.NDArray[np.int64]]:
    """The fixed check batch, tokenized as the runtime will tokenize it (pairs for rerank)."""
    from inferd.engine.runtimes.onnx import load_tokenizer, padded_feed

    try:
        tokenizer, pad_id = load_tokenizer(tokenizer_path, max_length, "import")
    except EngineError as exc:
        raise ConversionError(exc.reason) from exc
    batch: list[Any] = [(CHECK_QUERY, t) for t in CHECK_TEXTS] if task == "rerank" else list(CHECK_TEXTS)
    return padded_feed(tokenizer.encode_batch(batch), pad_id)


def _run_onnx(
    path: Path, feed: dict[str, npt.NDArray[np.int64]], threads: int = 0, calls: int = 1
) -> list[npt.NDArray[np.float32]]:
    """The graph's first output for `feed`, `calls` times from one session (`threads` 0: onnxruntime's default)."""
    import onnxruntime as ort

    from inferd.engine.runtimes.onnx import UNPOOLED_OUTPUT

    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        names = {i.name for i in session.get_inputs()}
        inputs = {k: v for k, v in feed.items() if k in names}
        outputs = [np.asarray(session.run(None, inputs)[0], dtype=np.float32) for _ in range(calls)]
        output_name = session.get_outputs()[0].name
    except Exception as exc:  # onnxruntime raises its own untyped errors for graphs it cannot run
        raise ConversionError(f"[{path}] cannot be run by onnxruntime: {exc}") from exc
    if output_name == UNPOOLED_OUTPUT:  # checked as the runtime serves them: pooled
        return [_pooled(output, feed["attention_mask"]) for output in outputs]
    return outputs


def _pooled(logits: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    from inferd.engine.runtimes.onnx import pool_token_logits

    try:
        return pool_token_logits(logits, mask.sum(axis=1).tolist())
    except ValueError as exc:
        raise ConversionError(f"the ONNX graph's {exc} of the check inputs") from exc


def compare(task: str, reference: npt.NDArray[np.float32], candidate: npt.NDArray[np.float32], **kw: Any) -> float:
    """The check's figure: the lowest cosine (embeddings) or the largest relative logit error (rerank)."""
    if reference.shape != candidate.shape:
        raise ConversionError(f"the exported graph outputs shape {candidate.shape}, torch {reference.shape}")
    if task == "rerank":
        return float(np.max(np.abs(reference - candidate) / np.maximum(1.0, np.abs(reference))))
    if task == "text_embedding":  # compared as the runtime serves them: pooled (cosines ignore its normalising)
        from inferd.engine.runtimes.onnx import pool

        reference = pool(reference, kw["mask"], kw["pooling"])
        candidate = pool(candidate, kw["mask"], kw["pooling"])
    return float(_cosines(reference, candidate).min())


def _describe(task: str, figure: float, against: str) -> str:
    if task == "rerank":
        return f"largest logit difference {figure:.2e} against {against}"
    return f"lowest cosine {figure:.5f} against {against}"


# --- reading a Hugging Face folder -----------------------------------------------------------


def _config(source: Path) -> dict[str, Any]:
    path = source / "config.json"
    if not path.is_file():
        raise ConversionError(f"[{source}] is not a Hugging Face model folder: it has no config.json")
    config: dict[str, Any] = json.loads(path.read_text())
    return config


def max_sequence_length(source: Path, config: dict[str, Any]) -> int:
    """The longest input the model takes, at most 512 (as Elasticsearch's deployed models)."""
    positions = int(config.get("max_position_embeddings", 512))
    if config.get("model_type") in ("roberta", "xlm-roberta", "camembert"):
        positions -= 2  # their position ids start after the padding index
    tokenizer_config = source / "tokenizer_config.json"
    if tokenizer_config.is_file():
        declared = json.loads(tokenizer_config.read_text()).get("model_max_length")
        if isinstance(declared, int) and 0 < declared < positions:
            positions = declared
    return max(8, min(positions, 512))


def pooling_of(source: Path) -> str:
    """sentence-transformers' pooling for the folder (mean unless its 1_Pooling config says CLS)."""
    path = source / "1_Pooling" / "config.json"
    if not path.is_file():
        return "mean"
    config = json.loads(path.read_text())
    if config.get("pooling_mode_cls_token"):
        return "cls"
    if config.get("pooling_mode_mean_tokens", True):
        return "mean"
    modes = sorted(k for k, v in config.items() if k.startswith("pooling_mode") and v)
    raise ConversionError(f"unsupported pooling {modes} in [{path}]: only mean and CLS pooling are served")


def _tokenizer_file(source: Path, target: Path, progress: Progress) -> Path:
    """Copy the fast tokenizer (tokenizer.json), building it from the slow files when only they exist."""
    found = source / TOKENIZER_FILE
    if found.is_file():
        shutil.copyfile(found, target / TOKENIZER_FILE)
        return target / TOKENIZER_FILE
    progress("no tokenizer.json: building it from the folder's tokenizer files")
    _, transformers = _torch()
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), local_files_only=True)
        tokenizer.backend_tokenizer.save(str(target / TOKENIZER_FILE))
    except Exception as exc:
        raise ConversionError(f"[{source}] has no usable tokenizer (tokenizer.json or vocabulary): {exc}") from exc
    return target / TOKENIZER_FILE


def _onnx_in(source: Path) -> Path | None:
    for candidate in (source / MODEL_FILE, source / "onnx" / MODEL_FILE):
        if candidate.is_file():
            return candidate
    return None


# --- torch wrappers and export ---------------------------------------------------------------


def _wrap(model: Any, task: str, sample: dict[str, torch.Tensor]) -> tuple[torch.nn.Module, list[str], str]:
    """The module to export, in eval mode, its input names (token_type_ids only if the model takes
    them) and its output's name.

    For SPLADE the head runs on real tokens only and the graph outputs their logits
    (`SpladeTokenLogits`) where the model's parts allow it and give the textbook formula's numbers
    on `sample`; otherwise the whole model's logits are pooled with a mask in the graph.
    """
    import inspect

    import torch

    from inferd.engine.runtimes.onnx import UNPOOLED_OUTPUT

    names = ["input_ids", "attention_mask"]
    if "token_type_ids" in inspect.signature(model.forward).parameters:
        names.append("token_type_ids")
    splade = _splade_token_logits(model, {n: sample[n] for n in names}) if task == "sparse_embedding" else None
    output_name = {"text_embedding": "last_hidden_state", "sparse_embedding": "sparse", "rerank": "logits"}[task]

    class Wrapper(torch.nn.Module):
        """Keyword calls into the model, and the task's output (SPLADE pooling inside the graph)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any = None) -> Any:
            kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
            if token_type_ids is not None:
                kwargs["token_type_ids"] = token_type_ids
            if splade is not None:
                return splade(kwargs)
            out = self.model(**kwargs)
            if task == "text_embedding":
                return out.last_hidden_state
            if task == "rerank":
                return out.logits
            return splade_from_logits(out.logits, attention_mask)

    return Wrapper().eval(), names, UNPOOLED_OUTPUT if splade is not None else output_name


# --- SPLADE pooling ------------------------------------------------------------------------------
#
# SPLADE's weights are max over a text's tokens of log1p(relu(logits)). log1p and relu never
# decrease, so that is log1p(relu(max over tokens of logits)): the same numbers, with the two
# elementwise functions on (batch, vocabulary) rather than on (batch, tokens, vocabulary). On
# SPLADE-tiny the MLM head is 90 % of the compute, so it runs on the real tokens only
# (`SpladeTokenLogits`), and the runtime takes each text's max (docs/performance.md).


def splade_from_logits(logits: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """SPLADE weights from a masked-LM's (batch, tokens, vocabulary) logits; padding is left out."""
    import torch

    real = attention_mask.unsqueeze(-1).to(torch.bool)
    pooled = logits.masked_fill(~real, float("-inf")).amax(dim=1)
    return torch.log1p(torch.relu(pooled))


def splade_reference(model: Any, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """The textbook SPLADE formula on the whole model's logits, which every export is checked against."""
    import torch

    logits = model(**inputs).logits
    weights = torch.log1p(torch.relu(logits)) * inputs["attention_mask"].unsqueeze(-1).to(logits.dtype)
    return weights.max(dim=1).values


def _splade_token_logits(model: Any, sample: dict[str, torch.Tensor]) -> SpladeTokenLogits | None:
    import torch

    from inferd.engine.runtimes.onnx import pool_token_logits

    parts = _mlm_parts(model)
    if parts is None:
        return None
    splade = SpladeTokenLogits(*parts)
    lengths = sample["attention_mask"].sum(dim=1).tolist()
    with torch.inference_mode():
        try:
            pooled = pool_token_logits(splade(sample).float().numpy(), lengths)
            reference = splade_reference(model, sample).float().numpy()
        except Exception:  # a head that does not take the encoder's output: the whole-logits way serves it
            return None
    return splade if np.allclose(pooled, reference, rtol=1e-4, atol=1e-5) else None


def _mlm_parts(model: Any) -> tuple[Any, Any] | None:
    """The encoder and the MLM head of a masked-LM model, where its class keeps them apart as BERT's
    (`cls`) and RoBERTa's (`lm_head`) families do; None for the others."""
    head = getattr(model, "cls", None) or getattr(model, "lm_head", None)
    base = getattr(model, "base_model", None)
    if head is None or base is None or base is model:
        return None
    return base, head


class SpladeTokenLogits:
    """The MLM head's logits for the real tokens only, text after text: the `token_logits` output (`UNPOOLED_OUTPUT`).

    The runtime takes each text's max over its rows (`pool_token_logits`), so padding costs only
    the encoder's share of the compute, and a batch of 8 texts runs as fast per text as one of 64.
    No operator here combines values from several places into one (SPLADE's v2 export took each
    text's max in the graph with a ScatterND max-reduction; onnxruntime's CPU kernel applies its
    updates from several threads without locking, and maxima were lost), so the graph gives the
    same numbers with any number of threads. v3 kept the max in the graph by running the head on
    every position, padding included, which cost 5-10 % at the batch sizes a server forms.
    """

    def __init__(self, base: Any, head: Any) -> None:
        self.base, self.head = base, head

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        hidden = self.base(**inputs).last_hidden_state
        real = torch.nonzero(inputs["attention_mask"].reshape(-1))[:, 0]  # row-major: text by text
        logits: torch.Tensor = self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, real))
        return logits


def _load_torch_model(source: Path, task: str) -> Any:
    if not any(source.glob("*.safetensors")):
        raise ConversionError(f"[{source}] has no safetensors weights (pickled weights are not loaded)")
    _, transformers = _torch()
    auto = {
        "text_embedding": transformers.AutoModel,
        "sparse_embedding": transformers.AutoModelForMaskedLM,
        "rerank": transformers.AutoModelForSequenceClassification,
    }[task]
    try:
        model = auto.from_pretrained(str(source), local_files_only=True, use_safetensors=True)
    except Exception as exc:
        raise ConversionError(f"cannot load [{source}] as a {task} model: {exc}") from exc
    return model.eval()


def export_torch(model: Any, task: str, feed: dict[str, npt.NDArray[np.int64]], path: Path) -> npt.NDArray[np.float32]:
    """Export `model` for `task` to `path`; returns the torch reference output on `feed`."""
    import torch

    from inferd.engine.runtimes.onnx import UNPOOLED_OUTPUT

    inputs = {n: torch.from_numpy(v) for n, v in feed.items()}
    wrapper, names, output_name = _wrap(model, task, inputs)
    args = tuple(inputs[n][:2] for n in names)
    axes: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    axes[output_name] = {
        "last_hidden_state": {0: "batch", 1: "sequence"},
        UNPOOLED_OUTPUT: {0: "tokens"},  # one row per real token
    }.get(output_name, {0: "batch"})
    # The TorchScript exporter warns about tracing and its own deprecation; the result is checked
    # numerically right after, which says more than those warnings.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=names,
            output_names=[output_name],
            dynamic_axes=axes,
            opset_version=OPSET,
            dynamo=False,
        )
    wrapper.eval()  # the exporter restores the mode it found; make sure dropout is off for the reference
    with torch.inference_mode():
        if task == "sparse_embedding":
            reference = splade_reference(model, {n: inputs[n] for n in names})
        else:
            reference = wrapper(*(inputs[n] for n in names))
    return np.asarray(reference.float().numpy(), dtype=np.float32)


def export_hf_folder(source: Path, target: Path, task: str, progress: Progress = _quiet) -> ExportResult:
    """Turn a local Hugging Face folder into `target/model.onnx` + `target/tokenizer.json` for `task`.

    Safetensors weights are exported with torch and the graph checked against torch on a fixed set
    of texts; a folder with only an ONNX graph has it copied and checked for the task's output shape.
    """
    if task not in TASKS:
        raise ConversionError(f"unknown task type [{task}]; expected one of {list(TASKS)}")
    config = _config(source)
    target.mkdir(parents=True, exist_ok=True)
    length = max_sequence_length(source, config)
    pooling = pooling_of(source) if task == "text_embedding" else "none"
    progress("reading the tokenizer")
    tokenizer = _tokenizer_file(source, target, progress)
    feed = _inputs(tokenizer, length, task)
    onnx_source = _onnx_in(source)
    if not any(source.glob("*.safetensors")) and onnx_source is not None:
        progress(f"copying the ONNX graph [{onnx_source.name}]")
        shutil.copyfile(onnx_source, target / MODEL_FILE)
        output = _checked_run(target / MODEL_FILE, feed)
        check = _shape_check(task, output, feed)
        progress("checking that the graph gives the same result call after call")
        check = f"{check}; {determinism_check(target / MODEL_FILE, feed)}"
        dims = int(output.shape[-1]) if task == "text_embedding" else None
        return ExportResult(task, "onnx", length, dims, pooling, check)
    progress("loading the model with torch")
    model = _load_torch_model(source, task)
    progress(f"exporting to ONNX (opset {OPSET})")
    reference = export_torch(model, task, feed, target / MODEL_FILE)
    try:  # a graph that fails a check is not left behind
        progress("checking the ONNX graph against torch")
        exported = _checked_run(target / MODEL_FILE, feed)
        figure = compare(task, reference, exported, mask=feed["attention_mask"], pooling=pooling)
        failed = figure > LOGIT_TOLERANCE if task == "rerank" else figure < MIN_EXPORT_COSINE
        if failed:
            raise ConversionError(f"the exported graph does not match torch: {_describe(task, figure, 'torch')}")
        progress("checking that the graph gives the same result call after call")
        repeated = determinism_check(target / MODEL_FILE, feed)
    except ConversionError:
        (target / MODEL_FILE).unlink(missing_ok=True)
        raise
    dims = int(reference.shape[-1]) if task == "text_embedding" else None
    check = f"{_describe(task, figure, 'torch')}; {repeated}"
    return ExportResult(task, "safetensors", length, dims, pooling, check)


def _checked_run(path: Path, feed: dict[str, npt.NDArray[np.int64]]) -> npt.NDArray[np.float32]:
    return _run_onnx(path, feed)[0]


# Scatters that combine several updates into one value: onnxruntime's CPU kernels (1.32) apply
# them from several threads without locking, so updates landing on the same value race (seen: the
# SPLADE export's v2 lost maxima in 12 of 40 calls; a one-text scatter-max graph in 20 of 99).
RACY_SCATTERS = frozenset({"ScatterND", "ScatterElements"})


def _racy_nodes(path: Path) -> list[str]:
    """The graph's scatter nodes (subgraphs included) that reduce into their output, in words."""
    import onnx

    found: list[str] = []

    def walk(graph: Any) -> None:
        for node in graph.node:
            reduction = next((a.s.decode() for a in node.attribute if a.name == "reduction"), "none")
            if node.op_type in RACY_SCATTERS and node.domain in ("", "ai.onnx") and reduction != "none":
                found.append(f"{node.op_type} [{node.name or node.output[0]}] (reduction {reduction})")
            for attribute in node.attribute:
                for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                    walk(subgraph)

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnxruntime ran it, but a graph onnx cannot parse cannot be vetted
        raise ConversionError(f"[{path}] cannot be read by onnx: {exc}") from exc
    walk(model.graph)
    return found


def determinism_check(path: Path, feed: dict[str, npt.NDArray[np.int64]]) -> str:
    """The graph answers the same input the same way call after call, with several threads.

    A graph can pass a one-off numerical check and still be wrong in service: onnxruntime runs
    some operators' in-place updates on several threads without locking (scatters that reduce,
    refused on sight), and a graph may hold a random operator. Both show as results that change
    between calls; a race shows most with one long text, whose updates all meet in one row.
    """
    racy = _racy_nodes(path)
    if racy:
        raise ConversionError(
            f"the ONNX graph has {', '.join(racy)}: onnxruntime applies a reducing scatter's updates from "
            "several threads without locking, so its results change from call to call; export the model "
            "without it (a maximum over positions, for one, is a ReduceMax over the padded batch)"
        )
    threads = max(2, os.cpu_count() or 1)
    longest = int(np.argmax(feed["attention_mask"].sum(axis=1)))
    length = int(feed["attention_mask"][longest].sum())
    one_text = {name: values[longest : longest + 1, :length] for name, values in feed.items()}
    worst = 0.0
    for inputs in (feed, one_text):
        first, *again = _run_onnx(path, inputs, threads, REPEAT_CALLS)
        scale = np.maximum(1.0, np.abs(first))
        worst = max(worst, *(float(np.max(np.abs(other - first) / scale)) for other in again))
    if worst > REPEAT_TOLERANCE:
        raise ConversionError(
            f"the ONNX graph gives different results for the same input from one call to the next with "
            f"[{threads}] onnxruntime threads (largest relative difference {worst:.2e}); a graph must be "
            "deterministic to be served: it may hold an operator that updates the same values from several "
            "threads at once, or a random operator"
        )
    return f"the same result in {REPEAT_CALLS} calls with {threads} threads"


def _shape_check(task: str, output: npt.NDArray[np.float32], feed: dict[str, npt.NDArray[np.int64]]) -> str:
    batch = feed["input_ids"].shape[0]
    expected = {"text_embedding": (2, 3), "sparse_embedding": (2,), "rerank": (2,)}[task]
    if output.shape[0] != batch or output.ndim not in expected or not np.isfinite(output).all():
        raise ConversionError(
            f"the ONNX graph's first output has shape {output.shape}; a {task} model needs "
            + {
                "text_embedding": "(batch, tokens, hidden) or (batch, hidden)",
                "sparse_embedding": "SPLADE-pooled (batch, vocabulary) weights",
                "rerank": "(batch, labels) logits",
            }[task]
        )
    return f"output shape {tuple(output.shape)} for {batch} check inputs (no torch weights to compare with)"


# --- import --------------------------------------------------------------------------------------


def prepare_import(source: Path, target: Path, model_id: str, task: str, progress: Progress = _quiet) -> ModelSpec:
    """Export `source` into `target` and prove the runtime that will serve it can: the imported spec."""
    from inferd.engine.runtimes import load_runtime

    result = export_hf_folder(source, target, task, progress)
    runtime = {
        "text_embedding": Runtime.ONNX_EMBEDDING,
        "sparse_embedding": Runtime.ONNX_SPARSE,
        "rerank": Runtime.ONNX_CROSS_ENCODER,
    }[task]
    extra = {"source": source.name, "source_format": result.source_format, "check": result.check}
    if task == "text_embedding":
        extra["pooling"] = result.pooling
    spec = ModelSpec(
        model_id,
        (TaskType(task),),
        f"imported from [{source.name}] ({result.source_format})",
        runtime,
        dims=result.dims,
        similarity="cosine" if task == "text_embedding" else None,
        max_sequence_length=result.max_sequence_length,
        imported=True,
        extra=extra,
    )
    progress("serving a test request with its runtime")
    try:
        loaded: Any = load_runtime(spec, target, 1)
        try:
            texts = list(CHECK_TEXTS[:2])
            if task == "text_embedding":
                outputs = list(loaded.embed(texts, None))
            elif task == "sparse_embedding":
                outputs = [v.weights for v in loaded.sparse(texts)]
            else:
                outputs = loaded.score(CHECK_QUERY, texts)
        finally:
            loaded.close()
    except InferdError as exc:
        raise ConversionError(exc.reason) from exc
    if not outputs or len(outputs) != 2:
        raise ConversionError(f"the runtime returned {len(outputs)} results for 2 inputs")
    return spec


# --- built-in conversions --------------------------------------------------------------------


def splade_onnx_int8(folder: Path, progress: Progress = _quiet) -> dict[str, Any]:
    """`source/` (SPLADE as a BertForMaskedLM) -> `model.onnx` (int8) + `tokenizer.json` in `folder`.

    The fp32 graph is checked against torch, the int8 one against the fp32 one; only then is
    `model.onnx` written (by a rename, so its presence means a finished conversion). The fp32
    intermediate is deleted; `source/` is kept (18 MB) so the conversion can be redone offline.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    source = folder / "source"
    fp32, int8 = folder / "model.fp32.onnx", folder / "model.int8.partial.onnx"
    try:
        result = export_hf_folder(source, folder, "sparse_embedding", progress)
        os.replace(folder / MODEL_FILE, fp32)
        progress("quantizing MatMul weights to int8 (per channel)")
        # 7-bit weights (reduce_range): on x86 CPUs without VNNI, onnxruntime's u8 x s8 kernels saturate
        # 16-bit sums, which cost SPLADE 2 points of cosine (0.980 on an AVX2-only EPYC, 0.997 with it).
        # The graph must stay right on whichever CPU serves it, not only the one that converted it.
        quantize_dynamic(
            fp32,
            int8,
            op_types_to_quantize=["MatMul"],
            per_channel=True,
            reduce_range=True,
            weight_type=QuantType.QInt8,
        )
        progress("checking int8 against fp32")
        feed = _inputs(folder / TOKENIZER_FILE, result.max_sequence_length, "sparse_embedding")
        figure = compare("sparse_embedding", _checked_run(fp32, feed), _checked_run(int8, feed))
        int8_check = _describe("sparse_embedding", figure, "fp32")
        if figure < MIN_INT8_COSINE:
            raise ConversionError(f"the int8 graph is too far from fp32: {int8_check}")
        int8_check = f"{int8_check}; {determinism_check(int8, feed)}"
        report = {**asdict(result), "conversion": SPLADE_INT8, "int8_check": int8_check}
        (folder / "conversion.json").write_text(json.dumps(report, indent=2) + "\n")
        os.replace(int8, folder / MODEL_FILE)
        return report
    finally:
        fp32.unlink(missing_ok=True)
        int8.unlink(missing_ok=True)


CONVERSIONS: dict[str, Callable[[Path, Progress], dict[str, Any]]] = {SPLADE_INT8: splade_onnx_int8}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in CONVERSIONS:
        print(f"usage: python -m inferd.engine.convert {{{','.join(CONVERSIONS)}}} <folder>", file=sys.stderr)
        return 2
    name, folder = args[0], Path(args[1])

    def progress(step: str) -> None:
        print(f"[{name}] {step}", file=sys.stderr, flush=True)

    try:
        report = CONVERSIONS[name](folder, progress)
    except ConversionError as exc:
        print(f"conversion [{name}] of [{folder}] failed: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # anything else is still reported in one line, with its kind
        print(f"conversion [{name}] of [{folder}] failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
