"""The Starlette application: routes, the error envelope for every failure, the middleware."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import structlog
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route, Router

from boost_ledger.api import catalog, docs, health, metrics, openapi, order_actions, orders, wallet
from boost_ledger.api.deadlines import Deadlines
from boost_ledger.api.errors import ApiError, database_unavailable, method_not_allowed, not_found
from boost_ledger.api.middleware import RequestContext
from boost_ledger.api.rate_limit import RateLimiter
from boost_ledger.api.runtime import Runtime
from boost_ledger.database import UNAVAILABLE_ERRORS

log = structlog.get_logger("boost.http")

def api_routes() -> list[BaseRoute]:
    """Every ``/api/v1`` route, one module per concept."""
    routes: list[BaseRoute] = []
    for module in (wallet, catalog, orders, order_actions, openapi):
        routes.extend(module.ROUTES)
    return routes


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 404:
        return not_found().response()
    if error.status_code == 405:
        response = method_not_allowed().response()
        if error.headers:
            response.headers.update(error.headers)
        return response
    return ApiError(error.status_code, "HTTP_ERROR", str(error.detail)).response()


async def _unavailable(request: Request, error: Exception) -> Response:
    log.warning(
        "request.database_unavailable", error_type=type(error).__name__, error=str(error)[:200]
    )
    return database_unavailable().response()


def operations_routes() -> list[BaseRoute]:
    """Outside ``/api/v1`` and without a key: health, readiness, metrics and the docs page."""
    return [
        Route("/healthz", health.healthz, methods=["GET"]),
        Route("/readyz", health.readyz, methods=["GET"]),
        Route("/metrics", metrics.metrics_endpoint, methods=["GET"]),
        *docs.ROUTES,
    ]


def create_app(
    runtime: Runtime,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
) -> Starlette:
    settings = runtime.settings
    handlers: dict[Any, Any] = {ApiError: _api_error, HTTPException: _http_error}
    handlers.update({error: _unavailable for error in UNAVAILABLE_ERRORS})
    # A path with a trailing slash is no route (a JSON 404), not a redirect without a body.
    api = Router(routes=api_routes(), redirect_slashes=False)
    app = Starlette(
        routes=[Mount("/api/v1", app=api), *operations_routes(), *extra_routes],
        exception_handlers=handlers,
        middleware=[
            Middleware(RequestContext, observe=metrics.observe_request),
            Middleware(
                Deadlines,
                request_timeout_s=settings.request_timeout_s,
                body_timeout_s=settings.body_timeout_s,
            ),
        ],
        lifespan=lifespan,
    )
    app.router.redirect_slashes = False
    app.state.runtime = runtime
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst)
    return app
