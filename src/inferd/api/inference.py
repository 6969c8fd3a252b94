"""Perform inference, `_stream` (SSE) and chat completion under /_inference."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from inferd.api.body import json_object, read_raw_body
from inferd.api.deps import app_state, authorize, authorize_endpoint, require
from inferd.api.errors import error_body
from inferd.api.params import check_params, parse_time_value, time_param
from inferd.api.render import json_response
from inferd.auth.privileges import Action
from inferd.auth.roles import Grant
from inferd.core.chat import parse_chat_request, unified_error
from inferd.core.errors import InferdError, ParseError
from inferd.core.inference import PARSER_NAME, InferenceRequest, parse_inference_body
from inferd.core.tasks import TaskType

log = logging.getLogger(__name__)
router = APIRouter()

ID = "{inference_id:seg}"
TASK = "{task_type:seg}"
BOM = "\ufeff".encode()
# Set as a header, not a media type: Starlette would add "; charset=utf-8", which ES does not send.
SSE_HEADERS = {"content-type": "text/event-stream"}


def sse_event(event: str, data: bytes) -> bytes:
    """One ES server-sent event: a BOM before every event, then `event:` and a one-line `data:`."""
    return BOM + b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


DONE_EVENT = sse_event("message", b"[DONE]")


async def _read_body(request: Request) -> tuple[dict[str, Any], bytes]:
    raw = await read_raw_body(request, app_state(request).settings.max_content_length)
    return json_object(raw, parser=PARSER_NAME), raw


async def _parse(request: Request, task_type: str | None) -> tuple[TaskType, InferenceRequest, float | None]:
    check_params(request, ("timeout",))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    body, raw = await _read_body(request)
    timeout = time_param(request, default=None)
    parsed = parse_inference_body(body, url_task, raw=raw, parse_timeout=parse_time_value)
    return url_task, parsed, timeout


# -- streaming (declared before the two-segment POST route) --------------------------------------


async def _sse_response(
    chunks: AsyncIterator[dict[str, Any]], render_error: Callable[[InferdError], dict[str, Any]]
) -> Response:
    """Pull the first chunk before answering, so an early failure still gets its own status."""
    try:
        first = await anext(chunks)
    except StopAsyncIteration:
        first = None
    except InferdError as exc:
        return _sse_error_response(exc, render_error)

    async def body() -> AsyncIterator[bytes]:
        try:
            if first is not None:
                yield sse_event("message", orjson.dumps(first))
            async for chunk in chunks:
                yield sse_event("message", orjson.dumps(chunk))
            yield DONE_EVENT
        except InferdError as exc:
            yield sse_event("error", orjson.dumps(render_error(exc)))
        except Exception as exc:
            log.exception("stream failed")
            yield sse_event("error", orjson.dumps(render_error(InferdError(str(exc) or type(exc).__name__))))
        finally:
            # Closing the generator cancels the upstream call when the client goes away.
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()

    return StreamingResponse(body(), headers=SSE_HEADERS)


def _sse_error_response(exc: InferdError, render_error: Callable[[InferdError], dict[str, Any]]) -> Response:
    return Response(sse_event("error", orjson.dumps(render_error(exc))), status_code=exc.status, headers=SSE_HEADERS)


async def _stream(request: Request, grant: Grant, task_type: str | None, inference_id: str) -> Response:
    # What ES's REST handler checks itself answers as plain JSON; everything after (the body's fields,
    # the endpoint) is checked by the transport action, whose failures reach the client as SSE error events.
    check_params(request, ("timeout",))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    authorize_endpoint(request, grant, Action.STREAM, inference_id)
    raw = await read_raw_body(request, app_state(request).settings.max_content_length)
    if not raw.strip():
        raise ParseError("request body is required")
    time_param(request, default=None)
    dispatcher = app_state(request).dispatcher
    is_chat = url_task is TaskType.CHAT_COMPLETION or (
        url_task is TaskType.ANY and await _is_chat_endpoint(request, inference_id)
    )
    render_failure = unified_error if is_chat else error_body
    try:
        if is_chat:
            chat = parse_chat_request(json_object(raw), raw)
            service, endpoint = await dispatcher.resolve_chat(inference_id, url_task)
            chunks = service.stream_chat(endpoint, chat.model_dump(exclude_none=True))
        else:
            body = json_object(raw, parser=PARSER_NAME)
            parsed = parse_inference_body(body, url_task, raw=raw, parse_timeout=parse_time_value)
            chunks = await dispatcher.stream(inference_id, url_task, parsed)
    except InferdError as exc:
        return _sse_error_response(exc, render_failure)
    return await _sse_response(chunks, render_failure)


async def _is_chat_endpoint(request: Request, inference_id: str) -> bool:
    try:
        config = await app_state(request).endpoints.find(inference_id)
    except InferdError:
        return False
    return config.task_type is TaskType.CHAT_COMPLETION


@router.post(f"/_inference/{ID}/_stream")
async def stream_inference(
    request: Request, inference_id: str, grant: Annotated[Grant, Depends(require(Action.STREAM))]
) -> Response:
    return await _stream(request, grant, None, inference_id)


@router.post(f"/_inference/{TASK}/{ID}/_stream")
async def stream_typed_inference(
    request: Request, task_type: str, inference_id: str, grant: Annotated[Grant, Depends(require(Action.STREAM))]
) -> Response:
    return await _stream(request, grant, task_type, inference_id)


# -- perform inference ---------------------------------------------------------------------------


# The hottest routes check the privilege inline rather than through Depends(require(...)): FastAPI
# recomputes every dependency's cache key on each request, which was 9 % of the event loop's time.


async def _infer(request: Request, task_type: str | None, inference_id: str) -> Response:
    grant = authorize(request, Action.INFER)
    authorize_endpoint(request, grant, Action.INFER, inference_id)
    url_task, parsed, timeout = await _parse(request, task_type)
    result = await app_state(request).dispatcher.infer(inference_id, url_task, parsed, timeout)
    return json_response(request, result)


@router.post(f"/_inference/{ID}")
async def infer(request: Request, inference_id: str) -> Response:
    return await _infer(request, None, inference_id)


@router.post(f"/_inference/{TASK}/{ID}")
async def infer_typed(request: Request, task_type: str, inference_id: str) -> Response:
    return await _infer(request, task_type, inference_id)


# Handlers that `HotRoutes` may call directly, once the router has chosen them for a path: each takes
# the request and its path parameters, and has no dependencies for the framework to resolve.
HOT_HANDLERS = (infer, infer_typed)
