"""``boost audit verify``: every check over the whole log, streamed, never loaded whole."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from boost_ledger import projections
from boost_ledger.audit.chains import verify_chains
from boost_ledger.audit.checks import verify_cross_stream, verify_feed_clock
from boost_ledger.audit.findings import Finding, Report
from boost_ledger.audit.seals import verify_feed_and_seals
from boost_ledger.projections.replay import compare_with_replay


async def verify(connection: asyncpg.Connection[Any], *, projections_too: bool = True) -> Report:
    """Run every check; ``connection`` must be an owner's (postgres.owner_connection)."""
    started = time.perf_counter()
    report = Report()
    report.checks.append("hash-chain, stream-versions, balances, refunds, deterministic ids")
    await verify_chains(connection, report)
    report.checks.append("seals and positions")
    await verify_feed_and_seals(connection, report)
    await verify_cross_stream(connection, report)
    await verify_feed_clock(connection, report)
    if projections_too:
        report.checks.append("projections equal a replay")
        for difference in await compare_with_replay(connection, list(projections.PROJECTIONS)):
            report.add(Finding("projection", difference))
    report.seconds = round(time.perf_counter() - started, 3)
    return report
