"""A replay in the caller's transaction (a verify's, on its shared snapshot) folds every batch in
one savepoint, not one per batch: past 64 subtransactions a transaction's subxid cache overflows,
and while it runs every other session's snapshot then looks recent rows up in pg_subtrans."""

from __future__ import annotations

from boost_ledger import projections
from boost_ledger.projections import ranges
from boost_ledger.projections.replay import quoted, replay_and_compare

BATCH = 3


async def test_a_replay_in_one_transaction_writes_its_copies_in_one_subtransaction(
    owner, monkeypatch
):
    """The log replayed in batches of 3 (many batches): every row of every temporary copy was
    written by one and the same transaction id, the replay's one savepoint, and the replay
    finds the live tables equal to it."""
    events = await owner.fetchval("select count(*) from events")
    assert events > BATCH * 4  # several batches
    monkeypatch.setattr(ranges, "BATCH_SIZE", BATCH)
    modules = list(projections.PROJECTIONS)
    writers: set[str] = set()
    async with owner.transaction(isolation="repeatable_read"):
        assert await replay_and_compare(owner, modules) == []
        for module in modules:
            for table in module.TABLES:
                rows = await owner.fetch(
                    f"select distinct xmin::text as writer from pg_temp.{quoted(table)}"
                )
                writers |= {row["writer"] for row in rows}
        top = await owner.fetchval("select pg_current_xact_id()::text")
    assert len(writers) == 1, writers
    assert writers != {top}  # the savepoint's, not the transaction's own
