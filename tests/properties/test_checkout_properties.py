"""Checkout's money decisions, each drawn many times against a real PostgreSQL (the module's own
database) through the path a server takes: ``checkout.checkout`` with a server's state, whose
service cache keeps the rows it priced with. The state machine reaches these cases too, but
only now and then; here every example is one of them.

- an order pays the service's rate as it stands when the order commits, whatever the cache holds;
- a wallet pays a price it holds exactly, and is refused one kobo short (nothing recorded);
- a retry is the same request whatever the order of its body's keys.
"""

from __future__ import annotations

import itertools
from typing import Any

import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import open_funded_account, seed_catalog

from boost_ledger.ledger import catalog, checkout
from boost_ledger.ledger.checkout_state import CheckoutState
from boost_ledger.ledger.money import charge_kobo

_FIXTURES = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
_keys = itertools.count(1)
SERVICE = "1"  # Default: charged ceil(rate * quantity / 1000)
RATES = st.integers(1, 10**7)
QUANTITIES = st.integers(10, 60)  # the simulator's service 1 takes 10 and up


@pytest.fixture(scope="module")
async def seeded(pool: asyncpg.Pool[Any]) -> asyncpg.Pool[Any]:
    await seed_catalog(pool)
    return pool


@pytest.fixture(scope="module")
def state() -> CheckoutState:
    """A server's checkout state, shared by every example: its cache outlives each repricing."""
    return CheckoutState.for_server()


def _body(quantity: int, **extra: Any) -> dict[str, Any]:
    return {"service_id": SERVICE, "link": "https://instagram.com/p/abc", "quantity": quantity,
            **extra}


async def _checkout(
    pool: asyncpg.Pool[Any], state: CheckoutState, account_id: int, key: str,
    body: dict[str, Any],
) -> checkout.CheckoutAnswer:
    return await checkout.checkout(
        pool, account_id=account_id, idempotency_key=key, service_id=SERVICE, body=body,
        subscription_default_posts=10, metadata={"actor": "test"}, state=state,
    )


async def _pin(pool: asyncpg.Pool[Any], rate_kobo: int) -> None:
    async with pool.acquire() as connection:
        await catalog.pin_rate(connection, SERVICE, rate_kobo)


async def _price_and_balance(pool: asyncpg.Pool[Any], order_id: int) -> tuple[int, int]:
    row = await pool.fetchrow(
        "select o.price_kobo, w.balance_kobo from orders o join wallets w using (account_id)"
        " where o.order_id = $1",
        order_id,
    )
    return row["price_kobo"], row["balance_kobo"]


@_FIXTURES
@given(before_kobo=RATES, after_kobo=RATES, quantity=QUANTITIES)
async def test_an_order_pays_the_rate_as_it_stands_not_as_cached(
    seeded: asyncpg.Pool[Any], state: CheckoutState, before_kobo: int, after_kobo: int,
    quantity: int,
) -> None:
    """An order placed at one rate leaves the service's row in the server's cache; after an
    operator pins another rate, the next order of the service pays the new rate (ceil(rate *
    quantity / 1000)) and is debited exactly that, and a retry of the first order still gets
    its first answer, at the old price."""
    pool = seeded
    account_id, _ = await open_funded_account(pool, 10**12)
    await _pin(pool, before_kobo)
    first_key = f"priced-{next(_keys)}"
    first = await _checkout(pool, state, account_id, first_key, _body(quantity))
    await _pin(pool, after_kobo)
    second = await _checkout(pool, state, account_id, f"priced-{next(_keys)}", _body(quantity))
    assert first.status_code == second.status_code == 201, (first, second)
    assert not second.replayed
    first_price, _ = await _price_and_balance(pool, first.order_id)
    second_price, balance_kobo = await _price_and_balance(pool, second.order_id)
    assert first_price == charge_kobo(before_kobo, quantity, flat=False)
    assert second_price == charge_kobo(after_kobo, quantity, flat=False), (before_kobo, after_kobo)
    assert balance_kobo == 10**12 - first_price - second_price
    retried = await _checkout(pool, state, account_id, first_key, _body(quantity))
    assert retried.replayed and retried.body == first.body, retried


@_FIXTURES
@given(rate_kobo=RATES, quantity=QUANTITIES, surplus_kobo=st.sampled_from([-1, 0, 1]))
async def test_a_wallet_pays_a_price_it_holds_exactly_and_not_one_kobo_more(
    seeded: asyncpg.Pool[Any], state: CheckoutState, rate_kobo: int, quantity: int,
    surplus_kobo: int,
) -> None:
    """A wallet holding exactly the price pays it and is left with 0 (one kobo more: left with
    1); one kobo short, the checkout is refused as InsufficientBalance, records nothing (no
    order, the balance as it was) and leaves the key free for the same request later."""
    pool = seeded
    await _pin(pool, rate_kobo)
    price_kobo = charge_kobo(rate_kobo, quantity, flat=False)
    account_id, _ = await open_funded_account(pool, price_kobo + surplus_kobo)
    key = f"boundary-{next(_keys)}"
    try:
        answer = await _checkout(pool, state, account_id, key, _body(quantity))
    except checkout.InsufficientBalance as refused:
        assert surplus_kobo < 0, (price_kobo, refused)
        assert refused.balance_kobo == price_kobo - 1, refused
        orders = await pool.fetchval(
            "select count(*) from orders where account_id = $1", account_id
        )
        assert orders == 0
        free = await pool.fetchval(
            "select count(*) from idempotency_keys where account_id = $1", account_id
        )
        assert free == 0, "a refused checkout kept its key"
        return
    assert surplus_kobo >= 0, (price_kobo, answer)
    assert answer.status_code == 201 and not answer.replayed, answer
    assert await _price_and_balance(pool, answer.order_id) == (price_kobo, surplus_kobo)


@_FIXTURES
@given(quantity=QUANTITIES, data=st.data())
async def test_a_retry_with_the_keys_in_another_order_replays(
    seeded: asyncpg.Pool[Any], state: CheckoutState, quantity: int, data: st.DataObject
) -> None:
    """JSON objects are unordered: a retry whose body has the same keys and values in any other
    order is the same request, and replays the first answer byte for byte (never refused as a
    reuse of the key with another body); a body that differs in a value is a reuse."""
    pool = seeded
    account_id, _ = await open_funded_account(pool, 10**12)
    key = f"reordered-{next(_keys)}"
    body = _body(quantity, runs=2, interval=5)
    first = await _checkout(pool, state, account_id, key, body)
    names = data.draw(st.permutations(list(body)), label="key order")
    retried = await _checkout(pool, state, account_id, key, {name: body[name] for name in names})
    assert retried.replayed and retried.body == first.body, (names, retried)
    assert retried.order_id == first.order_id
    with pytest.raises(checkout.IdempotencyKeyReused):
        await _checkout(pool, state, account_id, key, {**body, "quantity": quantity + 1})
