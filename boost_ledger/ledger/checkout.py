"""Checkout: validate, price, debit and record an order in one transaction, idempotently.

The request is validated and priced here against the service row (cached by version, see
``checkout_state``), and its events and answer are rendered but for the wallet's balance after
the debit. One call of ``checkout_place`` (sql/0011_checkout.sql) then decides in one statement:
it claims the idempotency key with a transaction-scoped advisory lock (a concurrent duplicate
finds it taken and is told the first request is still running), answers a retry with the stored
record's exact bytes, checks the service version, takes the wallet's row lock, and appends and
projects the order. Requests that fail (validation, balance) leave nothing behind, so their key
stays free: a client may fix the body and retry with the same key. A server places the call
through ``checkout_batch.CheckoutBatcher``, which sends the calls that arrive together as one
statement and one transaction.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import msgspec

from boost_ledger.ledger.checkout_state import CheckoutState, PricedService
from boost_ledger.ledger.connection import Connections
from boost_ledger.ledger.events import OrderPlaced, debit_event_id
from boost_ledger.ledger.money import charge_kobo
from boost_ledger.ledger.order_types import (
    OrderInvalid,
    OrderRequest,
    ServiceLimits,
    is_flat,
    parse_order_fields,
)
from boost_ledger.projections.views import checkout_response_parts

MAX_ATTEMPTS = 3
"""Reads of the service per checkout: the first, and one per concurrent catalog change (or a
cached row that priced the order beyond any wallet, which may be stale)."""

MAX_PRICE_KOBO = 2**63 - 1
"""The largest price the database can take: a bigint, as is every wallet's balance. The catalog's
caps (a rate of up to 10**13 kobo per 1000, a billable quantity of up to 10**9) allow prices up
to 10**19 kobo, which asyncpg cannot even encode as the argument."""

_canonical = msgspec.json.Encoder(order="sorted")


class CheckoutRefused(Exception):
    """A checkout the ledger refuses; nothing was recorded."""


class IdempotencyKeyInProgress(CheckoutRefused):
    pass


class IdempotencyKeyReused(CheckoutRefused):
    pass


class ServiceNotFound(CheckoutRefused):
    pass


class KeyNotLive(CheckoutRefused):
    """The API key named for the checkout is revoked, or its account may not buy now."""


class CatalogChanging(CheckoutRefused):
    """The service changed under every attempt to price it; the client may retry."""


class InsufficientBalance(CheckoutRefused):
    """The wallet cannot pay the price. ``balance_kobo`` is None when the price is beyond what
    any wallet can hold (``MAX_PRICE_KOBO``), and so the balance was not read."""

    def __init__(self, price_kobo: int, balance_kobo: int | None) -> None:
        held = "any balance" if balance_kobo is None else f"balance {balance_kobo} kobo"
        super().__init__(f"price {price_kobo} kobo exceeds {held}")
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


PLACE = """
select outcome, status_code, response, order_id, balance_kobo
  from checkout_place($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""

Place = Callable[[tuple[Any, ...]], Awaitable[Mapping[str, Any]]]
"""Runs one call of ``checkout_place`` with these arguments and returns its row: on its own
(``placing_alone``) or gathered with others (``checkout_batch.CheckoutBatcher.place``)."""


async def place_alone(connections: Connections, arguments: tuple[Any, ...]) -> Mapping[str, Any]:
    """One checkout in a statement and a transaction of its own."""
    async with connections.acquire() as connection:
        row: Mapping[str, Any] | None = await connection.fetchrow(PLACE, *arguments)
    assert row is not None
    return row


def placing_alone(connections: Connections) -> Place:
    """Each checkout in a statement and a transaction of its own."""
    return functools.partial(place_alone, connections)

_EARLIER = """
select outcome, fingerprint, status_code, response, order_id from checkout_earlier($1, $2, $3)
"""


class _Request(msgspec.Struct, frozen=True):
    key_hash: bytes | None
    account_id: int
    idempotency_key: str
    fingerprint: bytes


async def checkout(
    connections: Connections,
    *,
    account_id: int,
    idempotency_key: str,
    service_id: str,
    body: dict[str, Any],
    subscription_default_posts: int,
    metadata: dict[str, Any],
    state: CheckoutState | None = None,
    key_hash: bytes | None = None,
    place: Place | None = None,
) -> CheckoutAnswer:
    """Place an order paid from the account's wallet, or replay the key's first answer.

    With ``key_hash``, the checkout itself confirms that the API key is live and may buy for the
    account (``KeyNotLive`` otherwise); without it, the caller vouches for the account.
    A connection is taken from ``connections`` only when one is needed: to read a service or
    a block of order ids the state does not hold, and to place the order unless ``place`` (a
    batcher's) does it.
    """
    state = state or CheckoutState()
    place = place or placing_alone(connections)
    request = _Request(key_hash, account_id, idempotency_key, fingerprint(body))
    order_id: int | None = None
    for attempt in range(MAX_ATTEMPTS):
        service = await state.services.get(connections, service_id, fresh=attempt > 0)
        try:
            service, order = await _checked(
                connections, state, service_id, service, body, subscription_default_posts
            )
        except (ServiceNotFound, OrderInvalid):
            # A retry of an order placed before the catalog changed still gets its answer.
            earlier = await _earlier_answer(connections, request)
            if earlier is not None:
                return earlier
            raise
        price_kobo = _price(service, order)
        if price_kobo > MAX_PRICE_KOBO:
            # Priced from the cache, the row may be stale (checkout_place would have said so):
            # only a price from a fresh read is refused.
            if attempt == 0:
                continue
            return await _beyond_any_wallet(connections, request, price_kobo)
        order_id = order_id or await state.order_ids.take(connections)
        row = await place(_place_arguments(request, service, order, order_id, price_kobo, metadata))
        if row["outcome"] != "stale_service":
            return _answer(row, order_id, price_kobo)
    raise CatalogChanging(service_id)


async def _beyond_any_wallet(
    connections: Connections, request: _Request, price_kobo: int
) -> CheckoutAnswer:
    """The key's earlier answer to this body, else the refusal of a price no wallet can pay.

    The spec's codes offer no better answer than 402 ``INSUFFICIENT_BALANCE`` ("the wallet balance
    cannot cover the calculated price"), which is true of every wallet: the quantity is within
    the service's range (so not ``BOOST_QUANTITY_OUT_OF_RANGE``) and every field is valid (so not
    ``VALIDATION_FAILED``). Like any 402 it records nothing and leaves the key free. The price is
    never sent to the database (a bigint cannot hold it); the key's record is read first, as
    ``checkout_place`` reads it before the balance, so that a retry of an order placed before its
    service's rate rose still gets its first answer.
    """
    earlier = await _earlier_answer(connections, request)
    if earlier is not None:
        return earlier
    raise InsufficientBalance(price_kobo, None)


async def _checked(
    connections: Connections,
    state: CheckoutState,
    service_id: str,
    service: PricedService | None,
    body: dict[str, Any],
    subscription_default_posts: int,
) -> tuple[PricedService, OrderRequest]:
    """The service and the order it takes; refused by a row the cache held, the body is checked
    again against the catalog as it now stands (a sync may since have raised the service's
    maximum, say), so that no stale row refuses what the service takes."""
    if service is None:
        raise ServiceNotFound(service_id)
    try:
        return service, _validated(service, body, subscription_default_posts)
    except OrderInvalid:
        latest = await state.services.get(connections, service_id, fresh=True)
        if latest is not None and latest.version == service.version:
            raise
    if latest is None:
        raise ServiceNotFound(service_id)
    return latest, _validated(latest, body, subscription_default_posts)


def _validated(
    service: PricedService, body: dict[str, Any], subscription_default_posts: int
) -> OrderRequest:
    limits = ServiceLimits(
        service.type, service.min_quantity, service.max_quantity, service.dripfeed
    )
    fields = {k: v for k, v in body.items() if k not in ("service_id", "idempotency_key")}
    return parse_order_fields(limits, fields, subscription_default_posts=subscription_default_posts)


def _price(service: PricedService, order: OrderRequest) -> int:
    return charge_kobo(
        service.rate_per_1000_kobo, order.billable_quantity, flat=is_flat(service.type)
    )


def _place_arguments(
    request: _Request,
    service: PricedService,
    order: OrderRequest,
    order_id: int,
    price_kobo: int,
    metadata: dict[str, Any],
) -> tuple[Any, ...]:
    placed = OrderPlaced(
        order_id=order_id,
        account_id=request.account_id,
        idempotency_key=request.idempotency_key,
        fingerprint=request.fingerprint.hex(),
        service_id=service.service_id,
        provider_service_id=service.provider_service_id,
        service_name=service.name,
        category=service.category,
        type=service.type,
        link=order.link,
        quantity=order.quantity,
        billable_quantity=order.billable_quantity,
        fields=dict(order.fields),
        rate_per_1000_kobo=service.rate_per_1000_kobo,
        price_kobo=price_kobo,
        cancel_supported=service.cancel,
    )
    placed_data = msgspec.structs.asdict(placed)
    head, tail = checkout_response_parts(placed_data)
    # FundsDebited's data but for balance_after_kobo, which the function adds under the lock.
    debit = {"account_id": request.account_id, "order_id": order_id, "amount_kobo": price_kobo}
    return (
        request.key_hash,
        request.account_id,
        request.idempotency_key,
        request.fingerprint,
        service.service_id,
        service.version,
        order_id,
        price_kobo,
        uuid.uuid4(),
        placed_data,
        debit_event_id(order_id),
        debit,
        metadata,
        head,
        tail,
    )


def _answer(row: Mapping[str, Any], order_id: int, price_kobo: int) -> CheckoutAnswer:
    outcome = row["outcome"]
    if outcome == "placed":
        return CheckoutAnswer(201, row["response"], False, order_id)
    if outcome == "replayed":
        # The key's order is the one this very checkout proposed: its first placement
        # committed and its answer was lost (a batch's connection dying after the commit, the
        # checkout then placed again alone), so this is the first answer the client hears.
        replayed = row["order_id"] != order_id
        return CheckoutAnswer(row["status_code"], row["response"], replayed, row["order_id"])
    if outcome == "reused":
        raise IdempotencyKeyReused()
    if outcome == "in_progress":
        raise IdempotencyKeyInProgress()
    if outcome == "unauthorized":
        raise KeyNotLive()
    assert outcome == "insufficient", outcome
    raise InsufficientBalance(price_kobo, row["balance_kobo"])


async def _earlier_answer(
    connections: Connections, request: _Request
) -> CheckoutAnswer | None:
    """The key's stored answer to this body; refusals for a busy or reused key; else None."""
    async with connections.acquire() as connection:
        row = await connection.fetchrow(
            _EARLIER, request.key_hash, request.account_id, request.idempotency_key
        )
    if row is None:  # no record, and nobody holds the key
        return None
    if row["outcome"] == "unauthorized":
        raise KeyNotLive()
    if row["outcome"] == "in_progress":
        raise IdempotencyKeyInProgress()
    if row["fingerprint"] != request.fingerprint:
        raise IdempotencyKeyReused()
    return CheckoutAnswer(row["status_code"], row["response"], True, row["order_id"])
