"""`GET _inference/_services` entries, derived from each service's settings models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from inferd.core.tasks import TaskType
from inferd.services.base import Service
from inferd.services.schema import config_type, field_extra, is_secret_annotation, nested_model


def _field_entries(prefix: str, model: type[BaseModel]) -> list[tuple[str, FieldInfo, bool]]:
    """(dotted name, field, required) for each leaf field; nested objects are flattened."""
    out = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        nested = nested_model(field.annotation)
        if nested is not None:
            out.extend(_field_entries(f"{key}.", nested))
        else:
            out.append((key, field, field.is_required() and not prefix))
    return out


def _describe(field: FieldInfo, required: bool, tasks: list[TaskType]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    if default is not None and not isinstance(default, BaseModel):
        entry["default_value"] = default
    if field.description:
        entry["description"] = field.description
    entry["label"] = field.title or ""
    entry["required"] = required
    entry["sensitive"] = is_secret_annotation(field.annotation)
    entry["updatable"] = bool(field_extra(field).get("updatable")) or is_secret_annotation(field.annotation)
    entry["type"] = config_type(field.annotation)
    entry["supported_task_types"] = [t.value for t in tasks]
    return entry


def service_descriptor(service: Service) -> dict[str, Any]:
    task_types = [t for t in TaskType.concrete() if t in service.task_types]
    fields: dict[str, tuple[FieldInfo, bool, list[TaskType]]] = {}
    for task in task_types:
        models = [service.service_settings_model(task)]
        if service.secret_settings_model is not None:
            models.append(service.secret_settings_model)
        for model in models:
            for key, field, required in _field_entries("", model):
                if key not in fields:
                    fields[key] = (field, required, [])
                fields[key][2].append(task)
    return {
        "service": service.name,
        "name": service.display_name,
        "task_types": [t.value for t in task_types],
        "configurations": {key: _describe(f, req, tasks) for key, (f, req, tasks) in fields.items()},
    }


def services_catalog(services: list[Service], task_type: TaskType) -> list[dict[str, Any]]:
    return [
        service_descriptor(s)
        for s in sorted(services, key=lambda s: s.name)
        if s.listed_in_services and (task_type is TaskType.ANY or task_type in s.task_types)
    ]
