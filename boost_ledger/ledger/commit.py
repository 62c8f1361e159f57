"""One decision, one transaction: append its events and update the inline projections."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from boost_ledger import projections
from boost_ledger.ledger import store
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import RecordedEvent
from boost_ledger.ledger.store import NewEvent


async def commit(
    connection: Connection,
    new_events: Sequence[NewEvent],
    metadata: Mapping[str, Any] | None = None,
) -> list[RecordedEvent]:
    """Append ``new_events`` and project them, inside the caller's transaction."""
    records = await store.append(connection, new_events, metadata)
    await projections.apply_all(connection, records)
    return records
