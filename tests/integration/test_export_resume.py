"""``boost audit export --after N`` resumes an export: the last position an export wrote is a
safe place to resume from, even while a slower transaction still holds a position below it.
A position is drawn at insert but becomes visible at commit, so an export of whatever was
visible could end past a position filled later, which no export after it would ever show."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from boost_ledger import postgres
from boost_ledger.audit.export import export_lines
from boost_ledger.ledger import accounts


async def _export(dsn: str, after: int) -> list[int]:
    connection = await postgres.owner_connection(dsn)
    try:
        return [json.loads(line)["global_position"]
                async for line in export_lines(connection, after)]
    finally:
        await connection.close()


async def test_an_export_resumed_after_its_last_position_misses_no_event(
    pool: asyncpg.Pool[Any], dsn: str
) -> None:
    """An account opened in a transaction still open (its events hold lower positions) while
    another is opened and committed: the export and the one resumed after its last position
    hold every event of the log between them."""
    async with pool.acquire() as slow, pool.acquire() as fast:
        held = slow.transaction()
        await held.start()
        try:
            await accounts.open_account(slow, "slow", ["boosting:buy"])
            await accounts.open_account(fast, "fast", ["boosting:buy"])
            first = asyncio.ensure_future(_export(dsn, 0))
            await asyncio.sleep(0.5)  # the export runs meanwhile (or waits for the slow one)
        finally:
            await held.commit()
        exported = await asyncio.wait_for(first, 30)
    resumed = await _export(dsn, max(exported))
    every = [row[0] for row in await pool.fetch(
        "select global_position from events order by global_position")]
    assert sorted(exported + resumed) == every
