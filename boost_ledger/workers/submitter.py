"""The submitter: sends placed orders to the provider, each at most once.

SubmissionAttempted is committed before the call. The provider's answer then settles the
attempt: accepted → OrderSubmitted; refused → SubmissionFailed and a full refund; never reached
(connection refused, or no connection free or made in time: not a byte of it sent) →
SubmissionDeferred, back in the queue; anything else (timeout, dropped or garbled reply) →
SubmissionUnknown, for an operator, since the protocol has no idempotency
key and a blind retry could buy the same order twice. A reply settles the attempt it answers
and no later one: recorded twice (a stop between two replies' transactions), a deferral
must not re-queue an order another worker has claimed again since.

A provider in trouble (half a batch or more left unknown or not reached) stops the drain: the
queue waits, the submitter backing off, until the provider answers a call that buys nothing
(``balance``), then one order is sent before the next full batch, so that an outage leaves
one batch unknown rather than the whole queue.

Orders are claimed a few at a time (one transaction commits every claimed order's attempt) and
sent side by side; the replies that arrive together are settled together (the accepted ones in
one transaction), so that the submitter keeps up with checkout instead of paying two
transactions and a provider round trip in series per order.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import asyncpg
import structlog

from boost_ledger.ledger import fulfilment
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError, ProviderRefused, ProviderUnavailable
from boost_ledger.upstream.transport import MAX_CONNECTIONS
from boost_ledger.workers.backoff import Backoff

log = structlog.get_logger("boost.submitter")

MAX_BATCH = 100
"""Orders one drain submits before the submitter looks at its wakeup and sweep again."""
SEND_BATCH = MAX_CONNECTIONS
"""Orders claimed together (one transaction) and sent side by side: as many as the provider
client's connections by default (20), so that no claimed order waits for one. Against 8, a
drain spends a third less CPU per order, in the submitter and in PostgreSQL alike (fewer
transactions per order), and a crash mid-batch leaves at most this many orders for an operator
(SubmissionUnknown once ``ABANDONED_AFTER_S`` has passed)."""
GATHER_S = 0.02
"""After a wakeup, how long the submitter lets orders gather before it claims them: a busy
server then claims several per transaction instead of one per order."""
IDLE_POLL_CAP_S = 1.0
"""How far a worker process's look for new orders slows down, doubling from
BOOST_SUBMIT_POLL_INTERVAL_S, while it finds none: an idle server then costs next to nothing,
and the first order after a quiet spell waits at most this long to be sent."""
ABANDONED_AFTER_S = 120.0
SHUTDOWN_GRACE_S = 10.0
"""Stopped mid-batch, how long the calls already made may take to end and be recorded: the
provider client's default timeout, within the 15 s a ``boost serve`` gives its worker child."""


def _outcome_of(error: BaseException) -> dict[str, str]:
    if isinstance(error, ProviderRefused):
        return {"refused": error.text}
    if isinstance(error, ProviderUnavailable) and not error.sent:
        return {"deferred": f"provider not reached: {error}"}
    return {"unknown": f"{type(error).__name__}: {error}"}


async def submit_one(pool: asyncpg.Pool[Any], provider: ProviderClient) -> str | None:
    """Claim and submit one queued order; return how it settled, or None if the queue is empty."""
    claimed = await _claim(pool, 1)
    if not claimed:
        return None
    return (await _send_and_settle(pool, provider, claimed))[0]


async def submit_batch(
    pool: asyncpg.Pool[Any], provider: ProviderClient, limit: int = SEND_BATCH
) -> list[str]:
    """Claim up to ``limit`` queued orders in one transaction, then send them side by side;
    return how each settled, oldest first."""
    claimed = await _claim(pool, limit)
    return await _send_and_settle(pool, provider, claimed)


STOPPED_BEFORE_SENT = {"deferred": "provider not reached: the worker stopped before the call"}


async def _claim(pool: asyncpg.Pool[Any], limit: int) -> list[fulfilment.Claimed]:
    """``fulfilment.claim_batch``. Stopped once the claim has committed (while the connection
    goes back to the pool), no call has been made: the orders go back in the queue, rather than
    stay attempting until the sweeper makes them unknown, for an operator to look for at the
    provider. (Stopped during the commit itself, what was claimed is not known: the sweeper's.)"""
    claimed: list[fulfilment.Claimed] = []
    try:
        async with pool.acquire() as connection:
            claimed = await fulfilment.claim_batch(connection, limit)
    except asyncio.CancelledError:
        if claimed:
            replies = {order.order_id: dict(STOPPED_BEFORE_SENT) for order in claimed}
            attempts = {order.order_id: order.attempt for order in claimed}
            await _settle(pool, replies, attempts, {})
        raise
    return claimed


async def _send_and_settle(
    pool: asyncpg.Pool[Any], provider: ProviderClient, claimed: list[fulfilment.Claimed]
) -> list[str]:
    """Replies are settled as they arrive, those that arrive together in one go (the accepted
    ones in one transaction), so a busy provider costs fewer transactions and a slow reply never
    holds the others back. A reply that cannot be recorded is logged with what the provider said
    (the order stays ``attempting``, for the sweeper and an operator); the other sends go on."""
    sending = {asyncio.ensure_future(_send(provider, order)): order for order in claimed}
    attempts = {order.order_id: order.attempt for order in claimed}
    outcomes: dict[int, dict[str, str]] = {}
    pending = set(sending)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            replies = {sending[task].order_id: task.result() for task in done}
            await _settle(pool, replies, attempts, outcomes)
    except asyncio.CancelledError:  # shutdown: the calls made are let end and recorded
        await _settle_at_shutdown(pool, sending, attempts, outcomes)
        raise
    return [next(iter(outcomes[order.order_id])) for order in claimed]


async def _settle_at_shutdown(
    pool: asyncpg.Pool[Any],
    sending: dict[asyncio.Task[dict[str, str]], fulfilment.Claimed],
    attempts: dict[int, int],
    outcomes: dict[int, dict[str, str]],
) -> None:
    """Stopped mid-batch (SIGTERM to the worker): every order of it had its attempt committed
    and its call made. Each call is given up to ``SHUTDOWN_GRACE_S`` to end, and the replies
    not yet recorded (a settle the stop interrupted rolled back) are recorded, so that a
    restart does not leave them ``attempting`` until the sweeper makes them unknown for an
    operator. Calls still running then are cancelled (the sweeper's case, as after a crash)."""
    unsettled = [task for task in sending if sending[task].order_id not in outcomes]
    if not unsettled:
        return
    done, running = await asyncio.wait(unsettled, timeout=SHUTDOWN_GRACE_S)
    for task in running:
        task.cancel()
    replies = {sending[task].order_id: task.result() for task in done}
    if replies:
        await _settle(pool, replies, attempts, outcomes)
    log.info("submit.stopped", recorded=len(replies), left_attempting=len(running))


async def _send(provider: ProviderClient, claimed: fulfilment.Claimed) -> dict[str, str]:
    """The provider's answer to one order, as one ``settle_reply`` outcome."""
    fields = {name: str(value) for name, value in claimed.fields.items()}
    try:
        return {"provider_order_id": await provider.add(claimed.provider_service_id, fields)}
    except ProviderError as error:
        return _outcome_of(error)
    except Exception as error:  # an unforeseen failure must still leave a settled order
        log.exception("submit.unexpected", order_id=claimed.order_id)
        return {"unknown": f"unexpected {type(error).__name__}"}


_DATABASE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


async def _settle(
    pool: asyncpg.Pool[Any],
    replies: dict[int, dict[str, str]],
    attempts: dict[int, int],
    outcomes: dict[int, dict[str, str]],
) -> None:
    """Record ``replies``, each to the attempt ``attempts`` names: the accepted ones together,
    then any other (or all of them one by one, should the joint transaction fail). Each reply
    goes into ``outcomes`` as soon as its transaction has ended, so that a stop part way
    through records the others only. Never raises for a database error: what could not be
    recorded is logged with the provider's answer."""
    accepted = {
        order_id: outcome["provider_order_id"]
        for order_id, outcome in replies.items()
        if "provider_order_id" in outcome
    }
    left = dict(replies)
    try:
        async with pool.acquire() as connection:
            if accepted:
                try:
                    recorded = await fulfilment.settle_accepted(connection, accepted, attempts)
                    for order_id in recorded:
                        outcomes[order_id] = left.pop(order_id)
                        _log_settled(order_id, outcomes[order_id], "settled")
                except _DATABASE_ERRORS as error:
                    failed = {"orders": len(accepted), "error": str(error)}
                    log.warning("submit.joint_settle_failed", **failed)
            for order_id, outcome in list(left.items()):
                attempt = attempts[order_id]
                try:
                    settled = await fulfilment.settle_reply(connection, order_id, outcome, attempt)
                except asyncpg.PostgresError as refused:
                    # A reply the database refuses (an id the provider gave another order too,
                    # say): this order stays attempting (the sweeper makes it unknown, for an
                    # operator); the other replies go on. Its transaction rolled back, and a
                    # connection the error broke fails the next reply, in the handler below.
                    outcomes[order_id] = left.pop(order_id)
                    reason = str(refused)
                    log.error("submit.reply_refused", order_id=order_id, error=reason, **outcome)
                    continue
                outcomes[order_id] = left.pop(order_id)
                _log_settled(order_id, outcome, settled)
    except _DATABASE_ERRORS as error:
        for order_id, outcome in left.items():
            outcomes[order_id] = outcome
            log.error("submit.reply_not_recorded", order_id=order_id, error=str(error), **outcome)


def _log_settled(order_id: int, outcome: dict[str, str], recorded: str) -> None:
    if recorded == "settled":
        log.info("submit.settled", order_id=order_id, outcome=next(iter(outcome)))
    elif recorded == "reconciled":
        log.warning("submit.reconciled_late_reply", order_id=order_id, **outcome)
    else:
        # An operator settled it meanwhile; this line lets them compare with what the provider said.
        log.error("submit.late_reply_not_recorded", order_id=order_id, **outcome)


async def drain(
    pool: asyncpg.Pool[Any], provider: ProviderClient, limit: int = MAX_BATCH
) -> list[str]:
    """Submit up to ``limit`` queued orders, ``SEND_BATCH`` at a time (see ``_drain``); how
    each settled, in order."""
    return (await _drain(pool, provider, limit))[0]


async def _drain(
    pool: asyncpg.Pool[Any], provider: ProviderClient, limit: int, careful: bool = False
) -> tuple[list[str], bool]:
    """``drain``, and whether it stopped for the provider's trouble. It stops early when the
    provider is in trouble (``in_trouble``), and after a batch the queue could not fill: the
    orders placed while it was sent wait for the next look instead of being chased a few at a
    time, which would cost a claim and a settle transaction for every one or two orders.
    ``careful`` (after trouble): the first batch is one order."""
    outcomes: list[str] = []
    while len(outcomes) < limit:
        wanted = min(1 if careful and not outcomes else SEND_BATCH, limit - len(outcomes))
        batch = await submit_batch(pool, provider, wanted)
        outcomes.extend(batch)
        if in_trouble(batch):
            log.warning("submit.provider_trouble", **Counter(batch))
            return outcomes, True
        if len(batch) < wanted:
            break
    return outcomes, False


def in_trouble(batch: list[str]) -> bool:
    """Whether a batch's outcomes say the provider is down or failing: at least half of them
    never reached it or were left unknown (a 5xx, a timeout, a proxy's page). Sending more would
    only leave more orders unknown, each for an operator to resolve."""
    return 2 * (batch.count("unknown") + batch.count("deferred")) >= len(batch) > 0


async def _provider_answers(provider: ProviderClient) -> bool:
    """After trouble, whether the provider answers a call that buys nothing (``balance``):
    the next orders are sent only once it does. Any answer counts, a refusal or one this client
    cannot read included (a panel may not let the key read its balance): only a provider that
    cannot be reached, or answers 5xx or not at all, is still down. The first batch after
    trouble is then a single order (``_drain``), should the provider still fail at ``add``."""
    try:
        await provider.balance()
    except ProviderUnavailable as error:
        log.warning("submit.provider_still_down", error=str(error))
        return False
    except ProviderError as error:
        log.info("submit.provider_answers", balance_error=str(error))
    return True


async def run(
    pool: asyncpg.Pool[Any],
    provider: ProviderClient,
    wakeup: asyncio.Event,
    sweep_interval_s: float,
    abandoned_after_s: float = ABANDONED_AFTER_S,
    poll_interval_s: float | None = None,
) -> None:
    """Submit as orders arrive, with backoff: woken by ``wakeup`` when the app runs its workers
    in-process (``build_app(start_workers=True)``), and otherwise every ``poll_interval_s``
    (default: the sweep's period) for the orders that other processes place, as in
    ``boost worker`` (``boost serve``'s worker child). Abandoned attempts are looked for on the
    sweep's period, not on every wakeup."""
    idle_wait_s = sweep_interval_s if poll_interval_s is None else poll_interval_s
    wait_s = idle_wait_s
    backoff = Backoff()
    loop = asyncio.get_running_loop()
    next_sweep = loop.time()
    trouble = False
    while True:
        wakeup.clear()  # before draining, so that a checkout committed meanwhile is not missed
        outcomes: list[str] = []
        try:
            if loop.time() >= next_sweep:
                async with pool.acquire() as connection:
                    await fulfilment.mark_abandoned_attempts(connection, abandoned_after_s)
                next_sweep = loop.time() + sweep_interval_s
            if not trouble or await _provider_answers(provider):
                outcomes, trouble = await _drain(pool, provider, MAX_BATCH, careful=trouble)
            delay = backoff.failed() if trouble else None
            if delay is None:
                backoff.succeeded()
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("submit.database_error", error=str(error))
            delay = backoff.failed()
        except Exception:  # a worker outlives its errors: logged, then retried after a pause
            log.exception("submit.unexpected_error")
            delay = backoff.failed()
        if delay is not None:
            await asyncio.sleep(delay)
            continue
        if len(outcomes) >= MAX_BATCH:
            continue
        wait_s = idle_wait_s if outcomes else max(idle_wait_s, min(IDLE_POLL_CAP_S, wait_s * 2))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=wait_s)
            await asyncio.sleep(GATHER_S)
