"""Task types and input types, parsed the way Elasticsearch parses them."""

from __future__ import annotations

from enum import StrEnum

from inferd.core.errors import StatusError


class TaskType(StrEnum):
    TEXT_EMBEDDING = "text_embedding"
    SPARSE_EMBEDDING = "sparse_embedding"
    RERANK = "rerank"
    COMPLETION = "completion"
    CHAT_COMPLETION = "chat_completion"
    # Internal: "no task type given". ES parses the literal "any" too.
    ANY = "any"

    @classmethod
    def parse(cls, value: str) -> TaskType:
        """Trim and lower-case, then look up; ES does the same with upper case."""
        try:
            return cls(value.strip().lower())
        except ValueError:
            raise StatusError(f"Unknown task_type [{value}]") from None

    @classmethod
    def concrete(cls) -> tuple[TaskType, ...]:
        return tuple(t for t in cls if t is not cls.ANY)

    @property
    def supports_chunking(self) -> bool:
        return self in (TaskType.TEXT_EMBEDDING, TaskType.SPARSE_EMBEDDING)


class InputType(StrEnum):
    INGEST = "ingest"
    SEARCH = "search"
    UNSPECIFIED = "unspecified"
    CLASSIFICATION = "classification"
    CLUSTERING = "clustering"
    INTERNAL_SEARCH = "internal_search"
    INTERNAL_INGEST = "internal_ingest"

    @property
    def is_internal(self) -> bool:
        return self in (InputType.INTERNAL_SEARCH, InputType.INTERNAL_INGEST)
