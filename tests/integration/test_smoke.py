"""A first end-to-end check of the foundation."""

from support import bearer, open_funded_account


async def test_wallet_shows_credited_balance(pool, client):
    """A credited account reads its balance through the API in the spec's shape."""
    _, key = await open_funded_account(pool, 12_500_00)
    response = await client.get("/api/v1/wallet", headers=bearer(key))
    assert response.status_code == 200
    assert response.json() == {"success": True, "data": {"balance": "12500.00", "currency": "NGN"}}
    assert response.headers["x-request-id"]
