"""PUT / GET / DELETE / _update under /_inference: parse, call the core, render."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from inferd.api.body import read_json_object
from inferd.api.deps import app_state, authorize_endpoint, require
from inferd.api.params import bool_param, check_params, time_param
from inferd.api.render import json_response
from inferd.auth.privileges import Action
from inferd.auth.roles import Grant
from inferd.core.endpoints import ALL_IDS
from inferd.core.tasks import TaskType

router = APIRouter()

ID = "{inference_id:seg}"
TASK = "{task_type:seg}"


# -- _update (declared before the two-segment routes so ".../_update" is not read as an id) --------


async def _update(request: Request, grant: Grant, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    authorize_endpoint(request, grant, Action.UPDATE_ENDPOINT, inference_id)
    state = app_state(request)
    body = await read_json_object(request, state.settings.max_content_length)
    time_param(request, default=None)  # validated; updates do not wait on anything slow yet
    config = await state.endpoints.update(inference_id, url_task, body)
    return json_response(request, config.to_dict())


@router.api_route(f"/_inference/{ID}/_update", methods=["PUT", "POST"])
async def update_endpoint(
    request: Request, inference_id: str, grant: Annotated[Grant, Depends(require(Action.UPDATE_ENDPOINT))]
) -> Response:
    return await _update(request, grant, None, inference_id)


@router.api_route(f"/_inference/{TASK}/{ID}/_update", methods=["PUT", "POST"])
async def update_typed_endpoint(
    request: Request,
    task_type: str,
    inference_id: str,
    grant: Annotated[Grant, Depends(require(Action.UPDATE_ENDPOINT))],
) -> Response:
    return await _update(request, grant, task_type, inference_id)


# -- GET -----------------------------------------------------------------------------------------


async def _get(request: Request, grant: Grant, task_type: str | None, inference_id: str) -> Response:
    check_params(request)
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    if inference_id not in ALL_IDS:
        authorize_endpoint(request, grant, Action.GET_ENDPOINTS, inference_id)
    endpoints = await app_state(request).endpoints.get(inference_id, url_task, visible=grant.scope.allows)
    return json_response(request, {"endpoints": [c.to_dict() for c in endpoints]})


@router.get("/_inference")
async def get_all_endpoints(
    request: Request, grant: Annotated[Grant, Depends(require(Action.GET_ENDPOINTS))]
) -> Response:
    return await _get(request, grant, None, "_all")


@router.get(f"/_inference/{ID}")
async def get_endpoint(
    request: Request, inference_id: str, grant: Annotated[Grant, Depends(require(Action.GET_ENDPOINTS))]
) -> Response:
    return await _get(request, grant, None, inference_id)


@router.get(f"/_inference/{TASK}/{ID}")
async def get_typed_endpoint(
    request: Request, task_type: str, inference_id: str, grant: Annotated[Grant, Depends(require(Action.GET_ENDPOINTS))]
) -> Response:
    return await _get(request, grant, task_type, inference_id)


# -- PUT -----------------------------------------------------------------------------------------


async def _put(request: Request, grant: Grant, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    authorize_endpoint(request, grant, Action.PUT_ENDPOINT, inference_id)
    state = app_state(request)
    body = await read_json_object(request, state.settings.max_content_length)
    timeout = time_param(request, default=None)
    config = await state.endpoints.create(inference_id, url_task, body, timeout)
    return json_response(request, config.to_dict())


@router.put(f"/_inference/{ID}")
async def put_endpoint(
    request: Request, inference_id: str, grant: Annotated[Grant, Depends(require(Action.PUT_ENDPOINT))]
) -> Response:
    return await _put(request, grant, None, inference_id)


@router.put(f"/_inference/{TASK}/{ID}")
async def put_typed_endpoint(
    request: Request, task_type: str, inference_id: str, grant: Annotated[Grant, Depends(require(Action.PUT_ENDPOINT))]
) -> Response:
    return await _put(request, grant, task_type, inference_id)


# -- DELETE --------------------------------------------------------------------------------------


async def _delete(request: Request, grant: Grant, task_type: str | None, inference_id: str) -> Response:
    check_params(request, ("dry_run", "force", "timeout", "master_timeout"))
    url_task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    authorize_endpoint(request, grant, Action.DELETE_ENDPOINT, inference_id)
    dry_run = bool_param(request, "dry_run")
    force = bool_param(request, "force")
    body = await app_state(request).endpoints.delete(inference_id, url_task, dry_run=dry_run, force=force)
    return json_response(request, body)


@router.delete(f"/_inference/{ID}")
async def delete_endpoint(
    request: Request, inference_id: str, grant: Annotated[Grant, Depends(require(Action.DELETE_ENDPOINT))]
) -> Response:
    return await _delete(request, grant, None, inference_id)


@router.delete(f"/_inference/{TASK}/{ID}")
async def delete_typed_endpoint(
    request: Request,
    task_type: str,
    inference_id: str,
    grant: Annotated[Grant, Depends(require(Action.DELETE_ENDPOINT))],
) -> Response:
    return await _delete(request, grant, task_type, inference_id)
