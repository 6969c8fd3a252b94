"""Encoder models on onnxruntime + tokenizers: dense embeddings, SPLADE sparse embeddings, cross-encoders.

A model folder holds `model.onnx` and `tokenizer.json`. The graphs take int64 `input_ids`,
`attention_mask` and (when they declare it) `token_type_ids`, with dynamic batch and sequence axes:
the built-in MiniLM file as shipped, and every graph `inferd.engine.convert` writes.

Each runtime owns one onnxruntime session with `intra_op_num_threads = num_threads` and one
inter-op thread, so one call uses exactly its allocation's share of the machine's thread budget.
Inputs are tokenized once, sorted by length and fed in chunks padded to their own longest text,
cut where the padding saved outweighs the cost of one more call, so a batch of mixed lengths
wastes little compute on padding (Infinity sorts by length too; TEI avoids padding altogether on
GPUs). SPLADE's chunks are bounded because its (tokens x 30,522) logits dominate memory (models.md §3b).

A sparse graph outputs either pooled (batch, vocabulary) weights, or, when its output is named
`token_logits` (the built-in SPLADE and every SPLADE that `inferd models import` exports), the MLM
head's logits for the real tokens only, text after text, which `pool_token_logits` pools. The head
is 90 % of SPLADE's compute, so such a graph pays for padding only in the encoder, and a batch of 8
runs as fast per text as a batch of 64 (docs/performance.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from inferd.core.errors import EngineError
from inferd.core.tasks import InputType
from inferd.engine.catalog import ModelSpec
from inferd.engine.runtimes.base import SparseVector

MODEL_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
# ELSER drops these from its token lists; other tokenizers' special tokens are found by their flag.
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_PAD_TOKENS = ("[PAD]", "<pad>")


@dataclass(frozen=True)
class CallCost:
    """How a model's time per call grows, in padded tokens: what chunking a batch trades off.

    Each call costs a fixed overhead (worth `call_tokens` tokens of compute) plus one unit per padded
    token; past `max_tokens` padded tokens per call the time per token rises again (the activations
    leave the caches). Measured on the built-in models with one thread (docs/performance.md).
    """

    call_tokens: int
    max_tokens: int


EMBED_COST = CallCost(call_tokens=10, max_tokens=512)  # MiniLM: ~3 ms per call, ~0.3 ms per token
# SPLADE: its head streams a (hidden x 30,522) weight matrix on every call (~1.5 ms, the time of ~16
# tokens); per-token time is flat up to ~768 tokens a call, and a call's logits take 120 KB a token.
SPARSE_COST = CallCost(call_tokens=16, max_tokens=384)
# SPLADE with its head on real tokens: a padded position costs only the encoder's tenth of a token,
# so in padded positions a call costs ~70 of them. The runtime reads a call's logits (120 KB a
# token) once more to pool them, and that read is three times slower once they have left the
# cache: with 768 tokens a call (90 MB) the pooling took a third of a text's time on an AVX-512
# host whose 32 MB last-level cache is shared with other VMs. 64 tokens (8 MB) a call ran as fast as
# any size there while the neighbours were quiet, and fastest while they were busy
# (docs/performance.md); a longer text still gets a call of its own.
TOKEN_LOGITS_COST = CallCost(call_tokens=64, max_tokens=64)
UNPOOLED_OUTPUT = "token_logits"  # see the module docstring
PAIR_COST = EMBED_COST


def padding_aware_chunks(lengths: Sequence[int], cost: CallCost) -> list[list[int]]:
    """Indices of the inputs, grouped into the calls that cost least in all.

    Inputs are sorted by length; each chunk is a run of that order padded to its longest input.
    Dynamic programming over the cut points minimises calls x overhead + padded tokens, so inputs
    of equal length share a call and a long one does not pad many short ones. A batch of 16 then
    wastes about as little on padding as a batch of 64, which fixed-size chunks did not.
    """
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    sizes = [max(1, lengths[i]) for i in order]
    best = [0.0] + [float("inf")] * len(order)
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        width = sizes[end - 1]  # the longest input of any chunk ending here
        for start in range(end - 1, -1, -1):
            count = end - start
            if count > 1 and count * width > cost.max_tokens:
                break
            total = best[start] + cost.call_tokens + count * width
            if total < best[end]:
                best[end], cut[end] = total, start
    chunks: list[list[int]] = []
    end = len(order)
    while end:
        chunks.append(order[cut[end] : end])
        end = cut[end]
    chunks.reverse()
    return chunks


def _lengths(encodings: Sequence[Encoding]) -> list[int]:
    return [len(e.ids) for e in encodings]


def _clean(text: str) -> str:
    # The Rust tokenizer rejects lone surrogates, which JSON strings may carry.
    return text.encode("utf-8", errors="replace").decode("utf-8")


def session_options(num_threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # The pool's threads spin inside a call (operators hand work over fast) but stop when it ends:
    # between calls the same cores tokenize, finish results and serve HTTP, and the other
    # deployments' threads run there. Served SPLADE with two threads on two cores: +5 %; raw the same.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def load_session(path: Path, num_threads: int, model_id: str) -> ort.InferenceSession:
    if not path.is_file():
        raise EngineError(f"model [{model_id}] cannot be loaded: the file [{path}] is missing")
    try:
        return ort.InferenceSession(str(path), session_options(num_threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for damaged graphs
        raise EngineError(f"model [{model_id}] cannot be loaded: [{path}] is not a valid ONNX model ({exc})") from exc


def load_tokenizer(path: Path, max_length: int, model_id: str) -> tuple[Tokenizer, int]:
    """The tokenizer, truncating but never padding (chunks are padded by `OnnxEncoder.run`), and its pad id."""
    if not path.is_file():
        raise EngineError(f"model [{model_id}] cannot be loaded: the file [{path}] is missing")
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise EngineError(f"model [{model_id}] cannot be loaded: [{path}] is not a valid tokenizer ({exc})") from exc
    # The file's own settings may pad every input to a fixed length (MiniLM's pads to 128): use its
    # pad token, but pad each chunk only to its own longest text.
    padding = tokenizer.padding or {}
    pad_id = padding.get("pad_id")
    if padding.get("pad_token") is None:
        pad_token = next((t for t in _PAD_TOKENS if tokenizer.token_to_id(t) is not None), "[PAD]")
        pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    return tokenizer, int(pad_id or 0)


def _padded(rows: Sequence[list[int]], width: int, fill: int) -> npt.NDArray[np.int64]:
    out = np.full((len(rows), width), fill, dtype=np.int64)
    for i, row in enumerate(rows):
        out[i, : len(row)] = row
    return out


def padded_feed(encodings: Sequence[Encoding], pad_id: int) -> dict[str, npt.NDArray[np.int64]]:
    """Graph inputs for `encodings`, each padded to the longest of them."""
    width = max(len(e.ids) for e in encodings)
    return {
        "input_ids": _padded([e.ids for e in encodings], width, pad_id),
        "attention_mask": _padded([e.attention_mask for e in encodings], width, 0),
        "token_type_ids": _padded([e.type_ids for e in encodings], width, 0),
    }


class OnnxEncoder:
    """A tokenizer and a session: texts (or text pairs) in, the graph's first output out."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.model_id = spec.model_id
        self.max_length = spec.max_sequence_length
        self.tokenizer, self.pad_id = load_tokenizer(folder / TOKENIZER_FILE, self.max_length, spec.model_id)
        session = load_session(folder / MODEL_FILE, num_threads, spec.model_id)
        self.input_names = {i.name for i in session.get_inputs()}
        self.output_name = session.get_outputs()[0].name
        self._session: ort.InferenceSession | None = session
        missing = {"input_ids", "attention_mask"} - self.input_names
        if missing:
            raise EngineError(f"model [{self.model_id}] cannot be loaded: its graph lacks the inputs {sorted(missing)}")

    def encode(self, inputs: Sequence[str] | Sequence[tuple[str, str]]) -> list[Encoding]:
        cleaned: list[Any] = [(_clean(i[0]), _clean(i[1])) if isinstance(i, tuple) else _clean(i) for i in inputs]
        return self.tokenizer.encode_batch(cleaned)

    def run(self, encodings: Sequence[Encoding]) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """The first output for one chunk, padded to its longest input, and the attention mask."""
        feed = padded_feed(encodings, self.pad_id)
        mask = feed["attention_mask"]
        if "token_type_ids" not in self.input_names:
            del feed["token_type_ids"]
        if self._session is None:
            raise EngineError(f"model [{self.model_id}] was unloaded")
        try:
            (output, *_) = self._session.run(None, feed)
        except Exception as exc:
            raise EngineError(f"model [{self.model_id}] failed on {len(encodings)} input(s): {exc}") from exc
        return np.asarray(output, dtype=np.float32), mask

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(e.ids) for e in self.encode(texts)]

    def close(self) -> None:
        # Dropping the only reference frees the session's memory and threads.
        self._session = None


def pool(hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64], mode: str) -> npt.NDArray[np.float32]:
    """Sentence vectors from token vectors (mean over real tokens, or the first token), L2-normalised."""
    if hidden.ndim == 2:  # the graph pools itself
        vectors = hidden
    elif mode == "cls":
        vectors = hidden[:, 0, :]
    else:
        weights = mask[:, :, None].astype(np.float32)
        vectors = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (vectors / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


class OnnxEmbeddingRuntime:
    """text_embedding: encoder hidden states, mean-pooled (or `extra["pooling"] = "cls"`), L2-normalised."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.encoder = OnnxEncoder(spec, folder, num_threads)
        self.pooling = spec.extra.get("pooling", "mean")
        self.dims = spec.dims or self._probe_dims()

    def _probe_dims(self) -> int:
        return int(self.embed(["dimension probe"], None).shape[1])

    def embed(self, texts: Sequence[str], input_type: InputType | None) -> npt.NDArray[np.float32]:
        # input_type is ignored: these models take no query/passage prefix.
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        encodings = self.encoder.encode(texts)
        order: list[int] = []
        parts = []
        for chunk in padding_aware_chunks(_lengths(encodings), EMBED_COST):
            hidden, mask = self.encoder.run([encodings[i] for i in chunk])
            parts.append(pool(hidden, mask, self.pooling))
            order.extend(chunk)
        vectors = np.empty((len(texts), parts[0].shape[1]), dtype=np.float32)
        vectors[order] = np.concatenate(parts, axis=0)
        return vectors

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def close(self) -> None:
        self.encoder.close()


class OnnxSparseRuntime:
    """sparse_embedding: SPLADE weights over the vocabulary, pooled by the graph or from its `token_logits`."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.encoder = OnnxEncoder(spec, folder, num_threads)
        tokenizer = self.encoder.tokenizer
        special = {tokenizer.token_to_id(t) for t in BERT_SPECIAL_TOKENS}
        special |= {i for i, token in tokenizer.get_added_tokens_decoder().items() if token.special}
        vocabulary = tokenizer.get_vocab(with_added_tokens=True)
        self.vocabulary: npt.NDArray[np.object_] = np.full(max(vocabulary.values(), default=-1) + 1, None, dtype=object)
        for token, i in vocabulary.items():
            self.vocabulary[i] = token
        # Special tokens are dropped; so are ids the vocabulary skips, which have no token to report.
        special |= {i for i, token in enumerate(self.vocabulary) if token is None}
        self.dropped_ids = np.array(sorted(i for i in special if i is not None), dtype=np.int64)

    def sparse(self, texts: Sequence[str]) -> list[SparseVector]:
        return self.sparse_in_steps(texts)()

    def sparse_in_steps(self, texts: Sequence[str]) -> Callable[[], list[SparseVector]]:
        encodings = self.encoder.encode(texts)
        token_logits = self.encoder.output_name == UNPOOLED_OUTPUT
        outputs = []
        for chunk in padding_aware_chunks(_lengths(encodings), TOKEN_LOGITS_COST if token_logits else SPARSE_COST):
            weights, mask = self.encoder.run([encodings[i] for i in chunk])
            if token_logits:
                # Pooled here rather than by the finisher: a chunk's logits are 120 KB a token.
                weights = self._pooled(weights, mask.sum(axis=1).tolist())
            if weights.ndim != 2 or weights.shape[0] != len(chunk):
                model_id, shape = self.encoder.model_id, weights.shape
                raise EngineError(f"model [{model_id}] must output (batch, vocabulary) weights, not shape {shape}")
            outputs.append((chunk, weights))

        def vectors() -> list[SparseVector]:
            results: list[SparseVector | None] = [None] * len(texts)
            for chunk, weights in outputs:
                for i, tokens in zip(chunk, token_weights(weights, self.vocabulary, self.dropped_ids), strict=True):
                    results[i] = SparseVector(tokens, is_truncated=bool(encodings[i].overflowing))
            return [r for r in results if r is not None]

        return vectors

    def _pooled(self, logits: npt.NDArray[np.float32], lengths: list[int]) -> npt.NDArray[np.float32]:
        try:
            return pool_token_logits(logits, lengths)
        except ValueError as exc:
            raise EngineError(f"model [{self.encoder.model_id}] gives the wrong output: {exc}") from exc

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def close(self) -> None:
        self.encoder.close()


def pool_token_logits(logits: npt.NDArray[np.float32], lengths: Sequence[int]) -> npt.NDArray[np.float32]:
    """SPLADE weights from the MLM logits of real tokens, `lengths[i]` rows for text i, text after text.

    A text's weight for a token is log1p(relu(x)) at the largest of its rows' logits x (log1p and
    relu never decrease, so this is SPLADE's max over tokens of log1p(relu)). Most maxima are not
    positive, so log1p runs on the few that are. A text without tokens gets no weights. Raises
    ValueError when `logits` is not one row per real token.
    """
    if logits.ndim != 2 or logits.shape[0] != sum(lengths):
        raise ValueError(
            f"[{UNPOOLED_OUTPUT}] output has shape {logits.shape}; it must hold one row of vocabulary "
            f"logits for each of the {sum(lengths)} real tokens"
        )
    pooled = np.zeros((len(lengths), logits.shape[1]), dtype=np.float32)
    start = 0
    for row, length in enumerate(lengths):
        if length:
            np.max(logits[start : start + length], axis=0, out=pooled[row])
        start += length
    positive = pooled > 0
    np.log1p(pooled, out=pooled, where=positive)
    pooled[~positive] = 0.0
    return pooled


def token_weights(
    weights: npt.NDArray[np.float32], vocabulary: npt.NDArray[np.object_], dropped_ids: npt.NDArray[np.int64]
) -> list[dict[str, float]]:
    """Each row's positive weights by token, strongest first (as people read them), `dropped_ids` left out.

    `vocabulary[i]` names output column i; columns beyond it have no name and are left out too.
    One pass over the whole chunk rather than a loop per row and token: fewer Python steps, and
    fewer of the GIL hand-offs for which this thread waits on the event loop.
    """
    width = min(weights.shape[1], len(vocabulary))
    kept = weights[:, :width].copy()
    kept[:, dropped_ids[dropped_ids < width]] = 0.0
    rows, ids = np.nonzero(kept > 0)
    values = kept[rows, ids]
    order = np.lexsort((ids, -values, rows))  # by row, then strongest first, then by id
    tokens = vocabulary[ids[order]].tolist()
    scores = values[order].tolist()
    ends = np.cumsum(np.bincount(rows, minlength=weights.shape[0])).tolist()
    out, start = [], 0
    for end in ends:
        out.append(dict(zip(tokens[start:end], scores[start:end], strict=True)))
        start = end
    return out


def _relevance(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """One score per pair: sigmoid of a single logit, or the probability of the last (relevant) label."""
    if logits.ndim == 1:
        logits = logits[:, None]
    scores: npt.NDArray[np.float32]
    if logits.shape[1] == 1:
        scores = (1.0 / (1.0 + np.exp(-logits[:, 0]))).astype(np.float32)
    else:
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        scores = (shifted[:, -1] / shifted.sum(axis=1)).astype(np.float32)
    return scores


class OnnxCrossEncoderRuntime:
    """rerank: a sequence-classification model reading (query, document) pairs."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.encoder = OnnxEncoder(spec, folder, num_threads)

    def logits(self, query: str, documents: Sequence[str]) -> npt.NDArray[np.float32]:
        """Raw classifier outputs, one row per document."""
        encodings = self.encoder.encode([(query, d) for d in documents])
        order: list[int] = []
        parts = []
        for chunk in padding_aware_chunks(_lengths(encodings), PAIR_COST):
            output, _ = self.encoder.run([encodings[i] for i in chunk])
            parts.append(output.reshape(len(chunk), -1))
            order.extend(chunk)
        logits = np.empty((len(documents), parts[0].shape[1]), dtype=np.float32)
        logits[order] = np.concatenate(parts, axis=0)
        return logits

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        return [float(s) for s in _relevance(self.logits(query, documents))]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return self.encoder.count_tokens(texts)

    def close(self) -> None:
        self.encoder.close()
