"""The order's life after checkout, one transaction per decision: submission, observed
statuses, cancellation and refunds. Each transaction locks the order's projection row first, so
every path that could pay a refund (check, poller, cancel, operator) is serialised on it; the
refund's deterministic event id makes a second payment impossible even if that were bypassed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    CancelRejected,
    CancelRequested,
    Event,
    OrderCanceled,
    OrderSubmitted,
    Refunded,
    SubmissionAttempted,
    SubmissionDeferred,
    SubmissionFailed,
    SubmissionUnknown,
    order_stream,
    refund_event_id,
    wallet_stream,
)
from boost_ledger.ledger.order_rules import OrderState, decide_observation
from boost_ledger.ledger.store import NewEvent

_STATE_COLUMNS = ", ".join(OrderState.__struct_fields__)


class OrderMissing(LookupError):
    pass


async def order_states(connection: Connection, order_ids: list[int]) -> dict[int, OrderState]:
    """The orders' states as they stand, unlocked: enough to see that a reply changes nothing
    (anything else goes through a locked decision)."""
    rows = await connection.fetch(
        f"select {_STATE_COLUMNS} from orders where order_id = any($1::bigint[])", order_ids
    )
    return {row["order_id"]: OrderState.from_row(row) for row in rows}


async def lock_order(
    connection: Connection, order_id: int, account_id: int | None = None
) -> OrderState:
    """The order's state, locked until the caller's transaction ends."""
    row = await connection.fetchrow(
        f"select {_STATE_COLUMNS} from orders where order_id = $1"
        " and ($2::bigint is null or account_id = $2) for update",
        order_id,
        account_id,
    )
    if row is None:
        raise OrderMissing(order_id)
    return OrderState.from_row(row)


async def lock_orders(connection: Connection, order_ids: list[int]) -> list[OrderState]:
    """The states of several orders, locked until the caller's transaction ends, in order id
    order: two transactions locking overlapping sets this way never wait on each other in a
    cycle."""
    rows = await connection.fetch(
        f"select {_STATE_COLUMNS} from orders where order_id = any($1::bigint[])"
        " order by order_id for update",
        order_ids,
    )
    return [OrderState.from_row(row) for row in rows]


async def record(
    connection: Connection,
    order: OrderState,
    events: list[Event],
    metadata: dict[str, Any],
    refund_kobo: int = 0,
    refund_reason: str = "",
) -> None:
    """Append order events (and the refund they owe) in the caller's transaction."""
    new_events = [
        NewEvent(stream_id=order_stream(order.order_id), version=order.version + index, event=event)
        for index, event in enumerate(events, start=1)
    ]
    if refund_kobo > 0 and not order.refunded:
        new_events.append(await _refund(connection, order, refund_kobo, refund_reason))
    if new_events:
        await commit(connection, new_events, metadata)


async def _refund(
    connection: Connection, order: OrderState, amount_kobo: int, reason: str
) -> NewEvent:
    return (await _refunds(connection, [(order, amount_kobo, reason)]))[0]


Owed = tuple[OrderState, int, str]
"""A refund an order is owed: the order, the amount in kobo, the reason."""


async def _refunds(connection: Connection, owed: Sequence[Owed]) -> list[NewEvent]:
    """The Refunded events of ``owed``, under the row locks of their wallets (taken in account
    order, after the caller's order locks, as every path that pays money takes them: no two
    transactions wait on each other in a cycle). Several refunds of one wallet follow one
    another: each one's version and balance come after the one before."""
    accounts = sorted({order.account_id for order, _, _ in owed})
    rows = await connection.fetch(
        "select account_id, balance_kobo, version from wallets"
        " where account_id = any($1::bigint[]) order by account_id for update",
        accounts,
    )
    wallets = {row["account_id"]: (row["balance_kobo"], row["version"]) for row in rows}
    assert len(wallets) == len(accounts), "every order's account has a wallet"
    refunds = []
    for order, amount_kobo, reason in owed:
        assert 0 < amount_kobo <= order.price_kobo, "a refund never exceeds the order's charge"
        balance_kobo, version = wallets[order.account_id]
        wallets[order.account_id] = (balance_kobo + amount_kobo, version + 1)
        event = Refunded(
            account_id=order.account_id,
            order_id=order.order_id,
            amount_kobo=amount_kobo,
            reason=reason,
            balance_after_kobo=balance_kobo + amount_kobo,
        )
        refunds.append(
            NewEvent(
                stream_id=wallet_stream(order.account_id),
                version=version + 1,
                event=event,
                event_id=refund_event_id(order.order_id),
            )
        )
    return refunds


# ---- submission ------------------------------------------------------------------------


class Claimed(OrderState, frozen=True, kw_only=True):
    provider_service_id: str
    fields: dict[str, Any]
    attempt: int
    """The number of the SubmissionAttempted this claim committed; its reply settles this
    attempt only."""


async def claim_for_submission(connection: Connection) -> Claimed | None:
    """Claim the oldest queued order and commit SubmissionAttempted before any provider call."""
    claimed = await claim_batch(connection, 1)
    return claimed[0] if claimed else None


MAX_CLAIM_BATCH = 100


async def claim_batch(connection: Connection, limit: int) -> list[Claimed]:
    """Claim up to ``limit`` queued orders, oldest first, and commit a SubmissionAttempted for
    each in one transaction, before any of them is sent. Orders another claimer holds locked
    are skipped, never waited for."""
    assert 1 <= limit <= MAX_CLAIM_BATCH, limit
    async with connection.transaction():
        rows = await connection.fetch(
            f"select {_STATE_COLUMNS}, provider_service_id, fields"
            " from orders where submission = 'queued' order by order_id limit $1"
            " for update skip locked",
            limit,
        )
        claimed = [_claimed(row) for row in rows]
        attempts = [
            NewEvent(
                stream_id=order_stream(order.order_id),
                version=order.version + 1,
                event=SubmissionAttempted(order_id=order.order_id, attempt=order.attempt),
            )
            for order in claimed
        ]
        if attempts:
            await commit(connection, attempts, {"actor": "submitter"})
    return claimed


def _claimed(row: Any) -> Claimed:
    facts = {name: row[name] for name in Claimed.__struct_fields__ if name != "attempt"}
    return Claimed(**facts, attempt=row["submission_attempts"] + 1)


async def settle_submission(
    connection: Connection,
    order_id: int,
    *,
    provider_order_id: str | None = None,
    refused: str | None = None,
    unknown: str | None = None,
    deferred: str | None = None,
    actor: str = "submitter",
    expected_submission: str = "attempting",
    attempt: int | None = None,
) -> bool:
    """Record the outcome of a submission attempt; False if the order was settled meanwhile,
    or if ``attempt`` is given and the order has been claimed again since (a reply to an
    earlier attempt must not settle, or re-queue, a later one)."""
    assert [provider_order_id, refused, unknown, deferred].count(None) == 3, "one outcome"
    async with connection.transaction():
        order = await lock_order(connection, order_id)
        if not _awaits(order, expected_submission, attempt):
            return False
        if provider_order_id is not None:
            resolved_by = "" if actor == "submitter" else actor
            event: Event = OrderSubmitted(
                order_id=order_id, provider_order_id=provider_order_id, resolved_by=resolved_by
            )
            await record(connection, order, [event], {"actor": actor})
            await _schedule_polls(connection, [order_id])
        elif refused is not None:
            event = SubmissionFailed(order_id=order_id, reason=refused[:500])
            await record(
                connection, order, [event], {"actor": actor}, order.price_kobo, "submission refused"
            )
        elif deferred is not None:
            event = SubmissionDeferred(order_id=order_id, reason=deferred[:500])
            await record(connection, order, [event], {"actor": actor})
        else:
            assert unknown is not None
            event = SubmissionUnknown(order_id=order_id, reason=unknown[:500])
            await record(connection, order, [event], {"actor": actor})
    return True


def _awaits(order: OrderState, submission: str, attempt: int | None) -> bool:
    """Whether ``order`` still waits, at ``submission``, for the outcome of ``attempt``."""
    if order.submission != submission:
        return False
    return attempt is None or order.submission_attempts == attempt


async def settle_accepted(
    connection: Connection, accepted: Mapping[int, str], attempts: Mapping[int, int]
) -> list[int]:
    """Record several accepted submissions (order id to provider order id, each answering the
    attempt ``attempts`` gives it) in one transaction, as ``settle_submission`` would one by
    one; return the orders recorded. An order no longer ``attempting`` that attempt (settled
    meanwhile by the sweeper or an operator) is left out, for ``settle_reply``."""
    async with connection.transaction():
        locked = await lock_orders(connection, list(accepted))
        orders = [
            order
            for order in locked
            if _awaits(order, "attempting", attempts[order.order_id])
        ]
        if not orders:
            return []
        submitted = [
            NewEvent(
                stream_id=order_stream(order.order_id),
                version=order.version + 1,
                event=OrderSubmitted(
                    order_id=order.order_id, provider_order_id=accepted[order.order_id]
                ),
            )
            for order in orders
        ]
        await commit(connection, submitted, {"actor": "submitter"})
        recorded = [order.order_id for order in orders]
        await _schedule_polls(connection, recorded)
    return recorded


async def _schedule_polls(connection: Connection, order_ids: list[int]) -> None:
    """Have the poller ask after these submitted orders, starting now."""
    await connection.execute(
        "insert into order_polls (order_id, next_check_at)"
        " select unnest($1::bigint[]), now() on conflict (order_id) do nothing",
        order_ids,
    )


async def settle_reply(
    connection: Connection, order_id: int, outcome: dict[str, str], attempt: int
) -> str:
    """Record the submitter's own outcome of its ``attempt`` (one key of ``settle_submission``).

    Returns "settled"; or "reconciled" when the sweeper had meanwhile given the attempt up as
    unknown and the late reply says what happened (an order the provider accepted must not be
    forgotten); or "ignored" when an operator settled it first, or the reply is itself unknown.
    """
    assert len(outcome) == 1, outcome

    async def settle(**how: str) -> bool:
        return await settle_submission(
            connection,
            order_id,
            provider_order_id=outcome.get("provider_order_id"),
            refused=outcome.get("refused"),
            unknown=outcome.get("unknown"),
            deferred=outcome.get("deferred"),
            attempt=attempt,
            **how,
        )

    if await settle():
        return "settled"
    if "unknown" not in outcome and await settle(actor="reconciler", expected_submission="unknown"):
        return "reconciled"
    return "ignored"


async def mark_abandoned_attempts(connection: Connection, older_than_s: float) -> int:
    """Attempts left by a crashed process become SubmissionUnknown (never resubmitted blindly)."""
    rows = await connection.fetch(
        "select order_id, submission_attempts from orders where submission = 'attempting'"
        " and updated_at < now() - make_interval(secs => $1) order by order_id limit 100",
        older_than_s,
    )
    settled = 0
    for row in rows:  # an order claimed afresh since this read is left to its new attempt
        settled += await settle_submission(
            connection,
            row["order_id"],
            unknown="no outcome recorded after the attempt",
            actor="sweeper",
            attempt=row["submission_attempts"],
        )
    return settled


# ---- statuses and cancellation ---------------------------------------------------------


async def observe(
    connection: Connection,
    order_id: int,
    upstream_status: str,
    start_count: int | None,
    remains: int | None,
    charge: str | None,
    actor: str,
    *,
    remains_unreadable: bool = False,
) -> OrderState:
    """Record what the provider says of an order and pay what it owes; return the prior state."""
    async with connection.transaction():
        order = await lock_order(connection, order_id)
        observation = decide_observation(
            order, upstream_status, start_count, remains, charge, remains_unreadable
        )
        events = [observation.event] if observation.event is not None else []
        await record(
            connection,
            order,
            events,
            {"actor": actor},
            observation.refund_kobo,
            observation.refund_reason,
        )
    return order


Reply = tuple[str, int | None, int | None, str | None, bool]
"""A provider's status of an order: upstream status, start count, remains, charge, and
whether remains was sent unreadable."""


async def observe_batch(
    connection: Connection, replies: Mapping[int, Reply], actor: str
) -> list[int]:
    """Record, in one transaction, what the provider says of several orders, decided as
    ``observe`` decides, the refunds they owe included; return the orders recorded (those of
    ``replies`` that exist). The statuses go in one append, the refunds in another, so that the
    statuses are still projected in one statement."""
    async with connection.transaction():
        decided = [
            (order, decide_observation(order, *replies[order.order_id]))
            for order in await lock_orders(connection, list(replies))
        ]
        observed = [
            NewEvent(
                stream_id=order_stream(order.order_id),
                version=order.version + 1,
                event=observation.event,
            )
            for order, observation in decided
            if observation.event is not None
        ]
        owed = [
            (order, observation.refund_kobo, observation.refund_reason)
            for order, observation in decided
            if observation.refund_kobo > 0 and not order.refunded
        ]
        if observed:
            await commit(connection, observed, {"actor": actor})
        if owed:
            await commit(connection, await _refunds(connection, owed), {"actor": actor})
    return [order.order_id for order, _ in decided]


async def cancel_locally(connection: Connection, order: OrderState, actor: str) -> None:
    """Cancel a never-submitted order and refund it whole (caller holds the order lock)."""
    assert order.submission == "queued"
    event = OrderCanceled(order_id=order.order_id, reason="canceled before submission")
    await record(
        connection, order, [event], {"actor": actor}, order.price_kobo, "canceled before submission"
    )


async def record_cancel_reply(
    connection: Connection, order_id: int, accepted: bool, reason: str, actor: str
) -> OrderState:
    """Record the provider's answer to a cancel request (unless the order settled meanwhile)."""
    async with connection.transaction():
        order = await lock_order(connection, order_id)
        if order.status in ("canceling", "completed", "partial", "canceled", "failed"):
            return order
        event: Event = (
            CancelRequested(order_id=order_id)
            if accepted
            else CancelRejected(order_id=order_id, reason=reason[:500])
        )
        await record(connection, order, [event], {"actor": actor})
    return order
