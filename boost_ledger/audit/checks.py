"""Checks about sets of events, each one SQL query (PostgreSQL does the work).

The order and money events' facts are taken out of their JSON once, into a narrow temporary
table that also holds the first event of every order stream (one scan of the log instead of one
per check); every check then reads that table. Run them in a transaction that sees the snapshot
being verified.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from boost_ledger.audit.findings import Finding, Report

_FACT_TYPES = "('OrderPlaced', 'FundsDebited', 'Refunded')"


_INTEGER_TEXT = "'^-?[0-9]{1,18}$'"
"""The text of a JSON integer a bigint holds: what a guarded cast checks first."""


def _integer(member: str, guarded: bool) -> str:
    """A fact's integer member; ``guarded``, null when it holds anything else (a forged event's
    data, which the event-by-event checks and the replay name: this scan must not fail on it)."""
    guard = f" and data->>'{member}' ~ {_INTEGER_TEXT}" if guarded else ""
    return f"case when facts{guard} then (data->>'{member}')::bigint end"


def _facts(guarded: bool) -> str:
    """The scan that fills ``audit_facts``; its facts come from the JSON of the fact types only
    (another event's data may hold anything)."""
    integer = {
        member: _integer(member, guarded) for member in ("order_id", "amount_kobo", "price_kobo")
    }
    return f"""
create temporary table audit_facts on commit drop as
select global_position, stream_id, version, type,
       {integer["order_id"]} as order_id,
       case when facts then data->>'account_id' end as account_id,
       case when facts then data->>'idempotency_key' end as idempotency_key,
       coalesce({integer["amount_kobo"]}, {integer["price_kobo"]}) as amount_kobo
  from events, lateral (select type in {_FACT_TYPES} as facts) f
 where facts or (version = 1 and stream_id like 'order-%')
"""


def _json_integer(data: str, member: str) -> str:
    """``data``'s integer ``member``, or null when it holds anything else."""
    value = f"{data}->>'{member}'"
    return f"case when {value} ~ {_INTEGER_TEXT} then ({value})::bigint end"


# The guards (a regular expression per member and event) would more than double the scan's time:
# it runs without them, and again with them should a fact not be an integer.
_FACTS, _GUARDED_FACTS = _facts(guarded=False), _facts(guarded=True)

# (names, query returning rows (global_position, stream_id, detail), limited); a query that
# answers several checks says which in a ``name`` column.
_CHECKS = (
    (
        ("idempotency",),
        """
        select min(global_position) as global_position, min(stream_id) as stream_id,
               'account ' || account_id || ' key ' || idempotency_key
               || ' has ' || count(*) || ' orders' as detail
          from audit_facts where type = 'OrderPlaced'
         group by account_id, idempotency_key having count(*) > 1
         limit 100
        """,
    ),
    (
        # One join answers both: an order without its debit (or debited another amount), and a
        # debit without its order. ``name`` says which (at most 100 of each).
        ("debit-matches-order", "debit-has-order"),
        """
        with placed as (select * from audit_facts where type = 'OrderPlaced'),
        debits as (select * from audit_facts where type = 'FundsDebited'),
        broken as (
            select case when p.global_position is null then 'debit-has-order'
                        else 'debit-matches-order' end as name,
                   coalesce(p.global_position, d.global_position) as global_position,
                   coalesce(p.stream_id, d.stream_id) as stream_id,
                   case when p.global_position is null
                        then 'debit for order ' || d.order_id || ' without an OrderPlaced'
                        when d.stream_id is distinct from 'wallet-' || p.account_id
                             and d.global_position is not null
                        then 'order ' || p.order_id || ' of account ' || p.account_id
                             || ' debited from ' || d.stream_id
                        else 'order ' || p.order_id || ' priced ' || p.amount_kobo
                             || ' kobo but debited ' || coalesce(d.amount_kobo::text, 'nothing')
                   end as detail
              from placed p full join debits d on d.order_id = p.order_id
             where p.global_position is null or d.global_position is null
                or d.amount_kobo <> p.amount_kobo
                or d.stream_id is distinct from 'wallet-' || p.account_id)
        select * from (select *, row_number() over (partition by name order by global_position)
                         from broken) b
         where row_number <= 100
         order by name desc, global_position  -- debit-matches-order first, as CHECK_NAMES
        """,
    ),
    (
        ("debit-once",),
        """
        select global_position, stream_id, 'order ' || order_id || ' debited twice' as detail
          from (select global_position, stream_id, order_id,
                       row_number() over (partition by order_id order by global_position) as nth
                  from audit_facts where type = 'FundsDebited' and stream_id like 'wallet-%') d
         where nth > 1 order by global_position limit 100
        """,
    ),
    (
        ("refund-once",),
        """
        select global_position, stream_id, 'order ' || order_id || ' refunded twice' as detail
          from (select global_position, stream_id, order_id,
                       row_number() over (partition by stream_id, order_id order by version) as nth
                  from audit_facts where type = 'Refunded' and stream_id like 'wallet-%') r
         where nth > 1 order by global_position limit 100
        """,
    ),
    (
        # A refund is bounded by the order's debit before it in the same wallet.
        ("refund-bound",),
        """
        select global_position, stream_id,
               'refund of ' || amount_kobo || ' kobo exceeds the charge of order ' || order_id
               as detail
          from (select distinct on (r.global_position) r.global_position, r.stream_id,
                       r.order_id, r.amount_kobo, d.amount_kobo as charge_kobo
                  from audit_facts r
                  left join audit_facts d on d.type = 'FundsDebited'
                       and d.stream_id = r.stream_id and d.order_id = r.order_id
                       and d.version < r.version
                 where r.type = 'Refunded' and r.stream_id like 'wallet-%'
                 order by r.global_position, d.version desc) x
         where amount_kobo > coalesce(charge_kobo, 0)
         order by global_position limit 100
        """,
    ),
    (
        # What the refund's order owes back, from the event that settled it (never changed
        # after): all of the charge when it failed or was canceled, the unused share when it
        # ended partial (or a subscription expired); nothing otherwise. Looked up per refund
        # through the streams' index. A refund above the charge is refund-bound's finding.
        ("refund-justified", "refund-amount"),
        f"""
        with owed as (
            select r.global_position, r.stream_id, r.order_id, r.amount_kobo,
                   {_json_integer("p.data", "price_kobo")} as price_kobo, s.type as settled_by,
                   s.data->>'status' as status, s.data->>'upstream_status' as upstream_status,
                   {_json_integer("s.data", "remains")} as remains,
                   case when p.data->>'type' = 'Subscriptions'
                             and {_json_integer("p.data", "quantity")} > 0
                        then greatest(1, {_json_integer("p.data", "billable_quantity")}
                                         / {_json_integer("p.data", "quantity")})
                        else {_json_integer("p.data", "billable_quantity")} end as units
              from audit_facts r
              left join lateral (
                  select e.data from events e
                   where e.stream_id = 'order-' || r.order_id and e.version = 1
                     and e.type = 'OrderPlaced'
                   limit 1) p on true  -- a limit keeps it a lookup per refund, never a join
              left join lateral (
                  select e.type, e.data from events e
                   where e.stream_id = 'order-' || r.order_id
                     and e.type in ('StatusObserved', 'SubmissionFailed', 'OrderCanceled')
                   order by e.version desc limit 1) s on true
             where r.type = 'Refunded' and r.stream_id like 'wallet-%'
               and r.order_id is not null),
        due as (
            select *,
                   case when settled_by in ('SubmissionFailed', 'OrderCanceled')
                          or status in ('canceled', 'failed') then price_kobo
                        when status = 'partial'
                          or (status = 'completed' and lower(btrim(upstream_status)) = 'expired')
                        -- div() divides exactly; numeric's "/" rounds its quotient to a
                        -- scale from the operands' sizes (8 decimals from 10^8 up), so a share
                        -- a hair below a whole kobo would floor to that kobo.
                        then div(price_kobo::numeric
                                 * least(greatest(coalesce(remains, 0), 0), units),
                                 nullif(units, 0))::bigint
                        else 0 end as owed_kobo
              from owed),
        broken as (
            select case when owed_kobo = 0 then 'refund-justified' else 'refund-amount' end
                   as name, global_position, stream_id,
                   'refund of ' || amount_kobo || ' kobo for order ' || order_id
                   || case when owed_kobo = 0
                           then ', which owes nothing back (settled by '
                                || coalesce(settled_by || ' ' || coalesce(status, ''), 'nothing')
                                || ')'
                           else ', which owes ' || owed_kobo || ' kobo back' end as detail
              from due
             where amount_kobo <> owed_kobo and amount_kobo <= price_kobo)
        select * from (select *, row_number() over (partition by name order by global_position)
                         from broken) b
         where row_number <= 100
         order by name desc, global_position  -- refund-justified first, as CHECK_NAMES
        """,
    ),
    (
        # Every order stream opens with an OrderPlaced, and every OrderPlaced opens its own
        # order's stream (order-<id>, version 1): the refund checks read what an order owes in
        # that stream, and would pass over the refunds of an order placed in another one.
        ("order-opens-stream", "order-stream"),
        """
        with broken as (
            select case when type = 'OrderPlaced' then 'order-stream'
                        else 'order-opens-stream' end as name, global_position, stream_id,
                   case when type = 'OrderPlaced'
                        then 'OrderPlaced of order ' || coalesce(order_id::text, '(none)')
                             || ' at version ' || version || ' of stream ' || stream_id
                             || ', not at version 1 of its own stream'
                        else 'first event of the order stream is ' || type end as detail
              from audit_facts
             where (stream_id like 'order-%' and version = 1 and type <> 'OrderPlaced')
                or (type = 'OrderPlaced'
                    and (stream_id is distinct from 'order-' || order_id or version <> 1)))
        select * from (select *, row_number() over (partition by name order by global_position)
                         from broken) b
         where row_number <= 100
         order by name, global_position  -- order-opens-stream first, as CHECK_NAMES
        """,
    ),
)

CHECK_NAMES = tuple(name for names, _ in _CHECKS for name in names)


async def verify_sets(connection: asyncpg.Connection[Any], report: Report) -> None:
    """Every check of ``_CHECKS``; ``connection`` is in a transaction that may create a
    temporary table."""
    # Whole-log checks: hash joins stream in linear time, whatever the row estimates say
    # (a fresh log has no statistics and would tempt the planner into nested loops).
    await connection.execute("set local enable_nestloop = off")
    try:
        async with connection.transaction():  # a savepoint, so that a failed scan can be redone
            await connection.execute(_FACTS)
    except asyncpg.DataError:  # a fact that is no integer (invalid text, out of range)
        await connection.execute(_GUARDED_FACTS)
    await connection.execute("analyze audit_facts")
    for names, query in _CHECKS:
        for row in await connection.fetch(query):
            name = row["name"] if len(names) > 1 else names[0]
            # A fact missing from a forged event's data leaves the detail empty (null).
            detail = row["detail"] or "a fact (order id or amount) is missing from its data"
            report.add(Finding(name, detail, row["global_position"], row["stream_id"]))


async def verify_feed_clock(connection: asyncpg.Connection[Any], report: Report) -> None:
    """No event sits at or past the feed's clock. Such a row (restored from another cluster and
    not yet realigned) would sort after events appended later, a gap a reader could fall into."""
    # The bound is computed first so that the feed index finds the rows at or past it.
    row = await connection.fetchrow(
        "select e.global_position, e.stream_id from events e"
        " where e.transaction_id >= (select feed_clock_bound(f.xid_offset) from feed_epoch f)"
        " order by e.transaction_id, e.global_position limit 1"
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
