"""How far submission to the provider kept up with a checkout load.

Checkout commits an order to a durable queue and answers; the submitter sends it on afterwards
(DESIGN: submission happens after commit). A checkout rate is therefore only half the story:
around each checkout load the bench counts the orders still waiting (queued or attempting),
then waits, bounded, until the submitter has sent them all, so that the next load starts with
an empty queue and the report can give the rate at which orders were both placed and submitted.
Then it waits, bounded too, until the poller is no more than a second late (the statuses of
those orders move on upstream, and the poller records them), so that the next load does not
pay for this one's.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg

from bench.cluster import Cluster

DRAIN_TIMEOUT_S = 300.0
POLL_S = 0.25
POLLER_LATE_S = 1.0

_COUNTS = """
select count(*) as orders,
       count(*) filter (where submission in ('queued', 'attempting')) as waiting,
       count(*) filter (where submission = 'failed') as refused
  from orders
"""


_POLLER_LATE = """
select coalesce(extract(epoch from now() - min(next_check_at)), 0)::float8
  from order_polls where next_check_at <= now()
"""


async def _row(cluster: Cluster, query: str) -> asyncpg.Record:
    """One row of ``query`` on the server's database, on a connection of its own."""
    connection = await asyncpg.connect(cluster.uri("boost"))
    try:
        row = await connection.fetchrow(query)
    finally:
        await connection.close()
    assert row is not None
    return row


_UNSETTLED = (
    "select count(*) from orders"
    " where status not in ('completed', 'partial', 'canceled', 'failed')"
)


async def settled(cluster: Cluster, timeout_s: float) -> bool:
    """Wait, bounded, until every order has reached a terminal status (the workers are then
    idle); whether they all did in time."""
    deadline = time.monotonic() + timeout_s
    while (await _row(cluster, _UNSETTLED))[0]:
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(POLL_S)
    return True


async def _poller_late_s(cluster: Cluster) -> float:
    return float((await _row(cluster, _POLLER_LATE))[0])


async def counts(cluster: Cluster) -> tuple[int, int, int]:
    """(orders, orders not yet submitted, orders the provider refused) as the database holds
    them now. A refused order counts as sent; the refusals are reported so that a provider that
    stopped taking orders cannot pass for a fast one."""
    row = await _row(cluster, _COUNTS)
    return int(row["orders"]), int(row["waiting"]), int(row["refused"])


async def follow(
    cluster: Cluster, before: tuple[int, int, int], started: float
) -> dict[str, Any]:
    """The submission figures of the load that began at ``started`` with ``before`` counts:
    what was sent during it, what it left waiting, and how long that took to drain."""
    ended = time.monotonic()
    orders, waiting, _ = await counts(cluster)
    placed = orders - before[0]
    sent_during = (orders - waiting) - (before[0] - before[1])
    deadline = ended + DRAIN_TIMEOUT_S
    left = waiting
    while left and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)
        left = (await counts(cluster))[1]
    drained = time.monotonic()
    for _ in range(int(DRAIN_TIMEOUT_S / POLL_S)):
        if await _poller_late_s(cluster) <= POLLER_LATE_S or time.monotonic() > deadline:
            break
        await asyncio.sleep(POLL_S)
    load_s = ended - started
    return {
        "placed": placed,
        "sent_during_load": sent_during,
        "sent_per_s_during_load": sent_during / load_s,
        "waiting_at_end": waiting,
        "drain_s": drained - ended if waiting else 0.0,
        "left_after_drain": left,
        "placed_and_sent_per_s": (placed - left) / (drained - started),
        "poller_caught_up_s": time.monotonic() - drained,
        "refused_by_provider": (await counts(cluster))[2] - before[2],
    }


def describe(figures: dict[str, Any]) -> str:
    return (
        f"submission: {figures['sent_per_s_during_load']:.0f}/s during the load,"
        f" {figures['waiting_at_end']} waiting at its end, drained in"
        f" {figures['drain_s']:.1f} s ({figures['left_after_drain']} left);"
        f" placed and sent {figures['placed_and_sent_per_s']:.0f}/s;"
        f" the poller caught up {figures['poller_caught_up_s']:.1f} s later"
        + (f"; REFUSED by the provider: {refused}" if (refused := figures["refused_by_provider"])
           else "")
    )
