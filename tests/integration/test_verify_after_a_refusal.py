"""A replay refusal met while the next batch is being read ahead, on the connection that shares
the verification's snapshot: verify still reads the rest of the log there and reports the
refusal as a finding, instead of failing on that connection's transaction (a read ahead
cancelled while PostgreSQL runs it fails the statement, and with it the transaction)."""

from __future__ import annotations

import asyncio
from typing import Any

from tampering import forge_data

from boost_ledger import postgres
from boost_ledger.audit import verify
from boost_ledger.ledger import store
from boost_ledger.projections import ranges

VERIFY_TIMEOUT_S = 60


async def test_a_refusal_with_a_read_ahead_in_flight_is_reported_not_a_crash(
    ledger, owner, monkeypatch
):
    """An order's fingerprint made no hex (chain recomputed), on a log read in batches of 5,
    each read taking PostgreSQL a moment: the replay's fold refuses the order while the next
    batch is being read ahead, and verify (with its shared-snapshot connections, as the CLI runs
    it) still names the refusal and checks every event of the log."""
    stream = await owner.fetchval(
        "select stream_id from events where type = 'OrderPlaced' order by global_position limit 1"
    )
    forged = await forge_data(owner, stream, 1, "fingerprint", '"zz"')
    events = await owner.fetchval("select count(*) from events")
    assert events > 5 * 3  # the refusal comes with batches still to read

    real_read = store.read_range

    async def slow_read(connection: Any, *arguments: Any, **options: Any) -> list[Any]:
        await connection.execute("select pg_sleep(0.2)")  # PostgreSQL busy with the read
        return await real_read(connection, *arguments, **options)

    monkeypatch.setattr(ranges, "BATCH_SIZE", 5)
    monkeypatch.setattr(store, "read_range", slow_read)
    report = await asyncio.wait_for(
        verify.verify(owner, connect=lambda: postgres.owner_connection(ledger.dsn)),
        VERIFY_TIMEOUT_S,
    )
    replays = [f.detail for f in report.findings if f.check == "projection"]
    assert len(replays) == 1 and f"replaying event {forged} ({stream}" in replays[0], replays
    assert report.events == events
