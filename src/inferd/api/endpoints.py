"""PUT / GET / DELETE / _update under /_inference: parse, call the core, render."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from inferd.api.body import read_json_object
from inferd.api.deps import app_state, require
from inferd.api.params import bool_param, check_params, time_param
from inferd.api.render import json_response
from inferd.auth.privileges import Action
from inferd.core.tasks import TaskType

router = APIRouter()

ID = "{inference_id:seg}"
TASK = "{task_type:seg}"


# -- _update (declared before the two-segment routes so ".../_update" is not read as an id) --------


async def _update(request: Request, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    state = app_state(request)
    body = await read_json_object(request, state.settings.max_content_length)
    time_param(request, default=None)  # validated; updates do not wait on anything slow yet
    config = await state.endpoints.update(inference_id, url_task, body)
    return json_response(request, config.to_dict())


@router.api_route(
    f"/_inference/{ID}/_update", methods=["PUT", "POST"], dependencies=[Depends(require(Action.UPDATE_ENDPOINT))]
)
async def update_endpoint(request: Request, inference_id: str) -> Response:
    return await _update(request, None, inference_id)


@router.api_route(
    f"/_inference/{TASK}/{ID}/_update", methods=["PUT", "POST"], dependencies=[Depends(require(Action.UPDATE_ENDPOINT))]
)
async def update_typed_endpoint(request: Request, task_type: str, inference_id: str) -> Response:
    return await _update(request, task_type, inference_id)


# -- GET -----------------------------------------------------------------------------------------


async def _get(request: Request, task_type: str | None, inference_id: str) -> Response:
    check_params(request)
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    endpoints = await app_state(request).endpoints.get(inference_id, url_task)
    return json_response(request, {"endpoints": [c.to_dict() for c in endpoints]})


@router.get("/_inference", dependencies=[Depends(require(Action.GET_ENDPOINTS))])
async def get_all_endpoints(request: Request) -> Response:
    return await _get(request, None, "_all")


@router.get(f"/_inference/{ID}", dependencies=[Depends(require(Action.GET_ENDPOINTS))])
async def get_endpoint(request: Request, inference_id: str) -> Response:
    return await _get(request, None, inference_id)


@router.get(f"/_inference/{TASK}/{ID}", dependencies=[Depends(require(Action.GET_ENDPOINTS))])
async def get_typed_endpoint(request: Request, task_type: str, inference_id: str) -> Response:
    return await _get(request, task_type, inference_id)


# -- PUT -----------------------------------------------------------------------------------------


async def _put(request: Request, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    state = app_state(request)
    body = await read_json_object(request, state.settings.max_content_length)
    timeout = time_param(request, default=None)
    config = await state.endpoints.create(inference_id, url_task, body, timeout)
    return json_response(request, config.to_dict())


@router.put(f"/_inference/{ID}", dependencies=[Depends(require(Action.PUT_ENDPOINT))])
async def put_endpoint(request: Request, inference_id: str) -> Response:
    return await _put(request, None, inference_id)


@router.put(f"/_inference/{TASK}/{ID}", dependencies=[Depends(require(Action.PUT_ENDPOINT))])
async def put_typed_endpoint(request: Request, task_type: str, inference_id: str) -> Response:
    return await _put(request, task_type, inference_id)


# -- DELETE --------------------------------------------------------------------------------------


async def _delete(request: Request, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("dry_run", "force", "timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    dry_run = bool_param(request, "dry_run")
    force = bool_param(request, "force")
    body = await app_state(request).endpoints.delete(inference_id, url_task, dry_run=dry_run, force=force)
    return json_response(request, body)


@router.delete(f"/_inference/{ID}", dependencies=[Depends(require(Action.DELETE_ENDPOINT))])
async def delete_endpoint(request: Request, inference_id: str) -> Response:
    return await _delete(request, None, inference_id)


@router.delete(f"/_inference/{TASK}/{ID}", dependencies=[Depends(require(Action.DELETE_ENDPOINT))])
async def delete_typed_endpoint(request: Request, task_type: str, inference_id: str) -> Response:
    return await _delete(request, task_type, inference_id)
