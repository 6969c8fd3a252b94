"""`GET _inference/_services` entries, derived from each service's settings models."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from inferd.core.tasks import TaskType
from inferd.services.base import Service
from inferd.services.schema import config_type, field_extra, is_secret_annotation, nested_model


@dataclass(frozen=True)
class _Leaf:
    field: FieldInfo
    required: bool
    updatable: bool


def _leaves(prefix: str, model: type[BaseModel], parent_updatable: bool = False) -> list[tuple[str, _Leaf]]:
    """Each leaf setting by dotted name; nested objects are flattened and inherit updatability."""
    out = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        extra = field_extra(field)
        updatable = parent_updatable or bool(extra.get("updatable")) or is_secret_annotation(field.annotation)
        nested = nested_model(field.annotation)
        if nested is not None:
            out.extend(_leaves(f"{key}.", nested, updatable))
        else:
            required = bool(extra.get("required", field.is_required() and not prefix))
            out.append((key, _Leaf(field, required, updatable)))
    return out


def _describe(leaf: _Leaf, tasks: list[TaskType]) -> dict[str, Any]:
    field = leaf.field
    entry: dict[str, Any] = {}
    default = field_extra(field).get("default_value")
    if default is None and not field.is_required():
        default = field.get_default(call_default_factory=True)
    if default is not None and not isinstance(default, BaseModel):
        entry["default_value"] = default
    if field.description:
        entry["description"] = field.description
    entry["label"] = field.title or ""
    entry["required"] = leaf.required
    entry["sensitive"] = is_secret_annotation(field.annotation)
    entry["updatable"] = leaf.updatable
    entry["type"] = config_type(field.annotation)
    entry["supported_task_types"] = [t.value for t in tasks]
    return entry


def service_descriptor(service: Service) -> dict[str, Any]:
    task_types = [t for t in TaskType.concrete() if t in service.task_types]
    fields: dict[str, tuple[_Leaf, list[TaskType]]] = {}
    for task in task_types:
        models = [service.service_settings_model(task), service.task_settings_model(task)]
        if service.secret_settings_model is not None:
            models.append(service.secret_settings_model)
        for model in models:
            for key, leaf in _leaves("", model):
                fields.setdefault(key, (leaf, []))[1].append(task)
    return {
        "service": service.name,
        "name": service.display_name,
        "task_types": [t.value for t in task_types],
        "configurations": {key: _describe(leaf, tasks) for key, (leaf, tasks) in fields.items()},
    }


def services_catalog(services: list[Service], task_type: TaskType) -> list[dict[str, Any]]:
    return [
        service_descriptor(s)
        for s in sorted(services, key=lambda s: s.name)
        if s.listed_in_services and (task_type is TaskType.ANY or task_type in s.task_types)
    ]
