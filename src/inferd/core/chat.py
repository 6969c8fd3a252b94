"""The unified (OpenAI-shaped) chat completion request, and ES's unified error format."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError

from inferd.core.errors import IllegalArgument, InferdError, XContentParseError
from inferd.core.json_locations import KeyLocator
from inferd.core.suggest import did_you_mean

PARSER_NAME = "UnifiedCompletionRequest"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ContentPart(_Strict):
    type: str
    text: str | None = None
    image_url: dict[str, Any] | None = None
    file: dict[str, Any] | None = None


class ToolCallFunction(_Strict):
    name: str
    arguments: str


class ToolCall(_Strict):
    id: str
    type: Literal["function"] = "function"
    function: ToolCallFunction


class Message(_Strict):
    role: str
    content: str | list[ContentPart] | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    reasoning: str | None = None
    reasoning_details: list[dict[str, Any]] | None = None


class FunctionSpec(_Strict):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionSpec


class ToolChoiceFunction(_Strict):
    name: str


class ToolChoiceObject(_Strict):
    type: Literal["function"]
    function: ToolChoiceFunction


class ChatCompletionRequest(_Strict):
    messages: list[Message] = Field(min_length=1)
    model: str | None = None
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    tool_choice: Literal["auto", "none", "required"] | ToolChoiceObject | None = None
    tools: list[Tool] | None = None
    reasoning: dict[str, Any] | None = None


def parse_chat_request(body: dict[str, Any], raw: bytes | str = b"") -> ChatCompletionRequest:
    """ES's UnifiedCompletionRequest parser: required fields, unknown fields and types, with its messages."""
    locate = KeyLocator(raw)
    for name in body:
        if name not in ChatCompletionRequest.model_fields:
            suggestion = did_you_mean(name, ChatCompletionRequest.model_fields, arrow=False)
            raise XContentParseError(f"{locate.key(name)} [{PARSER_NAME}] unknown field [{name}]{suggestion}")
    if body.get("messages") is None:
        raise IllegalArgument("Required [messages]")
    try:
        return ChatCompletionRequest.model_validate(body)
    except PydanticValidationError as exc:
        err = exc.errors()[0]
        top = str(err["loc"][0]) if err["loc"] else "messages"
        where = ".".join(str(p) for p in err["loc"])
        raise XContentParseError(
            f"{locate.value(top)} [{PARSER_NAME}] failed to parse field [{top}]",
            caused_by=IllegalArgument(f"[{where}] {err['msg']}"),
        ) from None


def unified_error(exc: InferdError) -> dict[str, Any]:
    """ES's unified chat completion error: OpenAI-like, with ES's exception type."""
    try:
        code = HTTPStatus(exc.status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = str(exc.status)
    return {"error": {"code": code, "message": exc.reason, "type": exc.es_type}}
