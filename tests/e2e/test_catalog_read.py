"""The catalog endpoints over real HTTP: every category /boost/categories lists is one that
/boost/services?category= filters by (the spec: "Exact category name from /boost/categories")."""

from __future__ import annotations

import urllib.parse
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
from support import bearer, open_funded_account, simulator_offers

from boost_ledger.ledger import catalog

# Names a provider may well list: a no-break space (pasted from a web page), an emoji joined by
# a zero-width joiner, a tab. None is a control character PostgreSQL refuses (NUL).
ODD_CATEGORIES = ("Instagram\u00a0Followers", "TikTok \U0001f468\u200d\U0001f4bb Views",
                  "YouTube\tViews")


@pytest.fixture(scope="module")
async def key(pool: asyncpg.Pool[Any]) -> str:
    offers = simulator_offers()
    renamed = [msgspec.structs.replace(offer, category=category)
               for offer, category in zip(offers, ODD_CATEGORIES, strict=False)]
    async with pool.acquire() as connection:
        await catalog.sync(connection, renamed + offers[len(renamed):], Decimal("1500"),
                           Decimal("20"))
    _, secret = await open_funded_account(pool)
    return secret


async def test_every_listed_category_filters_its_services(client: httpx.AsyncClient, key: str):
    """Each name /boost/categories gives, sent back as ?category=, lists exactly the services
    of that category, however odd its characters (was: [] for any name Python does not call
    printable, such as one with a no-break space or a joined emoji)."""
    services = (await client.get("/api/v1/boost/services", headers=bearer(key))).json()["data"]
    categories = (await client.get("/api/v1/boost/categories", headers=bearer(key))).json()
    names = [category["name"] for category in categories["data"]]
    assert set(ODD_CATEGORIES) <= set(names)
    for name in names:
        response = await client.get(
            "/api/v1/boost/services", params={"category": name}, headers=bearer(key)
        )
        assert response.status_code == 200, response.text
        expected = [service for service in services if service["category"] == name]
        assert response.json()["data"] == expected, name


ODD_IDS = (" ", "x\ty", "a/b", "..")


@pytest.fixture(scope="module")
async def odd_ids(pool: asyncpg.Pool[Any], key: str) -> tuple[str, catalog.SyncReport]:
    """The catalog with the simulator's first offer also listed under ids no client can use
    everywhere: blank, with a tab, with a slash, a path's parent."""
    offers = simulator_offers()
    odd = [msgspec.structs.replace(offers[0], service=service_id) for service_id in ODD_IDS]
    async with pool.acquire() as connection:
        report = await catalog.sync(connection, offers + odd, Decimal("1500"), Decimal("20"))
    return key, report


async def test_every_listed_service_can_be_looked_up_and_ordered(
    client: httpx.AsyncClient, odd_ids: tuple[str, catalog.SyncReport]
):
    """Every service /boost/services lists has a details page and is priced by checkout (201,
    or 402 for this wallet): a blank id was listed and refused by checkout as missing (422), and
    one with a tab or a slash (or "..") had no details page (404)."""
    key, report = odd_ids
    headers = bearer(key)
    services = (await client.get("/api/v1/boost/services", headers=headers)).json()["data"]
    for number, service in enumerate(services):
        service_id = service["service_id"]
        path = "/api/v1/boost/services/" + urllib.parse.quote(service_id, safe="")
        details = await client.get(path, headers=headers)
        assert details.status_code == 200 and details.json()["data"] == service, service_id
        order = await client.post("/api/v1/boost/orders", headers=headers, json={
            "service_id": service_id, "link": "https://instagram.com/p/x", "quantity": 1,
            "idempotency_key": f"odd-ids-{number}",
        })  # fmt: skip
        # The body suits few types, so most are refused, but never for want of the service.
        refusal = order.json()
        assert refusal.get("code") != "BOOST_SERVICE_NOT_FOUND", service_id
        assert "service_id" not in refusal.get("errors", {}), (service_id, order.text)
    assert report.skipped == list(ODD_IDS)


async def test_a_category_given_twice_is_refused(client: httpx.AsyncClient, key: str):
    """?category=A&category=B is ambiguous, as a parameter of the orders list given twice is
    (the last one silently won: it listed B's services alone): 422 VALIDATION_FAILED naming
    the parameter, whichever the order."""
    categories = (await client.get("/api/v1/boost/categories", headers=bearer(key))).json()
    first, second = (item["name"] for item in categories["data"][:2])
    for pair in ((first, second), (second, first)):
        response = await client.get("/api/v1/boost/services", headers=bearer(key),
                                    params=[("category", pair[0]), ("category", pair[1])])
        assert response.status_code == 422, response.text
        error = response.json()
        assert (error["status"], error["code"]) == (422, "VALIDATION_FAILED")
        assert error["errors"] == {"category": ["The category parameter appears more than once."]}
