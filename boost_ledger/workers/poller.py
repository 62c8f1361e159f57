"""The status poller: asks the provider about active orders, the longest overdue first.

Due orders are claimed in batches of at most 100 (the protocol's multi-status limit) with
SKIP LOCKED and a lease on ``next_check_at``, so several pollers never ask about the same
order at once; the index on ``(next_check_at, order_id)`` hands them over in that order, so a
claim reads about a hundred entries however far behind the poller is. Most answers repeat
what is known: the batch's orders are read once, and those are only rescheduled, in one
statement. The other answers are recorded together in one transaction
(``fulfilment.observe_batch``, which decides again under the orders' locks), the refunds they
owe included: a provider that cancels a hundred orders at once costs one transaction, not a
hundred, and each refund's deterministic event id still pays it at most once.
Should that transaction fail, each answer is recorded on its own (``fulfilment.observe``).
Passing over a repeated answer is always safe: the order is asked again at its next check.

Each order is asked every ``interval_s``; the poller itself looks for due orders every
``WAKE_S`` (or sooner, while a batch comes back full). Orders placed at a steady rate then fall
due, and are asked about, at that rate, a few batches per wake-up, instead of piling up for a
whole interval and being asked about in one burst that takes the cores from checkout.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import structlog

from boost_ledger.ledger import fulfilment
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.order_rules import OrderState, decide_observation
from boost_ledger.ledger.statuses import TERMINAL_STATUSES, map_upstream_status
from boost_ledger.upstream.client import MAX_IDS_PER_CALL, ProviderClient
from boost_ledger.upstream.errors import ProviderError, ProviderRefused
from boost_ledger.upstream.models import ProviderStatus
from boost_ledger.upstream.parsing import usable_order_id
from boost_ledger.workers.backoff import Backoff

log = structlog.get_logger("boost.poller")

LEASE_S = 60.0
WAKE_S = 0.5
"""How long the poller rests when no full batch is due (a claim that finds nothing is one
index probe)."""
MAX_RETRY_DELAY_S = 600.0

_CLAIM = """
with due as (
    select p.order_id from order_polls p
     where p.next_check_at <= now()
     order by p.next_check_at, p.order_id  -- order_polls_due_order_idx: no sort of every due row
     limit $1 for update skip locked
)
update order_polls p set next_check_at = now() + make_interval(secs => $2)
  from due, orders o
 where p.order_id = due.order_id and o.order_id = due.order_id
returning p.order_id, o.provider_order_id
"""

_RESCHEDULE = """
update order_polls set last_checked_at = now(), failures = $2,
       next_check_at = now() + make_interval(secs => $3)
 where order_id = $1
"""


@contextlib.asynccontextmanager
async def _planned_afresh(connection: Connection) -> AsyncIterator[None]:
    """A transaction whose statements are planned for order_polls as it is now. The table
    empties when the server is idle and fills in a burst; a statement's generic plan, made
    after its first five runs on the empty table (a scan of every row, and for the claim a sort
    of every due row), would be kept until the table's next ANALYZE. Planning costs a few
    tens of microseconds a statement, once per batch of up to a hundred orders."""
    async with connection.transaction():
        await connection.execute("set local plan_cache_mode = force_custom_plan")
        yield


async def _claim(connection: Connection, limit: int) -> dict[str, int]:
    async with _planned_afresh(connection):
        rows = await connection.fetch(_CLAIM, limit, LEASE_S)
    return {row["provider_order_id"]: row["order_id"] for row in rows}


async def after_check(
    connection: Connection, order_id: int, interval_s: float, failed: bool = False
) -> None:
    """Reschedule an order's next check, or forget it once it is settled."""
    status = await connection.fetchval("select status from orders where order_id = $1", order_id)
    if status in TERMINAL_STATUSES:
        await connection.execute("delete from order_polls where order_id = $1", order_id)
        return
    failures = 0
    if failed:
        failures = (
            await connection.fetchval(
                "select failures + 1 from order_polls where order_id = $1", order_id
            )
            or 1
        )
    delay = min(MAX_RETRY_DELAY_S, interval_s * 2 ** min(failures, 10))
    await connection.execute(_RESCHEDULE, order_id, failures, delay)


def _warn_if_unrecordable(order_id: int, status: ProviderStatus) -> None:
    """An unknown status string changes nothing but is logged, so that an operator learns of a
    panel's new vocabulary; so is a Partial without ``remains``, which cannot be priced (the
    order waits for a status that says how much was delivered, or for an operator), and a
    Partial or an Expired whose ``remains`` could not be read."""
    outcome = map_upstream_status(status.status)
    if outcome is None:
        log.warning(
            "status.unknown_upstream", order_id=order_id, upstream_status=status.status[:100]
        )
    elif outcome.refund in ("partial", "unused") and status.remains_unreadable:
        log.warning("status.remains_unreadable", order_id=order_id, upstream_status=status.status)
    elif outcome.refund == "partial" and status.remains is None:
        log.warning("status.partial_without_remains", order_id=order_id)


def _changes_nothing(order: OrderState | None, status: ProviderStatus) -> bool:
    return order is not None and decide_observation(order, *_reply(status)).changes_nothing


_QUIET = """
update order_polls set last_checked_at = now(), failures = 0,
       next_check_at = now() + make_interval(secs => $2)
 where order_id = any($1::bigint[])
"""


async def _after_quiet_checks(
    connection: Connection, states: dict[int, OrderState], order_ids: list[int], interval_s: float
) -> None:
    """``after_check`` for answers handled without a failure (they changed nothing, or were
    recorded), in at most two statements of one transaction."""
    if not order_ids:
        return
    settled = [i for i in order_ids if states[i].status in TERMINAL_STATUSES]
    active = [i for i in order_ids if states[i].status not in TERMINAL_STATUSES]
    async with _planned_afresh(connection):
        if settled:
            await connection.execute(
                "delete from order_polls where order_id = any($1::bigint[])", settled
            )
        if active:
            await connection.execute(_QUIET, active, interval_s)


def _reply(status: ProviderStatus) -> fulfilment.Reply:
    charge = None if status.charge is None else str(status.charge)
    return status.status, status.start_count, status.remains, charge, status.remains_unreadable


async def record_status(
    connection: Connection, order_id: int, status: ProviderStatus, actor: str
) -> None:
    """Record one reply (from the poller or a live check)."""
    _warn_if_unrecordable(order_id, status)
    upstream_status, start_count, remains, charge, unreadable = _reply(status)
    await fulfilment.observe(
        connection, order_id, upstream_status, start_count, remains, charge, actor,
        remains_unreadable=unreadable,
    )


async def poll_once(
    pool: asyncpg.Pool[Any],
    provider: ProviderClient,
    interval_s: float,
    batch: int = MAX_IDS_PER_CALL,
) -> int:
    """One batch: claim, ask, record. Returns how many orders were asked about.

    Raises ``ProviderError`` when the provider fails as a whole (the claimed orders keep their
    lease and are asked again when it expires)."""
    assert 0 < batch <= MAX_IDS_PER_CALL
    async with pool.acquire() as connection:
        claimed = await _claim(connection, batch)
    if not claimed:
        return 0
    # An id no call can carry (recorded before ids were checked) backs off alone.
    askable = [provider_id for provider_id in claimed if usable_order_id(provider_id)]
    replies = await statuses(provider, askable) if askable else {}
    async with pool.acquire() as connection:
        states = await fulfilment.order_states(connection, list(claimed.values()))
        quiet, changed, failed = [], {}, []
        for provider_order_id, order_id in claimed.items():
            reply = replies.get(provider_order_id)
            if not isinstance(reply, ProviderStatus):
                reason = _item_error(provider_order_id, reply)
                log.warning("poll.item_error", order_id=order_id, reason=reason)
                failed.append(order_id)
                continue
            _warn_if_unrecordable(order_id, reply)
            if _changes_nothing(states.get(order_id), reply):
                quiet.append(order_id)
            else:
                changed[order_id] = reply
        await _after_quiet_checks(connection, states, quiet, interval_s)
        await _record_changes(connection, changed, interval_s)
        for order_id in failed:
            await after_check(connection, order_id, interval_s, failed=True)
    return len(claimed)


Answers = dict[str, ProviderStatus | ProviderRefused]


async def statuses(provider: ProviderClient, ids: list[str]) -> Answers:
    """``multi_status`` of ``ids``. Some panels refuse a whole multi-id call (``{"error":
    ...}``) for one id they do not know: the same batch, asked again, was refused again, so
    none of its orders was ever recorded (nor refunded). Such a refusal is asked again in
    halves, down to the ids it is about, which back off alone. Both halves refused may be the
    provider refusing every call (a bad key, say) or an unknown id in each half: one call of
    another kind (the balance) tells them apart, and a refusal of it too is raised, for the
    poller's own back-off, as is a batch whose every id is refused alone (the provider refusing
    every status call). One bad id in a batch of 100 costs 14 more calls; the calls are
    bounded by twice the batch (and the one balance)."""
    try:
        return await provider.multi_status(ids)
    except ProviderRefused as refusal:
        if len(ids) == 1:
            return {ids[0]: refusal}
        answered, refused = await _halves(provider, ids)
        if len(refused) == 2 and not await _answers_other_calls(provider):
            raise refusal from None
        for half, half_refusal in refused:
            answered.update(await _narrowed(provider, half, half_refusal))
        if not any(isinstance(answer, ProviderStatus) for answer in answered.values()):
            raise refusal from None  # every id refused alone too: its status calls all are
        return answered


async def _answers_other_calls(provider: ProviderClient) -> bool:
    """Whether the provider answers a call that names no order (its balance): if it refuses
    that too, it refuses every call, whatever the ids."""
    try:
        await provider.balance()
    except ProviderRefused:
        return False
    return True


async def _halves(
    provider: ProviderClient, ids: list[str]
) -> tuple[Answers, list[tuple[list[str], ProviderRefused]]]:
    """Each half of ``ids`` asked: the answers, and the halves refused as a whole."""
    middle = len(ids) // 2
    answered: Answers = {}
    refused: list[tuple[list[str], ProviderRefused]] = []
    for half in (ids[:middle], ids[middle:]):
        try:
            answered.update(await provider.multi_status(half))
        except ProviderRefused as refusal:
            refused.append((half, refusal))
    return answered, refused


async def _narrowed(provider: ProviderClient, ids: list[str], refusal: ProviderRefused) -> Answers:
    """``ids``, refused as a whole with ``refusal``: each id's answer, or the refusal of it."""
    if len(ids) == 1:
        return {ids[0]: refusal}
    answered, refused = await _halves(provider, ids)
    for half, half_refusal in refused:
        answered.update(await _narrowed(provider, half, half_refusal))
    return answered


def _item_error(provider_order_id: str, reply: ProviderRefused | None) -> str:
    if isinstance(reply, ProviderRefused):
        return reply.text
    return "missing from reply" if usable_order_id(provider_order_id) else "unusable order id"


async def _record_changes(
    connection: Connection, changed: dict[int, ProviderStatus], interval_s: float
) -> None:
    """Record the answers that change something, refunds included, together in one
    transaction; should it fail, one at a time (so that one bad order holds up only itself)."""
    done: list[int] = []
    if changed:
        try:
            done = await fulfilment.observe_batch(
                connection, {order_id: _reply(status) for order_id, status in changed.items()},
                "poller",
            )
        except asyncpg.PostgresError as error:
            log.warning("poll.batch_record_failed", orders=len(changed), error=str(error))
    if done:
        states = await fulfilment.order_states(connection, done)
        await _after_quiet_checks(connection, states, done, interval_s)
    left = set(changed) - set(done)
    for order_id, status in changed.items():
        if order_id in left:
            recorded = await _recorded(connection, order_id, status)
            await after_check(connection, order_id, interval_s, failed=not recorded)


async def _recorded(connection: Connection, order_id: int, reply: ProviderStatus) -> bool:
    """Record one order's status; a failure is logged and backs that order off, not the batch."""
    try:
        await record_status(connection, order_id, reply, "poller")
    except asyncpg.PostgresError as error:
        log.error("poll.record_failed", order_id=order_id, error=str(error))
        return False
    return True


async def run(pool: asyncpg.Pool[Any], provider: ProviderClient, interval_s: float) -> None:
    backoff = Backoff(base_s=interval_s, cap_s=max(interval_s, 60.0))
    while True:
        try:
            asked = await poll_once(pool, provider, interval_s)
            backoff.succeeded()
            if asked == MAX_IDS_PER_CALL:
                continue  # more are due: no pause
            await asyncio.sleep(min(interval_s, WAKE_S))
        except ProviderError as error:
            log.warning("poll.provider_error", error=str(error))
            await asyncio.sleep(backoff.failed())
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("poll.database_error", error=str(error))
            await asyncio.sleep(backoff.failed())
        except Exception:  # a worker outlives its errors: logged, then retried after a pause
            log.exception("poll.unexpected_error")
            await asyncio.sleep(backoff.failed())
