"""GET / and HEAD /: the cluster-info banner the clients use for info() and ping()."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from starlette.requests import Request
from starlette.responses import Response

from inferd import ES_COMPAT_VERSION, __version__
from inferd.api.deps import app_state, require
from inferd.api.params import check_params
from inferd.api.render import json_response
from inferd.auth.privileges import Action

router = APIRouter()


def cluster_info(request: Request) -> dict[str, Any]:
    state = app_state(request)
    return {
        "name": state.settings.node_name,
        "cluster_name": state.settings.cluster_name,
        "cluster_uuid": state.cluster_uuid,
        "version": {
            "number": ES_COMPAT_VERSION,
            "build_flavor": "default",
            "build_type": "inferd",
            "build_hash": f"inferd-{__version__}",
            "build_date": "2026-11-27T00:00:00.000Z",
            "build_snapshot": False,
            "lucene_version": "10.2.2",
            "minimum_wire_compatibility_version": "8.18.0",
            "minimum_index_compatibility_version": "8.0.0",
        },
        "tagline": "You Know, for Search",
    }


@router.get("/", dependencies=[Depends(require(Action.MAIN))])
async def info(request: Request) -> Response:
    check_params(request)
    # ES pretty-prints this one by default.
    return json_response(request, cluster_info(request), pretty_default=True)


@router.head("/", dependencies=[Depends(require(Action.MAIN))])
async def ping(request: Request) -> Response:
    check_params(request)
    full = json_response(request, cluster_info(request), pretty_default=True)
    # Same status and Content-Length as GET, no body.
    return Response(status_code=200, media_type=full.media_type, headers={"content-length": str(len(full.body))})
