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
from boost_ledger.audit.chains import ChainCheck, verify_unique_ids, verify_unique_versions
from boost_ledger.audit.checks import CHECK_NAMES, verify_feed_clock, verify_sets
from boost_ledger.audit.findings import Finding, Report
from boost_ledger.audit.money import MoneyCheck
from boost_ledger.audit.seals import SealCheck, read_seals
from boost_ledger.projections import jobs
from boost_ledger.projections.replay import quoted, replay_and_compare

Connect = Callable[[], Awaitable["asyncpg.Connection[Any]"]]
# Replays projections in another process, in an exported snapshot: (snapshot, modules) ->
# the differences (``replay_elsewhere`` is what that process runs).
Offload = Callable[[str, list[ModuleType]], Awaitable[list[str]]]

_PASS_CHECKS = [
    "hash-chain, stream-versions, event-type",
    "balances, amounts, deterministic ids, wallet-stream",
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
        report.checks = [*_PASS_CHECKS, "unique-event-id", *CHECK_NAMES, "feed-clock"]
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
    offload: Offload | None = None,
) -> Report:
    """Run every check; ``connection`` (and ``connect``'s) must be an owner's
    (postgres.owner_connection). With ``connect``, ``offload`` may replay the projections that
    take the biggest share of the log in another process (see ``replay_elsewhere``)."""
    started = time.perf_counter()
    parts = _Parts()
    modules = list(projections.PROJECTIONS) if projections_too else []
    async with connection.transaction(isolation="repeatable_read"):
        await _hold_tables(connection, modules)
        async with _sharing_snapshot(connection, connect) as shared:
            await _check(connection, shared, modules, parts, offload)
    report = parts.merged(projections_too)
    report.seconds = round(time.perf_counter() - started, 3)
    return report


async def _hold_tables(connection: asyncpg.Connection[Any], modules: list[ModuleType]) -> None:
    """Lock the live tables of ``modules`` before the transaction's snapshot is taken (a lock
    takes none): a rebuild's swap, which takes them whole, then waits until the verification
    ends, instead of putting tables its snapshot cannot see rows of under its replay's
    comparison (a table swapped in after the snapshot looks empty to it)."""
    tables = [table for module in modules for table in module.TABLES]
    if tables:
        names = ", ".join(f"public.{quoted(table)}" for table in tables)
        await connection.execute(f"lock table {names} in access share mode")


async def _check(
    connection: asyncpg.Connection[Any],
    shared: tuple[str, asyncpg.Connection[Any], asyncpg.Connection[Any]] | None,
    modules: list[ModuleType],
    parts: _Parts,
    offload: Offload | None,
) -> None:
    """Every part of the verification, in turn on ``connection`` or, given the ``shared``
    snapshot's connections, side by side (the heaviest replay offloaded, if it can be)."""
    if shared is None:
        parts.projections = await _pass(connection, None, modules, parts)
        await _set_checks(connection, parts.sets)
        return
    snapshot, reader, checker = shared
    here, elsewhere = await _split(connection, modules, offload is not None)
    passing = _pass(connection, reader, here, parts)
    if offload is None or not elsewhere:
        parts.projections, _ = await _concurrently([passing, _set_checks(checker, parts.sets)])
        return
    # The set checks are PostgreSQL's work alone. Run from the start, they would slow the reads
    # of both replays while both processes are busy; once either replay has ended, they take the
    # share of the cores it leaves (the other's replay, then each side's comparison, which is
    # PostgreSQL's work too).
    found, elsewhere_found, _ = await _concurrently(
        [passing, offload(snapshot, elsewhere)], lambda: _set_checks(checker, parts.sets)
    )
    parts.projections = [*found, *elsewhere_found]


async def replay_elsewhere(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any],
    snapshot: str,
    modules: Sequence[ModuleType],
) -> list[str]:
    """The other side of ``offload``: replay ``modules`` in the exported ``snapshot`` (two owner
    connections of this process) and compare; the differences."""
    async with (
        connection.transaction(isolation="repeatable_read"),
        reader.transaction(isolation="repeatable_read"),
    ):
        for shared in (connection, reader):
            await shared.execute("set transaction snapshot " + _literal(snapshot))
        return await replay_and_compare(connection, modules, reader=reader)


async def _split(
    connection: asyncpg.Connection[Any], modules: list[ModuleType], offloading: bool
) -> tuple[list[ModuleType], list[ModuleType]]:
    """(replayed here, replayed elsewhere): the heaviest share goes elsewhere, since this
    process also runs the event-by-event checks."""
    if not offloading or len(modules) < 2:
        return modules, []
    heaviest, *rest = jobs.share_out(modules, await jobs.type_shares(connection), 2)
    return [module for group in rest for module in group], heaviest


async def _concurrently(
    first: list[Awaitable[Any]], then: Callable[[], Awaitable[Any]] | None = None
) -> list[Any]:
    """``first`` side by side, and what ``then`` (if any) starts once one of them has ended;
    their results in that order. Should anything fail, whatever still runs is cancelled."""
    tasks = [asyncio.ensure_future(awaitable) for awaitable in first]
    try:
        if then is not None:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # a failure ends the verification now
            tasks.append(asyncio.ensure_future(then()))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # the first failure, as soon as it happens
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _pass(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any] | None,
    modules: Sequence[ModuleType],
    parts: _Parts,
) -> list[str]:
    """The pass over the log: the event-by-event checks observe it, the projections replay it."""
    chains, money = ChainCheck(parts.chains), MoneyCheck(parts.money)
    seals = SealCheck(parts.seals, await read_seals(connection, parts.seals))

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
    await verify_unique_ids(connection, report)
    await verify_sets(connection, report)
    await verify_feed_clock(connection, report)


@asynccontextmanager
async def _sharing_snapshot(
    connection: asyncpg.Connection[Any], connect: Connect | None
) -> AsyncIterator[tuple[str, asyncpg.Connection[Any], asyncpg.Connection[Any]] | None]:
    """The snapshot of ``connection``'s transaction, exported, and two more connections (a
    reader and a checker) in transactions that see it; None without ``connect``."""
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
        yield snapshot, helpers[0], helpers[1]


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
