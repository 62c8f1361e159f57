"""The auditor's refund-amount check computes what a Partial owes back exactly, as the ledger
does: floor(charge x remains / units). PostgreSQL's numeric division rounds its quotient to a
scale chosen from the operands' sizes (8 decimals for a quotient of 10^8 and up), so a share
just below a whole kobo was rounded up to it, and the check expected a kobo more than the
ledger (rightly) paid: a finding on a clean log."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import asyncpg

from boost_ledger import postgres
from boost_ledger.audit import verify
from boost_ledger.ledger import accounts, catalog, checkout, fulfilment, wallet
from boost_ledger.ledger.catalog import ProviderOffer
from boost_ledger.ledger.connection import Lent

# 885,251,387 views at 1.31 NGN per 1000 cost 1,159,679.32 NGN; remains 803,445,975 owes back
# floor(115967932 x 803445975 / 885251387) kobo, whose quotient lies within 10^-8 below a whole
# number: 105,251,422 kobo, not 105,251,423.
RATE_KOBO, QUANTITY, REMAINS = 131, 885_251_387, 803_445_975
PRICE_KOBO = -(-RATE_KOBO * QUANTITY // 1000)
OFFER = ProviderOffer(
    service="big", name="Views", type="Default", category="Views", rate=Decimal("0.001"),
    min=1, max=10**9, refill=False, cancel=True,
)


async def test_a_partial_refund_just_below_a_whole_kobo_is_not_a_finding(
    pool: asyncpg.Pool[Any], dsn: str
) -> None:
    """An order whose partial refund's exact share is a hair below a whole kobo, settled by
    the ledger's own paths: verify finds nothing."""
    assert (PRICE_KOBO * REMAINS) % QUANTITY == QUANTITY - 1  # the share: 1/QUANTITY below
    async with pool.acquire() as connection:
        await catalog.sync(connection, [OFFER], Decimal("1500"), Decimal("20"))
        await catalog.pin_rate(connection, "big", RATE_KOBO)
        account_id, _ = await accounts.open_account(connection, "big spender", ["boosting:buy"])
        await wallet.credit(connection, account_id, PRICE_KOBO, "top-up")
        body = {"service_id": "big", "link": "https://example.com/v", "quantity": QUANTITY,
                "idempotency_key": "big"}
        answer = await checkout.checkout(
            Lent(connection), account_id=account_id, idempotency_key="big", service_id="big",
            body=body, subscription_default_posts=10, metadata={"actor": "test"},
        )
        assert answer.status_code == 201, answer
        order_id = answer.order_id
        assert await connection.fetchval(
            "select price_kobo from orders where order_id = $1", order_id) == PRICE_KOBO
        (claimed,) = await fulfilment.claim_batch(connection, 1)
        assert await fulfilment.settle_submission(
            connection, order_id, provider_order_id="77", attempt=claimed.attempt)
        await fulfilment.observe(connection, order_id, "Partial", 0, REMAINS, None, "poller")
        refunded = await connection.fetchval(
            "select refunded_kobo from orders where order_id = $1", order_id)
    assert refunded == PRICE_KOBO * REMAINS // QUANTITY
    owner = await postgres.owner_connection(dsn)
    try:
        report = await verify.verify(owner)
    finally:
        await owner.close()
    assert report.findings == []
