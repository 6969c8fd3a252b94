"""Perform-inference requests served without walking the router again.

Nearly all of a busy server's requests are `POST /_inference/[<task>/]<id>`. For each of them the
framework matched the path against every route, then built exit stacks and wrappers around the
handler: half of the event loop's time per request (docs/performance.md). That time is GIL time,
which the model threads wait for between their calls.

The router stays the only judge of which route a path belongs to: the first request on a path goes
through it, and when it picked one of the hot handlers, the path and its converted parameters are
remembered. Later requests on that path call the handler directly. Routes never change once the app
is built, so the router would pick the same handler again. The middleware sits inside the ES HTTP
middleware and the gzip wrapper, so authentication, headers, compression and unexpected errors are
the same on both ways; ES errors are rendered here as the app's exception handler renders them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from inferd.api.errors import render_error
from inferd.core.errors import InferdError

Handler = Callable[..., Awaitable[Response]]


class HotRoutes:
    def __init__(self, app: ASGIApp, handlers: Collection[Handler], max_paths: int = 4096) -> None:
        self.app = app
        self.handlers = frozenset(handlers)
        # Paths are user input (inference ids): past `max_paths` the memory starts afresh.
        self.max_paths = max_paths
        self._routed: dict[str, tuple[Handler, dict[str, Any]]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        routed = self._routed.get(path)
        if routed is None:
            await self.app(scope, receive, send)
            # The router records what it chose in the scope it was given.
            handler = scope.get("endpoint")
            if handler in self.handlers:
                if len(self._routed) >= self.max_paths:
                    self._routed.clear()
                self._routed[path] = (handler, dict(scope.get("path_params", {})))
            return
        handler, params = routed
        scope["path_params"] = dict(params)  # the remembered dict stays out of any request's reach
        request = Request(scope, receive)
        try:
            response = await handler(request, **params)
        except InferdError as exc:
            response = render_error(request, exc)
        await response(scope, receive, send)
