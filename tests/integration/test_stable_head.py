"""A transaction has its id before its first event draws a position, so that the rebuild's
stable head (which waits for the transactions a snapshot sees running) and a seal never pass
over an event that can still commit, even one a transaction appends as its very first write
(opening an account, a catalog sync, a seal)."""

from __future__ import annotations

import uuid

import support

from boost_ledger import postgres

# The row's source is filtered on whether the transaction has an id yet: the filter runs before
# the row's position (an identity default) is drawn, and after any statement trigger.
_FIRST_WRITE = """
insert into events (event_id, stream_id, version, type, data)
select $1, $2, 1, 'AccountOpened', '{"account_id": 900001, "name": "head"}'
 where pg_current_xact_id_if_assigned() is not null
returning global_position
"""


async def test_a_first_write_has_its_transaction_id_before_its_position(
    test_server: support.TestServer,
) -> None:
    """In a transaction that has written nothing, an event's row is built (its position drawn)
    only once the transaction has its id: a snapshot taken while the row waits in its triggers
    lists the transaction as running, and a stable head waits for it."""
    dsn = await test_server.fresh_database()
    owner = await postgres.owner_connection(dsn)
    try:
        async with owner.transaction():
            assert await owner.fetchval("select pg_current_xact_id_if_assigned()") is None
            position = await owner.fetchval(_FIRST_WRITE, uuid.uuid4(), "account-900001")
        assert position is not None, "the row was built before the transaction had an id"
    finally:
        await owner.close()
