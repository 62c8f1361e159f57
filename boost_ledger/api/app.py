"""The Starlette application: routes, the error envelope for every failure, the middleware."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount

from boost_ledger.api import catalog, order_actions, orders, wallet
from boost_ledger.api.errors import ApiError, method_not_allowed, not_found
from boost_ledger.api.middleware import RequestContext
from boost_ledger.api.runtime import Runtime


def api_routes() -> list[BaseRoute]:
    """Every ``/api/v1`` route, one module per concept."""
    routes: list[BaseRoute] = []
    for module in (wallet, catalog, orders, order_actions):
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


def create_app(
    runtime: Runtime,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    lifespan: Callable[[Starlette], AbstractAsyncContextManager[Any]] | None = None,
) -> Starlette:
    app = Starlette(
        routes=[Mount("/api/v1", routes=api_routes()), *extra_routes],
        exception_handlers={
            ApiError: _api_error,
            HTTPException: _http_error,
        },
        middleware=[Middleware(RequestContext)],
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    return app
