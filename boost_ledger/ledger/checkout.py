"""Checkout: validate, price, debit and record an order in one transaction, idempotently.

The idempotency key is claimed with a transaction-scoped advisory lock: a concurrent duplicate
finds it taken and is told the first request is still running. A stored record answers every
later retry with the first answer's exact bytes. Requests that fail (validation, balance) leave
nothing behind, so their key stays free: a client may fix the body and retry with the same key.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec

from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    FundsDebited,
    OrderPlaced,
    debit_event_id,
    order_stream,
    wallet_stream,
)
from boost_ledger.ledger.money import charge_kobo
from boost_ledger.ledger.order_types import ServiceLimits, is_flat, parse_order_fields
from boost_ledger.ledger.store import NewEvent
from boost_ledger.projections.views import checkout_response

_canonical = msgspec.json.Encoder(order="sorted")


class CheckoutRefused(Exception):
    """A checkout the ledger refuses; nothing was recorded."""


class IdempotencyKeyInProgress(CheckoutRefused):
    pass


class IdempotencyKeyReused(CheckoutRefused):
    pass


class ServiceNotFound(CheckoutRefused):
    pass


class InsufficientBalance(CheckoutRefused):
    def __init__(self, price_kobo: int, balance_kobo: int) -> None:
        super().__init__(f"price {price_kobo} kobo exceeds balance {balance_kobo} kobo")
        self.price_kobo = price_kobo
        self.balance_kobo = balance_kobo


class CheckoutAnswer(msgspec.Struct, frozen=True):
    """What the client gets: the status, the exact body, and whether it is a replay."""

    status_code: int
    body: bytes
    replayed: bool
    order_id: int


def fingerprint(body: dict[str, Any]) -> bytes:
    """The request's identity: a hash of its canonical JSON (keys sorted)."""
    return hashlib.sha256(_canonical.encode(body)).digest()


_SERVICE = """
select service_id, provider_service_id, name, category, type, min_quantity, max_quantity,
       cancel, dripfeed, coalesce(pinned_rate_kobo, rate_per_1000_kobo) as rate_per_1000_kobo
  from services where service_id = $1 and listed
"""


async def checkout(
    connection: Connection,
    *,
    account_id: int,
    idempotency_key: str,
    service_id: str,
    body: dict[str, Any],
    subscription_default_posts: int,
    metadata: dict[str, Any],
) -> CheckoutAnswer:
    """Place an order paid from the account's wallet, or replay the key's first answer."""
    request_fingerprint = fingerprint(body)
    async with connection.transaction():
        claimed = await connection.fetchval(
            "select pg_try_advisory_xact_lock(hashtextextended($1, $2))",
            idempotency_key,
            account_id,
        )
        if not claimed:
            raise IdempotencyKeyInProgress(idempotency_key)
        earlier = await connection.fetchrow(
            "select fingerprint, status_code, response, order_id from idempotency_keys"
            " where account_id = $1 and idempotency_key = $2",
            account_id,
            idempotency_key,
        )
        if earlier is not None:
            if earlier["fingerprint"] != request_fingerprint:
                raise IdempotencyKeyReused(idempotency_key)
            return CheckoutAnswer(
                earlier["status_code"], earlier["response"], True, earlier["order_id"]
            )
        placed = await _place(
            connection,
            account_id,
            idempotency_key,
            service_id,
            body,
            request_fingerprint,
            subscription_default_posts,
        )
        await _debit_and_record(connection, placed, metadata)
        return placed.answer


class _Placed(msgspec.Struct):
    event: OrderPlaced
    wallet_version: int
    balance_after_kobo: int
    answer: CheckoutAnswer


async def _place(
    connection: Connection,
    account_id: int,
    idempotency_key: str,
    service_id: str,
    body: dict[str, Any],
    request_fingerprint: bytes,
    subscription_default_posts: int,
) -> _Placed:
    service = await connection.fetchrow(_SERVICE, service_id)
    if service is None:
        raise ServiceNotFound(service_id)
    limits = ServiceLimits(
        service["type"], service["min_quantity"], service["max_quantity"], service["dripfeed"]
    )
    order_fields = {k: v for k, v in body.items() if k not in ("service_id", "idempotency_key")}
    request = parse_order_fields(
        limits, order_fields, subscription_default_posts=subscription_default_posts
    )
    price_kobo = charge_kobo(
        service["rate_per_1000_kobo"], request.billable_quantity, flat=is_flat(service["type"])
    )
    wallet = await connection.fetchrow(
        "select balance_kobo, version, nextval('order_id_seq') as order_id from wallets"
        " where account_id = $1 for update",
        account_id,
    )
    assert wallet is not None, "every account has a wallet"
    if wallet["balance_kobo"] < price_kobo:
        raise InsufficientBalance(price_kobo, wallet["balance_kobo"])
    order_id = int(wallet["order_id"])  # a refused checkout only leaves a gap in the ids
    event = OrderPlaced(
        order_id=order_id,
        account_id=account_id,
        idempotency_key=idempotency_key,
        fingerprint=request_fingerprint.hex(),
        service_id=service["service_id"],
        provider_service_id=service["provider_service_id"],
        service_name=service["name"],
        category=service["category"],
        type=service["type"],
        link=request.link,
        quantity=request.quantity,
        billable_quantity=request.billable_quantity,
        fields=dict(request.fields),
        rate_per_1000_kobo=service["rate_per_1000_kobo"],
        price_kobo=price_kobo,
        cancel_supported=service["cancel"],
    )
    balance_after = wallet["balance_kobo"] - price_kobo
    body_bytes = checkout_response(msgspec.structs.asdict(event), balance_after)
    answer = CheckoutAnswer(201, body_bytes, False, order_id)
    return _Placed(event, wallet["version"], balance_after, answer)


async def _debit_and_record(
    connection: Connection, placed: _Placed, metadata: dict[str, Any]
) -> None:
    event = placed.event
    debit = FundsDebited(
        account_id=event.account_id,
        order_id=event.order_id,
        amount_kobo=event.price_kobo,
        balance_after_kobo=placed.balance_after_kobo,
    )
    await commit(
        connection,
        [
            NewEvent(stream_id=order_stream(event.order_id), version=1, event=event),
            NewEvent(
                stream_id=wallet_stream(event.account_id),
                version=placed.wallet_version + 1,
                event=debit,
                event_id=debit_event_id(event.order_id),
            ),
        ],
        metadata,
    )
