"""Settings models: strict vs lenient parsing, ES-worded errors, derived _services and updatable sets."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal

import pytest
from pydantic import Field, SecretStr

from inferd.core.endpoint import EndpointConfig
from inferd.core.java_format import java_map
from inferd.core.tasks import TaskType
from inferd.services.schema import (
    SettingsModel,
    dump_secrets,
    dump_settings,
    parse_settings,
    secret_keys,
    updatable_keys,
)


class Nested(SettingsModel):
    unknown_nested_key_message: ClassVar[str] = "[{parent}] does not allow the setting [{key}]"
    enabled: bool = False
    count: Annotated[int, Field(gt=0)] = 1


class Example(SettingsModel):
    model_id: Annotated[str, Field(min_length=1)]
    dims: Annotated[int | None, Field(gt=0, json_schema_extra={"updatable": True})] = None
    size: Annotated[int, Field(ge=10, le=300)] = 100
    kind: Literal["float", "byte", "bit"] = "float"
    ratio: float = 1.0
    nested: Nested | None = None
    api_key: SecretStr | None = None


def problems(data: dict[str, Any]) -> list[str]:
    instance, found = parse_settings(Example, data, "service_settings")
    assert instance is None
    return found


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({}, "[service_settings] does not contain the required setting [model_id]"),
        ({"model_id": ""}, "[service_settings] Invalid value empty string. [model_id] must be a non-empty string"),
        ({"model_id": "m", "dims": 0}, "[service_settings] Invalid value [0]. [dims] must be a positive integer"),
        (
            {"model_id": "m", "dims": "5"},
            "field [dims] is not of the expected type. The value [5] cannot be converted to a [Integer]",
        ),
        (
            {"model_id": "m", "dims": True},
            "field [dims] is not of the expected type. The value [true] cannot be converted to a [Integer]",
        ),
        (
            {"model_id": "m", "dims": 1.5},
            "field [dims] is not of the expected type. The value [1.5] cannot be converted to a [Integer]",
        ),
        (
            {"model_id": 3},
            "field [model_id] is not of the expected type. The value [3] cannot be converted to a [String]",
        ),
        (
            {"model_id": "m", "size": 5},
            "[service_settings] Invalid value [5]. [size] must be a greater than or equal to [10]",
        ),
        (
            {"model_id": "m", "size": 500},
            "[service_settings] Invalid value [500]. [size] must be a less than or equal to [300]",
        ),
        (
            {"model_id": "m", "kind": "int4"},
            "[service_settings] Invalid value [int4] received. [kind] must be one of [bit, byte, float]",
        ),
        (
            {"model_id": "m", "ratio": "x"},
            "field [ratio] is not of the expected type. The value [x] cannot be converted to a [Double]",
        ),
        ({"model_id": "m", "nested": {"foo": 1}}, "[nested] does not allow the setting [foo]"),
        ({"model_id": "m", "nested": {"count": 0}}, "[nested] Invalid value [0]. [count] must be a positive integer"),
        (
            {"model_id": "m", "nested": 5},
            "field [nested] is not of the expected type. The value [5] cannot be converted to a [Map]",
        ),
    ],
)
def test_pydantic_errors_read_like_elasticsearch(data: dict[str, Any], expected: str) -> None:
    assert problems(data) == [expected]


def test_all_problems_are_collected() -> None:
    assert problems({"dims": -1, "kind": "x"}) == [
        "[service_settings] does not contain the required setting [model_id]",
        "[service_settings] Invalid value [-1]. [dims] must be a positive integer",
        "[service_settings] Invalid value [x] received. [kind] must be one of [bit, byte, float]",
    ]


def test_null_counts_as_absent() -> None:
    instance, found = parse_settings(Example, {"model_id": "m", "dims": None}, "service_settings")
    assert found == []
    assert instance is not None and instance.dims is None


def test_strict_parse_leaves_unknown_top_level_keys_to_the_caller() -> None:
    instance, found = parse_settings(Example, {"model_id": "m", "unknown": 1}, "service_settings")
    assert found == [] and instance is not None


def test_lenient_parse_drops_unknown_keys_at_every_level(caplog: pytest.LogCaptureFixture) -> None:
    stored = {"model_id": "m", "retired_setting": 1, "nested": {"enabled": True, "old": 2}}
    instance, found = parse_settings(Example, stored, "service_settings", lenient=True)
    assert found == []
    assert instance is not None and instance.nested == Nested(enabled=True)
    assert "retired_setting" in caplog.text and "old" in caplog.text


def test_lenient_parse_still_refuses_wrong_types() -> None:
    instance, found = parse_settings(Example, {"model_id": 7}, "service_settings", lenient=True)
    assert instance is None and found


def test_secrets_are_found_by_type_and_kept_out_of_the_rendered_settings() -> None:
    assert secret_keys(Example) == {"api_key"}
    instance, _ = parse_settings(Example, {"model_id": "m", "api_key": "sk-1"}, "service_settings")
    assert instance is not None
    assert "sk-1" not in repr(instance)
    assert dump_secrets(instance)["api_key"] == "sk-1"


def test_defaults_are_echoed_and_nulls_left_out() -> None:
    instance, _ = parse_settings(Example, {"model_id": "m"}, "service_settings")
    assert instance is not None
    assert dump_settings(instance) == {"model_id": "m", "size": 100, "kind": "float", "ratio": 1.0}


def test_updatable_keys_come_from_field_metadata() -> None:
    assert updatable_keys(Example) == {"dims"}


def test_java_map_formatting() -> None:
    assert java_map({"a": 1, "b": {"c": True, "d": None}, "e": [1, "x"]}) == "{a=1, b={c=true, d=null}, e=[1, x]}"


def test_endpoint_info_field_order_and_empty_task_settings() -> None:
    config = EndpointConfig("x", TaskType.RERANK, "svc", {"a": 1})
    assert list(config.to_dict()) == ["inference_id", "task_type", "service", "service_settings"]
    config = EndpointConfig("x", TaskType.TEXT_EMBEDDING, "svc", {"a": 1}, {"t": 1}, {"strategy": "none"})
    assert list(config.to_dict()) == [
        "inference_id",
        "task_type",
        "service",
        "service_settings",
        "task_settings",
        "chunking_settings",
    ]
