"""The wire shapes of orders (spec: "Purchase Boost", "Get Boost Order"), rendered from rows.

The checkout answer is rendered here rather than in ``api/`` because its exact bytes are kept in
the idempotency projection, and a rebuild must render the same bytes again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import msgspec

from boost_ledger.ledger.money import format_kobo
from boost_ledger.ledger.order_rules import cancel_route_of

CURRENCY = "NGN"

_encoder = msgspec.json.Encoder()


class CheckoutView(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    status: str
    service_id: str
    service_name: str
    category: str
    type: str
    link: str | None
    quantity: int | None
    price: str
    currency: str
    cancel: bool
    balance_after: str


class OrderView(msgspec.Struct, frozen=True, kw_only=True):
    order_id: str
    status: str
    service_id: str
    service_name: str
    category: str
    type: str
    link: str | None
    quantity: int | None
    price: str
    currency: str
    start_count: int | None
    remains: int | None
    refunded: bool
    cancel: bool
    created_at: str


class _Envelope(msgspec.Struct, frozen=True):
    success: bool
    data: Any


def cancel_available(order: Mapping[str, Any]) -> bool:
    """Whether a cancel request may be tried now (the spec's ``cancel`` flag)."""
    route = cancel_route_of(order["status"], order["submission"], order["cancel_supported"])
    return route in ("local", "provider")


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_view(order: Mapping[str, Any]) -> OrderView:
    return OrderView(
        order_id=str(order["order_id"]),
        status=order["status"],
        service_id=order["service_id"],
        service_name=order["service_name"],
        category=order["category"],
        type=order["type"],
        link=order["link"],
        quantity=order["quantity"],
        price=format_kobo(order["price_kobo"]),
        currency=CURRENCY,
        start_count=order["start_count"],
        remains=order["remains"],
        refunded=order["refunded"],
        cancel=cancel_available(order),
        created_at=format_timestamp(order["created_at"]),
    )


def _checkout_body(order: Mapping[str, Any], balance_after: str) -> bytes:
    view = CheckoutView(
        order_id=str(order["order_id"]),
        status="pending",
        service_id=order["service_id"],
        service_name=order["service_name"],
        category=order["category"],
        type=order["type"],
        link=order["link"],
        quantity=order["quantity"],
        price=format_kobo(order["price_kobo"]),
        currency=CURRENCY,
        cancel=bool(order["cancel_supported"]),
        balance_after=balance_after,
    )
    return _encoder.encode(_Envelope(True, view))


def checkout_response(order: Mapping[str, Any], balance_after_kobo: int) -> bytes:
    """The exact bytes of the 201 answer to a checkout, kept for idempotent replays."""
    return _checkout_body(order, format_kobo(balance_after_kobo))


_BALANCE_LAST = b'"balance_after":""}}'


def checkout_response_parts(order: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """The 201 answer around its one unknown, the balance after the debit: the checkout
    function (sql/0011_checkout.sql) joins head, ``format_kobo(balance)`` and tail, giving the
    bytes ``checkout_response`` renders."""
    body = _checkout_body(order, "")
    assert body.endswith(_BALANCE_LAST), "balance_after must be the answer's last field"
    return body[:-3], body[-3:]
