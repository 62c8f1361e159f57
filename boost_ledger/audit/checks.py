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
        with placed as (
            select (data->>'order_id')::bigint as order_id, (data->>'price_kobo')::bigint as price,
                   global_position, stream_id
              from events where type = 'OrderPlaced'),
        debits as (
            select (data->>'order_id')::bigint as order_id,
                   (data->>'amount_kobo')::bigint as amount
              from events where type = 'FundsDebited')
        select p.global_position, p.stream_id,
               'order ' || p.order_id || ' priced ' || p.price || ' kobo but debited '
               || coalesce(d.amount::text, 'nothing') as detail
          from placed p left join debits d on d.order_id = p.order_id
         where d.order_id is null or d.amount <> p.price
         limit 100
        """,
    ),
    (
        "debit-has-order",
        """
        with placed as (
            select (data->>'order_id')::bigint as order_id from events where type = 'OrderPlaced'),
        debits as (
            select (data->>'order_id')::bigint as order_id, global_position, stream_id
              from events where type = 'FundsDebited')
        select d.global_position, d.stream_id,
               'debit for order ' || d.order_id || ' without an OrderPlaced' as detail
          from debits d left join placed p on p.order_id = d.order_id
         where p.order_id is null
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
        # Whole-log checks: hash joins stream in linear time, whatever the row estimates say
        # (a fresh log has no statistics and would tempt the planner into nested loops).
        await connection.execute("set local enable_nestloop = off")
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
        report.add(
            Finding(
                "feed-clock",
                "events carry transaction ids from another cluster; run `boost migrate` to realign",
                row["global_position"],
                row["stream_id"],
            )
        )
