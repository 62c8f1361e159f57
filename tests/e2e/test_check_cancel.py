"""`POST /boost/orders/{id}/check` and `/cancel` over real HTTP against the simulator: provider
faults change nothing, cancel eligibility, local cancel before submission, and the spec's
answer for an accepted cancel followed to its refund."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from support import (
    bearer,
    http_server,
    open_funded_account,
    order_events,
    rewriting_panel,
    seed_catalog,
)

from boost_ledger.api.runtime import Runtime
from boost_ledger.ledger import fulfilment
from boost_ledger.server import build_app
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import submitter

FUNDS_KOBO = 1_000_00
PRICE_100_KOBO = 162_00  # service "1": 0.90 USD * 1500 * 1.20 = 1620 NGN per 1000
FAULTS = ["http_500", "html", "malformed_json", "timeout", "reply_lost"]


@pytest.fixture(scope="module")
async def provider(simulator_url: str) -> AsyncIterator[ProviderClient]:
    """The app's provider client for this module: patient for half a second, one read retry,
    so a hanging provider costs about a second per check."""
    client = ProviderClient(
        f"{simulator_url}/api/v2", "sim-key", timeout_s=0.5, read_retries=1, backoff_s=0.01
    )
    yield client
    await client.aclose()


@pytest.fixture(scope="module", autouse=True)
async def catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _fault(simulator: httpx.AsyncClient, action: str, mode: str) -> None:
    fault = {"action": action, "mode": mode, "latency_ms": 3_000 if mode == "timeout" else 50}
    (await simulator.post("/faults", json=fault)).raise_for_status()


async def _place(client: httpx.AsyncClient, key: str, service_id: str = "1") -> dict[str, Any]:
    link = f"https://instagram.com/p/{uuid.uuid4().hex}"
    body = {"service_id": service_id, "link": link, "quantity": 100,
            "idempotency_key": uuid.uuid4().hex}
    response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def _submitted(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
    service_id: str = "1",
) -> tuple[int, str, dict[str, Any], str]:
    """A new funded account with one submitted order: (account, key, order, provider id)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key, service_id)
    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    provider_order_id = await pool.fetchval(
        "select provider_order_id from orders where order_id = $1", int(order["order_id"])
    )
    return account_id, key, order, provider_order_id


async def _row(pool: asyncpg.Pool[Any], order_id: str) -> dict[str, Any]:
    row = await pool.fetchrow("select * from orders where order_id = $1", int(order_id))
    assert row is not None
    return dict(row)


async def _rejected_cancel(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, key: str, order: dict[str, Any]
) -> str:
    """Ask to cancel ``order``: a 409 BOOST_CANCEL_REJECTED; the reason its CancelRejected
    records."""
    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )
    _assert_error(response, 409, "BOOST_CANCEL_REJECTED")
    reason: str = await pool.fetchval(
        "select data->>'reason' from events where stream_id = $1 and type = 'CancelRejected'",
        f"order-{order['order_id']}",
    )
    return reason


def _assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert (body["success"], body["status"], body["code"]) == (False, status, code)


# ---- check -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [*FAULTS, "error"])
async def test_check_during_a_status_fault_is_503_and_changes_nothing(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, mode: str,
) -> None:
    """Whatever the provider does wrong on `status`, check answers 503 PROVIDER_UNAVAILABLE
    with Retry-After, and no event is appended."""
    _, key, order, provider_order_id = await _submitted(pool, client, provider)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "Canceled"})
    before = (await _row(pool, order["order_id"]), await order_events(pool, order["order_id"]))
    await _fault(simulator, "status", mode)

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    _assert_error(response, 503, "PROVIDER_UNAVAILABLE")
    assert int(response.headers["retry-after"]) > 0
    after = (await _row(pool, order["order_id"]), await order_events(pool, order["order_id"]))
    assert after == before


async def test_check_through_latency_still_answers(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A slow but honest provider: check records the status as usual."""
    _, key, order, provider_order_id = await _submitted(pool, client, provider)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "In progress"})
    await _fault(simulator, "status", "latency")

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    assert response.status_code == 200, response.text
    assert response.json()["data"]["status"] == "in_progress"


async def test_check_of_an_unsubmitted_order_returns_it_unchanged(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Not yet at the provider: check does not call it and returns the stored order."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _fault(simulator, "status", "http_500")

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    assert response.status_code == 200, response.text
    stored = await client.get(f"/api/v1/boost/orders/{order['order_id']}", headers=bearer(key))
    assert response.json() == stored.json()
    assert response.json()["data"]["status"] == "pending"
    assert await submitter.drain(pool, provider) == ["provider_order_id"]


async def _submitted_under(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider_order_id: str
) -> tuple[str, dict[str, Any]]:
    """An order placed over HTTP, then recorded as submitted under ``provider_order_id``: the
    key it was placed with, and the order."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
        assert claimed is not None and claimed.order_id == int(order["order_id"])
        assert await fulfilment.settle_submission(
            connection, claimed.order_id, provider_order_id=provider_order_id
        )
    return key, order


async def test_check_of_an_order_under_an_id_no_call_could_carry_returns_it_unchanged(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
) -> None:
    """An order recorded under an id no call can carry (as one could be before ids were
    checked) is not asked about: "24,601" would ask a panel about other orders (or order 24),
    and answer the client 503, retry shortly, for ever. Check returns the stored order, as the
    poller backs such an order off alone and cancel rejects it."""
    key, order = await _submitted_under(pool, client, "24,601")
    before = (await _row(pool, order["order_id"]), await order_events(pool, order["order_id"]))
    calls_before = (await simulator.get("/stats")).json()["requests"].get("status", 0)

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    assert response.status_code == 200, response.text
    stored = await client.get(f"/api/v1/boost/orders/{order['order_id']}", headers=bearer(key))
    assert response.json() == stored.json()
    assert (await simulator.get("/stats")).json()["requests"].get("status", 0) == calls_before
    after = (await _row(pool, order["order_id"]), await order_events(pool, order["order_id"]))
    assert after == before


async def test_check_and_cancel_of_another_accounts_order_are_not_found(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, provider: ProviderClient,
) -> None:
    """Someone else's order and one that does not exist are the same 404, and nothing moves."""
    _, _, order, _ = await _submitted(pool, client, provider)
    _, stranger = await open_funded_account(pool, FUNDS_KOBO)
    before = await order_events(pool, order["order_id"])
    for order_id in (order["order_id"], "999999999"):
        for action in ("check", "cancel"):
            response = await client.post(
                f"/api/v1/boost/orders/{order_id}/{action}", headers=bearer(stranger)
            )
            _assert_error(response, 404, "BOOST_ORDER_NOT_FOUND")
    assert await order_events(pool, order["order_id"]) == before


# ---- cancel: provider faults ---------------------------------------------------------------


@pytest.mark.parametrize("mode", FAULTS)
async def test_cancel_during_a_fault_is_503_and_records_no_request(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, mode: str,
) -> None:
    """An unreachable or garbling provider: 503 PROVIDER_UNAVAILABLE, no CancelRequested, the
    order still pending and still cancelable."""
    _, key, order, _ = await _submitted(pool, client, provider)
    before = await order_events(pool, order["order_id"])
    await _fault(simulator, "cancel", mode)

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )

    _assert_error(response, 503, "PROVIDER_UNAVAILABLE")
    assert "retry-after" in response.headers
    assert await order_events(pool, order["order_id"]) == before
    shown = (await client.get(f"/api/v1/boost/orders/{order['order_id']}",
                              headers=bearer(key))).json()["data"]
    assert (shown["status"], shown["cancel"], shown["refunded"]) == ("pending", True, False)


async def test_a_cancel_whose_reply_was_lost_still_settles_by_status(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """The provider took the cancel but the reply was lost (503 to the client): a later status
    that says Canceled refunds the order once, like any other cancellation."""
    account_id, key, order, provider_order_id = await _submitted(pool, client, provider)
    await _fault(simulator, "cancel", "reply_lost")
    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )
    _assert_error(response, 503, "PROVIDER_UNAVAILABLE")
    assert (await simulator.get(f"/orders/{provider_order_id}")).json()["cancel_requested"]
    await simulator.post("/faults", json={"action": "*", "mode": "none"})
    await simulator.post("/tick")

    checked = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    assert checked.status_code == 200, checked.text
    assert (checked.json()["data"]["status"], checked.json()["data"]["refunded"]) == (
        "canceled", True
    )
    assert (await order_events(pool, order["order_id"]))["Refunded"] == 1
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    assert balance == FUNDS_KOBO


async def test_a_cancel_the_provider_refuses_is_409_and_recorded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """`{"error": ...}` to `cancel` is a definite refusal: 409 BOOST_CANCEL_REJECTED and a
    CancelRejected event; the order stays where it was, and may be asked again later."""
    _, key, order, _ = await _submitted(pool, client, provider)
    await _fault(simulator, "cancel", "error")

    assert await _rejected_cancel(pool, client, key, order) == "Simulated provider error"
    events = await order_events(pool, order["order_id"])
    assert (events["CancelRejected"], events["CancelRequested"], events["Refunded"]) == (1, 0, 0)
    shown = (await client.get(f"/api/v1/boost/orders/{order['order_id']}",
                              headers=bearer(key))).json()["data"]
    assert (shown["status"], shown["cancel"]) == ("pending", True)


async def test_a_cancel_the_provider_refuses_for_the_order_is_409_and_recorded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """A per-item refusal (the provider has already finished the order) is the same 409 with a
    CancelRejected carrying the provider's reason."""
    _, key, order, provider_order_id = await _submitted(pool, client, provider)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "Completed"})

    reason = await _rejected_cancel(pool, client, key, order)
    assert reason == "Order can not be canceled in its current status"


def _nul_in_cancel_errors(reply: Any) -> None:
    """Each per-item cancel refusal's text gets a NUL, as a panel script's C string can."""
    for item in reply if isinstance(reply, list) else []:
        if isinstance(item, dict) and isinstance(item.get("cancel"), dict):
            item["cancel"]["error"] = "Order\x00can not be canceled"


async def test_a_cancel_refusal_whose_text_holds_a_nul_is_409_and_recorded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, runtime: Runtime, simulator_url: str,
) -> None:
    """A per-item refusal whose text holds a NUL (JSON "\\u0000", which no PostgreSQL text
    can hold) is the same 409 with a CancelRejected, the NUL replaced (it was a 500: the
    event's append failed)."""
    _, key, order, provider_order_id = await _submitted(pool, client, provider)
    await simulator.post(f"/orders/{provider_order_id}", json={"status": "Completed"})
    panel = rewriting_panel(simulator_url, _nul_in_cancel_errors)
    async with http_server(panel) as panel_url:
        odd = ProviderClient(f"{panel_url}/api/v2", "sim-key", timeout_s=2.0, read_retries=0)
        odd_runtime = Runtime(settings=runtime.settings, pool=pool, provider=odd)
        try:
            async with (
                http_server(build_app(odd_runtime, start_workers=False)) as url,
                httpx.AsyncClient(base_url=url, timeout=30.0) as odd_client,
            ):
                reason = await _rejected_cancel(pool, odd_client, key, order)
        finally:
            await odd.aclose()
    assert reason == "Order\ufffdcan not be canceled"
    events = await order_events(pool, order["order_id"])
    assert (events["CancelRejected"], events["CancelRequested"], events["Refunded"]) == (1, 0, 0)


async def test_a_cancel_of_an_order_under_an_id_no_call_could_carry_is_409_and_recorded(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
) -> None:
    """An order recorded under an id no call can carry (as one could be before ids were
    checked) is not sent to the provider: its cancel is rejected and recorded, not a 500."""
    key, order = await _submitted_under(pool, client, "23,501")
    calls_before = (await simulator.get("/stats")).json()["requests"].get("cancel", 0)

    reason = await _rejected_cancel(pool, client, key, order)
    assert reason == "the provider order id cannot be sent"
    assert (await simulator.get("/stats")).json()["requests"].get("cancel", 0) == calls_before


# ---- cancel: eligibility ---------------------------------------------------------------------


async def test_cancel_of_a_service_without_cancel_is_unavailable(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Service "2" does not support cancel: 422 BOOST_CANCEL_UNAVAILABLE whether or not the
    order was submitted, and the provider is never asked."""
    _, key, order, _ = await _submitted(pool, client, provider, service_id="2")
    queued = await _place(client, key, service_id="2")
    calls_before = (await simulator.get("/stats")).json()["requests"].get("cancel", 0)

    for order_id in (order["order_id"], queued["order_id"]):
        response = await client.post(
            f"/api/v1/boost/orders/{order_id}/cancel", headers=bearer(key)
        )
        _assert_error(response, 422, "BOOST_CANCEL_UNAVAILABLE")
        shown = (await client.get(f"/api/v1/boost/orders/{order_id}",
                                  headers=bearer(key))).json()["data"]
        assert (shown["status"], shown["cancel"]) == ("pending", False)

    assert (await simulator.get("/stats")).json()["requests"].get("cancel", 0) == calls_before
    assert (await _row(pool, queued["order_id"]))["submission"] == "queued"
    assert await submitter.drain(pool, provider) == ["provider_order_id"]


@pytest.mark.parametrize(
    ("upstream", "remains", "status"),
    [("Completed", 0, "completed"), ("Partial", 40, "partial"), ("Canceled", 100, "canceled")],
)
async def test_cancel_of_a_settled_order_is_unavailable(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, upstream: str, remains: int, status: str,
) -> None:
    """A completed, partial or canceled order cannot be canceled: 422, nothing recorded."""
    _, key, order, provider_order_id = await _submitted(pool, client, provider)
    await simulator.post(
        f"/orders/{provider_order_id}", json={"status": upstream, "remains": remains}
    )
    checked = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )
    assert (checked.json()["data"]["status"], checked.json()["data"]["cancel"]) == (status, False)
    before = await order_events(pool, order["order_id"])

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )

    _assert_error(response, 422, "BOOST_CANCEL_UNAVAILABLE")
    assert await order_events(pool, order["order_id"]) == before


@pytest.mark.parametrize(("settled", "status"), [("Completed", 422), ("Canceled", 200)])
async def test_a_cancel_answered_after_the_order_settled_follows_the_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient, runtime: Runtime, simulator_url: str,
    monkeypatch: pytest.MonkeyPatch, settled: str, status: int,
) -> None:
    """The order settles (the poller records it) while the provider is still answering a
    cancel it accepts: the answer is the order as it now stands. Completed: no longer eligible
    (422), not "Cancellation request submitted." for a completed order. Canceled (the provider
    canceled it at once): the cancel succeeded (200). Either way no CancelRequested is
    recorded after the end."""
    _, key, order, _ = await _submitted(pool, client, provider)
    # A provider client patient enough for a cancel slowed to 3 s: time to record the end.
    patient = ProviderClient(f"{simulator_url}/api/v2", "sim-key", timeout_s=10.0)
    monkeypatch.setattr(runtime, "provider", patient)
    slow = {"action": "cancel", "mode": "latency", "latency_ms": 3_000}
    (await simulator.post("/faults", json=slow)).raise_for_status()
    asked = (await simulator.get("/stats")).json()["requests"].get("cancel", 0)
    cancel = asyncio.ensure_future(client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    ))
    async with asyncio.timeout(10):
        # Until the provider has the cancel (polled: the simulator offers no event).
        while (await simulator.get("/stats")).json()["requests"].get("cancel", 0) == asked:  # noqa: ASYNC110
            await asyncio.sleep(0.02)
    async with pool.acquire() as connection:
        await fulfilment.observe(
            connection, int(order["order_id"]), settled, 10, 0, None, "poller"
        )

    try:
        response = await cancel
    finally:
        await patient.aclose()

    if status == 422:
        _assert_error(response, 422, "BOOST_CANCEL_UNAVAILABLE")
    else:
        assert response.status_code == 200, response.text
        assert response.json()["data"]["status"] == "canceled"
    row = await _row(pool, order["order_id"])
    assert row["status"] == settled.lower()
    assert (await order_events(pool, order["order_id"]))["CancelRequested"] == 0


async def test_cancel_of_a_failed_order_is_unavailable(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """An order the provider refused (failed and refunded) cannot be canceled: 422."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    await _fault(simulator, "add", "error")
    assert await submitter.drain(pool, provider) == ["refused"]

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )

    _assert_error(response, 422, "BOOST_CANCEL_UNAVAILABLE")
    assert (await order_events(pool, order["order_id"]))["Refunded"] == 1


async def test_cancel_while_the_submission_is_in_flight_or_unknown_is_rejected(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """While the order may already be at the provider (attempt in flight, or outcome unknown)
    it can be neither canceled locally nor upstream: 409 BOOST_CANCEL_REJECTED, no refund."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)
    async with pool.acquire() as connection:
        claimed = await fulfilment.claim_for_submission(connection)
    assert claimed is not None and claimed.order_id == int(order["order_id"])
    url = f"/api/v1/boost/orders/{order['order_id']}/cancel"

    _assert_error(await client.post(url, headers=bearer(key)), 409, "BOOST_CANCEL_REJECTED")
    async with pool.acquire() as connection:
        assert await fulfilment.mark_abandoned_attempts(connection, older_than_s=0) == 1
    _assert_error(await client.post(url, headers=bearer(key)), 409, "BOOST_CANCEL_REJECTED")

    events = await order_events(pool, order["order_id"])
    assert (events["OrderCanceled"], events["Refunded"]) == (0, 0)
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    assert balance == FUNDS_KOBO - PRICE_100_KOBO
    # Leave nothing for the operator in this module's later listings.
    async with pool.acquire() as connection:
        assert await fulfilment.settle_submission(
            connection, claimed.order_id, refused="test", actor="operator",
            expected_submission="unknown",
        )


async def test_cancel_of_an_unsubmitted_order_cancels_locally_and_it_is_never_sent(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """Before submission, cancel is local and immediate: status canceled, refunded, the wallet
    whole again, and the submitter never sends the order."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await _place(client, key)

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["status"], data["refunded"], data["cancel"]) == ("canceled", True, False)
    wallet = (await client.get("/api/v1/wallet", headers=bearer(key))).json()["data"]
    assert wallet["balance"] == "1000.00"
    assert await submitter.drain(pool, provider) == []
    sent = (await simulator.get("/orders")).json()
    assert [item for item in sent if item["link"] == order["link"]] == []
    events = await order_events(pool, order["order_id"])
    assert (events["OrderCanceled"], events["Refunded"], events["SubmissionAttempted"]) == (
        1, 1, 0
    )
    balance_after = await pool.fetchval(
        "select (data->>'balance_after_kobo')::bigint from events where stream_id = $1"
        " and type = 'Refunded'",
        f"wallet-{account_id}",
    )
    assert balance_after == FUNDS_KOBO
    again = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )
    _assert_error(again, 422, "BOOST_CANCEL_UNAVAILABLE")


async def test_an_accepted_cancel_answers_as_the_spec_then_refunds_on_canceled(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, simulator: httpx.AsyncClient,
    provider: ProviderClient,
) -> None:
    """The spec's 200 for an accepted cancel (canceling, cancel false, not yet refunded); a
    second cancel is 422 while pending; the refund comes only once the status says Canceled."""
    account_id, key, order, provider_order_id = await _submitted(pool, client, provider)

    response = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["success"], body["message"]) == (True, "Cancellation request submitted.")
    data = body["data"]
    expected = {
        "order_id": order["order_id"],
        "status": "canceling",
        "service_id": "1",
        "service_name": order["service_name"],
        "link": order["link"],
        "quantity": 100,
        "price": "162.00",
        "currency": "NGN",
        "start_count": None,
        "remains": None,
        "refunded": False,
        "cancel": False,
    }
    assert {name: data[name] for name in expected} == expected
    assert data["created_at"].endswith("Z") and len(data["created_at"]) == 27
    assert (await order_events(pool, order["order_id"]))["CancelRequested"] == 1
    again = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/cancel", headers=bearer(key)
    )
    _assert_error(again, 422, "BOOST_CANCEL_UNAVAILABLE")
    still = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )
    assert (still.json()["data"]["status"], still.json()["data"]["refunded"]) == (
        "canceling", False
    )

    await simulator.post("/tick")  # the provider acts on the request
    assert (await simulator.get(f"/orders/{provider_order_id}")).json()["status"] == "Canceled"
    settled = await client.post(
        f"/api/v1/boost/orders/{order['order_id']}/check", headers=bearer(key)
    )

    assert (settled.json()["data"]["status"], settled.json()["data"]["refunded"]) == (
        "canceled", True
    )
    wallet = (await client.get("/api/v1/wallet", headers=bearer(key))).json()["data"]
    assert wallet["balance"] == "1000.00"
    assert (await order_events(pool, order["order_id"]))["Refunded"] == 1
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", account_id
    )
    assert balance == FUNDS_KOBO
