"""Checkout smoke test over real HTTP."""

from support import bearer, open_funded_account, seed_catalog


async def test_checkout_then_replay(pool, client):
    """A checkout debits once; the same key and body replays the same bytes."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 12_500_00)
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 1000,
            "idempotency_key": "k-1"}
    first = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert first.status_code == 201, first.text
    second = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert second.status_code == 201
    assert second.content == first.content
    assert second.headers["idempotent-replayed"] == "true"
    print(first.json())
    wallet = await client.get("/api/v1/wallet", headers=bearer(key))
    assert wallet.json()["data"]["balance"] == first.json()["data"]["balance_after"]
    order_id = first.json()["data"]["order_id"]
    got = await client.get(f"/api/v1/boost/orders/{order_id}", headers=bearer(key))
    print(got.json())
    listing = await client.get("/api/v1/boost/orders", headers=bearer(key))
    print(listing.json())
    cats = await client.get("/api/v1/boost/categories", headers=bearer(key))
    print(cats.json())
