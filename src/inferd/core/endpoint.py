"""An inference endpoint's configuration, kept apart from its secrets.

`EndpointConfig` is what GET can show; `EndpointSecrets` is never rendered. Keeping them in two
types (and two tables) makes redaction hold by construction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from inferd.core.errors import ActionRequestValidationError
from inferd.core.tasks import TaskType

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class EndpointConfig:
    inference_id: str
    task_type: TaskType
    service: str
    service_settings: JsonObject
    task_settings: JsonObject = field(default_factory=dict)
    chunking_settings: JsonObject | None = None
    # Persisted facts a service needs later but ES never shows (e.g. whether the user set dimensions).
    internal_settings: JsonObject = field(default_factory=dict)

    def to_dict(self) -> JsonObject:
        """The EndpointInfo object of ES, in its field order; empty task settings are omitted."""
        body: JsonObject = {
            "inference_id": self.inference_id,
            "task_type": self.task_type.value,
            "service": self.service,
            "service_settings": self.service_settings,
        }
        if self.task_settings:
            body["task_settings"] = self.task_settings
        if self.chunking_settings is not None:
            body["chunking_settings"] = self.chunking_settings
        return body

    def with_changes(self, **changes: Any) -> EndpointConfig:
        return replace(self, **changes)


@dataclass(frozen=True)
class EndpointSecrets:
    """Secret settings of one endpoint (api keys, ...), as plain values. Never rendered."""

    values: JsonObject = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"EndpointSecrets(keys={sorted(self.values)})"


# ML identifier rules: lower-case alphanumerics, '-', '_' and '.', starting and ending with an
# alphanumeric, at most 64 characters.
_VALID_ID = re.compile(r"[a-z0-9](?:[a-z0-9_\-.]*[a-z0-9])?")
MAX_ID_LENGTH = 64


def validate_inference_id(inference_id: str) -> None:
    problems = []
    if not _VALID_ID.fullmatch(inference_id):
        problems.append(
            f"Invalid inference_id; '{inference_id}' can contain lowercase alphanumeric (a-z and 0-9), "
            "hyphens or underscores; must start and end with alphanumeric"
        )
    elif len(inference_id) > MAX_ID_LENGTH:
        problems.append(f"Invalid inference_id; '{inference_id}' cannot contain more than {MAX_ID_LENGTH} characters.")
    if problems:
        raise ActionRequestValidationError(problems)
