"""Settings declared once as pydantic models, and everything derived from them.

- Parsing: strict for requests (unknown keys are reported, types are not coerced), lenient for
  stored data (unknown keys are dropped with a log line, so an upgrade never bricks an endpoint).
- Error messages: pydantic's errors translated into Elasticsearch's wording.
- `GET _inference/_services` descriptors and the set of fields `_update` may change.

Field metadata: `title` is the label, `description` the description, and
`json_schema_extra={"updatable": True}` marks a field `_update` may change. A field is secret
because its type is `SecretStr`, and only then.
"""

from __future__ import annotations

import logging
import types
import typing
from collections.abc import Mapping
from enum import Enum
from typing import Annotated, Any, ClassVar, Literal, TypeVar, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, model_validator
from pydantic import ValidationError as PydanticValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails, PydanticCustomError

from inferd.core.java_format import java_value

log = logging.getLogger(__name__)

M = TypeVar("M", bound="SettingsModel")

LENIENT = "lenient"


class SettingsModel(BaseModel):
    """Base of every settings model: strict types, no unknown keys, immutable."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, populate_by_name=True)

    # How ES words an unknown key inside this object when it is nested in another one;
    # "{parent}" and "{key}" are filled in.
    unknown_nested_key_message: ClassVar[str] = (
        "Configuration contains unknown settings [{{{key}={value}}}] while parsing field [{parent}]"
    )

    @model_validator(mode="before")
    @classmethod
    def _drop_nulls_and_unknowns(cls, data: Any, info: ValidationInfo) -> Any:
        if not isinstance(data, Mapping):
            return data
        # ES treats an explicit null like an absent key.
        cleaned = {k: v for k, v in data.items() if v is not None}
        if info.context and info.context.get(LENIENT):
            known = field_keys(cls)
            for key in [k for k in cleaned if k not in known]:
                log.warning("ignoring unknown stored setting [%s] of %s", key, cls.__name__)
                del cleaned[key]
        return cleaned


class EmptySettings(SettingsModel):
    """For a task or service that takes no settings of this kind."""


def _java_int(value: int) -> int:
    # JSON integers beyond 32 bits are Longs in ES, which fail its Integer settings.
    if not -(2**31) <= value < 2**31:
        raise PydanticCustomError("int_type", "value does not fit in a 32-bit integer")
    return value


# An integer setting as ES parses one (a Java Integer).
Integer = Annotated[int, AfterValidator(_java_int)]
PositiveInteger = Annotated[Integer, Field(gt=0)]
NonEmptyString = Annotated[str, Field(min_length=1)]


def field_keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def secret_keys(model: type[BaseModel] | None) -> set[str]:
    if model is None:
        return set()
    return {f.alias or name for name, f in model.model_fields.items() if is_secret_annotation(f.annotation)}


def is_secret_annotation(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in get_args(annotation)


def updatable_keys(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items() if field_extra(f).get("updatable")}


def field_extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


# -- parsing ------------------------------------------------------------------------------------


def parse_settings(
    model: type[M], data: Mapping[str, Any], scope: str, *, lenient: bool = False
) -> tuple[M | None, list[str]]:
    """Validate `data` against `model`; returns the instance or ES-worded problems.

    Unknown top-level keys are not reported here: callers collect them across the settings
    objects and report them together, as ES does after every other check has passed.
    """
    known = field_keys(model)
    payload = dict(data) if lenient else {k: v for k, v in data.items() if k in known}
    try:
        return model.model_validate(payload, context={LENIENT: lenient}), []
    except PydanticValidationError as exc:
        return None, [es_message(model, err, scope) for err in exc.errors()]


_JAVA_TYPE = {
    "string": "String",
    "int": "Integer",
    "bool": "Boolean",
    "float": "Double",
    "dict": "Map",
    "model": "Map",
    "list": "List",
    "tuple": "List",
}


def es_message(model: type[BaseModel], err: ErrorDetails, scope: str) -> str:
    """One pydantic error in Elasticsearch's words."""
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    key = loc[-1] if loc else scope
    # The scope of a nested setting is the object holding it, as ES parses nested maps.
    where = loc[-2] if len(loc) > 1 else scope
    value = err.get("input")
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "missing":
        return f"[{where}] does not contain the required setting [{key}]"
    if kind == "extra_forbidden":
        parent_model = _model_at(model, loc[:-1])
        template = parent_model.unknown_nested_key_message if parent_model else SettingsModel.unknown_nested_key_message
        return template.format(parent=where, key=key, value=java_value(value))
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return f"[{where}] Invalid value empty string. [{key}] must be a non-empty string"
    if kind in ("literal_error", "enum"):
        choices = ", ".join(sorted(_choices(model, loc)))
        return f"[{where}] Invalid value [{java_value(value)}] received. [{key}] must be one of [{choices}]"
    if kind == "greater_than" and ctx.get("gt") == 0:
        return f"[{where}] Invalid value [{java_value(value)}]. [{key}] must be a positive integer"
    if kind in ("greater_than_equal", "greater_than"):
        bound = ctx.get("ge", ctx.get("gt"))
        return f"[{where}] Invalid value [{java_value(value)}]. [{key}] must be a greater than or equal to [{bound}]"
    if kind in ("less_than_equal", "less_than"):
        bound = ctx.get("le", ctx.get("lt"))
        return f"[{where}] Invalid value [{java_value(value)}]. [{key}] must be a less than or equal to [{bound}]"
    if kind.startswith("url"):
        return f"[{where}] Invalid url [{java_value(value)}] received for field [{key}]. Error: {err['msg']}"
    java_type = _JAVA_TYPE.get(kind.split("_")[0])
    if java_type is not None and (kind.endswith(("_type", "_parsing")) or kind == "int_from_float"):
        return (
            f"field [{key}] is not of the expected type. "
            f"The value [{java_value(value)}] cannot be converted to a [{java_type}]"
        )
    # Custom errors (PydanticCustomError("es", ...)) and value errors carry ES wording already.
    message = str(err["msg"])
    return message.removeprefix("Value error, ")


def _model_at(model: type[BaseModel], path: list[str]) -> type[SettingsModel] | None:
    current: type[BaseModel] = model
    for name in path:
        field = _field(current, name)
        nested = nested_model(field.annotation) if field else None
        if nested is None:
            return None
        current = nested
    return current if issubclass(current, SettingsModel) else None


def _field(model: type[BaseModel], key: str) -> FieldInfo | None:
    for name, f in model.model_fields.items():
        if key in (name, f.alias):
            return f
    return None


def nested_model(annotation: Any) -> type[BaseModel] | None:
    candidates = get_args(annotation) if _is_union(annotation) else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, BaseModel):
            return c
    return None


def _is_union(annotation: Any) -> bool:
    return get_origin(annotation) in (typing.Union, types.UnionType)


def _choices(model: type[BaseModel], loc: list[str]) -> list[str]:
    parent = _model_at(model, loc[:-1]) if len(loc) > 1 else model
    field = _field(parent, loc[-1]) if parent and loc else None
    if field is None:
        return []
    return [str(c) for c in _literal_values(field.annotation)]


def _literal_values(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return [m.value for m in annotation]
    if _is_union(annotation):
        return [v for a in get_args(annotation) for v in _literal_values(a)]
    return []


# -- rendering ---------------------------------------------------------------------------------


def dump_settings(instance: BaseModel) -> dict[str, Any]:
    """What GET shows: non-secret fields, defaults filled in, nulls left out."""
    return instance.model_dump(mode="json", by_alias=True, exclude_none=True)


def dump_secrets(instance: BaseModel | None) -> dict[str, Any]:
    if instance is None:
        return {}
    out: dict[str, Any] = {}
    for key, value in instance.model_dump(by_alias=True, exclude_none=True).items():
        out[key] = value.get_secret_value() if isinstance(value, SecretStr) else value
    return out


def config_type(annotation: Any) -> str:
    """The `type` of a `_services` configuration entry."""
    args = [a for a in get_args(annotation) if a is not type(None)] if _is_union(annotation) else [annotation]
    base = args[0] if args else annotation
    while get_origin(base) is Annotated:
        base = get_args(base)[0]
    origin = get_origin(base) or base
    if origin is bool:
        return "bool"
    if origin is int:
        return "int"
    if origin in (list, tuple):
        return "list"
    if origin is dict or (isinstance(origin, type) and issubclass(origin, BaseModel)):
        return "map"
    return "str"
