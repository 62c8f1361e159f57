"""Catalog endpoints (ability ``boosting:read``): categories, services, one service."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.auth import authenticate
from boost_ledger.api.errors import ApiError
from boost_ledger.api.http import json_response, one_query_value
from boost_ledger.api.runtime import runtime_of
from boost_ledger.ledger.catalog import usable_service_id
from boost_ledger.ledger.money import format_kobo

MAX_SERVICES = 5000
MAX_CATEGORY_LENGTH = 200


class CategoryView(msgspec.Struct, frozen=True):
    name: str


class ServiceView(msgspec.Struct, frozen=True, kw_only=True):
    service_id: str
    service_name: str
    category: str
    type: str
    rate_per_1000: str
    currency: str
    min: int
    max: int
    refill: bool
    cancel: bool


_SERVICE_COLUMNS = """
service_id, name, category, type, min_quantity, max_quantity, refill, cancel,
coalesce(pinned_rate_kobo, rate_per_1000_kobo) as rate_kobo
"""


def service_not_found() -> ApiError:
    return ApiError(
        404, "BOOST_SERVICE_NOT_FOUND", "The service ID does not exist in the boosting catalog."
    )


def _service_view(row: Mapping[str, Any]) -> ServiceView:
    return ServiceView(
        service_id=row["service_id"],
        service_name=row["name"],
        category=row["category"],
        type=row["type"],
        rate_per_1000=format_kobo(row["rate_kobo"]),
        currency="NGN",
        min=row["min_quantity"],
        max=row["max_quantity"],
        refill=row["refill"],
        cancel=row["cancel"],
    )


async def list_categories(request: Request) -> Response:
    runtime = runtime_of(request)
    await authenticate(request, runtime.pool, "boosting:read")
    rows = await runtime.pool.fetch(
        "select distinct category from services where listed order by category limit $1",
        MAX_SERVICES,
    )
    return json_response([CategoryView(row["category"]) for row in rows])


async def list_services(request: Request) -> Response:
    runtime = runtime_of(request)
    await authenticate(request, runtime.pool, "boosting:read")
    category = one_query_value(request, "category")
    if category is None:
        rows = await runtime.pool.fetch(
            f"select {_SERVICE_COLUMNS} from services where listed"
            " order by category, length(service_id), service_id limit $1",
            MAX_SERVICES,
        )
    elif len(category) > MAX_CATEGORY_LENGTH or "\x00" in category:
        # No category is that long (a sync keeps 200 characters) or holds a NUL, which
        # PostgreSQL text cannot; any other character may be in a provider's category name.
        rows = []
    else:
        rows = await runtime.pool.fetch(
            f"select {_SERVICE_COLUMNS} from services where listed and category = $1"
            " order by length(service_id), service_id limit $2",
            category,
            MAX_SERVICES,
        )
    return json_response([_service_view(row) for row in rows])


async def get_service(request: Request) -> Response:
    runtime = runtime_of(request)
    await authenticate(request, runtime.pool, "boosting:read")
    service_id = request.path_params["service_id"]
    row = None
    if usable_service_id(service_id):  # any other is never listed
        row = await runtime.pool.fetchrow(
            f"select {_SERVICE_COLUMNS} from services where listed and service_id = $1",
            service_id,
        )
    if row is None:
        raise service_not_found()
    return json_response(_service_view(row))


ROUTES = [
    Route("/boost/categories", list_categories, methods=["GET"]),
    Route("/boost/services", list_services, methods=["GET"]),
    Route("/boost/services/{service_id}", get_service, methods=["GET"]),
]
