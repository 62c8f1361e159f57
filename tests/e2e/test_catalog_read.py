"""The catalog endpoints over real HTTP: every category /boost/categories lists is one that
/boost/services?category= filters by (the spec: "Exact category name from /boost/categories")."""

from __future__ import annotations

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
