"""Our order statuses, and how an upstream (SMM panel v2) status string maps onto them.

Upstream strings are matched case-insensitively after trimming and collapsing whitespace
(underscores count as spaces, so "in_progress" matches "In progress"):

| upstream string          | kind        | our status    | refund  | terminal |
|--------------------------|-------------|---------------|---------|----------|
| Pending                  | pending     | `pending`     | none    | no       |
| Processing               | processing  | `processing`  | none    | no       |
| In progress              | in_progress | `in_progress` | none    | no       |
| Completed                | completed   | `completed`   | none    | yes      |
| Partial                  | partial     | `partial`     | partial | yes      |
| Canceled, Cancelled      | canceled    | `canceled`    | full    | yes      |
| Refunded                 | refunded    | `canceled`    | full    | yes      |
| Fail, Failed, Error      | failed      | `failed`      | full    | yes      |
| Active (subscriptions)   | active      | `in_progress` | none    | no       |
| Paused (subscriptions)   | paused      | `processing`  | none    | no       |
| Expired (subscriptions)  | expired     | `completed`   | unused  | yes      |

"partial" owes back the charge's share of the units left undelivered, and a Partial without
`remains` (or with one the provider sent but no one can read) is not recorded until a status says
how much was delivered. "unused" is the same share
for a subscription that ended at its expiry with posts left (the trade's convention: a
subscription is charged for all its posts up front, the unused ones owed back at the end); an
Expired without `remains` owes nothing, so it settles the order all the same (one whose `remains`
cannot be read waits, as a Partial does).

Why: "Refunded" means the panel gave the money back to us, so the whole charge is owed to the
client, exactly as for Canceled. A failed upstream order delivered nothing, so it too owes back the
whole charge, but keeps its own status `failed` so that operators and clients can tell a provider
failure from a cancellation. Any other string maps to None: the caller leaves the order where it
is and logs the string, as panels themselves treat unknown strings as still pending.

`canceling` is never an upstream outcome: it is our own state between an accepted cancel request
and the status that settles it.
"""

from typing import Final, Literal, get_args

import msgspec

from boost_ledger.ledger.money import partial_refund_kobo

OrderStatus = Literal[
    "pending",
    "processing",
    "in_progress",
    "completed",
    "partial",
    "canceling",
    "canceled",
    "failed",
]
ORDER_STATUSES: Final[tuple[OrderStatus, ...]] = get_args(OrderStatus)
TERMINAL_STATUSES: Final[frozenset[OrderStatus]] = frozenset(
    {"completed", "partial", "canceled", "failed"}
)
_CANCEL_INELIGIBLE: Final[frozenset[str]] = TERMINAL_STATUSES | {"canceling"}

RefundKind = Literal["none", "full", "partial", "unused"]
UpstreamKind = Literal[
    "pending",
    "processing",
    "in_progress",
    "completed",
    "partial",
    "canceled",
    "refunded",
    "failed",
    "active",
    "paused",
    "expired",
]
_MAX_STATUS_CHARS = 64


class UpstreamOutcome(msgspec.Struct, frozen=True):
    """What one upstream status string means for our order."""

    status: OrderStatus
    refund: RefundKind
    terminal: bool
    kind: UpstreamKind  # the upstream meaning, e.g. "refunded" where `status` says "canceled"


def _outcome(status: OrderStatus, refund: RefundKind, kind: UpstreamKind) -> UpstreamOutcome:
    return UpstreamOutcome(
        status=status, refund=refund, terminal=status in TERMINAL_STATUSES, kind=kind
    )


_UPSTREAM_OUTCOMES: Final[dict[str, UpstreamOutcome]] = {
    "pending": _outcome("pending", "none", "pending"),
    "processing": _outcome("processing", "none", "processing"),
    "in progress": _outcome("in_progress", "none", "in_progress"),
    "completed": _outcome("completed", "none", "completed"),
    "partial": _outcome("partial", "partial", "partial"),
    "canceled": _outcome("canceled", "full", "canceled"),
    "cancelled": _outcome("canceled", "full", "canceled"),
    "refunded": _outcome("canceled", "full", "refunded"),
    "fail": _outcome("failed", "full", "failed"),
    "failed": _outcome("failed", "full", "failed"),
    "error": _outcome("failed", "full", "failed"),
    "active": _outcome("in_progress", "none", "active"),
    "paused": _outcome("processing", "none", "paused"),
    "expired": _outcome("completed", "unused", "expired"),
}


def map_upstream_status(text: str) -> UpstreamOutcome | None:
    """Return the outcome an upstream status string means, or None for an unknown string."""
    if len(text) > _MAX_STATUS_CHARS:
        return None
    normalised = " ".join(text.replace("_", " ").split()).casefold()
    return _UPSTREAM_OUTCOMES.get(normalised)


def refund_due_kobo(outcome: UpstreamOutcome, *, charge_kobo: int, remains: int, units: int) -> int:
    """Return the kobo owed back for an outcome: 0, the whole charge, or the unused share of
    ``units``, the quantity ``remains`` counts (a subscription's posts, else the billed
    quantity)."""
    assert charge_kobo >= 0, charge_kobo
    if outcome.refund == "full":
        return charge_kobo
    if outcome.refund in ("partial", "unused"):
        return partial_refund_kobo(charge_kobo, remains, units)
    return 0


def cancel_eligible(status: str, service_cancel: bool) -> bool:
    """Return whether a client may ask to cancel an order now.

    Never when the service does not support cancellation, nor once the order is settled
    (completed, partial, canceled, failed) or a cancellation is already under way (canceling).
    Whether the order was submitted does not change the answer, only the route the caller takes
    (``order_rules.cancel_route_of``): an order that certainly never reached the provider is
    canceled locally and refunded at once (DESIGN §6), a submitted one through the provider's
    `cancel`, and one whose submission is in flight or unknown must wait.
    """
    assert status in ORDER_STATUSES, f"unknown order status {status!r}"
    return service_cancel and status not in _CANCEL_INELIGIBLE
