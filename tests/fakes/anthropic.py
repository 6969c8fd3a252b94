"""A fake Anthropic Messages API: POST /v1/messages, JSON and SSE, with Anthropic's headers, bodies and errors.

Answers are derived from the last user turn: its text upper-cased. A turn that names a tool the request
offers (with `tool_choice` any/tool) gets a `tool_use` answer; a `tool_result` turn is answered "RESULT: <text>".
In streams, the word SLOW slows every delta, BREAK sends an `overloaded_error` event and LIMIT a
`rate_limit_error` event.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.harness import FakeProvider

API_KEY = "sk-ant-test-key"
VERSION = "2023-06-01"
MESSAGE_ID = "msg_01FakeAnthropic"
TOOL_USE_ID = "toolu_01FakeTool"
INPUT_TOKENS = 7


def anthropic_error(status: int, error_type: str, message: str) -> JSONResponse:
    body = {"type": "error", "error": {"type": error_type, "message": message}, "request_id": "req_01Fake"}
    return JSONResponse(body, status_code=status)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return " ".join(str(b.get("text", "")) for b in content or [] if isinstance(b, dict) and b.get("type") == "text")


def _problem(body: Any) -> str | None:
    """What Anthropic's request validation reports first, if anything."""
    if not isinstance(body, dict):
        return "Input should be a valid dictionary"
    for key in ("model", "messages", "max_tokens"):
        if key not in body:
            return f"{key}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: Input should be greater than or equal to 1"
    for i, message in enumerate(body["messages"]):
        if message.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if "content" not in message:
            return f"messages.{i}.content: Field required"
    for i, tool in enumerate(body.get("tools") or []):
        if "name" not in tool or (tool.get("input_schema") or {}).get("type") != "object":
            return (
                f"tools.{i}.input_schema: Input tag 'None' found using 'type' does not match any of the expected tags"
            )
    choice = body.get("tool_choice")
    if choice is not None and choice.get("type") not in ("auto", "any", "tool", "none"):
        return "tool_choice: Input tag found using 'type' does not match any of the expected tags"
    if not isinstance(body.get("system", ""), str | list):
        return "system: Input should be a valid string"
    return None


class FakeAnthropic(FakeProvider):
    def __init__(self, api_key: str = API_KEY) -> None:
        super().__init__()
        self.api_key = api_key
        self.app.add_route("/v1/messages", self.messages, methods=["POST"])

    async def messages(self, request: Request) -> Response:
        body = (await self.record(request)).body
        key = request.headers.get("x-api-key")
        if key is None:
            return anthropic_error(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return anthropic_error(401, "authentication_error", "invalid x-api-key")
        if (scripted := await self.scripted()) is not None:
            return scripted
        if request.headers.get("anthropic-version") is None:
            return anthropic_error(400, "invalid_request_error", "anthropic-version: header is required")
        if (problem := _problem(body)) is not None:
            return anthropic_error(400, "invalid_request_error", problem)
        blocks = self.answer(body)
        if body.get("stream"):
            return StreamingResponse(self._stream(body, blocks), media_type="text/event-stream")
        stop = "tool_use" if any(b["type"] == "tool_use" for b in blocks) else "end_turn"
        return JSONResponse(
            {
                "id": MESSAGE_ID,
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": blocks,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": sum(len(_text([b]).split()) for b in blocks)},
            }
        )

    def answer(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        last = body["messages"][-1]
        content = last["content"]
        if isinstance(content, list) and content and content[0].get("type") == "tool_result":
            return [{"type": "text", "text": "RESULT: " + _text(content[0].get("content"))}]
        choice = body.get("tool_choice") or {}
        if body.get("tools") and choice.get("type") in ("any", "tool"):
            name = choice.get("name") or body["tools"][0]["name"]
            text = {"type": "text", "text": "Let me check."}
            return [text, {"type": "tool_use", "id": TOOL_USE_ID, "name": name, "input": {"city": _text(content)}}]
        return [{"type": "text", "text": _text(content).upper()}]

    @staticmethod
    def event(name: str, data: dict[str, Any]) -> bytes:
        return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()

    async def _stream(self, body: dict[str, Any], blocks: list[dict[str, Any]]) -> AsyncIterator[bytes]:
        event = self.event
        message = {
            "id": MESSAGE_ID,
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
        }
        try:
            yield event("message_start", {"type": "message_start", "message": message})
            yield event("ping", {"type": "ping"})
            for index, block in enumerate(blocks):
                async for frame in self._block(index, block):
                    yield frame
                    if frame.startswith(b"event: error"):
                        return  # Anthropic ends the stream after an error event
            stop = "tool_use" if blocks[-1]["type"] == "tool_use" else "end_turn"
            delta = {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}}
            yield event("message_delta", delta | {"usage": {"output_tokens": 12}})
            yield event("message_stop", {"type": "message_stop"})
        except asyncio.CancelledError:
            self.stream_cancelled.set()
            raise

    async def _block(self, index: int, block: dict[str, Any]) -> AsyncIterator[bytes]:
        event = self.event
        if block["type"] == "tool_use":
            start = {**block, "input": {}}
            yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            arguments = json.dumps(block["input"])
            for part in (arguments[:5], arguments[5:]):
                delta = {"type": "input_json_delta", "partial_json": part}
                yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        else:
            start = {"type": "text", "text": ""}
            yield event("content_block_start", {"type": "content_block_start", "index": index, "content_block": start})
            text = block["text"]
            for i, word in enumerate(text.split(" ")):
                if "SLOW" in text:
                    await asyncio.sleep(0.2)
                if word in ("BREAK", "LIMIT"):
                    kind, reason = (
                        ("overloaded_error", "Overloaded") if word == "BREAK" else ("rate_limit_error", "Slow down")
                    )
                    yield event("error", {"type": "error", "error": {"type": kind, "message": reason}})
                    return
                delta = {"type": "text_delta", "text": (" " if i else "") + word}
                yield event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
        yield event("content_block_stop", {"type": "content_block_stop", "index": index})
