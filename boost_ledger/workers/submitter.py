"""The submitter: sends placed orders to the provider, each at most once.

SubmissionAttempted is committed before the call. The provider's answer then settles the
attempt: accepted → OrderSubmitted; refused → SubmissionFailed and a full refund; never reached
(connection refused) → SubmissionDeferred, back in the queue; anything else (timeout, dropped
or garbled reply) → SubmissionUnknown, for an operator, since the protocol has no idempotency
key and a blind retry could buy the same order twice.

Orders are claimed a few at a time (one transaction commits every claimed order's attempt) and
sent side by side, each reply settled in its own transaction, so that the submitter keeps up
with checkout instead of paying two transactions and a provider round trip in series per order.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg
import httpx
import structlog

from boost_ledger.ledger import fulfilment
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError, ProviderRefused
from boost_ledger.workers.backoff import Backoff

log = structlog.get_logger("boost.submitter")

MAX_BATCH = 50
SEND_BATCH = 8
GATHER_S = 0.02
"""After a wakeup, how long the submitter lets orders gather before it claims them: a busy
server then claims several per transaction instead of one per order."""
"""Orders claimed together and sent side by side (each holds a pooled connection to settle)."""
ABANDONED_AFTER_S = 120.0
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout)


def _outcome_of(error: BaseException) -> dict[str, str]:
    if isinstance(error, ProviderRefused):
        return {"refused": error.text}
    cause = error.__cause__
    if isinstance(cause, _NOT_SENT):
        return {"deferred": f"provider not reached: {type(cause).__name__}"}
    return {"unknown": f"{type(error).__name__}: {error}"}


async def submit_one(pool: asyncpg.Pool[Any], provider: ProviderClient) -> str | None:
    """Claim and submit one queued order; return how it settled, or None if the queue is empty."""
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
    if claimed is None:
        return None
    return await _send_and_settle(pool, provider, claimed)


async def submit_batch(
    pool: asyncpg.Pool[Any], provider: ProviderClient, limit: int = SEND_BATCH
) -> list[str]:
    """Claim up to ``limit`` queued orders in one transaction, then send them side by side, each
    settled in its own transaction; return how each settled, oldest first."""
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_batch(connection, limit)
    return list(await asyncio.gather(*(_send_and_settle(pool, provider, c) for c in claimed)))


async def _send_and_settle(
    pool: asyncpg.Pool[Any], provider: ProviderClient, claimed: fulfilment.Claimed
) -> str:
    fields = {name: str(value) for name, value in claimed.fields.items()}
    outcome: dict[str, str]
    try:
        provider_order_id = await provider.add(claimed.provider_service_id, fields)
        outcome = {"provider_order_id": provider_order_id}
    except ProviderError as error:
        outcome = _outcome_of(error)
    except Exception as error:  # an unforeseen failure must still leave a settled order
        log.exception("submit.unexpected", order_id=claimed.order_id)
        outcome = {"unknown": f"unexpected {type(error).__name__}"}
    async with pool.acquire() as connection:
        recorded = await fulfilment.settle_reply(connection, claimed.order_id, outcome)
    kind = next(iter(outcome))
    if recorded == "settled":
        log.info("submit.settled", order_id=claimed.order_id, outcome=kind)
    elif recorded == "reconciled":
        log.warning("submit.reconciled_late_reply", order_id=claimed.order_id, **outcome)
    else:
        # An operator settled it meanwhile; this line lets them compare with what the provider said.
        log.error("submit.late_reply_not_recorded", order_id=claimed.order_id, **outcome)
    return kind


async def drain(
    pool: asyncpg.Pool[Any], provider: ProviderClient, limit: int = MAX_BATCH
) -> list[str]:
    """Submit up to ``limit`` queued orders, ``SEND_BATCH`` at a time; stop early when the
    provider cannot be reached."""
    outcomes: list[str] = []
    while len(outcomes) < limit:
        batch = await submit_batch(pool, provider, min(SEND_BATCH, limit - len(outcomes)))
        outcomes.extend(batch)
        if not batch or "deferred" in batch:
            break
    return outcomes


async def run(
    pool: asyncpg.Pool[Any],
    provider: ProviderClient,
    wakeup: asyncio.Event,
    sweep_interval_s: float,
    abandoned_after_s: float = ABANDONED_AFTER_S,
) -> None:
    """Submit as orders arrive (woken in-process) and on a periodic sweep, with backoff.
    Abandoned attempts are looked for on the sweep's period, not on every wakeup."""
    backoff = Backoff()
    loop = asyncio.get_running_loop()
    next_sweep = loop.time()
    while True:
        wakeup.clear()  # before draining, so that a checkout committed meanwhile is not missed
        try:
            if loop.time() >= next_sweep:
                async with pool.acquire() as connection:
                    await fulfilment.mark_abandoned_attempts(connection, abandoned_after_s)
                next_sweep = loop.time() + sweep_interval_s
            outcomes = await drain(pool, provider)
            delay = backoff.failed() if "deferred" in outcomes else None
            if delay is None:
                backoff.succeeded()
        except (OSError, asyncpg.PostgresError) as error:
            log.warning("submit.database_error", error=str(error))
            delay = backoff.failed()
        if delay is not None:
            await asyncio.sleep(delay)
            continue
        if len(outcomes) >= MAX_BATCH:
            continue
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wakeup.wait(), timeout=sweep_interval_s)
            await asyncio.sleep(GATHER_S)
