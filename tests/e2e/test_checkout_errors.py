"""Checkout refusals over real HTTP, idempotency-key rules, price snapshots and abilities.

Every refusal must leave the ledger untouched: no event, no order, no idempotency record, the
balance intact. The documented choice (boost_ledger/ledger/checkout.py): a key whose request was
refused (402, 404, 422) is not consumed, so the client may fix the body, or top up, and retry
with the same key.

Prices (hand-computed, simulator catalog, FX 1500, markup 20%): service 1 rate 0.90 USD ->
0.90 x 1500 x 1.2 = 1620.00 NGN per 1000, so 1000 units cost 1620.00; with FX 2000 it is
0.90 x 2000 x 1.2 = 2160.00.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from support import bearer, open_funded_account, seed_catalog, simulator_offers

from boost_ledger.ledger import catalog, wallet

ORDERS = "/api/v1/boost/orders"
LINK = "https://instagram.com/p/example"
PRICE_1000_KOBO = 162_000  # service 1, 1000 units, FX 1500
_keys = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


def order_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "service_id": "1", "link": LINK, "quantity": 1000, "idempotency_key": f"err-{next(_keys)}",
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not _ABSENT}


_ABSENT = object()


async def ledger_footprint(pool: asyncpg.Pool[Any], account_id: int) -> tuple[int, ...]:
    """(wallet events, OrderPlaced events, orders, idempotency records, balance) of an account."""
    async with pool.acquire() as connection:
        row = await connection.fetchrow(
            """
            select (select count(*) from events where stream_id = $2),
                   (select count(*) from events where type = 'OrderPlaced'
                       and (data->>'account_id')::bigint = $1),
                   (select count(*) from orders where account_id = $1),
                   (select count(*) from idempotency_keys where account_id = $1),
                   (select balance_kobo from wallets where account_id = $1)
            """,
            account_id,
            f"wallet-{account_id}",
        )
    assert row is not None
    return tuple(row)


def untouched(balance_kobo: int) -> tuple[int, ...]:
    return (1 if balance_kobo else 0, 0, 0, 0, balance_kobo)


async def refused(
    pool: asyncpg.Pool[Any],
    client: httpx.AsyncClient,
    body: dict[str, Any],
    status: int,
    code: str,
    balance_kobo: int = 10_000_000,
) -> dict[str, Any]:
    """Post ``body`` for a fresh account; assert the refusal and that nothing was recorded."""
    account_id, key = await open_funded_account(pool, balance_kobo)
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()
    assert (error["success"], error["status"], error["code"]) == (False, status, code)
    assert await ledger_footprint(pool, account_id) == untouched(balance_kobo)
    return error


# --- service lookup -----------------------------------------------------------------------------


@pytest.mark.parametrize("service_id", ["9999", "0", "abc", "1 ", "x" * 200, 424242])
async def test_unknown_service_is_not_found(
    service_id: Any, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A service id the catalog does not hold: 404 BOOST_SERVICE_NOT_FOUND, nothing recorded."""
    error = await refused(pool, client, order_body(service_id=service_id), 404,
                          "BOOST_SERVICE_NOT_FOUND")
    assert error == {
        "success": False, "status": 404, "code": "BOOST_SERVICE_NOT_FOUND",
        "message": "The service ID does not exist in the boosting catalog.",
    }


async def test_delisted_service_is_not_found_but_its_orders_live_on(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Once the provider stops listing a service, new orders get 404 BOOST_SERVICE_NOT_FOUND,
    while an order placed before keeps its price and its key still replays the first answer."""
    account_id, key = await open_funded_account(pool, 10_000_000)
    # Service 19: 1.10 x 1800 = 1980.00 per 1000; 100 units cost 198.00.
    before = order_body(service_id="19", quantity=100)
    placed = await client.post(ORDERS, json=before, headers=bearer(key))
    assert placed.status_code == 201 and placed.json()["data"]["price"] == "198.00"
    offers = [offer for offer in simulator_offers() if offer.service != "19"]
    async with pool.acquire() as connection:
        await catalog.sync(connection, offers, Decimal(1500), Decimal(20))
    try:
        listed = await client.get("/api/v1/boost/services/19", headers=bearer(key))
        assert listed.status_code == 404
        await refused(pool, client, order_body(service_id="19", quantity=100), 404,
                      "BOOST_SERVICE_NOT_FOUND")
        replay = await client.post(ORDERS, json=before, headers=bearer(key))
        assert (replay.status_code, replay.content) == (201, placed.content)
        assert replay.headers["idempotent-replayed"] == "true"
        order_id = placed.json()["data"]["order_id"]
        got = await client.get(f"{ORDERS}/{order_id}", headers=bearer(key))
        assert got.json()["data"]["price"] == "198.00"
    finally:
        await seed_catalog(pool)
    assert (await client.get("/api/v1/boost/services/19", headers=bearer(key))).status_code == 200
    assert (await ledger_footprint(pool, account_id))[1:4] == (1, 1, 1)


# --- the body's head: idempotency key, service id, client prices --------------------------------


@pytest.mark.parametrize(
    "idempotency_key",
    [_ABSENT, None, "", "   ", "k" * 101, "key\x00", "key\nnext", "tab\there", "bell\x07",
     "del\x7f", "\u200bzero-width", 42, ["k"], True],
    ids=["absent", "null", "empty", "blank", "101-chars", "nul", "newline", "tab", "bell", "del",
         "format-char", "number", "list", "bool"],
)
async def test_bad_idempotency_key_is_refused(
    idempotency_key: Any, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A missing key, or one that is not 1 to 100 printable characters: 422 VALIDATION_FAILED
    naming idempotency_key, and nothing recorded."""
    body = order_body(idempotency_key=idempotency_key)
    error = await refused(pool, client, body, 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"idempotency_key"}


async def test_key_of_one_hundred_printable_characters_is_accepted(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The longest key allowed (100 characters, non-ASCII included) places an order."""
    _, key = await open_funded_account(pool, 10_000_000)
    body = order_body(idempotency_key="é" + "k" * 98 + "✓")
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text


@pytest.mark.parametrize("service_id", [_ABSENT, None, "", "  ", True, 1.5, ["1"], {"id": "1"}])
async def test_bad_service_id_is_refused(
    service_id: Any, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A missing or blank service_id, or one of a wrong JSON type: 422 VALIDATION_FAILED
    naming it (blank strings count as missing, as for every other field)."""
    error = await refused(pool, client, order_body(service_id=service_id), 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"service_id"}


@pytest.mark.parametrize(
    "extra",
    [{"price": "1.00"}, {"charge": 0}, {"amount": "0.01"}, {"price": None},
     {"price": "1620.00", "charge": "1620.00", "amount": 1620}],
)
async def test_a_client_price_is_refused(
    extra: dict[str, Any], pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A body carrying price, charge or amount (even null): 422 VALIDATION_FAILED naming each."""
    error = await refused(pool, client, {**order_body(), **extra}, 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == set(extra)


async def test_head_errors_are_all_reported_at_once(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Missing key, missing service and a client price are named together in one 422."""
    body = {"link": LINK, "quantity": 1000, "price": "1.00"}
    error = await refused(pool, client, body, 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"idempotency_key", "service_id", "price"}


@pytest.mark.parametrize(
    "raw",
    [b"", b"not json", b"[1, 2]", b'"text"', b"null", b'{"service_id": "1",', b"\xff\xfe"],
    ids=["empty", "garbage", "array", "string", "null", "truncated", "not-utf8"],
)
async def test_a_body_that_is_not_a_json_object_is_refused(
    raw: bytes, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A body that is not one JSON object: 422 VALIDATION_FAILED naming the body."""
    account_id, key = await open_funded_account(pool, 10_000_000)
    headers = {**bearer(key), "Content-Type": "application/json"}
    response = await client.post(ORDERS, content=raw, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "VALIDATION_FAILED"
    assert set(response.json()["errors"]) == {"body"}
    assert await ledger_footprint(pool, account_id) == untouched(10_000_000)


# --- links and JSON types -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "link",
    [
        "ftp://instagram.com/p/x",
        "javascript:alert(1)",
        "JAVASCRIPT://instagram.com/%0aalert(1)",
        "data:text/html,hi",
        "instagram.com/p/x",
        "https://",
        "https:///p/x",
        "https://instagram.com/" + "a" * 2030,  # 2053 characters
        "https://instagram.com/p/\x00x",
        "https://instagram.com/p/x\ty",
        "https://instagram.com/p\r\n/x",
        "https://insta gram.com/p/x",
        "https://instagram.com/p/\u2028x",
        "https://instagram.com:99999/p",
        42,
        ["https://instagram.com/p/x"],
    ],
    ids=["ftp", "javascript", "javascript-upper", "data", "no-scheme", "no-host", "empty-host",
         "too-long", "nul", "tab", "crlf", "space", "line-separator", "bad-port", "number",
         "list"],
)
async def test_a_bad_link_is_refused(
    link: Any, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A link that is not an http(s) URL with a host, of at most 2048 characters, free of
    whitespace and control characters: 422 VALIDATION_FAILED naming link."""
    error = await refused(pool, client, order_body(link=link), 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"link"}


async def test_a_link_of_2048_characters_is_accepted(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The longest link allowed (2048 characters) places an order and is stored as sent."""
    _, key = await open_funded_account(pool, 10_000_000)
    link = "https://instagram.com/p/" + "a" * (2048 - len("https://instagram.com/p/"))
    assert len(link) == 2048
    response = await client.post(ORDERS, json=order_body(link=link), headers=bearer(key))
    assert response.status_code == 201, response.text
    assert response.json()["data"]["link"] == link


@pytest.mark.parametrize(
    "quantity", ["100", "1000", 100.5, 1000.0, True, False, [1000], {"n": 1000}],
    ids=["string", "string-1000", "fraction", "float-whole", "true", "false", "list", "object"],
)
async def test_a_quantity_of_the_wrong_json_type_is_refused(
    quantity: Any, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A quantity that is not a JSON integer: 422 VALIDATION_FAILED naming quantity."""
    error = await refused(pool, client, order_body(quantity=quantity), 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"quantity"}


async def test_unknown_fields_are_refused(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A field the service type does not take is named in a 422, not silently dropped."""
    error = await refused(pool, client, order_body(discount="50%"), 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {"discount"}


# --- balance ------------------------------------------------------------------------------------


@pytest.mark.parametrize("balance_kobo", [0, 1, PRICE_1000_KOBO - 1])
async def test_insufficient_balance_is_402_with_the_spec_body(
    balance_kobo: int, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A wallet short of the price, even by one kobo: 402 with exactly the spec's error body."""
    error = await refused(pool, client, order_body(), 402, "INSUFFICIENT_BALANCE", balance_kobo)
    assert error == {
        "success": False,
        "status": 402,
        "message": "Insufficient wallet balance.",
        "code": "INSUFFICIENT_BALANCE",
    }


async def test_a_wallet_of_exactly_the_price_can_pay(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A balance equal to the price pays it and leaves 0.00."""
    _, key = await open_funded_account(pool, PRICE_1000_KOBO)
    response = await client.post(ORDERS, json=order_body(), headers=bearer(key))
    assert response.status_code == 201, response.text
    assert response.json()["data"]["balance_after"] == "0.00"


async def test_a_key_refused_for_balance_is_free_after_a_top_up(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A key whose request got 402 is not consumed: after a top-up, the same key and body place
    the order (a fresh 201, not a replay of the 402)."""
    account_id, key = await open_funded_account(pool, PRICE_1000_KOBO - 1)
    body = order_body()
    first = await client.post(ORDERS, json=body, headers=bearer(key))
    assert first.status_code == 402
    again = await client.post(ORDERS, json=body, headers=bearer(key))
    assert again.status_code == 402 and again.content == first.content
    async with pool.acquire() as connection:
        await wallet.credit(connection, account_id, 1, "top-up-1")
    paid = await client.post(ORDERS, json=body, headers=bearer(key))
    assert paid.status_code == 201, paid.text
    assert "idempotent-replayed" not in paid.headers
    assert paid.json()["data"]["balance_after"] == "0.00"
    assert await ledger_footprint(pool, account_id) == (3, 1, 1, 1, 0)


MAX_BIGINT = 2**63 - 1
MAX_RATE_KOBO = 10**13  # the catalog's cap on a rate per 1000


@asynccontextmanager
async def _service_1_sold_by_the_billion(pool: asyncpg.Pool[Any]) -> AsyncIterator[None]:
    """Service 1 as large as the catalog's caps allow: a maximum of 10**9 units (the synced
    offer's), then, inside the block, at the largest rate."""
    offers = [msgspec.structs.replace(offer, max=10**9) if offer.service == "1" else offer
              for offer in simulator_offers()]
    async with pool.acquire() as connection:
        await catalog.sync(connection, offers, Decimal(1500), Decimal(20))
    try:
        yield
    finally:
        async with pool.acquire() as connection:
            await catalog.pin_rate(connection, "1", None)
        await seed_catalog(pool)


async def _pin_service_1(pool: asyncpg.Pool[Any], rate_per_1000_kobo: int | None) -> None:
    async with pool.acquire() as connection:
        await catalog.pin_rate(connection, "1", rate_per_1000_kobo)


# The price of 10**13 kobo per 1000: 922,337,203 units fit a bigint (just), one more does not.
@pytest.mark.parametrize("quantity", [922_337_203, 922_337_204, 10**9])
async def test_a_price_beyond_any_wallet_is_402_not_a_500(
    quantity: int, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The caps allow a price of up to 10**19 kobo, more than a bigint (any wallet's balance)
    holds: refused 402 with the spec's body like any unaffordable price, nothing recorded,
    whether or not the price fits the database's integers."""
    assert (MAX_RATE_KOBO * 922_337_203 // 1000 <= MAX_BIGINT
            < -(-MAX_RATE_KOBO * 922_337_204 // 1000))
    async with _service_1_sold_by_the_billion(pool):
        await _pin_service_1(pool, MAX_RATE_KOBO)
        error = await refused(pool, client, order_body(quantity=quantity), 402,
                              "INSUFFICIENT_BALANCE")
    assert error == {
        "success": False,
        "status": 402,
        "message": "Insufficient wallet balance.",
        "code": "INSUFFICIENT_BALANCE",
    }


async def test_a_price_beyond_any_wallet_honours_the_key_and_is_priced_afresh(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The refusal of a price beyond any wallet honours the key: a retry of an order placed
    before the service's rate rose gets its first answer, byte for byte, not a 402. And it is
    never made from a stale cached row: once the rate falls back, the same order is placed."""
    price_kobo = PRICE_1000_KOBO * 10**6  # 10**9 units at the synced rate
    account_id, key = await open_funded_account(pool, 2 * price_kobo)
    body = order_body(quantity=10**9)
    async with _service_1_sold_by_the_billion(pool):
        placed = await client.post(ORDERS, json=body, headers=bearer(key))
        assert placed.status_code == 201, placed.text
        await _pin_service_1(pool, MAX_RATE_KOBO)
        again = await client.post(ORDERS, json=body, headers=bearer(key))
        beyond = await client.post(ORDERS, json=order_body(quantity=10**9), headers=bearer(key))
        await _pin_service_1(pool, None)  # the server's cache still holds the pinned row
        afresh = await client.post(ORDERS, json=order_body(quantity=10**9), headers=bearer(key))
    assert (again.status_code, again.content) == (201, placed.content)
    assert again.headers["idempotent-replayed"] == "true"
    assert beyond.status_code == 402, beyond.text
    assert afresh.status_code == 201, afresh.text
    assert afresh.json()["data"]["price"] == placed.json()["data"]["price"]
    assert await ledger_footprint(pool, account_id) == (3, 2, 2, 2, 0)


async def test_a_key_refused_on_validation_is_free_for_a_corrected_body(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A key whose request got 422 (or 404) is not consumed: the corrected body with the same
    key places the order, and that first success is what the key replays from then on."""
    account_id, key = await open_funded_account(pool, 10_000_000)
    idempotency_key = "fix-me-1"
    attempts = [
        (order_body(idempotency_key=idempotency_key, quantity=5), "BOOST_QUANTITY_OUT_OF_RANGE"),
        (order_body(idempotency_key=idempotency_key, link=_ABSENT), "BOOST_LINK_REQUIRED"),
        (order_body(idempotency_key=idempotency_key, service_id="9999"), "BOOST_SERVICE_NOT_FOUND"),
        (order_body(idempotency_key=idempotency_key, price="0.01"), "VALIDATION_FAILED"),
    ]
    for body, code in attempts:
        response = await client.post(ORDERS, json=body, headers=bearer(key))
        assert response.json()["code"] == code
    corrected = order_body(idempotency_key=idempotency_key)
    placed = await client.post(ORDERS, json=corrected, headers=bearer(key))
    assert placed.status_code == 201, placed.text
    assert "idempotent-replayed" not in placed.headers
    replay = await client.post(ORDERS, json=corrected, headers=bearer(key))
    assert (replay.status_code, replay.content) == (201, placed.content)
    assert replay.headers["idempotent-replayed"] == "true"
    reused = await client.post(ORDERS, json=attempts[0][0], headers=bearer(key))
    assert reused.status_code == 409 and reused.json()["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert await ledger_footprint(pool, account_id) == (2, 1, 1, 1, 10_000_000 - PRICE_1000_KOBO)


# --- idempotency after a success ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"quantity": 1001},
        {"link": LINK + "/other"},
        {"service_id": "2"},
        {"runs": 2, "interval": 5},
    ],
    ids=["quantity", "link", "service", "extra-fields"],
)
async def test_same_key_with_another_body_is_409_reused(
    change: dict[str, Any], pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """After a success, the same key with a different body: 409 IDEMPOTENCY_KEY_REUSED, and
    nothing more is recorded; the original body still replays."""
    account_id, key = await open_funded_account(pool, 10_000_000)
    body = order_body()
    placed = await client.post(ORDERS, json=body, headers=bearer(key))
    assert placed.status_code == 201
    response = await client.post(ORDERS, json={**body, **change}, headers=bearer(key))
    assert response.status_code == 409, response.text
    assert response.json() == {
        "success": False, "status": 409, "code": "IDEMPOTENCY_KEY_REUSED",
        "message": "The key was used for a different request body.",
    }
    assert "idempotent-replayed" not in response.headers
    assert await ledger_footprint(pool, account_id) == (2, 1, 1, 1, 10_000_000 - PRICE_1000_KOBO)
    replay = await client.post(ORDERS, json=body, headers=bearer(key))
    assert replay.content == placed.content


async def test_key_order_of_the_json_does_not_change_the_request(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The same fields in another order and spacing are the same request: a replay, not a 409."""
    _, key = await open_funded_account(pool, 10_000_000)
    headers = {**bearer(key), "Content-Type": "application/json"}
    first = await client.post(
        ORDERS, headers=headers,
        content=f'{{"service_id":"1","link":"{LINK}","quantity":1000,"idempotency_key":"ord-1"}}',
    )
    assert first.status_code == 201
    second = await client.post(
        ORDERS, headers=headers,
        content=f'{{ "idempotency_key" : "ord-1", "quantity" : 1000, "link" : "{LINK}",'
        ' "service_id" : "1" }',
    )
    assert (second.status_code, second.content) == (201, first.content)
    assert second.headers["idempotent-replayed"] == "true"


async def test_keys_belong_to_their_account(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Two accounts using the same key each get their own order (keys are per account)."""
    _, first_key = await open_funded_account(pool, 10_000_000)
    _, second_key = await open_funded_account(pool, 10_000_000)
    body = order_body(idempotency_key="shared-key")
    first = await client.post(ORDERS, json=body, headers=bearer(first_key))
    second = await client.post(ORDERS, json={**body, "quantity": 2000}, headers=bearer(second_key))
    assert (first.status_code, second.status_code) == (201, 201)
    assert "idempotent-replayed" not in second.headers
    assert first.json()["data"]["order_id"] != second.json()["data"]["order_id"]


# --- prices: snapshots and pins -----------------------------------------------------------------


async def test_a_price_change_never_alters_a_placed_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A re-sync at another FX rate changes the price of new orders only: the placed order keeps
    its price, its OrderPlaced snapshot and its replayed answer, byte for byte."""
    _, key = await open_funded_account(pool, 10_000_000)
    body = order_body()
    placed = await client.post(ORDERS, json=body, headers=bearer(key))
    assert placed.json()["data"]["price"] == "1620.00"
    order_id = placed.json()["data"]["order_id"]
    await seed_catalog(pool, fx_rate="2000")
    try:
        service = await client.get("/api/v1/boost/services/1", headers=bearer(key))
        assert service.json()["data"]["rate_per_1000"] == "2160.00"
        replay = await client.post(ORDERS, json=body, headers=bearer(key))
        assert (replay.status_code, replay.content) == (201, placed.content)
        got = await client.get(f"{ORDERS}/{order_id}", headers=bearer(key))
        assert got.json()["data"]["price"] == "1620.00"
        snapshot = await pool.fetchval(
            "select data from events where stream_id = $1 and type = 'OrderPlaced'",
            f"order-{order_id}",
        )
        assert (snapshot["rate_per_1000_kobo"], snapshot["price_kobo"]) == (162_000, 162_000)
        fresh = await client.post(ORDERS, json=order_body(), headers=bearer(key))
        assert fresh.json()["data"]["price"] == "2160.00"
        # 100000.00 - 1620.00 - 2160.00
        assert fresh.json()["data"]["balance_after"] == "96220.00"
    finally:
        await seed_catalog(pool)


async def test_a_pinned_rate_wins_over_the_synced_one(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """An operator's pinned rate prices new orders, survives a re-sync at another FX rate, and
    once released the synced rate applies again; placed orders keep their price throughout."""
    _, key = await open_funded_account(pool, 10_000_000)
    # Service 17: 2.10 x 1800 = 3780.00 per 1000; 77 units cost 291.06.
    body = order_body(service_id="17", quantity=77)
    assert (await client.post(ORDERS, json=body, headers=bearer(key))).json()["data"]["price"] == (
        "291.06"
    )
    async with pool.acquire() as connection:
        await catalog.pin_rate(connection, "17", 123_456)
    try:
        listed = await client.get("/api/v1/boost/services/17", headers=bearer(key))
        assert listed.json()["data"]["rate_per_1000"] == "1234.56"
        # 1234.56 x 77 / 1000 = 95.06112 -> ceil 95.07.
        pinned = await client.post(ORDERS, json=order_body(service_id="17", quantity=77),
                                   headers=bearer(key))
        assert pinned.json()["data"]["price"] == "95.07"
        await seed_catalog(pool, fx_rate="2000")
        after_sync = await client.post(ORDERS, json=order_body(service_id="17", quantity=77),
                                       headers=bearer(key))
        assert after_sync.json()["data"]["price"] == "95.07"
        async with pool.acquire() as connection:
            await catalog.pin_rate(connection, "17", None)
        # Released under FX 2000: 2.10 x 2400 = 5040.00; x 77 / 1000 = 388.08.
        released = await client.post(ORDERS, json=order_body(service_id="17", quantity=77),
                                      headers=bearer(key))
        assert released.json()["data"]["price"] == "388.08"
        order_id = pinned.json()["data"]["order_id"]
        got = await client.get(f"{ORDERS}/{order_id}", headers=bearer(key))
        assert got.json()["data"]["price"] == "95.07"
    finally:
        async with pool.acquire() as connection:
            await catalog.pin_rate(connection, "17", None)
        await seed_catalog(pool)


async def test_nothing_is_sold_for_nothing(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A rate of 0 would place orders debiting 0 kobo, which no wallet event may hold (the
    audit flags one): an operator cannot pin it, and a provider offer that prices to nothing
    is skipped at sync, which delists the service; the next sync of a priced offer lists it
    again."""
    _, key = await open_funded_account(pool, 10_000_000)
    async with pool.acquire() as connection:
        with pytest.raises(ValueError, match=r"between 0\.01 and"):
            await catalog.pin_rate(connection, "17", 0)
        free = [
            msgspec.structs.replace(offer, rate=Decimal(0)) if offer.service == "17" else offer
            for offer in simulator_offers()
        ]
        report = await catalog.sync(connection, free, Decimal(1500), Decimal(20))
    try:
        assert report.skipped == ["17"] and report.delisted == 1
        refused = await client.post(ORDERS, json=order_body(service_id="17", quantity=77),
                                    headers=bearer(key))
        assert refused.status_code != 201
        assert await pool.fetchval("select count(*) from events where type = 'FundsDebited'"
                                   " and (data->>'amount_kobo')::bigint <= 0") == 0
    finally:
        await seed_catalog(pool)
    placed = await client.post(ORDERS, json=order_body(service_id="17", quantity=77),
                               headers=bearer(key))
    assert placed.status_code == 201, placed.text


# --- abilities ----------------------------------------------------------------------------------


async def test_a_key_without_boosting_buy_cannot_order(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A key lacking boosting:buy gets 403 FORBIDDEN on checkout and records nothing."""
    account_id, key = await open_funded_account(
        pool, 10_000_000, abilities=["wallet:read", "boosting:read", "orders:read"]
    )
    response = await client.post(ORDERS, json=order_body(), headers=bearer(key))
    assert response.status_code == 403
    assert response.json() == {
        "success": False, "status": 403, "code": "FORBIDDEN",
        "message": "This API key lacks the 'boosting:buy' ability.",
    }
    assert await ledger_footprint(pool, account_id) == untouched(10_000_000)


async def test_a_key_without_orders_read_cannot_read_orders(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A key lacking orders:read can buy but gets 403 FORBIDDEN on both order reads."""
    _, key = await open_funded_account(
        pool, 10_000_000, abilities=["wallet:read", "boosting:read", "boosting:buy"]
    )
    placed = await client.post(ORDERS, json=order_body(), headers=bearer(key))
    assert placed.status_code == 201
    order_id = placed.json()["data"]["order_id"]
    for path in (ORDERS, f"{ORDERS}/{order_id}", f"{ORDERS}/999999"):
        response = await client.get(path, headers=bearer(key))
        assert response.status_code == 403, path
        assert response.json() == {
            "success": False, "status": 403, "code": "FORBIDDEN",
            "message": "This API key lacks the 'orders:read' ability.",
        }


@pytest.mark.parametrize(
    "authorization", [None, "Bearer nope", "Basic abc", "Bearer blk_abcdefghij_notakey"]
)
async def test_checkout_needs_a_valid_bearer_key(
    authorization: str | None, client: httpx.AsyncClient
) -> None:
    """Without a valid bearer key, checkout is 401 UNAUTHENTICATED before the body is looked at."""
    headers = {"Accept": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = await client.post(ORDERS, json=order_body(), headers=headers)
    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"
    assert response.headers["www-authenticate"] == 'Bearer realm="boosting-api"'
