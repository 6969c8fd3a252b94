"""The perform-inference request: parsed and validated exactly as ES's InferenceAction.Request."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from inferd.core.errors import ActionRequestValidationError, IllegalArgument, XContentParseError
from inferd.core.json_locations import KeyLocator, token_name
from inferd.core.suggest import did_you_mean
from inferd.core.tasks import InputType, TaskType

# The name ES's object parser reports in x_content_parse_exception reasons (8.18+).
PARSER_NAME = "cluster:internal/xpack/inference"
FIELDS = ("input", "input_type", "query", "task_settings", "return_documents", "top_n", "timeout")


@dataclass(frozen=True)
class InferenceRequest:
    input: list[str]
    query: str | None = None
    input_type: InputType | None = None
    task_settings: dict[str, Any] = field(default_factory=dict)
    return_documents: bool | None = None
    top_n: int | None = None


def _scalar_text(value: Any) -> str | None:
    """ES reads numbers and booleans where it expects text (Jackson's text())."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


class _Parser:
    def __init__(self, body: dict[str, Any], locate: KeyLocator) -> None:
        self.body = body
        self.locate = locate

    def type_error(self, name: str) -> XContentParseError:
        value = self.body[name]
        return XContentParseError(
            f"{self.locate.value(name)} [{PARSER_NAME}] {name} doesn't support values of type: {token_name(value)}"
        )

    def field_error(self, name: str, cause: str) -> XContentParseError:
        return XContentParseError(
            f"{self.locate.value(name)} [{PARSER_NAME}] failed to parse field [{name}]",
            caused_by=IllegalArgument(cause),
        )

    def value_of(self, name: str) -> Any:
        """The field's value; an explicit null is refused, as ES's object parser does."""
        value = self.body.get(name)
        if value is None and name in self.body:
            raise self.type_error(name)
        return value

    def string(self, name: str) -> str | None:
        value = self.value_of(name)
        if value is None or isinstance(value, str):
            return value
        raise self.type_error(name)

    def string_array(self, name: str) -> list[str] | None:
        value = self.value_of(name)
        if value is None:
            return None
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.type_error(name)
        out = []
        for item in value:
            text = _scalar_text(item)
            if text is None:
                raise self.field_error(name, f"[{name}] must be an array of strings")
            out.append(text)
        return out

    def boolean(self, name: str) -> bool | None:
        value = self.value_of(name)
        if value is None or isinstance(value, bool):
            return bool(value) if value is not None else None
        if value in ("true", "false"):
            return bool(value == "true")
        if isinstance(value, str):
            raise self.field_error(name, f"Failed to parse value [{value}] as only [true] or [false] are allowed.")
        raise self.type_error(name)

    def integer(self, name: str) -> int | None:
        value = self.value_of(name)
        if value is None:
            return None
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                raise self.field_error(name, f'For input string: "{value}"') from None
        raise self.type_error(name)


def parse_inference_body(
    body: dict[str, Any],
    task_type: TaskType,
    *,
    raw: bytes | str = b"",
    parse_timeout: Callable[[str, str], float | None],
) -> InferenceRequest:
    """Strict parse (unknown fields rejected), then ES's validation order; the first failure wins."""
    locate = KeyLocator(raw)
    for name in body:
        if name not in FIELDS:
            raise XContentParseError(
                f"{locate.key(name)} [{PARSER_NAME}] unknown field [{name}]{did_you_mean(name, FIELDS, arrow=False)}"
            )
    p = _Parser(body, locate)
    inputs = p.string_array("input")
    query = p.string("query")
    raw_input_type = p.string("input_type")
    input_type = _input_type(p, raw_input_type) if raw_input_type is not None else None
    task_settings = p.value_of("task_settings")
    if task_settings is not None and not isinstance(task_settings, dict):
        raise p.type_error("task_settings")
    return_documents = p.boolean("return_documents")
    top_n = p.integer("top_n")
    timeout = p.string("timeout")
    if timeout is not None:
        # Validated as ES does; the query parameter (or its default) is what applies.
        try:
            parse_timeout("timeout", timeout)
        except IllegalArgument as exc:
            raise p.field_error("timeout", exc.reason) from None

    problem = first_problem(task_type, inputs, query, input_type, return_documents, top_n)
    if problem:
        raise ActionRequestValidationError([problem])
    assert inputs is not None
    return InferenceRequest(
        input=inputs,
        query=query,
        input_type=input_type,
        task_settings=task_settings or {},
        return_documents=return_documents,
        top_n=top_n,
    )


def _input_type(p: _Parser, raw: str) -> InputType | None:
    try:
        parsed = InputType(raw.strip().lower())
    except ValueError:
        raise p.field_error(
            "input_type", f"No enum constant org.elasticsearch.inference.InputType.{raw.strip().upper()}"
        ) from None
    if parsed.is_internal:
        raise p.field_error("input_type", f"Unrecognized input_type [{raw}]")
    # "unspecified" is the same as not giving one.
    return None if parsed is InputType.UNSPECIFIED else parsed


def first_problem(
    task_type: TaskType,
    inputs: list[str] | None,
    query: str | None,
    input_type: InputType | None,
    return_documents: bool | None,
    top_n: int | None,
) -> str | None:
    """ES's request validation, in its order; checked again once the endpoint's task type is known."""
    if inputs is None:
        return "Field [input] cannot be null"
    if not inputs:
        return "Field [input] cannot be an empty array"
    if task_type is TaskType.RERANK:
        if query is None:
            return "Field [query] cannot be null for task type [rerank]"
        if not query:
            return "Field [query] cannot be empty for task type [rerank]"
        if top_n is not None and top_n < 1:
            return "Field [top_n] must be greater than or equal to 1"
    elif task_type is not TaskType.ANY:
        if return_documents is not None:
            return f"Field [return_documents] cannot be specified for task type [{task_type}]"
        if top_n is not None:
            return f"Field [top_n] cannot be specified for task type [{task_type}]"
    if input_type is not None and task_type not in (TaskType.ANY, TaskType.TEXT_EMBEDDING):
        return f"Field [input_type] cannot be specified for task type [{task_type}]"
    return None
