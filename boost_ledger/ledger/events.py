"""The events of the ledger: frozen msgspec structs, one per fact, grouped by stream.

An event's ``type`` column is its class name; its ``data`` is the struct encoded as JSON. Amounts
are integer kobo. Streams: ``account-<id>``, ``wallet-<account_id>``, ``service-<id>``,
``order-<id>``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import msgspec


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every event. Subclasses are the facts; they carry no behaviour."""


# ---- account-<account_id> ------------------------------------------------------------------


class AccountOpened(Event, frozen=True, kw_only=True):
    account_id: int
    name: str


class ApiKeyIssued(Event, frozen=True, kw_only=True):
    """A new key for the account; it revokes every earlier key of the account."""

    account_id: int
    key_id: str
    key_hash: str  # hex sha256 of the secret key; the key itself is never stored
    abilities: list[str]


class AccountDisabled(Event, frozen=True, kw_only=True):
    account_id: int
    reason: str = ""


class AccountBanned(Event, frozen=True, kw_only=True):
    account_id: int
    reason: str = ""


class AccountReinstated(Event, frozen=True, kw_only=True):
    account_id: int


# ---- wallet-<account_id> -------------------------------------------------------------------


class WalletCredited(Event, frozen=True, kw_only=True):
    """An operator's top-up; at most one per (account, reference)."""

    account_id: int
    amount_kobo: int
    reference: str
    balance_after_kobo: int


class FundsDebited(Event, frozen=True, kw_only=True):
    """The charge of an order; at most one per order (deterministic event id)."""

    account_id: int
    order_id: int
    amount_kobo: int
    balance_after_kobo: int


class Refunded(Event, frozen=True, kw_only=True):
    """Money owed back on an order; at most one per order (deterministic event id)."""

    account_id: int
    order_id: int
    amount_kobo: int
    reason: str
    balance_after_kobo: int


# ---- service-<service_id> ------------------------------------------------------------------


class ServiceSynced(Event, frozen=True, kw_only=True):
    """The provider lists the service with these terms (recorded only when something changed)."""

    service_id: str
    provider_service_id: str
    name: str
    category: str
    type: str
    provider_rate: str  # decimal string in the provider's currency, as the provider sent it
    rate_per_1000_kobo: int
    min_quantity: int
    max_quantity: int
    refill: bool
    cancel: bool
    dripfeed: bool = False


# The terms a sync compares and the catalog stores: every field of ServiceSynced but its id.
SERVICE_TERMS: tuple[str, ...] = tuple(
    name for name in ServiceSynced.__struct_fields__ if name != "service_id"
)


class ServiceDelisted(Event, frozen=True, kw_only=True):
    service_id: str


class ServiceRatePinned(Event, frozen=True, kw_only=True):
    """An operator's fixed NGN rate per 1000; ``None`` unpins it."""

    service_id: str
    rate_per_1000_kobo: int | None


# ---- order-<order_id> ----------------------------------------------------------------------


class OrderPlaced(Event, frozen=True, kw_only=True):
    """Checkout: the service snapshot, the request's fields and the price, fixed for good."""

    order_id: int
    account_id: int
    idempotency_key: str
    fingerprint: str  # hex sha256 of the canonical request body
    service_id: str
    provider_service_id: str
    service_name: str
    category: str
    type: str
    link: str | None
    quantity: int | None
    billable_quantity: int
    fields: dict[str, Any]
    rate_per_1000_kobo: int
    price_kobo: int
    cancel_supported: bool


class SubmissionAttempted(Event, frozen=True, kw_only=True):
    """Recorded (and committed) before the provider is called, so a crash leaves a trace."""

    order_id: int
    attempt: int


class OrderSubmitted(Event, frozen=True, kw_only=True):
    order_id: int
    provider_order_id: str
    resolved_by: str = ""  # "" from the submitter; "operator" or "reconciler" when settled later


class SubmissionFailed(Event, frozen=True, kw_only=True):
    """The provider definitely refused the order (or an operator settled it as never placed)."""

    order_id: int
    reason: str


class SubmissionDeferred(Event, frozen=True, kw_only=True):
    """The provider could not be reached at all (the request never left): back to the queue."""

    order_id: int
    reason: str


class SubmissionUnknown(Event, frozen=True, kw_only=True):
    """The call's outcome is unknown (timeout, dropped reply, crash): an operator must settle it."""

    order_id: int
    reason: str


class StatusObserved(Event, frozen=True, kw_only=True):
    order_id: int
    upstream_status: str
    status: str
    start_count: int | None
    remains: int | None
    charge: str | None = None


class CancelRequested(Event, frozen=True, kw_only=True):
    order_id: int


class CancelRejected(Event, frozen=True, kw_only=True):
    order_id: int
    reason: str


class OrderCanceled(Event, frozen=True, kw_only=True):
    """Canceled locally before it was ever sent: the submitter must skip it."""

    order_id: int
    reason: str


# ---- audit-seals ---------------------------------------------------------------------------


class LedgerSealed(Event, frozen=True, kw_only=True):
    """A checkpoint over the feed: ``digest`` = sha256 of the hashes of every event with
    ``global_position <= position``, in position order. Any later change to them shows."""

    position: int
    events: int
    digest: str


SEAL_STREAM = "audit-seals"


EVENT_TYPES: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        AccountOpened,
        ApiKeyIssued,
        AccountDisabled,
        AccountBanned,
        AccountReinstated,
        WalletCredited,
        FundsDebited,
        Refunded,
        ServiceSynced,
        ServiceDelisted,
        ServiceRatePinned,
        OrderPlaced,
        SubmissionAttempted,
        OrderSubmitted,
        SubmissionFailed,
        SubmissionDeferred,
        SubmissionUnknown,
        StatusObserved,
        CancelRequested,
        CancelRejected,
        OrderCanceled,
        LedgerSealed,
    )
}


def decode_event(type_name: str, data: Any) -> Event:
    """Rebuild the typed event from its stored ``type`` and decoded ``data``."""
    return msgspec.convert(data, EVENT_TYPES[type_name])


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the log holds it."""

    global_position: int
    event_id: uuid.UUID
    stream_id: str
    version: int
    event: Event
    metadata: dict[str, Any]
    transaction_id: int
    recorded_at: datetime
    hash: bytes

    @property
    def type(self) -> str:
        return type(self.event).__name__


# ---- stream names and deterministic ids ----------------------------------------------------

_NAMESPACE = uuid.UUID("6a1f4a52-3c0e-4f5b-9d1c-0b2e51ed9e11")
ID_NAMESPACE = _NAMESPACE  # the auditor recomputes the ids in bulk (audit/money.py)


def account_stream(account_id: int) -> str:
    return f"account-{account_id}"


def wallet_stream(account_id: int) -> str:
    return f"wallet-{account_id}"


def order_stream(order_id: int) -> str:
    return f"order-{order_id}"


def service_stream(service_id: str) -> str:
    return f"service-{service_id}"


def debit_event_id(order_id: int) -> uuid.UUID:
    """The one possible FundsDebited of an order."""
    return uuid.uuid5(_NAMESPACE, f"debit:{order_id}")


def refund_event_id(order_id: int) -> uuid.UUID:
    """The one possible Refunded of an order: a second refund collides on ``event_id``."""
    return uuid.uuid5(_NAMESPACE, f"refund:{order_id}")


def credit_event_id(account_id: int, reference: str) -> uuid.UUID:
    """The one possible top-up of an account under an operator's reference."""
    return uuid.uuid5(_NAMESPACE, f"credit:{account_id}:{reference}")
