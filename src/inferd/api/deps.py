"""What route handlers receive: the application's parts, the caller, and the authorisation check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from inferd.api.compat import PRINCIPAL, REQUEST_INFO
from inferd.auth.api_keys import ApiKeyService
from inferd.auth.authenticator import Authenticator
from inferd.auth.authorizer import Authorizer, RequestInfo
from inferd.auth.principal import Principal
from inferd.auth.privileges import Action
from inferd.auth.roles import Grant
from inferd.auth.security import SecurityService
from inferd.core.dispatch import Dispatcher
from inferd.core.endpoints import EndpointManager
from inferd.services.registry import ServiceRegistry
from inferd.settings import ServerSettings
from inferd.store.base import Store


@dataclass(frozen=True)
class AppState:
    settings: ServerSettings
    store: Store
    services: ServiceRegistry
    endpoints: EndpointManager
    dispatcher: Dispatcher
    authorizer: Authorizer
    authenticator: Authenticator
    security: SecurityService
    api_keys: ApiKeyService
    cluster_uuid: str


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.inferd
    return state


def principal(request: Request) -> Principal:
    caller: Principal = request.scope[PRINCIPAL]
    return caller


def request_info(request: Request) -> RequestInfo:
    info: RequestInfo = request.scope[REQUEST_INFO]
    return info


def authorize(request: Request, action: Action, *, own_keys_would_do: bool | None = None) -> Grant:
    return app_state(request).authorizer.authorize(
        principal(request), action, request_info(request), own_keys_would_do=own_keys_would_do
    )


def authorize_endpoint(request: Request, grant: Grant, action: Action, inference_id: str) -> None:
    app_state(request).authorizer.authorize_endpoint(
        principal(request), grant, action, inference_id, request_info(request)
    )


def require(action: Action) -> Callable[[Request], Awaitable[Grant]]:
    """A dependency that lets the request through only if the caller holds `action`; yields the grant."""

    async def check(request: Request) -> Grant:
        return authorize(request, action)

    return check
