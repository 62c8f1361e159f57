"""Pure decisions over an order's state: what an observed status, a cancel or a settlement
records. No I/O: the transactions in ``fulfilment.py`` load the state and append the result."""

from __future__ import annotations

from typing import Any

import msgspec

from boost_ledger.ledger.events import Event, StatusObserved
from boost_ledger.ledger.statuses import (
    TERMINAL_STATUSES,
    cancel_eligible,
    map_upstream_status,
    refund_due_kobo,
)


class OrderState(msgspec.Struct, frozen=True, kw_only=True):
    """The facts of an order the decisions need (read from the locked projection row)."""

    order_id: int
    account_id: int
    status: str
    submission: str
    provider_order_id: str | None
    upstream_status: str | None
    start_count: int | None
    remains: int | None
    price_kobo: int
    type: str
    quantity: int | None
    billable_quantity: int
    refunded: bool
    cancel_supported: bool
    version: int
    submission_attempts: int = 0
    """How many times the order has been claimed for the provider: the number of its latest
    SubmissionAttempted, by which a reply is matched to the attempt it answers."""

    @classmethod
    def from_row(cls, row: Any) -> OrderState:
        return cls(**{name: row[name] for name in cls.__struct_fields__})

    @property
    def remains_unit(self) -> int:
        """What the provider's ``remains`` counts: posts for a subscription (billed as ``max``
        units for each of its posts, shown as ``max``), the billed quantity for every other
        type. A partial refund is the charge's share of these units left undelivered."""
        if self.type == "Subscriptions" and self.quantity:
            return max(1, self.billable_quantity // self.quantity)
        return self.billable_quantity


class Observation(msgspec.Struct, frozen=True):
    """What a provider status means for an order: the event to record and the refund owed."""

    event: Event | None
    refund_kobo: int
    refund_reason: str

    @property
    def changes_nothing(self) -> bool:
        """Nothing to record: no event and no refund (whatever the reason says)."""
        return self.event is None and self.refund_kobo == 0


NOTHING = Observation(None, 0, "")


def decide_observation(
    order: OrderState,
    upstream_status: str,
    start_count: int | None,
    remains: int | None,
    charge: str | None = None,
    remains_unreadable: bool = False,
) -> Observation:
    """The StatusObserved (if anything changed) and the refund the new status owes (if any).

    A settled order (completed, partial, canceled, failed) stays settled. While a cancellation
    is pending, a non-final status keeps the order ``canceling``. A Partial without ``remains``
    cannot be priced, so it is not recorded until a status that says how much was delivered;
    nor is a Partial or an Expired whose ``remains`` was sent but could not be read. Any other
    status is recorded without it (its refund, none or the whole charge, does not depend on it).
    """
    if order.status in TERMINAL_STATUSES:
        return NOTHING
    outcome = map_upstream_status(upstream_status)
    if outcome is None:
        return NOTHING
    if outcome.refund == "partial" and remains is None:
        return NOTHING
    if outcome.refund in ("partial", "unused") and remains_unreadable:
        return NOTHING
    status = outcome.status
    if order.status == "canceling" and not outcome.terminal:
        status = "canceling"
    unchanged = (
        status == order.status
        and upstream_status == order.upstream_status
        and start_count == order.start_count
        and remains == order.remains
    )
    event = (
        None
        if unchanged
        else StatusObserved(
            order_id=order.order_id,
            upstream_status=upstream_status,
            status=status,
            start_count=start_count,
            remains=remains,
            charge=charge,
        )
    )
    refund = 0
    if outcome.terminal and not order.refunded:
        refund = refund_due_kobo(
            outcome,
            charge_kobo=order.price_kobo,
            remains=remains or 0,
            units=order.remains_unit,
        )
    return Observation(event, refund, f"upstream status {upstream_status}")


def cancel_route(order: OrderState) -> str:
    """How a cancel request for ``order`` proceeds (see ``cancel_route_of``)."""
    return cancel_route_of(order.status, order.submission, order.cancel_supported)


def cancel_route_of(status: str, submission: str, cancel_supported: bool) -> str:
    """How a cancel request proceeds: "unavailable", "local", "provider" or "busy".

    Eligibility is ``statuses.cancel_eligible``. "busy" covers an order whose submission is in
    flight or unknown: it may already be at the provider, so it can be neither canceled locally
    nor at the provider until that is settled.
    """
    if not cancel_eligible(status, cancel_supported):
        return "unavailable"
    if submission == "queued":
        return "local"
    if submission == "submitted":
        return "provider"
    return "busy"
