"""Inference results, rendered in the shapes of the ES API (one top-level key per result)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class EmbeddingElementType(StrEnum):
    FLOAT = "float"
    BYTE = "byte"
    BIT = "bit"


_EMBEDDING_KEYS = {
    EmbeddingElementType.FLOAT: "text_embedding",
    EmbeddingElementType.BYTE: "text_embedding_bytes",
    EmbeddingElementType.BIT: "text_embedding_bits",
}


@dataclass(frozen=True)
class TextEmbeddingResult:
    embeddings: list[list[float]] | list[list[int]]
    element_type: EmbeddingElementType = EmbeddingElementType.FLOAT

    def to_dict(self) -> dict[str, Any]:
        return {_EMBEDDING_KEYS[self.element_type]: [{"embedding": e} for e in self.embeddings]}


@dataclass(frozen=True)
class SparseEmbedding:
    weights: dict[str, float]
    is_truncated: bool = False


@dataclass(frozen=True)
class SparseEmbeddingResult:
    embeddings: list[SparseEmbedding]

    def to_dict(self) -> dict[str, Any]:
        return {"sparse_embedding": [{"is_truncated": e.is_truncated, "embedding": e.weights} for e in self.embeddings]}


@dataclass(frozen=True)
class RankedDocument:
    index: int
    relevance_score: float
    text: str | None = None


@dataclass(frozen=True)
class RerankResult:
    """Documents sorted by relevance, best first."""

    ranked: list[RankedDocument]

    def to_dict(self) -> dict[str, Any]:
        out = []
        for doc in self.ranked:
            item: dict[str, Any] = {"index": doc.index, "relevance_score": doc.relevance_score}
            if doc.text is not None:
                item["text"] = doc.text
            out.append(item)
        return {"rerank": out}


@dataclass(frozen=True)
class CompletionResult:
    results: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"completion": [{"result": r} for r in self.results]}


InferenceResult = TextEmbeddingResult | SparseEmbeddingResult | RerankResult | CompletionResult
