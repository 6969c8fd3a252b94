"""What route handlers receive: the application's parts, the caller, and the authorisation check."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from starlette.requests import Request

from inferd.api.compat import PRINCIPAL
from inferd.auth.authenticator import Principal, authorize
from inferd.auth.privileges import Action
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
    cluster_uuid: str


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.inferd
    return state


def principal(request: Request) -> Principal:
    caller: Principal = request.scope[PRINCIPAL]
    return caller


def require(action: Action) -> Callable[[Request], Awaitable[None]]:
    """A dependency that lets the request through only if the caller holds `action`."""

    async def check(request: Request) -> None:
        authorize(principal(request), action)

    return check
