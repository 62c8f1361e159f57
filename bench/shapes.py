"""The two events one checkout appends (OrderPlaced on a new order stream, FundsDebited on the
account's wallet stream), built once so every appender writes the same bytes."""

from __future__ import annotations

from typing import Any

import msgspec

from boost_ledger.ledger.events import FundsDebited, OrderPlaced

PRICE_KOBO = 1620


def order_placed(order_id: int, account_id: int) -> OrderPlaced:
    """As checkout records service 1 of the simulator, quantity 10."""
    key = f"bench-{order_id}"
    return OrderPlaced(
        order_id=order_id,
        account_id=account_id,
        idempotency_key=key,
        fingerprint=f"{order_id:064x}",
        service_id="1",
        provider_service_id="1",
        service_name="Instagram Followers [Real, 30-day refill]",
        category="Instagram Followers",
        type="Default",
        link="https://instagram.com/p/bench",
        quantity=10,
        billable_quantity=10,
        fields={},
        rate_per_1000_kobo=162000,
        price_kobo=PRICE_KOBO,
        cancel_supported=True,
    )


def funds_debited(order_id: int, account_id: int, balance_after_kobo: int) -> FundsDebited:
    return FundsDebited(
        account_id=account_id,
        order_id=order_id,
        amount_kobo=PRICE_KOBO,
        balance_after_kobo=balance_after_kobo,
    )


def metadata(account_id: int) -> dict[str, Any]:
    return {"request_id": "0" * 32, "actor": f"account:{account_id}", "key_id": "bench"}


def encoded(event: msgspec.Struct) -> bytes:
    return msgspec.json.encode(event)
