"""Checkout of every service type over real HTTP: happy paths priced by hand, and its errors.

Prices below are computed by hand from the simulator's catalog
(boost_ledger/upstream/sim_catalog.py) synced with FX 1500 and a 20% markup:
rate_per_1000 = provider USD rate x 1500 x 1.20 = rate x 1800 naira, rounded half-up to the kobo;
charge = ceil(rate_per_1000 x billable / 1000) kobo (Package: the rate once). Subscriptions bill
max x posts, posts defaulting to 10 (settings.subscription_default_posts).
"""

from __future__ import annotations

import itertools
import re
from typing import Any, NamedTuple

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.ledger.events import debit_event_id
from boost_ledger.settings import Settings

ORDERS = "/api/v1/boost/orders"
FUNDS_KOBO = 10_000_000  # 100,000.00 NGN: more than any single order below
LINK = "https://instagram.com/p/example"
CHECKOUT_KEYS = {
    "order_id", "status", "service_id", "service_name", "category", "type", "link", "quantity",
    "price", "currency", "cancel", "balance_after",
}
_keys = itertools.count(1)


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


def naira(kobo: int) -> str:
    return f"{kobo // 100}.{kobo % 100:02d}"


async def post_order(
    client: httpx.AsyncClient, key: str, service_id: str, fields: dict[str, Any]
) -> tuple[httpx.Response, dict[str, Any]]:
    body = {"service_id": service_id, **fields, "idempotency_key": f"types-{next(_keys)}"}
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    return response, body


async def assert_nothing_recorded(pool: asyncpg.Pool[Any], account_id: int) -> None:
    """A refused checkout leaves no event, no order, no idempotency record, the balance intact."""
    async with pool.acquire() as connection:
        wallet_events = await connection.fetchval(
            "select count(*) from events where stream_id = $1", f"wallet-{account_id}"
        )
        placed = await connection.fetchval(
            "select count(*) from events where type = 'OrderPlaced'"
            " and (data->>'account_id')::bigint = $1",
            account_id,
        )
        orders = await connection.fetchval(
            "select count(*) from orders where account_id = $1", account_id
        )
        keys = await connection.fetchval(
            "select count(*) from idempotency_keys where account_id = $1", account_id
        )
        balance = await connection.fetchval(
            "select balance_kobo from wallets where account_id = $1", account_id
        )
    assert (wallet_events, placed, orders, keys, balance) == (1, 0, 0, 0, FUNDS_KOBO)


# --- happy paths --------------------------------------------------------------------------------


class Case(NamedTuple):
    service_id: str
    body: dict[str, Any]
    rate_kobo: int  # hand-computed rate per 1000
    quantity: int  # the quantity the client sees
    billable: int
    price_kobo: int  # hand-computed charge
    upstream: dict[str, Any]  # the normalised fields sent to the provider
    link: str | None
    cancel: bool


CUSTOM_COMMENTS = "  Nice!  \r\nGreat post\n\n   \r\nWow\r\nCool\nSuper\nLove it\n"
USERNAME_LIST = "u1\r\n u2 \n\nu3\r\n\r\nu4\nu5\nu6\r\nu7\nu8\nu9\nu10\r\nu11\n"
TIKTOK = "https://tiktok.com/@someone/video/1"

CASES = {
    # 0.90 x 1800 = 1620.00; 1620.00 x 333 / 1000 = 539.46 exactly.
    "default-cancel": Case(
        "1", {"link": LINK, "quantity": 333}, 162_000, 333, 333, 53_946,
        {"link": LINK, "quantity": 333}, LINK, True,
    ),
    # 0.45 x 1800 = 810.00; the service minimum, 10 units: 8.10.
    "default-no-cancel": Case(
        "2", {"link": LINK, "quantity": 10}, 81_000, 10, 10, 810,
        {"link": LINK, "quantity": 10}, LINK, False,
    ),
    # 0.12345 x 1800 = 222.21; 222.21 x 777 / 1000 = 172.65717 -> ceil 172.66.
    "default-ceil": Case(
        "3", {"link": LINK, "quantity": 777}, 22_221, 777, 777, 17_266,
        {"link": LINK, "quantity": 777}, LINK, True,
    ),
    # 0.01234 x 1800 = 22.212 -> half-up 22.21; drip-feed 150 x 2 runs = 300 billable:
    # 22.21 x 300 / 1000 = 6.663 -> ceil 6.67. The link is trimmed.
    "default-drip-feed": Case(
        "16", {"link": f"  {TIKTOK} ", "quantity": 150, "runs": 2, "interval": 60},
        2_221, 150, 300, 667, {"link": TIKTOK, "quantity": 150, "runs": 2, "interval": 60},
        TIKTOK, True,
    ),
    # 4.50 x 1800 = 8100.00, charged once.
    "package": Case("4", {"link": LINK}, 810_000, 1, 1, 810_000, {"link": LINK}, LINK, False),
    # 12.00 x 1800 = 21600.00; 6 non-empty lines: 129.60.
    "custom-comments": Case(
        "5", {"link": LINK, "comments": CUSTOM_COMMENTS}, 2_160_000, 6, 6, 12_960,
        {"link": LINK, "comments": "Nice!\nGreat post\nWow\nCool\nSuper\nLove it"}, LINK, True,
    ),
    # 3.20 x 1800 = 5760.00; 150 units: 864.00. Comma lists become one entry per line.
    "mentions-with-hashtags": Case(
        "6", {"link": LINK, "quantity": 150, "usernames": "alice, bob\r\ncarol",
              "hashtags": "#one\n#two"},
        576_000, 150, 150, 86_400,
        {"link": LINK, "quantity": 150, "usernames": "alice\nbob\ncarol", "hashtags": "#one\n#two"},
        LINK, False,
    ),
    # 5.00 x 1800 = 9000.00; 11 non-empty username lines: 99.00.
    "mentions-custom-list": Case(
        "7", {"link": LINK, "usernames": USERNAME_LIST}, 900_000, 11, 11, 9_900,
        {"link": LINK, "usernames": "\n".join(f"u{n}" for n in range(1, 12))}, LINK, False,
    ),
    # 2.75 x 1800 = 4950.00; 100 units: 495.00.
    "mentions-hashtag": Case(
        "8", {"link": LINK, "quantity": 100, "hashtag": " #boost "}, 495_000, 100, 100, 49_500,
        {"link": LINK, "quantity": 100, "hashtag": "#boost"}, LINK, True,
    ),
    # 2.90 x 1800 = 5220.00; 250 units: 1305.00.
    "mentions-user-followers": Case(
        "9", {"link": LINK, "quantity": 250, "username": "alice"}, 522_000, 250, 250, 130_500,
        {"link": LINK, "quantity": 250, "username": "alice"}, LINK, False,
    ),
    # 3.10 x 1800 = 5580.00; 100 units: 558.00.
    "mentions-media-likers": Case(
        "10", {"link": LINK, "quantity": 100, "media": "https://instagram.com/p/media1"},
        558_000, 100, 100, 55_800,
        {"link": LINK, "quantity": 100, "media": "https://instagram.com/p/media1"}, LINK, False,
    ),
    # 0.60 x 1800 = 1080.00; max 100 x the default 10 posts = 1000 billable: 1080.00.
    "subscriptions-default-posts": Case(
        "11", {"username": "alice", "min": 50, "max": 100, "delay": 30}, 108_000, 100, 1_000,
        108_000, {"username": "alice", "min": 50, "max": 100, "delay": 30, "posts": 10},
        None, True,
    ),
    # max 75 x 3 posts = 225 billable: 1080.00 x 225 / 1000 = 243.00.
    "subscriptions-all-fields": Case(
        "11", {"username": "alice", "min": 60, "max": 75, "delay": 0, "posts": 3,
               "old_posts": 2, "expiry": "1/2/2027"},
        108_000, 75, 225, 24_300,
        {"username": "alice", "min": 60, "max": 75, "delay": 0, "posts": 3, "old_posts": 2,
         "expiry": "01/02/2027"},
        None, True,
    ),
    # 1.23456 x 1800 = 2222.208 -> half-up 2222.21; x 123 / 1000 = 273.33183 -> ceil 273.34.
    "comment-likes": Case(
        "12", {"link": LINK, "quantity": 123, "username": "bob"}, 222_221, 123, 123, 27_334,
        {"link": LINK, "quantity": 123, "username": "bob"}, LINK, False,
    ),
    # 0.80 x 1800 = 1440.00; 150 units: 216.00.
    "poll": Case(
        "13", {"link": LINK, "quantity": 150, "answer_number": 2}, 144_000, 150, 150, 21_600,
        {"link": LINK, "quantity": 150, "answer_number": 2}, LINK, True,
    ),
    # 15.00 x 1800 = 27000.00; 3 non-empty comment lines: 81.00.
    "comment-replies": Case(
        "14", {"link": LINK, "username": "alice", "comments": "Thanks!\r\n\r\n  Agreed  \nSame"},
        2_700_000, 3, 3, 8_100,
        {"link": LINK, "username": "alice", "comments": "Thanks!\nAgreed\nSame"}, LINK, False,
    ),
    # 7.50 x 1800 = 13500.00; 100 units: 1350.00.
    "invites-from-groups": Case(
        "15", {"link": LINK, "quantity": 100, "groups": "group_one\r\n group_two \n"},
        1_350_000, 100, 100, 135_000,
        {"link": LINK, "quantity": 100, "groups": "group_one\ngroup_two"}, LINK, False,
    ),
    # 101 units: 1363.50.
    "invites-from-groups-t-me": Case(
        "15", {"link": "https://t.me/somechannel", "quantity": 101, "groups": "g1"},
        1_350_000, 101, 101, 136_350,
        {"link": "https://t.me/somechannel", "quantity": 101, "groups": "g1"},
        "https://t.me/somechannel", False,
    ),
}


def test_the_cases_cover_all_thirteen_types() -> None:
    """The happy-path table below holds at least one order of each of the 13 service types."""
    from boost_ledger.ledger.order_types import SERVICE_TYPES
    from boost_ledger.upstream.sim_catalog import SERVICES_BY_ID

    covered = {SERVICES_BY_ID[case.service_id].type for case in CASES.values()}
    assert covered == set(SERVICE_TYPES)


def test_the_server_defaults_subscriptions_to_ten_posts(settings: Settings) -> None:
    """The hand-computed Subscriptions prices assume the server's default of 10 posts."""
    assert settings.subscription_default_posts == 10


@pytest.mark.parametrize("name", list(CASES))
async def test_happy_path_prices_and_records_the_order(
    name: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A valid order of the type is answered 201 in the spec's shape at the hand-computed price,
    debits exactly that price, snapshots rate, fields and billable quantity into OrderPlaced,
    and replays byte for byte."""
    case = CASES[name]
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    response, body = await post_order(client, key, case.service_id, case.body)
    assert response.status_code == 201, response.text
    assert response.headers["content-type"] == "application/json"
    assert "idempotent-replayed" not in response.headers
    answer = response.json()
    assert set(answer) == {"success", "data"} and answer["success"] is True
    data = answer["data"]
    assert set(data) == CHECKOUT_KEYS
    assert re.fullmatch(r"[1-9][0-9]*", data["order_id"])
    balance_after = FUNDS_KOBO - case.price_kobo
    assert {k: v for k, v in data.items() if k not in ("order_id", "service_name", "category")} == {
        "status": "pending",
        "service_id": case.service_id,
        "type": _service_type(case.service_id),
        "link": case.link,
        "quantity": case.quantity,
        "price": naira(case.price_kobo),
        "currency": "NGN",
        "cancel": case.cancel,
        "balance_after": naira(balance_after),
    }
    order_id = int(data["order_id"])
    await _assert_recorded(pool, account_id, order_id, case, body)
    wallet = await client.get("/api/v1/wallet", headers=bearer(key))
    assert wallet.json()["data"]["balance"] == naira(balance_after)
    replay = await client.post(ORDERS, json=body, headers=bearer(key))
    assert replay.status_code == 201
    assert replay.content == response.content
    assert replay.headers["idempotent-replayed"] == "true"


def _service_type(service_id: str) -> str:
    from boost_ledger.upstream.sim_catalog import SERVICES_BY_ID

    return SERVICES_BY_ID[service_id].type


async def _assert_recorded(
    pool: asyncpg.Pool[Any], account_id: int, order_id: int, case: Case, body: dict[str, Any]
) -> None:
    async with pool.acquire() as connection:
        order_events = await connection.fetch(
            "select type, version, data from events where stream_id = $1 order by version",
            f"order-{order_id}",
        )
        debits = await connection.fetch(
            "select event_id, version, data from events where stream_id = $1"
            " and type = 'FundsDebited'",
            f"wallet-{account_id}",
        )
        balance = await connection.fetchval(
            "select balance_kobo from wallets where account_id = $1", account_id
        )
    assert [(row["type"], row["version"]) for row in order_events] == [("OrderPlaced", 1)]
    placed = order_events[0]["data"]
    assert placed["order_id"] == order_id and placed["account_id"] == account_id
    assert placed["service_id"] == case.service_id == placed["provider_service_id"]
    assert placed["idempotency_key"] == body["idempotency_key"]
    assert placed["rate_per_1000_kobo"] == case.rate_kobo
    assert placed["price_kobo"] == case.price_kobo
    assert placed["billable_quantity"] == case.billable
    assert placed["quantity"] == case.quantity
    assert placed["fields"] == case.upstream
    assert placed["link"] == case.link
    assert placed["cancel_supported"] is case.cancel
    assert re.fullmatch(r"[0-9a-f]{64}", placed["fingerprint"])
    assert len(debits) == 1
    assert debits[0]["event_id"] == debit_event_id(order_id)
    assert debits[0]["version"] == 2  # after the seed credit
    assert debits[0]["data"]["amount_kobo"] == case.price_kobo
    assert debits[0]["data"]["balance_after_kobo"] == FUNDS_KOBO - case.price_kobo == balance


# --- errors of each type ------------------------------------------------------------------------

LINK_REQUIRED = "The selected service type requires a target link."
TEN_LINES = "\n".join(f"user{n}" for n in range(10))
FIVE_COMMENTS = "a\nb\nc\nd\ne"

LINK_MISSING = {
    "default": ("1", {"quantity": 100}),
    "default-blank-link": ("1", {"link": "   ", "quantity": 100}),
    "default-null-link": ("1", {"link": None, "quantity": 100}),
    "package": ("4", {}),
    "custom-comments": ("5", {"comments": FIVE_COMMENTS}),
    "mentions-with-hashtags": ("6", {"quantity": 150, "usernames": "a", "hashtags": "#b"}),
    "mentions-custom-list": ("7", {"usernames": TEN_LINES}),
    "mentions-hashtag": ("8", {"quantity": 100, "hashtag": "#x"}),
    "mentions-user-followers": ("9", {"quantity": 100, "username": "alice"}),
    "mentions-media-likers": ("10", {"quantity": 100, "media": LINK}),
    "comment-likes": ("12", {"quantity": 100, "username": "alice"}),
    "poll": ("13", {"quantity": 100, "answer_number": 1}),
    "comment-replies": ("14", {"username": "alice", "comments": "hi"}),
    "invites-from-groups": ("15", {"quantity": 100, "groups": "g1"}),
}


@pytest.mark.parametrize("name", list(LINK_MISSING))
async def test_link_required(
    name: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A type that needs a link, sent without one (absent, blank or null): 422
    BOOST_LINK_REQUIRED, and nothing is recorded."""
    service_id, fields = LINK_MISSING[name]
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    response, _ = await post_order(client, key, service_id, fields)
    assert response.status_code == 422, response.text
    assert response.json() == {
        "success": False, "status": 422, "message": LINK_REQUIRED, "code": "BOOST_LINK_REQUIRED",
    }
    await assert_nothing_recorded(pool, account_id)


QUANTITY_MISSING = {
    "default": ("1", {"link": LINK}),
    "default-null-quantity": ("1", {"link": LINK, "quantity": None}),
    "custom-comments": ("5", {"link": LINK}),
    "custom-comments-only-blank-lines": ("5", {"link": LINK, "comments": "\n  \r\n   \n"}),
    "mentions-with-hashtags": ("6", {"link": LINK, "usernames": "a", "hashtags": "#b"}),
    "mentions-custom-list": ("7", {"link": LINK}),
    "mentions-custom-list-blank": ("7", {"link": LINK, "usernames": " \r\n "}),
    "mentions-hashtag": ("8", {"link": LINK, "hashtag": "#x"}),
    "mentions-user-followers": ("9", {"link": LINK, "username": "alice"}),
    "mentions-media-likers": ("10", {"link": LINK, "media": LINK}),
    "comment-likes": ("12", {"link": LINK, "username": "alice"}),
    "poll": ("13", {"link": LINK, "answer_number": 1}),
    "comment-replies": ("14", {"link": LINK, "username": "alice"}),
    "invites-from-groups": ("15", {"link": LINK, "groups": "g1"}),
}


@pytest.mark.parametrize("name", list(QUANTITY_MISSING))
async def test_quantity_required(
    name: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A type billed by a quantity (or by its lines), sent without it: 422
    BOOST_QUANTITY_REQUIRED, and nothing is recorded."""
    service_id, fields = QUANTITY_MISSING[name]
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    response, _ = await post_order(client, key, service_id, fields)
    assert response.status_code == 422, response.text
    error = response.json()
    assert set(error) == {"success", "status", "message", "code"}
    assert (error["success"], error["status"], error["code"]) == (
        False, 422, "BOOST_QUANTITY_REQUIRED",
    )
    assert error["message"]
    await assert_nothing_recorded(pool, account_id)


def _lines(count: int) -> str:
    return "\n".join(f"line {n}" for n in range(count))


# name: (service, fields, the service's min, max as the message must state them)
OUT_OF_RANGE = {
    "default-below-min": ("1", {"link": LINK, "quantity": 9}, 10, 100_000),
    "default-above-max": ("1", {"link": LINK, "quantity": 100_001}, 10, 100_000),
    "default-zero": ("2", {"link": LINK, "quantity": 0}, 10, 50_000),
    "default-negative": ("3", {"link": LINK, "quantity": -20}, 20, 200_000),
    "default-huge": ("3", {"link": LINK, "quantity": 10**30}, 20, 200_000),
    "drip-feed-run-below-min": (
        "16", {"link": LINK, "quantity": 99, "runs": 2, "interval": 5}, 100, 10_000_000,
    ),
    "drip-feed-total-above-max": (
        "16", {"link": LINK, "quantity": 5_000_001, "runs": 2, "interval": 5}, 100, 10_000_000,
    ),
    "custom-comments-too-few-lines": ("5", {"link": LINK, "comments": _lines(4)}, 5, 1000),
    "mentions-with-hashtags": (
        "6", {"link": LINK, "quantity": 99, "usernames": "a", "hashtags": "#b"}, 100, 50_000,
    ),
    "mentions-custom-list-too-few": ("7", {"link": LINK, "usernames": _lines(9)}, 10, 10_000),
    "mentions-hashtag": ("8", {"link": LINK, "quantity": 100_001, "hashtag": "#x"}, 100, 100_000),
    "mentions-user-followers": (
        "9", {"link": LINK, "quantity": 99, "username": "alice"}, 100, 100_000,
    ),
    "mentions-media-likers": ("10", {"link": LINK, "quantity": 1, "media": LINK}, 100, 100_000),
    "subscriptions-max-above": (
        "11", {"username": "alice", "min": 50, "max": 10_001, "delay": 5}, 50, 10_000,
    ),
    "subscriptions-min-below": (
        "11", {"username": "alice", "min": 49, "max": 100, "delay": 5}, 50, 10_000,
    ),
    "comment-likes": ("12", {"link": LINK, "quantity": 19, "username": "bob"}, 20, 20_000),
    "poll": ("13", {"link": LINK, "quantity": 50_001, "answer_number": 1}, 100, 50_000),
    "comment-replies-too-many": (
        "14", {"link": LINK, "username": "alice", "comments": _lines(501)}, 1, 500,
    ),
    "invites-from-groups": ("15", {"link": LINK, "quantity": 99, "groups": "g1"}, 100, 20_000),
}


@pytest.mark.parametrize("name", list(OUT_OF_RANGE))
async def test_quantity_out_of_range(
    name: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A billed quantity (or line count) outside the service's min..max: 422
    BOOST_QUANTITY_OUT_OF_RANGE whose message states the min and the max; nothing is recorded."""
    service_id, fields, minimum, maximum = OUT_OF_RANGE[name]
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    response, _ = await post_order(client, key, service_id, fields)
    assert response.status_code == 422, response.text
    error = response.json()
    assert set(error) == {"success", "status", "message", "code"}
    assert (error["status"], error["code"]) == (422, "BOOST_QUANTITY_OUT_OF_RANGE")
    assert f"between {minimum} and {maximum}" in error["message"]
    await assert_nothing_recorded(pool, account_id)


# name: (service, fields, the fields `errors` must name)
FIELD_ERRORS = {
    "default-runs-without-interval": (
        "1", {"link": LINK, "quantity": 100, "runs": 2}, {"interval"},
    ),
    "default-one-run": ("1", {"link": LINK, "quantity": 100, "runs": 1, "interval": 5}, {"runs"}),
    # The catalog says service 3 has no drip-feed (and service 2's listing leaves it out): the
    # provider would refuse the order, so checkout must not charge for it.
    "default-drip-feed-not-offered": (
        "3", {"link": LINK, "quantity": 100, "runs": 2, "interval": 5}, {"runs", "interval"},
    ),
    "default-drip-feed-not-listed": (
        "2", {"link": LINK, "quantity": 100, "runs": 3}, {"runs"},
    ),
    "package-with-quantity": ("4", {"link": LINK, "quantity": 1}, {"quantity"}),
    "custom-comments-not-text": ("5", {"link": LINK, "comments": ["a", "b"]}, {"comments"}),
    "mentions-with-hashtags-no-hashtags": (
        "6", {"link": LINK, "quantity": 150, "usernames": "a"}, {"hashtags"},
    ),
    "mentions-with-hashtags-no-usernames": (
        "6", {"link": LINK, "quantity": 150, "hashtags": "#a"}, {"usernames"},
    ),
    "mentions-custom-list-not-text": ("7", {"link": LINK, "usernames": 12}, {"usernames"}),
    "mentions-hashtag-no-hashtag": ("8", {"link": LINK, "quantity": 100}, {"hashtag"}),
    "mentions-user-followers-no-username": ("9", {"link": LINK, "quantity": 100}, {"username"}),
    "mentions-media-likers-no-media": ("10", {"link": LINK, "quantity": 100}, {"media"}),
    "mentions-media-likers-bad-media": (
        "10", {"link": LINK, "quantity": 100, "media": "not a url"}, {"media"},
    ),
    "subscriptions-no-delay": ("11", {"username": "a", "min": 50, "max": 100}, {"delay"}),
    "subscriptions-no-username": ("11", {"min": 50, "max": 100, "delay": 5}, {"username"}),
    "subscriptions-no-max": ("11", {"username": "a", "min": 50, "delay": 5}, {"max"}),
    "subscriptions-bad-delay": (
        "11", {"username": "a", "min": 50, "max": 100, "delay": 7}, {"delay"},
    ),
    "subscriptions-bad-expiry": (
        "11", {"username": "a", "min": 50, "max": 100, "delay": 5, "expiry": "31/02/2027"},
        {"expiry"},
    ),
    "subscriptions-min-above-max": (
        "11", {"username": "a", "min": 200, "max": 100, "delay": 5}, {"min"},
    ),
    "subscriptions-with-link": (
        "11", {"username": "a", "min": 50, "max": 100, "delay": 5, "link": LINK}, {"link"},
    ),
    "comment-likes-no-username": ("12", {"link": LINK, "quantity": 100}, {"username"}),
    "poll-no-answer": ("13", {"link": LINK, "quantity": 100}, {"answer_number"}),
    "poll-answer-zero": (
        "13", {"link": LINK, "quantity": 100, "answer_number": 0}, {"answer_number"},
    ),
    "comment-replies-no-username": ("14", {"link": LINK, "comments": "hi"}, {"username"}),
    "invites-from-groups-no-groups": ("15", {"link": LINK, "quantity": 100}, {"groups"}),
    "invites-from-groups-bad-link": (
        "15", {"quantity": 100, "groups": "g", "link": "t.me/x"}, {"link"},
    ),
}


@pytest.mark.parametrize("name", list(FIELD_ERRORS))
async def test_type_field_errors(
    name: str, pool: asyncpg.Pool[Any], client: httpx.AsyncClient
) -> None:
    """A field the type requires missing (or invalid, or foreign to the type): 422
    VALIDATION_FAILED whose `errors` names exactly those fields; nothing is recorded."""
    service_id, fields, bad_fields = FIELD_ERRORS[name]
    account_id, key = await open_funded_account(pool, FUNDS_KOBO)
    response, _ = await post_order(client, key, service_id, fields)
    assert response.status_code == 422, response.text
    error = response.json()
    assert (error["success"], error["status"], error["code"]) == (False, 422, "VALIDATION_FAILED")
    assert error["message"] == "One or more request fields are missing or invalid."
    assert set(error["errors"]) == bad_fields
    for messages in error["errors"].values():
        assert messages and all(isinstance(text, str) and text for text in messages)
    await assert_nothing_recorded(pool, account_id)
