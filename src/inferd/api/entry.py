"""The application class: FastAPI, entered at inferd's own outermost middleware for HTTP requests.

FastAPI puts three middlewares of its own above the user's: a 500 responder, an exception
telemetry hook and a request body limit. inferd needs none of them: `EsHttpMiddleware` renders
every error that escapes before a response starts (the 500 responder could only re-raise after
one has started), FastAPI's telemetry is off, and no framework body limit is set (the bodies are
bounded by `http.max_content_length` as they are read). Yet each of them, with FastAPI's and
Starlette's own `__call__`, is a frame that every request's coroutine chain passes through on every
resumption: about 8 % of the event loop's profile samples under load (docs/performance.md).

So HTTP requests enter at the first of inferd's middlewares, once the framework has built its
stack, and only when every layer above it is one of those known three; any other layer (one that a
newer FastAPI adds, or one added around inferd's own) keeps the whole stack in use.
Lifespan events always take FastAPI's way.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from inferd.api.compat import EsHttpMiddleware

# Class names, not imports: two of them live in FastAPI's private modules.
SKIPPABLE_LAYERS = frozenset({"ServerErrorMiddleware", "ExceptionTelemetryMiddleware", "AppBodyLimitMiddleware"})


def inferd_front(stack: ASGIApp) -> EsHttpMiddleware | None:
    """inferd's outermost middleware in a built stack, if only skippable layers lie above it."""
    layer: Any = stack
    while not isinstance(layer, EsHttpMiddleware):
        if type(layer).__name__ not in SKIPPABLE_LAYERS or getattr(layer, "handler", None) is not None:
            return None  # unknown, or the 500 responder with an application's own handler
        layer = getattr(layer, "app", None)
    return layer


class InferdApp(FastAPI):
    front: ASGIApp | None = None

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        self.front = inferd_front(stack)
        return stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        front = self.front
        if front is None or scope["type"] != "http" or self.root_path:
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self  # what Starlette's own entry sets: request.app
        await front(scope, receive, send)
