"""The read side: one projector per read model, used inline by every write and by rebuilds."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import RecordedEvent, Refunded
from boost_ledger.projections import accounts, catalog, orders, wallets

# Order matters: an account's wallet row exists before money moves; orders before debits
# complete their idempotency records.
PROJECTIONS: tuple[ModuleType, ...] = (accounts, wallets, catalog, orders)


def by_name(name: str) -> ModuleType:
    for module in PROJECTIONS:
        if name == module.NAME:
            return module
    raise KeyError(name)


async def apply_all(connection: Connection, records: Sequence[RecordedEvent]) -> None:
    """Project freshly appended events inline, in the appending transaction."""
    if len(records) > 1 and orders.batchable(records):
        await orders.apply_batch(connection, records)
        return
    if len(records) > 1 and all(type(record.event) is Refunded for record in records):
        # A poll batch's refunds (ledger/fulfilment.observe_batch): two statements for all.
        await wallets.apply_refunds(connection, records)
        await orders.apply_refunds(connection, records)
        return
    for record in records:
        for module in PROJECTIONS:
            if record.type in module.EVENT_TYPES:
                await module.apply(connection, record, records)
