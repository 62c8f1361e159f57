"""Cross-stream checks, each one SQL query over the whole log (PostgreSQL streams the scan)."""

from __future__ import annotations

from typing import Any

import asyncpg

from boost_ledger.audit.findings import Finding, Report

# (name, query returning rows (global_position, stream_id, detail), limited)
_CHECKS = (
    (
        "idempotency",
        """
        select min(global_position) as global_position, min(stream_id) as stream_id,
               'account ' || (data->>'account_id') || ' key ' || (data->>'idempotency_key')
               || ' has ' || count(*) || ' orders' as detail
          from events where type = 'OrderPlaced'
         group by data->>'account_id', data->>'idempotency_key' having count(*) > 1
         limit 100
        """,
    ),
    (
        "debit-matches-order",
        """
        select p.global_position, p.stream_id,
               'order ' || (p.data->>'order_id') || ' priced ' || (p.data->>'price_kobo')
               || ' kobo but debited ' || coalesce(d.data->>'amount_kobo', 'nothing') as detail
          from events p
          left join events d on d.type = 'FundsDebited'
               and d.stream_id = 'wallet-' || (p.data->>'account_id')
               and d.data->'order_id' = p.data->'order_id'
         where p.type = 'OrderPlaced'
           and (d.global_position is null or d.data->'amount_kobo' <> p.data->'price_kobo')
         limit 100
        """,
    ),
    (
        "debit-has-order",
        """
        select d.global_position, d.stream_id,
               'debit for order ' || (d.data->>'order_id') || ' without an OrderPlaced' as detail
          from events d
         where d.type = 'FundsDebited' and not exists (
               select 1 from events p where p.stream_id = 'order-' || (d.data->>'order_id')
                  and p.version = 1 and p.type = 'OrderPlaced')
         limit 100
        """,
    ),
    (
        "order-opens-stream",
        """
        select global_position, stream_id,
               'first event of the order stream is ' || type as detail
          from events
         where stream_id like 'order-%' and version = 1 and type <> 'OrderPlaced'
         limit 100
        """,
    ),
)


async def verify_cross_stream(connection: asyncpg.Connection[Any], report: Report) -> None:
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        for name, query in _CHECKS:
            report.checks.append(name)
            for row in await connection.fetch(query):
                report.add(Finding(name, row["detail"], row["global_position"], row["stream_id"]))


async def verify_feed_clock(connection: asyncpg.Connection[Any], report: Report) -> None:
    """No event sits at or past the feed's clock. Such a row (restored from another cluster and
    not yet realigned) would sort after events appended later, a gap a reader could fall into."""
    report.checks.append("feed-clock")
    row = await connection.fetchrow(
        "select e.global_position, e.stream_id from events e, feed_epoch f"
        " where e.transaction_id >= feed_clock_bound(f.xid_offset)"
        " order by e.global_position limit 1"
    )
    if row is not None:
        report.add(Finding(
            "feed-clock",
            "events carry transaction ids from another cluster; run `boost migrate` to realign",
            row["global_position"], row["stream_id"],
        ))
