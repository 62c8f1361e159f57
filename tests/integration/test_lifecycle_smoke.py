"""The order's life after checkout: submission, polling, check, cancel, refunds."""

import asyncio

from support import bearer, open_funded_account, seed_catalog

from boost_ledger.workers import poller, submitter


async def _place(client, key, service_id="1", quantity=1000, idem="k"):
    body = {
        "service_id": service_id,
        "link": "https://instagram.com/p/x",
        "quantity": quantity,
        "idempotency_key": idem,
    }
    response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    return response.json()["data"]


async def test_submit_poll_complete_and_cancel_refund(pool, client, provider, simulator):
    """An order is submitted, polled to completed; another is canceled and refunded once."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 12_500_00)
    first = await _place(client, key, idem="a")
    assert await submitter.drain(pool, provider) == ["provider_order_id"]
    orders = (await simulator.get("/orders")).json()
    provider_id = orders[-1]["order"]
    await simulator.post(f"/orders/{provider_id}", json={"status": "Completed", "remains": 0})
    assert await poller.poll_once(pool, provider, 0.01) == 1
    got = await client.get(f"/api/v1/boost/orders/{first['order_id']}", headers=bearer(key))
    assert got.json()["data"]["status"] == "completed"

    second = await _place(client, key, idem="b")
    await submitter.drain(pool, provider)
    cancel = await client.post(
        f"/api/v1/boost/orders/{second['order_id']}/cancel", headers=bearer(key)
    )
    assert cancel.status_code == 200, cancel.text
    assert cancel.json()["data"]["status"] == "canceling"
    provider_id = (await simulator.get("/orders")).json()[-1]["order"]
    await simulator.post(f"/orders/{provider_id}", json={"status": "Canceled"})
    checks = await asyncio.gather(
        *[
            client.post(f"/api/v1/boost/orders/{second['order_id']}/check", headers=bearer(key))
            for _ in range(20)
        ]
    )
    assert all(check.status_code == 200 for check in checks)
    assert checks[0].json()["data"]["refunded"] is True
    wallet = await client.get("/api/v1/wallet", headers=bearer(key))
    assert wallet.json()["data"]["balance"] == first["balance_after"]
    refunds = await pool.fetchval("select count(*) from events where type = 'Refunded'")
    assert refunds == 1
