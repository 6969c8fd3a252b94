"""Built-in models the `elasticsearch` service knows, by the ids Elasticsearch uses for them.

Platform-specific ids (`_linux-x86_64`) are the defaults on the platform they name, as in ES.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

from inferd.core.tasks import TaskType

LINUX_X86_64 = "linux-x86_64"


@dataclass(frozen=True)
class BuiltinModel:
    model_id: str
    task_types: tuple[TaskType, ...]
    description: str
    platform: str | None = None  # set on ids optimised for one platform


ELSER_V2 = ".elser_model_2"
E5_SMALL = ".multilingual-e5-small"
RERANK_V1 = ".rerank-v1"

BUILTIN_MODELS: dict[str, BuiltinModel] = {
    m.model_id: m
    for m in (
        BuiltinModel(ELSER_V2, (TaskType.SPARSE_EMBEDDING,), "ELSER v2 stand-in: SPLADE sparse encoder"),
        BuiltinModel(
            f"{ELSER_V2}_{LINUX_X86_64}", (TaskType.SPARSE_EMBEDDING,), "ELSER v2 stand-in, x86-64 build", LINUX_X86_64
        ),
        BuiltinModel(E5_SMALL, (TaskType.TEXT_EMBEDDING,), "multilingual-e5-small, 384 dimensions, cosine"),
        BuiltinModel(
            f"{E5_SMALL}_{LINUX_X86_64}",
            (TaskType.TEXT_EMBEDDING,),
            "multilingual-e5-small, x86-64 build",
            LINUX_X86_64,
        ),
        BuiltinModel(RERANK_V1, (TaskType.RERANK,), "Rerank stand-in: E5 bi-encoder relevance scoring"),
    )
}


def current_platform() -> str:
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return f"{platform.system().lower()}-{machine}"


def platform_default(base_id: str) -> str:
    """The id ES picks by default for a model on this machine."""
    specific = f"{base_id}_{current_platform()}"
    return specific if specific in BUILTIN_MODELS else base_id
