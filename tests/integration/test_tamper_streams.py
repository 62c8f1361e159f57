"""Forgeries that every other check of ``audit verify`` lets through, each named by one check.

Each forger here knows the hash scheme, keeps the money adding up, gives each fact the id it
must have, and edits the live rows so that they equal a replay of the forged log: only the check
the test names can see the forgery, and the full verification (projections included) names it
and nothing else.
"""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from tampering import append_forged, position_of, rechain, triggers_off

from boost_ledger.audit import verify
from boost_ledger.ledger.events import credit_event_id, refund_event_id


def _found(report: Any) -> list[tuple[str, int | None]]:
    return [(finding.check, finding.global_position) for finding in report.findings]


async def _give_id(
    owner: asyncpg.Connection[Any], position: int, event_id: uuid.UUID
) -> None:
    """The event at ``position`` given ``event_id``, its stream's hashes recomputed."""
    row = await owner.fetchrow(
        "select stream_id, version from events where global_position = $1", position
    )
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set event_id = $2 where global_position = $1", position, event_id
        )
        await rechain(owner, row["stream_id"], row["version"])


async def _paid_back_in_the_live_rows(
    owner: asyncpg.Connection[Any], account_id: int, order_id: int, amount_kobo: int, at: int
) -> None:
    """The live wallet and order rows as a replay of the refund at position ``at`` makes them."""
    recorded_at = await owner.fetchval(
        "select recorded_at from events where global_position = $1", at
    )
    await owner.execute(
        "update wallets set balance_kobo = balance_kobo + $2,"
        " refunded_kobo = refunded_kobo + $2, version = version + 1 where account_id = $1",
        account_id, amount_kobo,
    )
    await owner.execute(
        "update orders set refunded = true, refunded_kobo = $2, updated_at = $3"
        " where order_id = $1",
        order_id, amount_kobo, recorded_at,
    )


async def _completed_order(owner: asyncpg.Connection[Any], order_id: int) -> tuple[int, int]:
    """(its charge, its account) of an order that completed: it owes nothing back."""
    charge, account_id, status, refunded = await owner.fetchrow(
        "select price_kobo, account_id, status, refunded from orders where order_id = $1",
        order_id,
    )
    assert status == "completed" and not refunded
    return charge, account_id


async def test_a_refund_kept_out_of_its_wallets_stream_is_named(ledger, owner):
    """A Refunded of the whole charge of an order that completed, in a stream of the forger's
    own (filled up to the wallet's version, so that the replay folds it into the wallet) rather
    than in the wallet's stream, where the refund checks would judge it: the wallet-stream
    check names it."""
    order_id = ledger.submitted_order
    charge, account_id = await _completed_order(owner, order_id)
    balance_kobo, version = await owner.fetchrow(
        "select balance_kobo, version from wallets where account_id = $1", account_id
    )
    stream = "forged-1"
    for _ in range(version):  # events no projection folds and no check reads
        await append_forged(owner, stream, "LedgerSealed", {"position": 0, "events": 0,
                                                             "digest": ""})
    forged = await append_forged(owner, stream, "Refunded", {
        "account_id": account_id, "order_id": order_id, "amount_kobo": charge,
        "balance_after_kobo": balance_kobo + charge, "reason": "upstream status Canceled",
    })
    await _give_id(owner, forged, refund_event_id(order_id))
    await _paid_back_in_the_live_rows(owner, account_id, order_id, charge, forged)
    report = await verify.verify(owner)
    assert _found(report) == [("wallet-stream", forged)], report.findings
    assert f"Refunded of account {account_id} in stream {stream}" in report.findings[0].detail


async def test_an_order_placed_in_another_stream_is_named(ledger, owner):
    """The events of an order that completed moved to a stream of another name (chain
    recomputed), then a refund of its whole charge in its wallet under the order's refund id,
    balance right: the refund checks read what an order owes in its own stream, find nothing
    there and pass the refund; the order-stream check names the OrderPlaced out of place."""
    order_id = ledger.submitted_order
    charge, account_id = await _completed_order(owner, order_id)
    moved = f"order-{order_id}-moved"
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set stream_id = $2 where stream_id = $1", f"order-{order_id}", moved
        )
        await rechain(owner, moved, 1)
    balance_kobo = await owner.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    forged = await append_forged(owner, f"wallet-{account_id}", "Refunded", {
        "account_id": account_id, "order_id": order_id, "amount_kobo": charge,
        "balance_after_kobo": balance_kobo + charge, "reason": "upstream status Canceled",
    })
    await _give_id(owner, forged, refund_event_id(order_id))
    await _paid_back_in_the_live_rows(owner, account_id, order_id, charge, forged)
    placed = await position_of(owner, moved, 1)
    report = await verify.verify(owner)
    assert _found(report) == [("order-stream", placed)], report.findings
    assert f"OrderPlaced of order {order_id} at version 1 of stream {moved}" in (
        report.findings[0].detail
    )


async def test_a_credit_recorded_twice_is_named_once_the_unique_index_is_gone(ledger, owner):
    """With the log's unique index on event_id dropped, an account's first credit recorded
    again at the end of its wallet (same reference, so the same deterministic id; balance
    right; the live wallet edited to match): the credit's reference credited the account
    twice, and unique-event-id names the copy."""
    account_id = ledger.partial
    stream = f"wallet-{account_id}"
    credit = await owner.fetchrow(
        "select event_id, data from events where stream_id = $1 and type = 'WalletCredited'"
        " order by version limit 1",
        stream,
    )
    assert credit["event_id"] == credit_event_id(account_id, credit["data"]["reference"])
    amount_kobo = credit["data"]["amount_kobo"]
    balance_kobo = await owner.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    await owner.execute("alter table events drop constraint events_event_id_key")
    assert (await verify.verify(owner)).ok
    again = await append_forged(owner, stream, "WalletCredited", {
        **credit["data"], "balance_after_kobo": balance_kobo + amount_kobo,
    })
    await _give_id(owner, again, credit["event_id"])
    await owner.execute(
        "update wallets set balance_kobo = balance_kobo + $2,"
        " credited_kobo = credited_kobo + $2, version = version + 1 where account_id = $1",
        account_id, amount_kobo,
    )
    report = await verify.verify(owner)
    assert _found(report) == [("unique-event-id", again)], report.findings
    assert f"event id {credit['event_id']} appears 2 times" in report.findings[0].detail
