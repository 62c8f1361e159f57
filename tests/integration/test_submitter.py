"""The submitter at each crash point and under every provider fault (issue 4): no order is lost,
none is sent twice by us, every refused one is refunded once, every unknown one awaits an operator.

A crash is simulated by calling the submitter's pieces directly and stopping between them. The
simulator's order list is the witness of what reached the provider: each order carries a link of
its own, so the provider orders of one of ours are those with its link.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from support import (
    bearer,
    free_port,
    http_server,
    open_funded_account,
    rewriting_panel,
    seed_catalog,
)

from boost_ledger.ledger import fulfilment
from boost_ledger.ledger.events import RecordedEvent, SubmissionAttempted
from boost_ledger.projections import orders as orders_projection
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import submitter

# Service "1" at the test catalog's terms (fx 1500, markup 20 %): 0.90 * 1500 * 1.20 = 1620 NGN
# per 1000, so 100 units cost 162.00 NGN.
PRICE_100_KOBO = 162_00
FUNDS_KOBO = 1_000_00


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _place(client: httpx.AsyncClient, key: str, quantity: int = 100) -> dict[str, Any]:
    """Check out one order of service "1" with a link of its own; returns the 201 data."""
    link = f"https://instagram.com/p/{uuid.uuid4().hex}"
    body = {"service_id": "1", "link": link, "quantity": quantity,
            "idempotency_key": uuid.uuid4().hex}
    response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    assert data["link"] == link
    return data


async def _provider_orders(simulator: httpx.AsyncClient, link: str) -> list[dict[str, Any]]:
    orders = (await simulator.get("/orders")).json()
    return [order for order in orders if order["link"] == link]


async def _order(pool: asyncpg.Pool[Any], order_id: int | str) -> asyncpg.Record:
    row = await pool.fetchrow("select * from orders where order_id = $1", int(order_id))
    assert row is not None
    return row


async def _event_types(pool: asyncpg.Pool[Any], order_id: int | str) -> list[str]:
    """The order stream's event types in order, then one "Refunded" per refund of the order."""
    rows = await pool.fetch(
        "select type from events where stream_id = $1 order by version", f"order-{order_id}"
    )
    refunds = await pool.fetchval(
        "select count(*) from events where type = 'Refunded' and (data->>'order_id')::bigint = $1",
        int(order_id),
    )
    return [row["type"] for row in rows] + ["Refunded"] * refunds


async def _balance(pool: asyncpg.Pool[Any], account_id: int) -> int:
    balance: int = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    return balance


async def _assert_no_order_lost(pool: asyncpg.Pool[Any]) -> None:
    """Every order of the database is in exactly one of the four places an order may rest."""
    rows = await pool.fetch(
        "select o.order_id, o.submission, o.status, o.refunded, o.refunded_kobo, o.price_kobo,"
        " (select count(*) from events e where e.stream_id = 'order-' || o.order_id"
        "   and e.type = 'OrderSubmitted') as submitted,"
        " (select count(*) from events e where e.type = 'Refunded'"
        "   and (e.data->>'order_id')::bigint = o.order_id) as refunds"
        " from orders o order by o.order_id"
    )
    assert rows
    for row in rows:
        place = row["submission"]
        assert place in ("submitted", "failed", "unknown", "queued"), dict(row)
        if place == "failed":
            assert (row["status"], row["refunds"], row["submitted"]) == ("failed", 1, 0), dict(row)
            assert row["refunded_kobo"] == row["price_kobo"], dict(row)
        else:
            assert (row["refunds"], row["refunded"]) == (0, False), dict(row)
            assert row["submitted"] == (1 if place == "submitted" else 0), dict(row)


async def test_crash_before_the_attempt_leaves_the_order_queued_and_it_is_sent_once(
    dsn: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A claim that dies before SubmissionAttempted commits leaves the order queued; a later
    drain sends it exactly once."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    # The crash: a submitter locked the row, as a claim does, and died before committing.
    doomed = await asyncpg.connect(dsn)
    await doomed.execute("begin")
    locked = await doomed.fetchval(
        "select order_id from orders where order_id = $1 for update skip locked",
        int(order["order_id"]),
    )
    assert locked == int(order["order_id"])
    doomed.terminate()
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["submission_attempts"]) == ("queued", 0)
    assert await _provider_orders(simulator, order["link"]) == []

    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    assert await submitter.drain(pool, provider) == []
    [sent] = await _provider_orders(simulator, order["link"])
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "OrderSubmitted"
    ]
    await _assert_no_order_lost(pool)


async def test_crash_after_the_attempt_is_unknown_and_never_sent(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A crash between SubmissionAttempted and the call: the sweeper marks it unknown, no
    refund, and it is never sent afterwards."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
    assert claimed is not None and claimed.order_id == int(order["order_id"])
    # ... and the process dies here. A later process sweeps the abandoned attempt.
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 1
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 0
    assert await submitter.drain(pool, provider) == []
    assert await _provider_orders(simulator, order["link"]) == []
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["status"], row["refunded"]) == ("unknown", "pending", False)
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionUnknown"
    ]
    assert await _balance(pool, account_id) == FUNDS_KOBO - PRICE_100_KOBO
    await _assert_no_order_lost(pool)


async def test_crash_after_the_provider_accepted_is_unknown_and_never_resent(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A crash after the provider accepted but before OrderSubmitted: unknown, and the provider
    holds exactly one order however often the submitter and sweeper run again."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
    assert claimed is not None and claimed.order_id == int(order["order_id"])
    fields = {name: str(value) for name, value in claimed.fields.items()}
    await provider.add(claimed.provider_service_id, fields)
    # ... and the process dies before settle_submission.
    for _ in range(3):
        async with pool.acquire() as connection:
            await fulfilment.mark_abandoned_attempts(connection, older_than_s=0)
        assert await submitter.drain(pool, provider) == []
    assert len(await _provider_orders(simulator, order["link"])) == 1
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["refunded"]) == ("unknown", False)
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionUnknown"
    ]
    await _assert_no_order_lost(pool)


@pytest.mark.parametrize(
    ("mode", "provider_orders"),
    [("http_500", 0), ("html", 0), ("timeout", 0), ("malformed_json", 1), ("reply_lost", 1)],
)
async def test_a_fault_that_hides_the_outcome_makes_the_order_unknown(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, impatient: ProviderClient, mode: str, provider_orders: int,
) -> None:
    """A garbled, dropped or missing reply to `add` is SubmissionUnknown: no refund, listed for
    the operator, and never sent again (the provider keeps what it had: 0 or 1 order)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    fault = {"action": "add", "mode": mode, "latency_ms": 5_000}
    (await simulator.post("/faults", json=fault)).raise_for_status()

    assert await submitter.drain(pool, impatient) == ["unknown"]

    await simulator.post("/faults", json={"action": "*", "mode": "none"})
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 0
    assert await submitter.drain(pool, provider) == []
    assert len(await _provider_orders(simulator, order["link"])) == provider_orders
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["status"], row["refunded"]) == ("unknown", "pending", False)
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionUnknown"
    ]
    awaiting = await pool.fetchval(
        "select count(*) from orders where submission = 'unknown' and order_id = $1",
        int(order["order_id"]),
    )
    assert awaiting == 1  # what `boost orders unknown` lists
    assert await _balance(pool, account_id) == FUNDS_KOBO - PRICE_100_KOBO
    await _assert_no_order_lost(pool)


async def test_a_definite_refusal_fails_the_order_and_refunds_it_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """`{"error": ...}` to `add` is SubmissionFailed plus one Refunded of the whole charge: the
    order is failed and refunded, the wallet back where it was."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await simulator.post("/faults", json={"action": "add", "mode": "error"})

    assert await submitter.drain(pool, provider) == ["refused"]
    assert await submitter.drain(pool, provider) == []

    assert await _provider_orders(simulator, order["link"]) == []
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["status"], row["refunded"]) == ("failed", "failed", True)
    assert row["refunded_kobo"] == PRICE_100_KOBO
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionFailed", "Refunded"
    ]
    refund = await pool.fetchval(
        "select data from events where type = 'Refunded' and (data->>'order_id')::bigint = $1",
        int(order["order_id"]),
    )
    assert await _balance(pool, account_id) == FUNDS_KOBO
    assert (refund["amount_kobo"], refund["balance_after_kobo"]) == (PRICE_100_KOBO, FUNDS_KOBO)
    shown = await client.get(f"/api/v1/boost/orders/{order['order_id']}", headers=bearer(key))
    assert (shown.json()["data"]["status"], shown.json()["data"]["refunded"]) == ("failed", True)
    await _assert_no_order_lost(pool)


def _panel_adding_an_error(simulator_url: str, error: object) -> Starlette:
    """A panel that is the simulator, but whose add replies carry an ``error`` beside the
    order id (a warning, or a null: both seen from panel scripts)."""

    def add_error(reply: Any) -> None:
        if isinstance(reply, dict) and "order" in reply:
            reply["error"] = error

    return rewriting_panel(simulator_url, add_error)


async def _drained_through(simulator_url: str, error: object, pool: asyncpg.Pool[Any]) -> list[str]:
    """The outcomes of one drain through a panel whose add replies carry ``error``."""
    async with http_server(_panel_adding_an_error(simulator_url, error)) as panel_url:
        panel = ProviderClient(f"{panel_url}/api/v2", "sim-key", timeout_s=2.0)
        try:
            return await submitter.drain(pool, panel)
        finally:
            await panel.aclose()


async def test_an_add_reply_with_an_order_id_and_an_error_is_unknown_never_refunded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    simulator_url: str,
) -> None:
    """A reply to `add` naming an order id is no definite refusal, whatever error text it
    carries beside it: the provider may well hold the order. It is SubmissionUnknown, for an
    operator, and nothing is refunded (it was SubmissionFailed and a full refund while the
    provider delivered, and charged us for, the order)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    assert await _drained_through(simulator_url, "Your balance is running low", pool) == [
        "unknown"
    ]
    assert len(await _provider_orders(simulator, order["link"])) == 1
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["status"], row["refunded"]) == ("unknown", "pending", False)
    assert await _balance(pool, account_id) == FUNDS_KOBO - PRICE_100_KOBO
    await _assert_no_order_lost(pool)


async def test_an_add_reply_with_an_order_id_and_a_null_error_is_accepted(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    simulator_url: str,
) -> None:
    """``{"order": 23501, "error": null}``, from a panel script that sends the null in every
    reply, is an acceptance like any other (it was SubmissionUnknown: every order of such a
    panel waited for an operator)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    assert await _drained_through(simulator_url, None, pool) == ["provider_order_id"]
    [sent] = await _provider_orders(simulator, order["link"])
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))
    assert await _balance(pool, account_id) == FUNDS_KOBO - PRICE_100_KOBO
    await _assert_no_order_lost(pool)


def _nul_in_errors(reply: Any) -> None:
    """A refusal's text gets a NUL, as a panel script's C string can."""
    if isinstance(reply, dict) and isinstance(reply.get("error"), str):
        reply["error"] = "Not enough\x00funds"


async def test_a_refusal_whose_text_holds_a_nul_is_failed_and_refunded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    simulator_url: str,
) -> None:
    """An add refused with a text holding a NUL (JSON "\\u0000", which no PostgreSQL text can
    hold) is refused like any other: SubmissionFailed, the NUL replaced, and a full refund (its
    append failed, so the order stayed attempting and became unknown, for an operator)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    first, second = await _place(client, key), await _place(client, key)
    await simulator.post("/faults", json={"action": "add", "mode": "error"})
    async with http_server(rewriting_panel(simulator_url, _nul_in_errors)) as panel_url:
        panel = ProviderClient(f"{panel_url}/api/v2", "sim-key", timeout_s=2.0)
        try:
            assert await submitter.drain(pool, panel) == ["refused", "refused"]
        finally:
            await panel.aclose()
    for order in (first, second):
        row = await _order(pool, order["order_id"])
        assert (row["submission"], row["status"], row["refunded"]) == ("failed", "failed", True)
        reason = await pool.fetchval(
            "select data->>'reason' from events where stream_id = $1 and type = 'SubmissionFailed'",
            f"order-{order['order_id']}",
        )
        assert reason == "Not enough\ufffdfunds"
    assert await _balance(pool, account_id) == FUNDS_KOBO
    await _assert_no_order_lost(pool)


async def test_latency_only_delays_the_submission(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A slow but honest provider: the order is submitted once, as usual."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await simulator.post("/faults", json={"action": "add", "mode": "latency", "latency_ms": 150})

    assert await submitter.drain(pool, provider) == ["provider_order_id"]

    [sent] = await _provider_orders(simulator, order["link"])
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))
    await _assert_no_order_lost(pool)


async def test_an_unreachable_provider_defers_and_the_order_is_sent_once_later(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Connection refused means the request never left: SubmissionDeferred, back in the queue,
    and once the provider is reachable the order is submitted exactly once."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    nowhere = ProviderClient(f"http://127.0.0.1:{free_port()}/api/v2", "sim-key", timeout_s=0.5)
    try:
        assert await submitter.drain(pool, nowhere) == ["deferred"]
        assert await submitter.drain(pool, nowhere) == ["deferred"]
    finally:
        await nowhere.aclose()
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["submission_attempts"]) == ("queued", 2)
    await _assert_no_order_lost(pool)

    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    assert await submitter.drain(pool, provider) == []

    assert len(await _provider_orders(simulator, order["link"])) == 1
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced",
        "SubmissionAttempted", "SubmissionDeferred",
        "SubmissionAttempted", "SubmissionDeferred",
        "SubmissionAttempted", "OrderSubmitted",
    ]
    await _assert_no_order_lost(pool)


async def test_a_late_reply_after_the_sweep_settles_the_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A submission so slow that the sweeper marked it unknown is reconciled by the reply that
    does arrive: the provider's order id is recorded, not dropped."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await simulator.post("/faults", json={"action": "add", "mode": "latency", "latency_ms": 400})
    sending = asyncio.create_task(submitter.submit_one(pool, provider))
    for _ in range(200):
        row = await _order(pool, order["order_id"])
        if row["submission"] == "attempting":
            break
        await asyncio.sleep(0.005)
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 1

    assert await sending == "provider_order_id"

    [sent] = await _provider_orders(simulator, order["link"])
    row = await _order(pool, order["order_id"])
    assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))
    resolved_by = await pool.fetchval(
        "select data->>'resolved_by' from events where stream_id = $1 and type = 'OrderSubmitted'",
        f"order-{order['order_id']}",
    )
    assert resolved_by == "reconciler"
    assert await _event_types(pool, order["order_id"]) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionUnknown", "OrderSubmitted"
    ]
    await _assert_no_order_lost(pool)


async def test_replies_that_arrive_together_settle_in_one_transaction(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Accepted replies are recorded together, in one transaction, each order scheduled for a
    poll; an order the sweeper gave up meanwhile is left out, and its reply then reconciles it."""
    _, key = await open_funded_account(pool, 3 * PRICE_100_KOBO)
    orders = [await _place(client, key) for _ in range(3)]
    ids = [int(order["order_id"]) for order in orders]
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_batch(connection, 3)
        assert sorted(order.order_id for order in claimed) == ids
        await fulfilment.settle_submission(connection, ids[1], unknown="swept", actor="sweeper")
        accepted = {order_id: f"p-{order_id}" for order_id in ids}
        attempts = {order.order_id: order.attempt for order in claimed}
        assert set(attempts.values()) == {1}
        recorded = await fulfilment.settle_accepted(connection, accepted, attempts)
        assert recorded == [ids[0], ids[2]]
        assert await fulfilment.settle_reply(
            connection, ids[1], {"provider_order_id": accepted[ids[1]]}, 1
        ) == "reconciled"

    for order_id in ids:
        row = await _order(pool, order_id)
        assert (row["submission"], row["provider_order_id"]) == ("submitted", f"p-{order_id}")
    transactions = await pool.fetch(
        "select distinct transaction_id from events where type = 'OrderSubmitted'"
        " and stream_id = any($1::text[]) and data->>'resolved_by' = ''",
        [f"order-{order_id}" for order_id in ids],
    )
    assert len(transactions) == 1
    polled = await pool.fetchval(
        "select count(*) from order_polls where order_id = any($1::bigint[])", ids
    )
    assert polled == 3


async def test_when_the_joint_settle_fails_each_reply_is_recorded_on_its_own(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A database error in the transaction that records accepted replies together loses none
    of them: each is then recorded in a transaction of its own, and each order reached the
    provider once."""
    _, key = await open_funded_account(pool, 3 * PRICE_100_KOBO)
    orders = [await _place(client, key) for _ in range(3)]

    async def refused(*_: object) -> list[int]:
        raise asyncpg.exceptions.SerializationError("injected: the joint settle fails")

    monkeypatch.setattr(fulfilment, "settle_accepted", refused)
    assert await submitter.submit_batch(pool, provider, 3) == ["provider_order_id"] * 3
    for order in orders:
        [sent] = await _provider_orders(simulator, order["link"])
        row = await _order(pool, order["order_id"])
        assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))


async def test_a_batch_projected_at_a_stale_version_is_refused(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient
) -> None:
    """The batched projection checks each order's version as the one-by-one path does: a batch
    naming a version the row is not at aborts its transaction and changes nothing."""
    _, key = await open_funded_account(pool, 2 * PRICE_100_KOBO)
    ids = [int((await _place(client, key))["order_id"]) for _ in range(2)]
    rows = [await _order(pool, order_id) for order_id in ids]
    records = [
        RecordedEvent(
            global_position=0, event_id=uuid.uuid4(), stream_id=f"order-{row['order_id']}",
            version=row["version"] + (2 if index else 1),  # the second skips a version
            event=SubmissionAttempted(order_id=row["order_id"], attempt=1), metadata={},
            transaction_id=0, recorded_at=datetime.now(UTC), hash=b"",
        )
        for index, row in enumerate(rows)
    ]
    assert orders_projection.batchable(records)
    async with pool.acquire() as connection:
        with pytest.raises(AssertionError, match="expected versions"):
            async with connection.transaction():
                await orders_projection.apply_batch(connection, records)
    assert [(await _order(pool, order_id))["submission"] for order_id in ids] == ["queued"] * 2
    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 2


async def test_four_submitters_at_once_send_each_order_exactly_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Thirty queued orders drained by four submitters concurrently: each reaches the provider
    exactly once and is attempted exactly once."""
    _, key = await open_funded_account(pool, 30 * PRICE_100_KOBO)
    orders = [await _place(client, key) for _ in range(30)]

    outcomes = await asyncio.gather(*(submitter.drain(pool, provider) for _ in range(4)))

    assert sorted(kind for drained in outcomes for kind in drained) == ["provider_order_id"] * 30
    sent = (await simulator.get("/orders")).json()
    for order in orders:
        [provider_order] = [item for item in sent if item["link"] == order["link"]]
        row = await _order(pool, order["order_id"])
        assert row["provider_order_id"] == str(provider_order["order"])
        assert row["submission_attempts"] == 1
        assert await _event_types(pool, order["order_id"]) == [
            "OrderPlaced", "SubmissionAttempted", "OrderSubmitted"
        ]
    await _assert_no_order_lost(pool)


async def test_batches_claimed_side_by_side_send_each_order_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Three submitters claim batches at once: each order is attempted once and reaches the
    provider once (a claimer skips what another holds), and each batch is oldest first."""
    _, key = await open_funded_account(pool, 20 * PRICE_100_KOBO)
    orders = [await _place(client, key) for _ in range(12)]
    batches = await asyncio.gather(*(submitter.submit_batch(pool, provider, 8) for _ in range(3)))
    assert sum(len(batch) for batch in batches) >= 12
    for order in orders:
        assert len(await _provider_orders(simulator, order["link"])) == 1
        types = await _event_types(pool, order["order_id"])
        assert types.count("SubmissionAttempted") == 1 and types[-1] == "OrderSubmitted", types
    assert await submitter.drain(pool, provider) == []


_UNSETTLED = ("queued", "attempting")


async def _submission_after(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient, key: str,
    wait_s: float, poll_interval_s: float | None, monkeypatch: pytest.MonkeyPatch,
) -> str:
    """The order's submission ``wait_s`` after it was placed, with a running submitter that
    nothing wakes and whose sweep is far off, started (and idle) before the order came."""
    looked = asyncio.Event()
    real_drain = submitter._drain

    async def noted_drain(*arguments: Any, **options: Any) -> tuple[list[str], bool]:
        sent = await real_drain(*arguments, **options)
        looked.set()
        return sent

    monkeypatch.setattr(submitter, "_drain", noted_drain)
    never = asyncio.Event()
    running = asyncio.create_task(
        submitter.run(pool, provider, never, 300.0, poll_interval_s=poll_interval_s)
    )
    try:
        # Its first look at the queue finds it empty (however slow the machine is to start it).
        await asyncio.wait_for(looked.wait(), timeout=10)
        order = await _place(client, key)
        deadline = asyncio.get_running_loop().time() + wait_s
        while asyncio.get_running_loop().time() < deadline:
            # Past "attempting" (the provider call in flight), where the submission settles.
            if (await _order(pool, order["order_id"]))["submission"] not in _UNSETTLED:
                break
            await asyncio.sleep(0.05)
        return str((await _order(pool, order["order_id"]))["submission"])
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_submitter_apart_from_the_api_looks_for_orders_every_poll_interval(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No checkout wakes the submitter of ``boost worker`` (or of the parent of ``boost serve
    --processes``): it finds a new order within its poll interval, where one that waits for
    wakeups would leave it to the next sweep."""
    _, key = await open_funded_account(pool, 5 * PRICE_100_KOBO)
    assert await _submission_after(pool, client, provider, key, 1.0, None, monkeypatch) == "queued"
    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    assert await _submission_after(
        pool, client, provider, key, 5.0, 0.05, monkeypatch
    ) == "submitted"


async def test_an_idle_worker_looks_for_orders_less_and_less_often(
    pool: asyncpg.Pool[Any], provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With nothing queued, the poll interval doubles up to ``IDLE_POLL_CAP_S``: an idle
    ``boost serve`` does not run twenty claim transactions a second. (Above: a new order is still
    found within a few such looks.)"""
    looks = 0
    real_drain = submitter._drain

    async def counted_drain(*arguments: Any, **options: Any) -> tuple[list[str], bool]:
        nonlocal looks
        looks += 1
        return await real_drain(*arguments, **options)

    monkeypatch.setattr(submitter, "_drain", counted_drain)
    assert await submitter.drain(pool, provider) == []  # nothing queued (counted: one look)
    running = asyncio.create_task(
        submitter.run(pool, provider, asyncio.Event(), 300.0, poll_interval_s=0.05)
    )
    await asyncio.sleep(3.0)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 + 1.0 s...: 7 or 8 looks in 3 s, against 60 at a fixed 0.05 s.
    assert 1 + 5 <= looks <= 1 + 9, looks


async def test_a_stop_mid_batch_lets_the_calls_made_end_and_records_their_replies(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """SIGTERM cancels the worker mid-batch, its calls made and slow to answer: each call is
    let end and its reply recorded before the stop completes, so no order is left attempting
    for the sweeper to make unknown (an operator's work after every restart)."""
    await submitter.drain(pool, provider)  # what earlier tests left queued
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    orders = [await _place(client, key) for _ in range(3)]
    await simulator.post("/faults", json={"action": "add", "mode": "latency", "latency_ms": 400})
    batch = asyncio.create_task(submitter.submit_batch(pool, provider))
    await asyncio.sleep(0.15)  # claimed, the calls sent, no reply back yet
    assert {(await _order(pool, o["order_id"]))["submission"] for o in orders} == {"attempting"}

    batch.cancel()
    with pytest.raises(asyncio.CancelledError):
        await batch

    for order in orders:
        [sent] = await _provider_orders(simulator, order["link"])
        row = await _order(pool, order["order_id"])
        assert (row["submission"], row["provider_order_id"]) == ("submitted", str(sent["order"]))
    await _assert_no_order_lost(pool)


async def test_a_stop_once_the_claim_committed_puts_its_unsent_orders_back_in_the_queue(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM arrives just after a claim committed its attempts (the connection still being
    handed back to the pool), before any call is made: the orders, which never reached the
    provider, go back in the queue, instead of staying attempting until the sweeper makes them
    unknown for an operator to look up at the provider, where they are not."""
    await submitter.drain(pool, provider)  # what earlier tests left queued
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    orders = [await _place(client, key) for _ in range(2)]
    real_claim_batch = fulfilment.claim_batch

    async def claim_then_stop(connection: Any, limit: int) -> list[fulfilment.Claimed]:
        claimed = await real_claim_batch(connection, limit)
        task = asyncio.current_task()
        assert task is not None
        task.cancel()  # delivered at the next await: the pool's release of the connection
        return claimed

    monkeypatch.setattr(fulfilment, "claim_batch", claim_then_stop)
    with pytest.raises(asyncio.CancelledError):
        await submitter.submit_batch(pool, provider)
    for order in orders:
        assert await _provider_orders(simulator, order["link"]) == []
        assert (await _order(pool, order["order_id"]))["submission"] == "queued"
        assert await _event_types(pool, order["order_id"]) == [
            "OrderPlaced", "SubmissionAttempted", "SubmissionDeferred"
        ]
    monkeypatch.undo()
    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 2
    await _assert_no_order_lost(pool)


async def test_a_reply_to_an_earlier_attempt_settles_nothing(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient
) -> None:
    """A reply is matched to the attempt it answers: once an order deferred at its first
    attempt has been claimed again, a late second recording of that first reply (as a worker
    stopped mid-settle makes) neither re-queues it nor settles the new attempt, so the order is
    not sent twice; the new attempt's own reply then settles it."""
    await submitter.drain(pool, provider)  # what earlier tests left queued
    _, key = await open_funded_account(pool, PRICE_100_KOBO)
    order_id = int((await _place(client, key))["order_id"])
    deferred = {"deferred": "provider not reached: injected"}
    async with pool.acquire() as connection:
        [first] = await fulfilment.claim_batch(connection, 1)
        assert await fulfilment.settle_reply(connection, order_id, deferred, first.attempt) == (
            "settled"
        )
        [second] = await fulfilment.claim_batch(connection, 1)
        assert (first.attempt, second.attempt) == (1, 2)
        assert await fulfilment.settle_reply(connection, order_id, deferred, 1) == "ignored"
        stale = {order_id: "p-stale"}
        assert await fulfilment.settle_accepted(connection, stale, {order_id: 1}) == []
        row = await _order(pool, order_id)
        assert (row["submission"], row["submission_attempts"]) == ("attempting", 2)
        accepted = {"provider_order_id": "p-second"}
        assert await fulfilment.settle_reply(connection, order_id, accepted, 2) == "settled"
    row = await _order(pool, order_id)
    assert (row["submission"], row["provider_order_id"]) == ("submitted", "p-second")
    assert await _event_types(pool, order_id) == [
        "OrderPlaced", "SubmissionAttempted", "SubmissionDeferred", "SubmissionAttempted",
        "OrderSubmitted",
    ]


async def test_the_sweeper_leaves_an_attempt_claimed_after_it_looked(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient
) -> None:
    """The sweeper settles the attempt it read as old: given another attempt's number (the
    order re-queued and claimed again between its look and its lock), it changes nothing."""
    await submitter.drain(pool, provider)
    _, key = await open_funded_account(pool, PRICE_100_KOBO)
    order_id = int((await _place(client, key))["order_id"])
    async with pool.acquire() as connection:
        await fulfilment.claim_batch(connection, 1)
        settled = await fulfilment.settle_submission(
            connection, order_id, unknown="swept", actor="sweeper", attempt=2
        )
        assert settled is False
        row = await _order(pool, order_id)
        assert (row["submission"], row["submission_attempts"]) == ("attempting", 1)
        assert await fulfilment.settle_submission(
            connection, order_id, unknown="swept", actor="sweeper", attempt=1
        )
    assert (await _order(pool, order_id))["submission"] == "unknown"


async def test_a_stop_mid_settle_records_again_only_the_replies_not_yet_recorded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Stopped between two replies' transactions, the submitter records at shutdown the
    replies whose transactions had not ended, and not the one already recorded: that one's
    order may have been claimed again by another worker since."""
    await submitter.drain(pool, provider)
    _, key = await open_funded_account(pool, 2 * PRICE_100_KOBO)
    ids = [int((await _place(client, key))["order_id"]) for _ in range(2)]

    async def not_reached(_: ProviderClient, claimed: fulfilment.Claimed) -> dict[str, str]:
        return {"deferred": f"provider not reached: injected for {claimed.order_id}"}

    recorded: list[int] = []
    real_settle_reply = fulfilment.settle_reply

    async def settle_then_stop(connection: Any, order_id: int, *rest: Any) -> str:
        settled = await real_settle_reply(connection, order_id, *rest)
        recorded.append(order_id)
        if len(recorded) == 1:  # SIGTERM arrives once the first reply is recorded
            task = asyncio.current_task()
            assert task is not None
            task.cancel()
        return settled

    monkeypatch.setattr(submitter, "_send", not_reached)
    monkeypatch.setattr(fulfilment, "settle_reply", settle_then_stop)
    with pytest.raises(asyncio.CancelledError):
        await submitter.submit_batch(pool, provider, 2)
    assert sorted(recorded) == ids
    for order_id in ids:
        assert (await _order(pool, order_id))["submission"] == "queued"
        assert await _event_types(pool, order_id) == [
            "OrderPlaced", "SubmissionAttempted", "SubmissionDeferred"
        ]


async def test_a_drain_stops_after_a_batch_the_queue_could_not_fill(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch that claimed fewer orders than it could take emptied the queue: the drain ends
    there instead of chasing, a claim and a settle transaction for every order or two, the
    orders placed while the batch was out (the next look finds them together)."""
    await submitter.drain(pool, provider)
    _, key = await open_funded_account(pool, 6 * PRICE_100_KOBO)
    for _ in range(3):
        await _place(client, key)
    claims: list[int] = []
    real_submit_batch = submitter.submit_batch

    async def counted(*arguments: Any) -> list[str]:
        sent = await real_submit_batch(*arguments)
        claims.append(len(sent))
        return sent

    monkeypatch.setattr(submitter, "submit_batch", counted)
    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 3
    assert claims == [3]
    monkeypatch.setattr(submitter, "SEND_BATCH", 2)
    for _ in range(3):
        await _place(client, key)
    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 3
    assert claims == [3, 2, 1]



async def test_an_id_the_provider_gave_twice_is_recorded_for_one_order_only(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The database holds each provider order id for one order (a unique index): a panel
    answering two of our orders with one id has it recorded for the first, the second left
    attempting (for the sweeper and an operator), and the batch's other replies recorded."""
    await submitter.drain(pool, provider)
    _, key = await open_funded_account(pool, 3 * PRICE_100_KOBO)
    ids = [int((await _place(client, key))["order_id"]) for _ in range(3)]
    given = {ids[0]: "twice-1", ids[1]: "twice-1", ids[2]: "once-1"}

    async def answered(_: ProviderClient, claimed: fulfilment.Claimed) -> dict[str, str]:
        return {"provider_order_id": given[claimed.order_id]}

    monkeypatch.setattr(submitter, "_send", answered)
    await submitter.submit_batch(pool, provider, 3)
    rows = {order_id: await _order(pool, order_id) for order_id in ids}
    recorded = [i for i in ids if rows[i]["provider_order_id"] == "twice-1"]
    assert len(recorded) == 1
    [left] = [i for i in ids[:2] if i not in recorded]
    assert rows[left]["submission"] == "attempting"
    assert (rows[ids[2]]["submission"], rows[ids[2]]["provider_order_id"]) == (
        "submitted", "once-1"
    )
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 1
    assert (await _order(pool, left))["submission"] == "unknown"


async def test_a_reply_the_database_refuses_costs_that_order_alone(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A reply whose recording PostgreSQL refuses (here a data error, as a NUL in a reason
    once was) leaves its order attempting, for the sweeper and an operator, and the batch's
    later replies are recorded (they were all left unrecorded, and became unknown too)."""
    await submitter.drain(pool, provider)
    _, key = await open_funded_account(pool, 3 * PRICE_100_KOBO)
    ids = [int((await _place(client, key))["order_id"]) for _ in range(3)]

    async def refused(_: ProviderClient, claimed: fulfilment.Claimed) -> dict[str, str]:
        return {"refused": "Not enough funds on balance"}

    settle_reply = fulfilment.settle_reply

    async def refusing_the_first(connection: Any, order_id: int, *rest: Any) -> str:
        if order_id == ids[0]:
            raise asyncpg.DataError("invalid byte sequence for encoding")
        return await settle_reply(connection, order_id, *rest)

    monkeypatch.setattr(submitter, "_send", refused)
    monkeypatch.setattr(fulfilment, "settle_reply", refusing_the_first)
    await submitter.submit_batch(pool, provider, 3)
    rows = {order_id: await _order(pool, order_id) for order_id in ids}
    assert [(rows[i]["submission"], rows[i]["refunded"]) for i in ids] == [
        ("attempting", False), ("failed", True), ("failed", True)
    ]
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 1


async def test_no_order_is_lost_after_all_of_the_above(pool: asyncpg.Pool[Any]) -> None:
    """After every crash and fault of this module, each order is submitted, failed and refunded,
    unknown, or queued; none is left half-way ("attempting")."""
    await _assert_no_order_lost(pool)
    places = await pool.fetch("select submission, count(*) from orders group by submission")
    counts = {row["submission"]: row["count"] for row in places}
    assert counts.get("attempting", 0) == 0
    assert counts["submitted"] >= 33 and counts["unknown"] >= 7 and counts["failed"] >= 1



async def _submissions(pool: asyncpg.Pool[Any], order_ids: list[int]) -> list[str]:
    rows = await pool.fetch(
        "select submission from orders where order_id = any($1::bigint[]) order by order_id",
        order_ids,
    )
    return [row["submission"] for row in rows]


async def test_a_failing_provider_stops_the_drain_after_one_batch(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A batch left unknown (a panel answering 500) ends the drain: the orders behind it stay
    queued, instead of each being sent into the outage and left for an operator; they are
    sent once the provider is back."""
    monkeypatch.setattr(submitter, "SEND_BATCH", 2)
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order_ids = sorted([int((await _place(client, key))["order_id"]) for _ in range(5)])
    (await simulator.post("/faults", json={"action": "add", "mode": "http_500"})).raise_for_status()
    try:
        assert await submitter.drain(pool, provider) == ["unknown"] * 2
    finally:
        await simulator.post("/faults", json={"action": "*", "mode": "none"})
    assert sorted(await _submissions(pool, order_ids)) == ["queued"] * 3 + ["unknown"] * 2

    assert await submitter.drain(pool, provider) == ["provider_order_id"] * 3
    assert sorted(await _submissions(pool, order_ids)) == ["submitted"] * 3 + ["unknown"] * 2
    await _assert_no_order_lost(pool)


async def _wait_for(condition: Any, bound_s: float = 20.0) -> None:
    async with asyncio.timeout(bound_s):
        while not await condition():  # noqa: ASYNC110 - polling the database and the simulator
            await asyncio.sleep(0.05)


async def test_after_trouble_the_submitter_sends_again_only_once_the_provider_answers(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """During an outage the running submitter leaves one batch unknown, then asks the provider
    for its balance (which buys nothing) until it answers, and only then sends the queue."""
    monkeypatch.setattr(submitter, "SEND_BATCH", 2)
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order_ids = sorted([int((await _place(client, key))["order_id"]) for _ in range(5)])
    (await simulator.post("/faults", json={"action": "*", "mode": "http_500"})).raise_for_status()
    balance_calls = (await simulator.get("/stats")).json()["requests"].get("balance", 0)
    running = asyncio.ensure_future(
        submitter.run(pool, provider, asyncio.Event(), sweep_interval_s=60, poll_interval_s=0.05)
    )
    try:
        async def probed() -> bool:
            stats = (await simulator.get("/stats")).json()["requests"]
            return bool(stats.get("balance", 0) >= balance_calls + 2)

        await _wait_for(probed)
        assert sorted(await _submissions(pool, order_ids)) == ["queued"] * 3 + ["unknown"] * 2
        await simulator.post("/faults", json={"action": "*", "mode": "none"})

        async def sent() -> bool:
            return "queued" not in await _submissions(pool, order_ids)

        await _wait_for(sent)
    finally:
        await simulator.post("/faults", json={"action": "*", "mode": "none"})
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert sorted(await _submissions(pool, order_ids)) == ["submitted"] * 3 + ["unknown"] * 2
    await _assert_no_order_lost(pool)


async def test_a_provider_that_refuses_the_balance_but_takes_orders_is_sent_to_again(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After trouble, any answer to the balance call means the provider is up (a panel may not
    let the key read its balance), and the drain that follows sends one order first, then
    batches."""
    monkeypatch.setattr(submitter, "SEND_BATCH", 2)
    sizes: list[int] = []
    real_batch = submitter.submit_batch

    async def noted_batch(*arguments: Any, **options: Any) -> list[str]:
        sizes.append(arguments[2])
        return await real_batch(*arguments, **options)

    monkeypatch.setattr(submitter, "submit_batch", noted_batch)
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order_ids = sorted([int((await _place(client, key))["order_id"]) for _ in range(5)])
    (await simulator.post("/faults", json={"action": "add", "mode": "http_500"})).raise_for_status()
    try:
        assert await submitter._drain(pool, provider, 100) == (["unknown"] * 2, True)
        await simulator.post("/faults", json={"action": "add", "mode": "none"})
        refused = {"action": "balance", "mode": "error"}
        (await simulator.post("/faults", json=refused)).raise_for_status()

        assert await submitter._provider_answers(provider) is True
        sent = await submitter._drain(pool, provider, 100, careful=True)
    finally:
        await simulator.post("/faults", json={"action": "*", "mode": "none"})
    assert sent == (["provider_order_id"] * 3, False)
    assert sizes == [2, 1, 2, 2]  # the batch left unknown; one order; then batches till empty
    assert sorted(await _submissions(pool, order_ids)) == ["submitted"] * 3 + ["unknown"] * 2
    await _assert_no_order_lost(pool)
