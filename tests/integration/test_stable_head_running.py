"""The stable head waits for every transaction running when the head was read, even one whose
id is above every completed one: such a transaction can hold a position below the head (it drew
it before a transaction with a lower id drew the head and committed), and a rebuild's round up
to that head, or a seal over it, would pass over its event for good."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import support

from boost_ledger import postgres
from boost_ledger.projections import replay
from boost_ledger.projections.replay import stable_head

_APPEND = """
insert into events (event_id, stream_id, version, type, data)
values ($1, $2, 1, 'AccountOpened', jsonb_build_object('account_id', $3::bigint, 'name', 'head'))
returning global_position
"""
WAIT_S = 0.5


async def test_the_head_waits_for_a_running_transaction_with_an_id_above_the_completed_ones(
    test_server: support.TestServer,
) -> None:
    """Transaction C takes its id, then T (a higher id) appends an event and stays open, then C
    appends one after it and commits: the head is C's event, above T's, and no id above T's has
    completed. The head must not be given while T runs, and T's event is then at or below it."""
    dsn = await test_server.fresh_database()
    lower, higher, reader = [await postgres.owner_connection(dsn) for _ in range(3)]
    try:
        lower_transaction, higher_transaction = lower.transaction(), higher.transaction()
        await lower_transaction.start()
        await lower.fetchval("select pg_current_xact_id()")  # C's id first: the lower one
        await higher_transaction.start()
        held = await higher.fetchval(_APPEND, uuid.uuid4(), "account-900001", 900001)
        head_position = await lower.fetchval(_APPEND, uuid.uuid4(), "account-900002", 900002)
        await lower_transaction.commit()
        assert held < head_position

        head = asyncio.ensure_future(stable_head(reader))
        await asyncio.sleep(WAIT_S)
        given_while_running = head.done()
        await higher_transaction.commit()
        assert await asyncio.wait_for(head, 10) == head_position
        assert not given_while_running, "the head was given while an event below it could commit"
    finally:
        for connection in (lower, higher, reader):
            await connection.close()


async def test_a_head_that_stays_unstable_past_the_wait_is_a_named_refusal(
    test_server: support.TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transaction older than the head that does not end (an audit verify's, a session idle
    in a transaction) makes the wait end in ``HeadNotStable``, which ``boost`` prints as one
    line (exit 1), not in the bare ``TimeoutError`` of the wait."""
    monkeypatch.setattr(replay, "STABLE_WAIT_S", 0.3)
    dsn = await test_server.fresh_database()
    idle, reader = [await postgres.owner_connection(dsn) for _ in range(2)]
    try:
        async with idle.transaction():
            await idle.fetchval("select pg_current_xact_id()")
            with pytest.raises(replay.HeadNotStable, match="pg_stat_activity"):
                await stable_head(reader)
        assert await asyncio.wait_for(stable_head(reader), 10) >= 0  # once it has ended
    finally:
        for connection in (idle, reader):
            await connection.close()
