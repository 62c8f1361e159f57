"""``POST /boost/orders/{id}/check`` (``orders:read``) and ``/cancel`` (``boosting:buy``)."""

from __future__ import annotations

import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.auth import authenticate
from boost_ledger.api.errors import ApiError
from boost_ledger.api.http import json_response
from boost_ledger.api.orders import load_order_view, order_not_found, parse_order_id
from boost_ledger.api.runtime import Runtime, runtime_of
from boost_ledger.ledger import fulfilment
from boost_ledger.ledger.order_rules import OrderState, cancel_route
from boost_ledger.ledger.statuses import TERMINAL_STATUSES
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError, ProviderRefused
from boost_ledger.upstream.parsing import usable_order_id
from boost_ledger.workers.poller import after_check, record_status

log = structlog.get_logger("boost.orders")

CANCEL_SUBMITTED = "Cancellation request submitted."
CANCELED_LOCALLY = "Order canceled before submission; the wallet was refunded."


def provider_unavailable() -> ApiError:
    return ApiError(
        503,
        "PROVIDER_UNAVAILABLE",
        "The provider cannot be reached right now. Retry shortly.",
        headers={"Retry-After": "5"},
    )


def cancel_unavailable() -> ApiError:
    return ApiError(422, "BOOST_CANCEL_UNAVAILABLE", "The order is not eligible for cancellation.")


def cancel_rejected() -> ApiError:
    return ApiError(409, "BOOST_CANCEL_REJECTED", "The order cannot be cancelled at the moment.")


def _provider(runtime: Runtime) -> ProviderClient:
    if runtime.provider is None:
        raise provider_unavailable()
    return runtime.provider


async def _owned_state(runtime: Runtime, order_id: int, account_id: int) -> OrderState:
    async with runtime.pool.acquire() as connection:
        row = await connection.fetchrow(
            "select * from orders where order_id = $1 and account_id = $2", order_id, account_id
        )
    if row is None:
        raise order_not_found()
    return OrderState.from_row(row)


async def check_order(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.pool, "orders:read")
    order_id = parse_order_id(request)
    order = await _owned_state(runtime, order_id, principal.account_id)
    settled = order.status in TERMINAL_STATUSES
    # An id no call can carry (recorded before ids were checked) is not asked about, as the
    # poller and cancel do not send it: the stored order is returned.
    if (
        order.submission == "submitted"
        and order.provider_order_id is not None
        and usable_order_id(order.provider_order_id)
        and not settled
    ):
        try:
            status = await _provider(runtime).status(order.provider_order_id)
        except ProviderError as error:
            log.warning("check.provider_error", order_id=order_id, error=str(error))
            raise provider_unavailable() from None
        async with runtime.pool.acquire() as connection:
            await record_status(connection, order_id, status, f"account:{principal.account_id}")
            await after_check(connection, order_id, runtime.settings.poll_interval_s)
    return json_response(await load_order_view(runtime.pool, principal.account_id, order_id))


async def cancel_order(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.pool, "boosting:buy")
    order_id = parse_order_id(request)
    actor = f"account:{principal.account_id}"
    async with runtime.pool.acquire() as connection, connection.transaction():
        try:
            order = await fulfilment.lock_order(connection, order_id, principal.account_id)
        except fulfilment.OrderMissing:
            raise order_not_found() from None
        route = cancel_route(order)
        if route == "local":
            await fulfilment.cancel_locally(connection, order, actor)
    if route == "unavailable":
        raise cancel_unavailable()
    if route == "busy":
        raise cancel_rejected()
    if route == "provider":
        await _cancel_upstream(runtime, order, actor)
        message = CANCEL_SUBMITTED
    else:
        message = CANCELED_LOCALLY
    view = await load_order_view(runtime.pool, principal.account_id, order_id)
    return json_response(view, message=message)


async def _cancel_upstream(runtime: Runtime, order: OrderState, actor: str) -> None:
    """Ask the provider to cancel; record its answer. The refund waits for a settling status.

    The order is not locked during the call, so the answer follows the order as the reply
    found it: another request's cancel already under way answers as accepted (the order is
    ``canceling``), as does an accepted cancel whose order the poller has already recorded
    canceled, and an order settled otherwise meanwhile is no longer eligible, whatever the
    provider said of it."""
    reply = await _cancel_reply(runtime, order)
    accepted = reply is True
    reason = reply.text if isinstance(reply, ProviderRefused) else "not accepted by the provider"
    async with runtime.pool.acquire() as connection:
        found = await fulfilment.record_cancel_reply(
            connection, order.order_id, accepted, reason, actor
        )
    if found.status == "canceled" and accepted:
        return  # the provider canceled it at once, and the poller recorded it first
    if found.status in TERMINAL_STATUSES:
        log.warning("cancel.settled_meanwhile", order_id=order.order_id, accepted=accepted)
        raise cancel_unavailable()
    if not accepted and found.status != "canceling":
        raise cancel_rejected()


async def _cancel_reply(runtime: Runtime, order: OrderState) -> bool | ProviderRefused | None:
    """The provider's answer about ``order`` (503 when it fails as a whole)."""
    provider_order_id = order.provider_order_id
    assert provider_order_id is not None
    if not usable_order_id(provider_order_id):  # recorded before ids were checked
        return ProviderRefused("the provider order id cannot be sent")
    try:
        replies = await _provider(runtime).cancel([provider_order_id])
    except ProviderRefused as refusal:
        # A refusal of the whole call is as definite as one for the order: nothing was done
        # upstream, so it is recorded as rejected rather than reported as an outage.
        return refusal
    except ProviderError as error:
        log.warning("cancel.provider_error", order_id=order.order_id, error=str(error))
        raise provider_unavailable() from None
    return replies.get(provider_order_id)


ROUTES = [
    Route("/boost/orders/{order_id}/check", check_order, methods=["POST"]),
    Route("/boost/orders/{order_id}/cancel", cancel_order, methods=["POST"]),
]
