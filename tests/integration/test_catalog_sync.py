"""The catalog sync against what a provider may list, and beside an operator's pin: an offer
that cannot be priced is skipped, an entry that cannot be read or one past the cap leaves its
service as it was, the worker outlives any error, and a pin waits for a sync."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import msgspec
import pytest
import support
from structlog.testing import capture_logs
from support import make_pool, seed_catalog, simulator_offers

from boost_ledger.ledger import catalog
from boost_ledger.upstream import parsing
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.sim_catalog import CATALOG
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


def test_a_listed_service_whose_entry_cannot_be_read_is_kept_as_it_is() -> None:
    """An entry we could not read is not one the provider withdrew: its service is neither
    synced nor delisted, the entry is reported skipped, and every other offer is priced."""
    offers = [offer for offer in simulator_offers() if offer.service != "17"]
    listed = {"17": {"listed": True}, "gone": {"listed": True}}

    events, skipped = catalog.decide_sync(listed, offers, FX, MARKUP, ["17"])

    assert skipped == ["17"]
    delisted = [event for event in events if isinstance(event, catalog.ServiceDelisted)]
    assert [event.service_id for event in delisted] == ["gone"]
    synced = {event.service_id for event in events if isinstance(event, catalog.ServiceSynced)}
    assert synced == {offer.service for offer in offers}


def test_an_entry_without_a_readable_id_delists_nothing() -> None:
    """When an entry's id could not be read, any listed service missing from the reply may be
    that entry: nothing is delisted, the rest is synced, and the entry is reported skipped."""
    offers = [offer for offer in simulator_offers() if offer.service != "17"]

    events, skipped = catalog.decide_sync({"17": {"listed": True}}, offers, FX, MARKUP, [None])

    assert skipped == [catalog.UNREADABLE_ID]
    assert not any(isinstance(event, catalog.ServiceDelisted) for event in events)
    assert len(events) == len(offers)


def test_an_entry_without_a_readable_id_still_lets_an_unsellable_offer_be_delisted() -> None:
    """An offer the reply makes on terms that cannot be sold is in the reply: delisted though
    another entry's id could not be read (only the services missing from it are kept)."""
    offers = [
        msgspec.structs.replace(offer, rate=Decimal("-1")) if offer.service == "17" else offer
        for offer in simulator_offers() if offer.service != "16"
    ]
    listed = {"17": {"listed": True}, "16": {"listed": True}}

    events, skipped = catalog.decide_sync(listed, offers, FX, MARKUP, [None])

    assert skipped == ["17", catalog.UNREADABLE_ID]
    delisted = [event for event in events if isinstance(event, catalog.ServiceDelisted)]
    assert [event.service_id for event in delisted] == ["17"]


def test_a_listing_cut_at_the_cap_delists_nothing_past_it() -> None:
    """Only the first MAX_SERVICES offers are processed; a listed service offered past them is
    still offered, so it is kept as it is, while one missing from the whole reply is delisted."""
    template = simulator_offers()[0]
    offers = [
        msgspec.structs.replace(template, service=f"f{number}")
        for number in range(catalog.MAX_SERVICES)
    ] + [msgspec.structs.replace(template, service="17")]
    listed = {"17": {"listed": True}, "gone": {"listed": True}}

    events, skipped = catalog.decide_sync(listed, offers, FX, MARKUP)

    assert skipped == []
    delisted = [event for event in events if isinstance(event, catalog.ServiceDelisted)]
    assert [event.service_id for event in delisted] == ["gone"]
    synced = [event for event in events if isinstance(event, catalog.ServiceSynced)]
    assert len(synced) == catalog.MAX_SERVICES and "17" not in {e.service_id for e in synced}


@pytest.fixture
async def own_pool(test_server: support.TestServer) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A database of the test's own, seeded with the simulator's catalog."""
    created = await make_pool(await test_server.fresh_database(), max_size=2)
    await seed_catalog(created)
    yield created
    await created.close()


def _panel(entries: list[dict[str, Any]] | bytes) -> ProviderClient:
    """A provider whose services reply is ``entries`` (or these bytes), without a network."""
    body = entries if isinstance(entries, bytes) else msgspec.json.encode(entries)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=body))
    return ProviderClient("https://panel.test/api/v2", "k", transport=transport, backoff_s=0)


async def _services(pool: asyncpg.Pool[Any]) -> dict[str, asyncpg.Record]:
    rows = await pool.fetch("select * from services")
    return {row["service_id"]: row for row in rows}


async def _sync_logged(
    pool: asyncpg.Pool[Any], entries: list[dict[str, Any]] | bytes
) -> tuple[catalog.SyncReport, list[dict[str, Any]]]:
    """One sync of a panel answering ``entries``: its report and what it logged."""
    provider = _panel(entries)
    try:
        with capture_logs() as logged:
            report = await catalog_sync.sync_once(pool, provider, FX, MARKUP)
    finally:
        await provider.aclose()
    return report, logged


async def test_a_sync_lists_what_it_can_read_and_keeps_what_it_cannot(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """One garbled entry (a null rate) no longer fails the whole sync: the other entries are
    synced (null flags and a null name read as missing), the garbled one is logged and reported
    skipped, and its listed service stays as it was."""
    entries = [entry.to_wire() for entry in CATALOG]
    for entry in entries:
        if entry["service"] == 17:
            entry["rate"] = None
        if entry["service"] == 1:
            entry.update(name=None, refill=None, cancel=None, dripfeed=None)
    before = await _services(own_pool)
    report, logged = await _sync_logged(own_pool, entries)

    assert (report.skipped, report.delisted, report.changed) == (["17"], 0, 1)
    after = await _services(own_pool)
    assert after["17"] == before["17"] and after["17"]["listed"]
    assert (after["1"]["name"], after["1"]["cancel"], after["1"]["dripfeed"]) == ("", False, False)
    warning = next(line for line in logged if line["event"] == "catalog.entries_unreadable")
    assert warning["count"] == 1 and warning["first"][0]["service"] == "17"


async def test_a_sync_cut_at_the_cap_reports_it_and_keeps_the_tail(
    own_pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply longer than the cap is cut there: the services past it stay listed as they were,
    and the cut is logged and reported."""
    entries = [entry.to_wire() for entry in CATALOG]
    monkeypatch.setattr(catalog, "MAX_SERVICES", len(entries) - 2)
    for entry in entries[-2:]:
        entry["rate"] = "1000"  # new terms, which a cut sync does not reach
    before = await _services(own_pool)
    report, logged = await _sync_logged(own_pool, entries)

    assert (report.cut, report.listed) == (2, len(entries) - 2)
    assert (report.changed, report.delisted, report.skipped) == (0, 0, [])
    assert await _services(own_pool) == before
    cut = next(line for line in logged if line["event"] == "catalog.cut")
    assert (cut["offered"], cut["processed"]) == (len(entries), len(entries) - 2)


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


async def test_a_nul_in_a_services_reply_is_read_as_a_replacement_character(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """An entry whose name carries a NUL (``\\u0000``) is synced with U+FFFD in its place, and
    the rest with it (no PostgreSQL text holds a NUL: the entry's event failed to append, and
    with it the whole sync, at every interval)."""
    entries = [entry.to_wire() for entry in CATALOG]
    for entry in entries:
        if entry["service"] == 1:
            entry["name"] = "Followers\x00 fast"
    report, _ = await _sync_logged(own_pool, entries)
    assert (report.skipped, report.listed, report.changed) == ([], len(entries), 1)
    assert (await _services(own_pool))["1"]["name"] == "Followers\ufffd fast"


async def test_a_json_number_past_any_decimal_leaves_its_entry_as_it_was(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """An entry whose rate is a JSON number no Decimal holds (``1e9999999999999999999``) is
    unreadable, its listed service kept as it was, and the rest is synced: the number raised
    decimal.InvalidOperation out of the decoder and failed the whole sync, at every interval."""
    entries = [entry.to_wire() for entry in CATALOG]
    for entry in entries:
        if entry["service"] == 17:
            entry["rate"] = "HUGE"
        if entry["service"] == 1:
            entry["rate"] = "5"
    body = msgspec.json.encode(entries).replace(b'"HUGE"', b"1e9999999999999999999")
    before = await _services(own_pool)
    report, _ = await _sync_logged(own_pool, body)

    assert (report.skipped, report.changed, report.delisted) == (["17"], 1, 0)
    after = await _services(own_pool)
    assert after["17"] == before["17"] and after["17"]["listed"]
    assert after["1"]["provider_rate"] == "5"


async def test_an_id_offered_twice_on_the_same_terms_is_synced_once(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A reply that lists one id twice on the same terms (a rate of "7.5" is one of "7.50"; a
    name and a category are only shown, the first entry's kept) is synced as one service, new
    or changed: the two events for one stream at one version failed
    the whole sync (a ConcurrencyConflict), at every interval."""
    entries = [entry.to_wire() for entry in CATALOG]
    new = {**entries[0], "service": 999, "rate": "7.5"}
    changed = {**entries[1], "rate": "3"}
    # Under another category and name, but on the same terms: shown as the first entry says.
    elsewhere = {**new, "rate": "7.50", "category": "Elsewhere", "name": "Another name"}
    entries += [new, elsewhere, changed, changed]
    entries[1] = changed
    report, _ = await _sync_logged(own_pool, entries)

    assert (report.listed, report.changed, report.delisted, report.skipped) == (
        len(CATALOG) + 1, 2, 0, []
    )
    after = await _services(own_pool)
    assert after["999"]["listed"] and after["999"]["provider_rate"] == "7.5"
    assert after["999"]["category"] == new["category"] != "Elsewhere"
    assert after[str(changed["service"])]["provider_rate"] == "3"


async def test_an_id_offered_twice_on_different_terms_is_not_sold(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A reply that lists one id twice at two rates leaves the price the provider will charge
    unknown: the id is skipped as an offer that cannot be sold, delisted were it listed (a new
    one is not listed), and the rest is synced."""
    entries = [entry.to_wire() for entry in CATALOG]
    seventeen = next(entry for entry in entries if entry["service"] == 17)
    new = {**entries[0], "service": 999}
    entries += [{**seventeen, "rate": "9"}, new, {**new, "min": "20"}]
    report, _ = await _sync_logged(own_pool, entries)

    assert (report.skipped, report.delisted, report.changed) == (["17", "999"], 1, 0)
    assert report.listed == len(CATALOG) - 1
    after = await _services(own_pool)
    assert not after["17"]["listed"] and "999" not in after


@pytest.mark.parametrize(
    ("minimum", "maximum"), [("5000000000", "5000000000"), ("2000000", "100000"), ("10", "0")]
)
async def test_an_offer_whose_range_holds_no_quantity_is_not_sold(
    own_pool: asyncpg.Pool[Any], minimum: str, maximum: str
) -> None:
    """A minimum above the maximum, or above any quantity we sell (10**9), leaves no quantity
    an order can have: the offer is skipped and its service delisted, and the rest is synced.
    The maximum was raised to the minimum, which listed the service at quantities the provider
    refuses; and a minimum past a database integer failed the whole sync (a DataError)."""
    entries = [entry.to_wire() for entry in CATALOG]
    entries[0].update(min=minimum, max=maximum)
    entries[1]["rate"] = "3"
    report, _ = await _sync_logged(own_pool, entries)

    assert (report.skipped, report.delisted, report.changed) == (["1"], 1, 1)
    after = await _services(own_pool)
    assert not after["1"]["listed"] and after["2"]["provider_rate"] == "3"


async def test_a_package_is_listed_whatever_its_range(own_pool: asyncpg.Pool[Any]) -> None:
    """A Package is ordered once, its range never checked: one listed with a range that holds
    no quantity, or one past any integer, is synced with a bounded range."""
    entries = [entry.to_wire() for entry in CATALOG]
    package = next(entry for entry in entries if entry["type"] == "Package")
    package.update(min="5000000000", max="0")
    report, _ = await _sync_logged(own_pool, entries)

    assert (report.skipped, report.delisted, report.changed) == ([], 0, 1)
    row = (await _services(own_pool))[str(package["service"])]
    assert row["listed"] and (row["min_quantity"], row["max_quantity"]) == (10**9, 10**9)


async def test_a_reply_past_the_entries_read_syncs_what_was_read_and_delists_nothing(
    own_pool: asyncpg.Pool[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries past MAX_SERVICE_ENTRIES are not read: the services among them, and those
    missing from the reply, stay as they were; the entries read are synced."""
    monkeypatch.setattr(parsing, "MAX_SERVICE_ENTRIES", 5)
    entries = [entry.to_wire() for entry in CATALOG if entry.service_id != "17"]
    entries[0]["rate"] = "3"
    before = await _services(own_pool)
    report, _ = await _sync_logged(own_pool, entries)

    assert (report.changed, report.delisted, report.skipped) == (1, 0, [catalog.UNREADABLE_ID])
    after = await _services(own_pool)
    assert after["17"] == before["17"] and after["17"]["listed"]
    assert after[str(entries[0]["service"])]["provider_rate"] == "3"


async def test_a_sync_names_the_pinned_services_it_would_sell_at_a_loss(
    own_pool: asyncpg.Pool[Any],
) -> None:
    """A pin stays in force whatever the provider charges, so a sync names the listed services
    whose pin is now below their cost (the provider's rate at the FX rate, no markup), logs
    them at warning, and names none once the pin covers the cost again."""
    entries = [entry.to_wire() for entry in CATALOG]
    cost_kobo = int(Decimal(str(entries[0]["rate"])) * FX * 100)
    service_id = str(entries[0]["service"])
    async with own_pool.acquire() as connection:
        await catalog.pin_rate(connection, service_id, cost_kobo - 1)
    report, logged = await _sync_logged(own_pool, entries)

    assert report.below_cost == [service_id]
    warning = next(line for line in logged if line["event"] == "catalog.pinned_below_cost")
    assert (warning["count"], warning["first"]) == (1, [service_id])

    async with own_pool.acquire() as connection:
        await catalog.pin_rate(connection, service_id, cost_kobo)
    report, logged = await _sync_logged(own_pool, entries)
    assert report.below_cost == []
    assert not any(line["event"] == "catalog.pinned_below_cost" for line in logged)
