"""Order endpoints: checkout (``boosting:buy``), list and read (``orders:read``)."""

from __future__ import annotations

import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.auth import Principal, admit, authenticate, lookup
from boost_ledger.api.catalog import service_not_found
from boost_ledger.api.errors import (
    ApiError,
    service_unavailable,
    unauthenticated,
    validation_failed,
)
from boost_ledger.api.http import (
    json_response,
    one_query_value,
    raw_json_response,
    read_json_body,
)
from boost_ledger.api.runtime import Runtime, runtime_of
from boost_ledger.ledger import checkout as checkout_module
from boost_ledger.ledger.order_types import FieldErrors, OrderInvalid
from boost_ledger.ledger.statuses import ORDER_STATUSES
from boost_ledger.projections.views import order_view

MAX_IDEMPOTENCY_KEY_LENGTH = 100
MAX_ORDER_ID = 2**63 - 1
_PRICE_KEYS = ("price", "charge", "amount")
_POSITIVE_INTEGER = re.compile(r"0*([1-9][0-9]{0,17})")
_ORDER_ID = re.compile(r"[1-9][0-9]{0,18}")


def order_not_found() -> ApiError:
    return ApiError(
        404, "BOOST_ORDER_NOT_FOUND", "The order ID does not belong to the authenticated account."
    )


def _checked_header_fields(body: dict[str, Any]) -> tuple[str, str]:
    """The idempotency key and service id, or 422 naming every problem of the body's head."""
    errors: dict[str, list[str]] = {}
    key = body.get("idempotency_key")
    if key is None:
        errors["idempotency_key"] = ["The idempotency_key field is required."]
    elif not isinstance(key, str) or not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH:
        errors["idempotency_key"] = ["The idempotency_key must be a string of 1 to 100 characters."]
    elif not key.isprintable() or not key.strip():
        errors["idempotency_key"] = ["The idempotency_key must contain printable characters only."]
    service_id = body.get("service_id")
    # As for every other field (ledger/order_types.py), null and blank strings count as missing.
    if service_id is None or (isinstance(service_id, str) and not service_id.strip()):
        errors["service_id"] = ["The service_id field is required."]
    elif isinstance(service_id, bool) or not isinstance(service_id, str | int):
        errors["service_id"] = ["The service_id must be a string."]
    for name in _PRICE_KEYS:
        if name in body:
            errors[name] = ["The server computes the price; do not send it."]
    if errors:
        raise validation_failed(errors)
    assert isinstance(key, str)
    return key, str(service_id)


def _translate(error: Exception) -> ApiError:
    if isinstance(error, FieldErrors):
        return validation_failed(error.errors)
    if isinstance(error, OrderInvalid):
        return ApiError(422, error.code, error.message)
    if isinstance(error, checkout_module.ServiceNotFound):
        return service_not_found()
    if isinstance(error, checkout_module.InsufficientBalance):
        return ApiError(402, "INSUFFICIENT_BALANCE", "Insufficient wallet balance.")
    if isinstance(error, checkout_module.IdempotencyKeyReused):
        return ApiError(
            409, "IDEMPOTENCY_KEY_REUSED", "The key was used for a different request body."
        )
    if isinstance(error, checkout_module.IdempotencyKeyInProgress):
        return ApiError(
            409, "IDEMPOTENCY_KEY_IN_PROGRESS", "The same key is still processing. Retry shortly.",
            headers={"Retry-After": "1"},
        )
    if isinstance(error, checkout_module.CatalogChanging):
        return service_unavailable("The service's price is changing. Retry shortly.")
    raise error


async def place_order(request: Request) -> Response:
    """POST /boost/orders. A key seen before is not looked up: the checkout statement confirms
    it. Any refusal is preceded by a real lookup, so a dead key still hears 401/403 first."""
    runtime = runtime_of(request)
    principal = runtime.principals.recall(request)
    confirmed = principal is None
    if principal is None:
        principal = await _looked_up(request, runtime)
    try:
        admit(request, principal, "boosting:buy")
        order = await _order_body(request)
        return await _checkout(request, runtime, principal, order)
    except (ApiError, checkout_module.KeyNotLive) as refusal:
        if confirmed and isinstance(refusal, ApiError):
            raise
        runtime.principals.forget(principal)
        principal = await _looked_up(request, runtime)  # the key's own 401/403 comes first
        if isinstance(refusal, ApiError):
            raise
    try:  # the key was dead to the checkout yet is live again: once more
        return await _checkout(request, runtime, principal, order)
    except checkout_module.KeyNotLive:
        raise unauthenticated() from None


async def _looked_up(request: Request, runtime: Runtime) -> Principal:
    principal = await lookup(request, runtime.pool)
    runtime.principals.remember(principal)
    return principal


class _OrderBody(msgspec.Struct, frozen=True):
    body: dict[str, Any]
    idempotency_key: str
    service_id: str


async def _order_body(request: Request) -> _OrderBody:
    body = await read_json_body(request)
    return _OrderBody(body, *_checked_header_fields(body))


async def _checkout(
    request: Request, runtime: Runtime, principal: Principal, order: _OrderBody
) -> Response:
    try:
        answer = await checkout_module.checkout(
            runtime.pool,
            account_id=principal.account_id,
            idempotency_key=order.idempotency_key,
            service_id=order.service_id,
            body=order.body,
            subscription_default_posts=runtime.settings.subscription_default_posts,
            metadata=_metadata(request, principal),
            state=runtime.checkout,
            key_hash=principal.key_hash,
            place=runtime.place,
        )
    except checkout_module.KeyNotLive:
        raise
    except (OrderInvalid, checkout_module.CheckoutRefused) as error:
        raise _translate(error) from None
    if not answer.replayed:
        runtime.wake_submitter()
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else None
    return raw_json_response(answer.body, answer.status_code, headers)


def _metadata(request: Request, principal: Principal) -> dict[str, Any]:
    return {
        "request_id": request.scope.get("state", {}).get("request_id"),
        "actor": f"account:{principal.account_id}",
        "key_id": principal.key_id,
    }


def _positive_int(text: str | None, name: str, default: int, maximum: int) -> int:
    """A query parameter as an integer in 1..maximum, or 422.

    ASCII digits only: ``str.isdigit`` also accepts digits such as "²" that ``int`` refuses.
    Leading zeros are allowed but never count towards the bound, and the significant digits are
    capped before ``int`` sees them, so no value can slip past ``maximum`` or overflow a bigint.
    """
    if text is None:
        return default
    match = _POSITIVE_INTEGER.fullmatch(text)
    if match is None or int(match[1]) > maximum:
        raise validation_failed({name: [f"The {name} must be an integer from 1 to {maximum}."]})
    return int(match[1])


_ORDER_COLUMNS = """
order_id, status, service_id, service_name, category, type, link, quantity, price_kobo,
start_count, remains, refunded, cancel_supported, submission, created_at
"""


# A page and its count in one statement, so both are of one snapshot: as two statements, an
# order committed between them was listed on a page whose total did not count it (a page of
# 64 orders said "total": 63, and a last_page computed from it could end a client's walk early).
# The count's row is kept when the page is past the end (the left join's orders are null).
_LIST_PAGE = f"""
select counted.total, page.* from (
    select count(*) as total from orders
     where account_id = $1 and ($2::text is null or status = $2)
) counted left join lateral (
    select {_ORDER_COLUMNS} from orders
     where account_id = $1 and ($2::text is null or status = $2)
     order by created_at desc, order_id desc limit $3 offset $4
) page on true
order by page.created_at desc, page.order_id desc
"""


async def list_orders(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.pool, "orders:read")
    per_page = _positive_int(one_query_value(request, "per_page"), "per_page", 25, 100)
    page = _positive_int(one_query_value(request, "page"), "page", 1, 1_000_000)
    status = one_query_value(request, "status")
    if status is not None and status not in ORDER_STATUSES:
        allowed = ", ".join(ORDER_STATUSES)
        raise validation_failed({"status": [f"The status must be one of {allowed}."]})
    rows = await runtime.pool.fetch(
        _LIST_PAGE, principal.account_id, status, per_page, (page - 1) * per_page
    )
    total = rows[0]["total"]  # the count's one row is always there, a page of orders or not
    orders = [order_view(row) for row in rows if row["order_id"] is not None]
    meta = {
        "current_page": page,
        "per_page": per_page,
        "total": total,
        "last_page": max(1, -(-total // per_page)),
    }
    return _paginated(orders, meta)


def _paginated(data: list[Any], meta: dict[str, int]) -> Response:
    body = msgspec.json.encode({"success": True, "data": data, "meta": meta})
    return raw_json_response(body, 200)


def parse_order_id(request: Request) -> int:
    """The path's order id, or the same 404 as for someone else's order.

    Only the canonical decimal form names an order: ASCII digits, no sign, no leading zero
    (``str.isdigit`` would let "²" through to ``int`` and a 500, and other scripts' digits or a
    leading zero would give one order several names).
    """
    text = request.path_params["order_id"]
    if _ORDER_ID.fullmatch(text) is None or int(text) > MAX_ORDER_ID:
        raise order_not_found()
    return int(text)


async def load_order_view(runtime_pool: Any, account_id: int, order_id: int) -> Any:
    row = await runtime_pool.fetchrow(
        f"select {_ORDER_COLUMNS} from orders where order_id = $1 and account_id = $2",
        order_id,
        account_id,
    )
    if row is None:
        raise order_not_found()
    return order_view(row)


async def get_order(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.pool, "orders:read")
    order_id = parse_order_id(request)
    return json_response(await load_order_view(runtime.pool, principal.account_id, order_id))


async def orders_collection(request: Request) -> Response:
    """/boost/orders: GET (and HEAD) lists, POST places.

    One route for the path, not one per method: Starlette answers a method no route takes with
    the first matching route's methods, so two routes would give a 405 an ``Allow`` naming one.
    """
    if request.method == "POST":
        return await place_order(request)
    assert request.method in ("GET", "HEAD"), request.method  # all the route takes but POST
    return await list_orders(request)


ROUTES = [
    Route("/boost/orders", orders_collection, methods=["GET", "POST"], name="orders"),
    Route("/boost/orders/{order_id}", get_order, methods=["GET"]),
]
