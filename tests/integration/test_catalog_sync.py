"""The catalog sync against what a provider may list, and beside an operator's pin: an offer
that cannot be priced is skipped, the worker outlives any error, and a pin waits for a sync."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import pytest
from support import seed_catalog, simulator_offers

from boost_ledger.ledger import catalog
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.workers import catalog_sync

FX, MARKUP = Decimal(1500), Decimal(20)


@pytest.mark.parametrize("rate", ["-1", "1E+20", "0.000000001"])
def test_an_offer_that_cannot_be_priced_is_skipped_and_the_rest_listed(rate: str) -> None:
    """A negative rate, one that prices above any pin's bound, and one below a kobo per 1000:
    each is skipped (and delisted were it listed); every other offer is priced as usual."""
    offers = [
        msgspec.structs.replace(offer, rate=Decimal(rate)) if offer.service == "17" else offer
        for offer in simulator_offers()
    ]
    listed = {"17": {"listed": True}}

    events, skipped = catalog.decide_sync(listed, offers, FX, MARKUP)

    assert skipped == ["17"]
    delisted = [event for event in events if isinstance(event, catalog.ServiceDelisted)]
    assert [event.service_id for event in delisted] == ["17"]
    synced = {event.service_id for event in events if isinstance(event, catalog.ServiceSynced)}
    assert synced == {offer.service for offer in offers} - {"17"}


async def test_the_sync_worker_outlives_an_unexpected_error(
    pool: asyncpg.Pool[Any], provider: ProviderClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sync that fails in a way nobody foresaw is logged and retried after a pause; the
    worker goes on and the next sync lands."""
    real_sync, calls, synced_twice = catalog.sync, [], asyncio.Event()

    async def failing_once(*arguments: Any) -> catalog.SyncReport:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("unforeseen")
        if len(calls) == 3:
            synced_twice.set()
        return await real_sync(*arguments)

    monkeypatch.setattr(catalog, "sync", failing_once)
    monkeypatch.setattr(catalog_sync, "Backoff", _Quick)
    worker = asyncio.create_task(catalog_sync.run(pool, provider, FX, MARKUP, interval_s=0.05))
    try:
        await asyncio.wait_for(synced_twice.wait(), 10)
        assert not worker.done()
    finally:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    assert await pool.fetchval("select count(*) from services where listed") > 0


class _Quick:
    """A backoff of a few milliseconds, so that the test does not wait out the real one."""

    def __init__(self, **_: Any) -> None:
        pass

    def failed(self) -> float:
        return 0.01

    def succeeded(self) -> None:
        pass


async def test_a_pin_waits_for_a_sync_in_progress(pool: asyncpg.Pool[Any]) -> None:
    """A pin takes the sync's lock: committed between a sync's read and its write, it would
    make the sync's events conflict with it. While a sync holds the lock the pin waits; then
    it lands."""
    await seed_catalog(pool)
    async with pool.acquire() as syncing, pool.acquire() as operator:
        await syncing.execute("begin")
        await syncing.execute(catalog.SYNC_LOCK)
        pin = asyncio.create_task(catalog.pin_rate(operator, "17", 250_000))
        await asyncio.sleep(0.3)
        assert not pin.done()
        await syncing.execute("commit")  # the sync's transaction ends, and its lock with it
        await asyncio.wait_for(pin, 5)
    try:
        rate = await pool.fetchval("select pinned_rate_kobo from services where service_id = '17'")
        assert rate == 250_000
    finally:
        async with pool.acquire() as connection:
            await catalog.pin_rate(connection, "17", None)
