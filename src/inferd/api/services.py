"""GET /_inference/_services[/{task_type}]: generated from the service settings declarations."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from inferd.api.deps import app_state, require
from inferd.api.params import check_params
from inferd.api.render import json_response
from inferd.auth.privileges import Action
from inferd.core.tasks import TaskType
from inferd.services.descriptors import services_catalog

router = APIRouter()


async def _services(request: Request, task_type: str | None) -> Response:
    check_params(request)
    task = TaskType.parse(task_type) if task_type is not None else TaskType.ANY
    return json_response(request, services_catalog(app_state(request).services.all(), task))


@router.get("/_inference/_services", dependencies=[Depends(require(Action.GET_SERVICES))])
async def get_services(request: Request) -> Response:
    return await _services(request, None)


@router.get("/_inference/_services/{task_type:seg}", dependencies=[Depends(require(Action.GET_SERVICES))])
async def get_services_for_task(request: Request, task_type: str) -> Response:
    return await _services(request, task_type)
