"""The batched projection path (``orders.apply_batch``) is only taken where it is equivalent."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from boost_ledger import projections
from boost_ledger.ledger.events import (
    Event,
    OrderSubmitted,
    RecordedEvent,
    StatusObserved,
    SubmissionAttempted,
)
from boost_ledger.projections import orders


def _record(event: Event, version: int = 2) -> RecordedEvent:
    return RecordedEvent(
        global_position=0, event_id=uuid.uuid4(), stream_id="order-1", version=version,
        event=event, metadata={}, transaction_id=0, recorded_at=datetime.now(UTC), hash=b"",
    )


def test_batched_events_are_projected_by_the_orders_projection_alone() -> None:
    """``apply_all`` hands a batch to the orders projection only: no other projection may
    handle a batched event type, or it would miss those events."""
    batched = {kind.__name__ for kind in (SubmissionAttempted, OrderSubmitted, StatusObserved)}
    for module in projections.PROJECTIONS:
        handled = batched & module.EVENT_TYPES
        assert handled == (batched if module is orders else set()), module.NAME


def test_only_one_kind_of_event_each_of_another_order_is_batchable() -> None:
    attempted = [_record(SubmissionAttempted(order_id=i, attempt=1)) for i in (1, 2, 3)]
    assert orders.batchable(attempted)
    submitted = _record(OrderSubmitted(order_id=4, provider_order_id="p-4"))
    assert not orders.batchable([*attempted, submitted])  # two kinds
    assert not orders.batchable([attempted[0], attempted[0]])  # one order twice
    observed = StatusObserved(
        order_id=5, upstream_status="Pending", status="pending", start_count=None, remains=None
    )
    assert orders.batchable([_record(observed)])
