"""Read model of orders and idempotency records, from the ``order-<id>`` streams and the
order-related wallet events (the debit completes a checkout; a refund marks the order)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    CancelRejected,
    CancelRequested,
    FundsDebited,
    OrderCanceled,
    OrderPlaced,
    OrderSubmitted,
    RecordedEvent,
    Refunded,
    StatusObserved,
    SubmissionAttempted,
    SubmissionDeferred,
    SubmissionFailed,
    SubmissionUnknown,
)
from boost_ledger.projections.bulk import State, TableSpec
from boost_ledger.projections.views import checkout_response

NAME = "orders"
TABLES = ("orders", "idempotency_keys")
EVENT_TYPES = frozenset(
    {
        "OrderPlaced",
        "FundsDebited",
        "Refunded",
        "SubmissionAttempted",
        "OrderSubmitted",
        "SubmissionFailed",
        "SubmissionDeferred",
        "SubmissionUnknown",
        "StatusObserved",
        "CancelRequested",
        "CancelRejected",
        "OrderCanceled",
    }
)


async def apply(
    connection: Connection, record: RecordedEvent, batch: Sequence[RecordedEvent] = ()
) -> None:
    """Update the read model for ``record``; ``batch`` is everything appended with it.

    OrderPlaced and its FundsDebited are projected where checkout appends them, inside the
    ``checkout_place`` function (sql/0011_checkout.sql); ``fold`` below is their twin.
    """
    event = record.event
    assert not isinstance(event, OrderPlaced | FundsDebited), "checkout_place projects these"
    if isinstance(event, Refunded):
        updated = await connection.fetchval(
            "update orders set refunded = true, refunded_kobo = $2, updated_at = $3"
            " where order_id = $1 and not refunded returning 1",
            event.order_id,
            event.amount_kobo,
            record.recorded_at,
        )
        assert updated == 1, f"order {event.order_id} refunded twice"
    else:
        await _apply_order_change(connection, record)


# Each other order event's effect on the row: (set clause, parameters after order_id and
# version); those of ``_BATCHED`` below are applied by ``apply_batch``.
def _changes(event: object) -> tuple[str, tuple[Any, ...]]:
    if isinstance(event, SubmissionDeferred):
        return "submission = 'queued'", ()
    if isinstance(event, SubmissionFailed):
        return "submission = 'failed', status = 'failed'", ()
    if isinstance(event, SubmissionUnknown):
        return "submission = 'unknown'", ()
    if isinstance(event, CancelRequested):
        return "status = 'canceling'", ()
    if isinstance(event, CancelRejected):
        return "", ()
    if isinstance(event, OrderCanceled):
        return "submission = 'canceled', status = 'canceled'", ()
    raise AssertionError(f"orders projection does not handle {type(event).__name__}")


async def _apply_order_change(connection: Connection, record: RecordedEvent) -> None:
    event = record.event
    if type(event) in _BATCHED:  # one statement describes these, alone or several at a time
        await apply_batch(connection, [record])
        return
    order_id = getattr(event, "order_id")  # noqa: B009 - every order event carries it
    clause, parameters = _changes(event)
    assignments = ", ".join(filter(None, [clause, "version = $2", "updated_at = $3"]))
    updated = await connection.fetchval(
        f"update orders set {assignments} where order_id = $1 and version = $2 - 1 returning 1",
        order_id,
        record.version,
        record.recorded_at,
        *parameters,
    )
    assert updated == 1, f"order {order_id} is not at version {record.version - 1}"


# The submitter's claims and accepted replies, and the poller's observations, come several
# orders at a time: each such batch is
# projected by one statement over arrays: (set clause over the target ``o`` and the arrays' row
# ``c``, the extra arrays' columns and types, the event's values for them).
_BATCHED: dict[type, tuple[str, tuple[tuple[str, str], ...]]] = {
    SubmissionAttempted: (
        "submission = 'attempting', submission_attempts = o.submission_attempts + 1",
        (),
    ),
    OrderSubmitted: (
        "submission = 'submitted', provider_order_id = c.provider_order_id",
        (("provider_order_id", "text"),),
    ),
    StatusObserved: (
        "status = c.status, upstream_status = c.upstream_status, start_count = c.start_count,"
        " remains = c.remains",
        (
            ("status", "text"),
            ("upstream_status", "text"),
            ("start_count", "bigint"),
            ("remains", "bigint"),
        ),
    ),
}


def batchable(records: Sequence[RecordedEvent]) -> bool:
    """Whether ``records`` are one batched kind of event, each of a different order."""
    kind = type(records[0].event)
    return (
        kind in _BATCHED
        and all(type(record.event) is kind for record in records)
        and len({getattr(record.event, "order_id") for record in records}) == len(records)  # noqa: B009
    )


async def apply_batch(connection: Connection, records: Sequence[RecordedEvent]) -> None:
    """Project a ``batchable`` run of events in one statement; each order must be at the
    version before its event, as ``apply`` checks one at a time."""
    clause, extra = _BATCHED[type(records[0].event)]
    columns = ["order_id", "version", "at", *(name for name, _ in extra)]
    arrays = ["$1::bigint[]", "$2::int[]", "$3::timestamptz[]"]
    arrays += [f"${index}::{kind}[]" for index, (_, kind) in enumerate(extra, start=4)]
    status = await connection.execute(
        f"update orders o set {clause}, version = c.version, updated_at = c.at"
        f" from unnest({', '.join(arrays)}) as c({', '.join(columns)})"
        " where o.order_id = c.order_id and o.version = c.version - 1",
        [getattr(record.event, "order_id") for record in records],  # noqa: B009
        [record.version for record in records],
        [record.recorded_at for record in records],
        *([getattr(record.event, name) for record in records] for name, _ in extra),
    )
    assert status == f"UPDATE {len(records)}", f"orders not at the expected versions: {status}"


async def apply_refunds(connection: Connection, records: Sequence[RecordedEvent]) -> None:
    """Project several Refunded events, each of a different order, in one statement, as
    ``apply`` does one at a time."""
    refunds = [record.event for record in records if isinstance(record.event, Refunded)]
    assert len(refunds) == len(records), "only Refunded events"
    status = await connection.execute(
        "update orders o set refunded = true, refunded_kobo = c.amount_kobo, updated_at = c.at"
        " from unnest($1::bigint[], $2::bigint[], $3::timestamptz[])"
        " as c(order_id, amount_kobo, at)"
        " where o.order_id = c.order_id and not o.refunded",
        [event.order_id for event in refunds],
        [event.amount_kobo for event in refunds],
        [record.recorded_at for record in records],
    )
    assert status == f"UPDATE {len(records)}", f"an order refunded twice: {status}"


# ---- the same read model as a pure fold, for set-based replays (see projections/bulk.py) ----

_ROW_COLUMNS = (
    "order_id",
    "account_id",
    "idempotency_key",
    "fingerprint",
    "service_id",
    "provider_service_id",
    "service_name",
    "category",
    "type",
    "link",
    "quantity",
    "billable_quantity",
    "fields",
    "rate_per_1000_kobo",
    "price_kobo",
    "cancel_supported",
    "status",
    "submission",
    "submission_attempts",
    "provider_order_id",
    "upstream_status",
    "start_count",
    "remains",
    "refunded_kobo",
    "refunded",
    "version",
    "created_at",
    "updated_at",
)

BULK_TABLES = (
    TableSpec(name="orders", partition="order_id", key=("order_id",), columns=_ROW_COLUMNS),
    TableSpec(
        name="idempotency_keys",
        partition="order_id",
        key=("order_id",),
        columns=(
            "account_id",
            "idempotency_key",
            "fingerprint",
            "order_id",
            "status_code",
            "response",
        ),
    ),
)


# An order's rows begin with its OrderPlaced (the auditor checks that it opens the stream).
OPENED_BY = frozenset({OrderPlaced})


def touches(record: RecordedEvent) -> list[tuple[str, Any]]:
    order_id = getattr(record.event, "order_id")  # noqa: B009 - every order event carries it
    return [("orders", order_id), ("idempotency_keys", order_id)]


# What every order row starts with, whatever its OrderPlaced.
_PLACED_ROW = {
    "status": "pending",
    "submission": "queued",
    "submission_attempts": 0,
    "provider_order_id": None,
    "upstream_status": None,
    "start_count": None,
    "remains": None,
    "refunded_kobo": 0,
    "refunded": False,
}


def _placed_row(record: RecordedEvent, event: OrderPlaced) -> dict[str, Any]:
    row = msgspec.structs.asdict(event)  # its fields as they are, but the fingerprint as bytes
    row.update(_PLACED_ROW)
    row["fingerprint"] = bytes.fromhex(event.fingerprint)
    row["version"] = record.version
    row["created_at"] = row["updated_at"] = record.recorded_at
    return row


def _fold_change(row: dict[str, Any], event: object) -> None:
    if isinstance(event, SubmissionAttempted):
        row.update(submission="attempting", submission_attempts=row["submission_attempts"] + 1)
    elif isinstance(event, SubmissionDeferred):
        row["submission"] = "queued"
    elif isinstance(event, OrderSubmitted):
        row.update(submission="submitted", provider_order_id=event.provider_order_id)
    elif isinstance(event, SubmissionFailed):
        row.update(submission="failed", status="failed")
    elif isinstance(event, SubmissionUnknown):
        row["submission"] = "unknown"
    elif isinstance(event, StatusObserved):
        row.update(
            status=event.status,
            upstream_status=event.upstream_status,
            start_count=event.start_count,
            remains=event.remains,
        )
    elif isinstance(event, CancelRequested):
        row["status"] = "canceling"
    elif isinstance(event, OrderCanceled):
        row.update(submission="canceled", status="canceled")
    else:
        assert isinstance(event, CancelRejected), type(event).__name__


def fold(state: State, record: RecordedEvent) -> None:
    event = record.event
    orders = state["orders"]
    if isinstance(event, OrderPlaced):
        orders[event.order_id] = _placed_row(record, event)
        return
    order = orders[getattr(event, "order_id")]  # noqa: B009
    if isinstance(event, FundsDebited):
        state["idempotency_keys"][event.order_id] = {
            "account_id": order["account_id"],
            "idempotency_key": order["idempotency_key"],
            "fingerprint": order["fingerprint"],
            "order_id": event.order_id,
            "status_code": 201,
            "response": checkout_response(order, event.balance_after_kobo),
        }
        return
    order["updated_at"] = record.recorded_at
    if isinstance(event, Refunded):
        assert not order["refunded"], f"order {event.order_id} refunded twice"
        order.update(refunded=True, refunded_kobo=event.amount_kobo)
        return
    assert order["version"] == record.version - 1, f"order {order['order_id']} out of order"
    order["version"] = record.version
    _fold_change(order, event)
