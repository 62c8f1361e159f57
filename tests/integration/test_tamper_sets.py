"""The auditor's checks about sets of events (audit/checks.py), each shown to fire.

Each test forges what only that check (or a check that must fire with it) can see: the hash
chains are recomputed around the forgery and the money adds up, so the event-by-event checks
pass. The projections are left out of these runs (``projections_too=False``): the forged log
would also differ from them, which another test covers.
"""

from __future__ import annotations

from typing import Any

import asyncpg
from tampering import append_forged, forge_data, position_of, rechain, triggers_off

from boost_ledger.audit import verify
from boost_ledger.audit.findings import Report


def _found(report: Report) -> set[tuple[str, int | None]]:
    return {(finding.check, finding.global_position) for finding in report.findings}


async def _wallet_tail(owner: asyncpg.Connection[Any], account_id: int) -> dict[str, Any]:
    row = await owner.fetchrow(
        "select version, type, data from events where stream_id = $1"
        " order by version desc limit 1",
        f"wallet-{account_id}",
    )
    return dict(row)


async def _raise_refund(
    owner: asyncpg.Connection[Any], stream: str, version: int, by_kobo: int
) -> None:
    """The refund at ``version`` of ``stream`` raised by ``by_kobo``, its balance with it and
    the chain recomputed: the event-by-event checks still pass."""
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set data = data"
            " || jsonb_build_object('amount_kobo', (data->>'amount_kobo')::bigint + $3,"
            "  'balance_after_kobo', (data->>'balance_after_kobo')::bigint + $3)"
            " where stream_id = $1 and version = $2",
            stream, version, by_kobo,
        )
        await rechain(owner, stream, version)


async def test_two_orders_under_one_idempotency_key_are_named(ledger, owner):
    first, second = await owner.fetch(
        "select order_id, idempotency_key from orders where account_id = $1"
        " order by order_id limit 2",
        ledger.spender,
    )
    stream = f"order-{second['order_id']}"
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set data = jsonb_set(data, '{idempotency_key}', to_jsonb($2::text))"
            " where stream_id = $1 and version = 1",
            stream, first["idempotency_key"],
        )
        await rechain(owner, stream, 1)
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {
        ("idempotency", await position_of(owner, f"order-{first['order_id']}", 1))
    }, report.findings
    assert f"key {first['idempotency_key']} has 2 orders" in report.findings[0].detail


async def test_a_placed_order_renumbered_leaves_a_debit_without_order_and_an_order_unpaid(
    ledger, owner
):
    """An OrderPlaced given another order id: its debit now names an order never placed, the
    renumbered order was never debited, and its OrderPlaced is not in its own stream."""
    stream = f"order-{ledger.submitted_order}"
    await forge_data(owner, stream, 1, "order_id", "999999")
    debit = await owner.fetchval(
        "select global_position from events where type = 'FundsDebited'"
        " and (data->>'order_id')::bigint = $1",
        ledger.submitted_order,
    )
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {
        ("debit-matches-order", await position_of(owner, stream, 1)),
        ("debit-has-order", debit),
        ("order-stream", await position_of(owner, stream, 1)),
    }, report.findings
    details = {finding.check: finding.detail for finding in report.findings}
    assert "order 999999 priced" in details["debit-matches-order"]
    assert "debited nothing" in details["debit-matches-order"]
    assert f"debit for order {ledger.submitted_order} without" in details["debit-has-order"]


async def test_an_order_debited_twice_is_named_at_the_second_debit(ledger, owner):
    tail = await _wallet_tail(owner, ledger.spender)
    charge = await owner.fetchval(
        "select price_kobo from orders where order_id = $1", ledger.submitted_order
    )
    forged = await append_forged(owner, f"wallet-{ledger.spender}", "FundsDebited", {
        "account_id": ledger.spender, "order_id": ledger.submitted_order, "amount_kobo": charge,
        "balance_after_kobo": tail["data"]["balance_after_kobo"] - charge,
    })
    report = await verify.verify(owner, projections_too=False)
    # Its id cannot be the order's one debit id, which the first debit holds.
    assert _found(report) == {("deterministic-id", forged), ("debit-once", forged)}, (
        report.findings
    )


async def test_an_order_refunded_twice_is_named_at_the_second_refund(ledger, owner):
    tail = await _wallet_tail(owner, ledger.partial)
    assert tail["type"] == "Refunded"
    again = tail["data"]
    forged = await append_forged(owner, f"wallet-{ledger.partial}", "Refunded", {
        **again, "balance_after_kobo": again["balance_after_kobo"] + again["amount_kobo"],
    })
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {("deterministic-id", forged), ("refund-once", forged)}, (
        report.findings
    )


async def test_a_refund_above_the_charge_is_named(ledger, owner):
    tail = await _wallet_tail(owner, ledger.partial)
    assert tail["type"] == "Refunded"
    order_id, refunded = tail["data"]["order_id"], tail["data"]["amount_kobo"]
    charge = await owner.fetchval("select price_kobo from orders where order_id = $1", order_id)
    raised_by = charge - refunded + 100  # one naira more than the order cost
    stream = f"wallet-{ledger.partial}"
    await _raise_refund(owner, stream, tail["version"], raised_by)
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {("refund-bound", await position_of(owner, stream, tail["version"]))}
    assert f"refund of {charge + 100} kobo exceeds the charge of order {order_id}" in (
        report.findings[0].detail
    )


async def test_a_refund_of_an_order_that_owes_nothing_back_is_named(ledger, owner):
    """A Refunded of the whole charge for an order that completed, chained and with its
    balance right (only its id is not the order's refund id): refund-justified names it."""
    order_id = ledger.submitted_order
    charge, account_id = await owner.fetchrow(
        "select price_kobo, account_id from orders where order_id = $1", order_id
    )
    tail = await _wallet_tail(owner, account_id)
    forged = await append_forged(owner, f"wallet-{account_id}", "Refunded", {
        "account_id": account_id, "order_id": order_id, "amount_kobo": charge,
        "balance_after_kobo": tail["data"]["balance_after_kobo"] + charge,
        "reason": "upstream status Completed",
    })
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {("deterministic-id", forged), ("refund-justified", forged)}, (
        report.findings
    )
    detail = next(f.detail for f in report.findings if f.check == "refund-justified")
    assert f"order {order_id}, which owes nothing back (settled by StatusObserved completed)" in (
        detail
    )


async def test_a_partial_refund_of_another_amount_is_named(ledger, owner):
    """A partial refund raised by a naira, still below the charge (so refund-bound is quiet):
    refund-amount names it with what the order's Partial status owes."""
    tail = await _wallet_tail(owner, ledger.partial)
    assert tail["type"] == "Refunded"
    order_id, owed = tail["data"]["order_id"], tail["data"]["amount_kobo"]
    charge = await owner.fetchval("select price_kobo from orders where order_id = $1", order_id)
    assert owed + 100 <= charge
    stream = f"wallet-{ledger.partial}"
    await _raise_refund(owner, stream, tail["version"], 100)
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {("refund-amount", await position_of(owner, stream, tail["version"]))}
    assert f"refund of {owed + 100} kobo for order {order_id}, which owes {owed} kobo back" in (
        report.findings[0].detail
    )


async def test_an_order_stream_opened_by_another_event_is_named(ledger, owner):
    forged = await append_forged(
        owner, "order-999999", "SubmissionAttempted", {"order_id": 999999, "attempt": 1}
    )
    report = await verify.verify(owner, projections_too=False)
    assert _found(report) == {("order-opens-stream", forged)}, report.findings
    assert "first event of the order stream is SubmissionAttempted" in report.findings[0].detail
