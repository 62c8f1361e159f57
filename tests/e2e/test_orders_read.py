"""Reading orders over real HTTP: the paginated list, one order, and what is not found."""

from __future__ import annotations

import asyncio
import itertools
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.ledger import checkout
from boost_ledger.ledger.checkout_state import CheckoutState
from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.events import StatusObserved, order_stream
from boost_ledger.ledger.store import NewEvent

ORDERS = "/api/v1/boost/orders"
LINK = "https://instagram.com/p/example"
FUNDS_KOBO = 10_000_000
ORDER_KEYS = {
    "order_id", "status", "service_id", "service_name", "category", "type", "link", "quantity",
    "price", "currency", "start_count", "remains", "refunded", "cancel", "created_at",
}
TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")
_keys = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def place(
    client: httpx.AsyncClient, key: str, service_id: str = "1", quantity: int = 100
) -> dict[str, Any]:
    body = {
        "service_id": service_id, "link": LINK, "quantity": quantity,
        "idempotency_key": f"read-{next(_keys)}",
    }
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


async def observe(
    pool: asyncpg.Pool[Any], order_id: int, upstream: str, status: str, remains: int | None
) -> None:
    """Record a provider status for an order, as the poller would (a real append)."""
    async with pool.acquire() as connection, connection.transaction():
        version = await connection.fetchval(
            "select max(version) from events where stream_id = $1", order_stream(order_id)
        )
        event = StatusObserved(
            order_id=order_id, upstream_status=upstream, status=status, start_count=120,
            remains=remains,
        )
        new_event = NewEvent(stream_id=order_stream(order_id), version=version + 1, event=event)
        await commit(connection, [new_event], {"actor": "test"})


async def listing(
    client: httpx.AsyncClient, key: str, **params: str
) -> tuple[list[int], dict[str, Any]]:
    response = await client.get(ORDERS, params=params, headers=bearer(key))
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "data", "meta"} and body["success"] is True
    assert set(body["meta"]) == {"current_page", "per_page", "total", "last_page"}
    for item in body["data"]:
        assert set(item) == ORDER_KEYS
    return [int(item["order_id"]) for item in body["data"]], body["meta"]


async def test_list_is_paginated_newest_first(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """The list holds only the caller's orders, newest first, 25 a page by default, with meta
    current_page, per_page, total and last_page; pages past the end are empty."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    _, other_key = await open_funded_account(pool, FUNDS_KOBO)
    await place(client, other_key)
    placed = [int((await place(client, key, quantity=100 + n))["order_id"]) for n in range(7)]
    newest_first = placed[::-1]
    assert await listing(client, key) == (
        newest_first, {"current_page": 1, "per_page": 25, "total": 7, "last_page": 1},
    )
    pages = [await listing(client, key, per_page="3", page=str(page)) for page in (1, 2, 3, 4)]
    assert [ids for ids, _ in pages] == [
        newest_first[0:3], newest_first[3:6], newest_first[6:7], [],
    ]
    assert [meta for _, meta in pages] == [
        {"current_page": page, "per_page": 3, "total": 7, "last_page": 3} for page in (1, 2, 3, 4)
    ]
    ids, meta = await listing(client, key, per_page="1")
    assert (ids, meta["last_page"]) == (newest_first[:1], 7)
    ids, meta = await listing(client, key, per_page="100")
    assert (ids, meta["per_page"]) == (newest_first, 100)
    ids, meta = await listing(client, key, per_page="7", page="1")
    assert (ids, meta["last_page"]) == (newest_first, 1)


async def test_the_list_is_newest_first_when_processes_take_ids_in_blocks(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Two API processes each take order ids in blocks: placed through A, B, then A again, the
    last order has a smaller id than the second, and still lists first (by when it was placed,
    not by id)."""
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    first, second = CheckoutState.for_server(), CheckoutState.for_server()  # two processes
    placed = []
    for state, name in ((first, "a1"), (second, "b1"), (first, "a2")):
        body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 100,
                "idempotency_key": name}
        answer = await checkout.checkout(
            pool, account_id=account_id, idempotency_key=name, service_id="1", body=body,
            subscription_default_posts=10, metadata={"actor": "test"}, state=state,
        )
        placed.append(answer.order_id)
    assert placed[2] < placed[1], placed  # the id blocks interleave

    ids, _ = await listing(client, key)
    assert ids == placed[::-1]


async def test_list_items_have_the_order_shape(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Each listed order carries the same fields and values as GET /boost/orders/{id}."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    order = await place(client, key, service_id="2", quantity=500)
    listed = (await client.get(ORDERS, headers=bearer(key))).json()["data"]
    one = (await client.get(f"{ORDERS}/{order['order_id']}", headers=bearer(key))).json()["data"]
    assert listed == [one]


async def test_an_account_without_orders_lists_nothing(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """No orders: an empty page 1 of 1 with total 0."""
    _, key = await open_funded_account(pool)
    assert await listing(client, key) == (
        [], {"current_page": 1, "per_page": 25, "total": 0, "last_page": 1},
    )


async def test_status_filter(pool: asyncpg.Pool[Any], client: httpx.AsyncClient) -> None:
    """?status= keeps only the orders in that status, and counts only them in meta."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    first, second, third = [int((await place(client, key))["order_id"]) for _ in range(3)]
    await observe(pool, first, "Completed", "completed", 0)
    await observe(pool, second, "In progress", "in_progress", 40)
    expected = {
        "pending": [third], "completed": [first], "in_progress": [second], "canceled": [],
    }
    for status, ids in expected.items():
        got, meta = await listing(client, key, status=status)
        assert got == ids, status
        assert (meta["total"], meta["last_page"]) == (len(ids), 1)
    got, meta = await listing(client, key, status="pending", per_page="1", page="2")
    assert (got, meta["total"]) == ([], 1)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("per_page", "0"), ("per_page", "101"), ("per_page", "-1"), ("per_page", "abc"),
        ("per_page", "1.5"), ("per_page", ""), ("per_page", " 5"), ("per_page", "1e2"),
        ("per_page", "+5"), ("per_page", "99999999999999999999999"),
        ("per_page", "000000000001000"),  # 1000 behind leading zeros
        ("per_page", "\u00b2"), ("per_page", "\u0665"),  # superscript 2, Arabic-Indic 5
        ("page", "0"), ("page", "-1"), ("page", "x"), ("page", "²"),
        ("page", "000000000001" + "0" * 20), ("page", "9" * 5000),
        ("status", "bogus"), ("status", "PENDING"), ("status", ""),
    ],
)
async def test_bad_list_parameters_are_refused(
    name: str, value: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """per_page outside 1..100, a page that is not a positive integer, or an unknown status:
    422 VALIDATION_FAILED naming the parameter (never a 500)."""
    _, key = await open_funded_account(pool)
    response = await client.get(ORDERS, params={name: value}, headers=bearer(key))
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["success"], error["status"], error["code"]) == (False, 422, "VALIDATION_FAILED")
    assert set(error["errors"]) == {name}



@pytest.mark.parametrize(
    "query",
    ["per_page=100&per_page=1", "per_page=1&per_page=100", "page=2&page=1", "page=1&page=1",
     "status=canceled&status=pending", "status=pending&status=canceled"],
)
async def test_a_list_parameter_given_twice_is_refused(
    query: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A parameter given more than once is ambiguous, as a duplicated member of a body is (the
    last one silently won, so ``status=canceled&status=pending`` listed only pending orders,
    and one order of the two values was refused, the other not): 422 VALIDATION_FAILED naming
    the parameter, whichever the values and their order."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    await place(client, key)
    response = await client.get(f"{ORDERS}?{query}", headers=bearer(key))
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["success"], error["status"], error["code"]) == (False, 422, "VALIDATION_FAILED")
    name = query.split("=", 1)[0]
    assert error["errors"] == {name: [f"The {name} parameter appears more than once."]}

async def test_one_order_in_the_spec_shape(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """GET /boost/orders/{id} answers the spec's fields: price as a string, start_count and
    remains null until observed, refunded false, cancel as offered, created_at with microseconds
    and a Z; after a provider status it shows that status, start_count and remains."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    before = datetime.now(UTC)
    placed = await place(client, key, service_id="1", quantity=1000)
    response = await client.get(f"{ORDERS}/{placed['order_id']}", headers=bearer(key))
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"success", "data"} and body["success"] is True
    data = body["data"]
    assert set(data) == ORDER_KEYS
    created_at = data.pop("created_at")
    assert TIMESTAMP.fullmatch(created_at), created_at
    moment = datetime.strptime(created_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    assert before - timedelta(seconds=5) <= moment <= datetime.now(UTC) + timedelta(seconds=5)
    assert data == {
        "order_id": placed["order_id"],
        "status": "pending",
        "service_id": "1",
        "service_name": placed["service_name"],
        "category": "Instagram Followers",
        "type": "Default",
        "link": LINK,
        "quantity": 1000,
        "price": "1620.00",  # 0.90 x 1500 x 1.2 = 1620.00 per 1000
        "currency": "NGN",
        "start_count": None,
        "remains": None,
        "refunded": False,
        "cancel": True,
    }
    await observe(pool, int(placed["order_id"]), "In progress", "in_progress", 350)
    later = (await client.get(f"{ORDERS}/{placed['order_id']}", headers=bearer(key))).json()
    assert later["data"]["created_at"] == created_at
    assert (later["data"]["status"], later["data"]["start_count"], later["data"]["remains"]) == (
        "in_progress", 120, 350,
    )


async def test_a_service_without_cancel_shows_cancel_false(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """An order of a service that cannot be canceled reads cancel false."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    placed = await place(client, key, service_id="2")
    got = await client.get(f"{ORDERS}/{placed['order_id']}", headers=bearer(key))
    assert got.json()["data"]["cancel"] is False


def _arabic_indic(text: str) -> str:
    return "".join(chr(0x0660 + int(digit)) for digit in text)


async def test_another_accounts_order_and_a_missing_one_look_the_same(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """Someone else's order, an order that does not exist and an id that is not a canonical
    order number all get the same 404 BOOST_ORDER_NOT_FOUND body, byte for byte."""
    _, owner_key = await open_funded_account(pool, FUNDS_KOBO)
    _, stranger_key = await open_funded_account(pool, FUNDS_KOBO)
    order_id = (await place(client, owner_key))["order_id"]
    owned = await client.get(f"{ORDERS}/{order_id}", headers=bearer(owner_key))
    assert owned.status_code == 200
    missing = str(int(order_id) + 1_000_000)
    candidates = [
        (stranger_key, order_id), (owner_key, missing), (owner_key, "0"), (owner_key, "abc"),
        (owner_key, "-1"), (owner_key, "1.0"), (owner_key, "+1"), (owner_key, "1e3"),
        (owner_key, "0x10"), (owner_key, "9" * 19), (owner_key, "9" * 40),
        (owner_key, "9" * 5000), (owner_key, "²"), (owner_key, _arabic_indic(order_id)),
        (owner_key, "0" + order_id), (owner_key, f"{order_id} "),
    ]
    bodies = set()
    for key, path_id in candidates:
        response = await client.get(f"{ORDERS}/{path_id}", headers=bearer(key))
        assert response.status_code == 404, (path_id[:30], response.text)
        bodies.add(response.content)
    assert len(bodies) == 1
    assert httpx.Response(404, content=bodies.pop()).json() == {
        "success": False, "status": 404, "code": "BOOST_ORDER_NOT_FOUND",
        "message": "The order ID does not belong to the authenticated account.",
    }


async def test_a_page_and_its_total_agree_while_orders_are_placed(
    pool: asyncpg.Pool[Any], client: httpx.AsyncClient, base_url: str
) -> None:
    """While other requests place orders, every listed page holds as many orders as its own
    meta.total says it should (all of them, below per_page): the page and its count come from
    one snapshot, so an order committed meanwhile is either counted and listed, or neither."""
    _, key = await open_funded_account(pool, FUNDS_KOBO)
    placing = 60

    async def place_some(count: int) -> None:
        async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as own:
            for _ in range(count):
                await place(own, key)

    placers = [asyncio.create_task(place_some(placing // 2)) for _ in range(2)]
    pages = []
    while not all(placer.done() for placer in placers):
        response = await client.get(ORDERS, params={"per_page": "100"}, headers=bearer(key))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append((len(body["data"]), body["meta"]["total"], body["meta"]["last_page"]))
    await asyncio.gather(*placers)
    assert len(pages) >= 10, pages  # the lists did run while orders were being placed
    disagreeing = [page for page in pages if page[0] != page[1] or page[2] != 1]
    assert disagreeing == [], disagreeing
    ids, meta = await listing(client, key, per_page="100")
    assert (len(ids), meta["total"]) == (placing, placing)
