"""``boost audit verify``: every check over the whole log, streamed, never loaded whole.

One pass over the log in position order feeds the checks that go event by event (versions and
hash chains, money, seals) and the replay of the projections into temporary tables, which are
then compared with the live ones. The checks about sets of events are SQL queries. Everything
sees one snapshot. Given ``connect`` (a way to open more owner connections), the pass reads the
log on a connection of its own, a batch ahead, and the SQL checks run on a third one meanwhile,
all sharing the snapshot (``pg_export_snapshot``): PostgreSQL and this process then work at the
same time. Without it, everything runs in turn on ``connection``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import ModuleType
from typing import Any

import asyncpg

from boost_ledger import projections
from boost_ledger.audit.chains import ChainCheck, verify_unique_versions
from boost_ledger.audit.checks import CHECK_NAMES, verify_feed_clock, verify_sets
from boost_ledger.audit.findings import Finding, Report
from boost_ledger.audit.money import MoneyCheck
from boost_ledger.audit.seals import SealCheck, read_seals
from boost_ledger.projections.replay import replay_and_compare

Connect = Callable[[], Awaitable["asyncpg.Connection[Any]"]]

_PASS_CHECKS = [
    "hash-chain, stream-versions",
    "balances, amounts, deterministic ids",
    "seals and positions",
]


class _Parts:
    """A report per part of the verification, merged in this order whatever ran first."""

    def __init__(self) -> None:
        self.chains, self.money, self.seals, self.sets = Report(), Report(), Report(), Report()
        self.projections: list[str] = []

    def merged(self, projections_too: bool) -> Report:
        report = Report(events=self.chains.events, streams=self.chains.streams)
        report.seals = self.seals.seals
        report.checks = [*_PASS_CHECKS, *CHECK_NAMES, "feed-clock"]
        for part in (self.chains, self.money, self.seals, self.sets):
            for finding in part.findings:
                report.add(finding)
        if projections_too:
            report.checks.append("projections equal a replay")
            for difference in self.projections:
                report.add(Finding("projection", difference))
        return report


async def verify(
    connection: asyncpg.Connection[Any],
    *,
    projections_too: bool = True,
    connect: Connect | None = None,
) -> Report:
    """Run every check; ``connection`` (and ``connect``'s) must be an owner's
    (postgres.owner_connection)."""
    started = time.perf_counter()
    parts = _Parts()
    modules = list(projections.PROJECTIONS) if projections_too else []
    async with (
        connection.transaction(isolation="repeatable_read"),
        _sharing_snapshot(connection, connect) as helpers,
    ):
        reader = helpers[0] if helpers else None
        sets = asyncio.create_task(_set_checks(helpers[1], parts.sets)) if helpers else None
        try:
            parts.projections = await _pass(connection, reader, modules, parts)
        except BaseException:
            if sets is not None:
                sets.cancel()
                await asyncio.gather(sets, return_exceptions=True)
            raise
        await (sets if sets is not None else _set_checks(connection, parts.sets))
    report = parts.merged(projections_too)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


async def _pass(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any] | None,
    modules: Sequence[ModuleType],
    parts: _Parts,
) -> list[str]:
    """The pass over the log: the event-by-event checks observe it, the projections replay it."""
    chains, money = ChainCheck(parts.chains), MoneyCheck(parts.money)
    seals = SealCheck(parts.seals, await read_seals(connection))

    async def observe(rows: Sequence[Any]) -> None:
        parts.chains.events += len(rows)
        await chains.check(connection, rows)
        money.check(rows)
        seals.check(rows)

    differences = await replay_and_compare(connection, modules, reader=reader, observer=observe)
    seals.finish()
    return differences


async def _set_checks(connection: asyncpg.Connection[Any], report: Report) -> None:
    await verify_unique_versions(connection, report)
    await verify_sets(connection, report)
    await verify_feed_clock(connection, report)


@asynccontextmanager
async def _sharing_snapshot(
    connection: asyncpg.Connection[Any], connect: Connect | None
) -> AsyncIterator[tuple[asyncpg.Connection[Any], asyncpg.Connection[Any]] | None]:
    """Two more connections (a reader and a checker) in transactions that see the snapshot of
    ``connection``'s transaction; None without ``connect``."""
    if connect is None:
        yield None
        return
    snapshot: str = await connection.fetchval("select pg_export_snapshot()")
    async with AsyncExitStack() as stack:
        helpers = []
        for _ in range(2):
            helper = await connect()
            stack.push_async_callback(helper.close)
            await stack.enter_async_context(helper.transaction(isolation="repeatable_read"))
            await helper.execute("set transaction snapshot " + _literal(snapshot))
            helpers.append(helper)
        yield helpers[0], helpers[1]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
