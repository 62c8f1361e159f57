"""Catalog sync: reads the provider's services and prices them into the catalog."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import asyncpg
import msgspec
import structlog

from boost_ledger.ledger import catalog
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError
from boost_ledger.upstream.models import ProviderService
from boost_ledger.upstream.parsing import UnreadableService
from boost_ledger.workers.backoff import Backoff

log = structlog.get_logger("boost.catalog")


def offer_of(service: ProviderService) -> catalog.ProviderOffer:
    return catalog.ProviderOffer(
        service=service.service,
        name=service.name,
        type=service.type,
        category=service.category,
        rate=service.rate,
        min=service.min,
        max=service.max,
        refill=service.refill,
        cancel=service.cancel,
        dripfeed=service.dripfeed,
    )


async def sync_once(
    pool: asyncpg.Pool[Any], provider: ProviderClient, fx_rate: Decimal, markup_percent: Decimal
) -> catalog.SyncReport:
    reply = await provider.services()
    _log_unreadable(reply.unreadable)
    offers = [offer_of(service) for service in reply.services]
    unread = [entry.service for entry in reply.unreadable]
    async with pool.acquire() as connection:
        report = await catalog.sync(connection, offers, fx_rate, markup_percent, unread)
    if report.cut:
        log.warning("catalog.cut", offered=len(offers), processed=catalog.MAX_SERVICES)
    if report.below_cost:
        log.warning(
            "catalog.pinned_below_cost",
            count=len(report.below_cost),
            first=report.below_cost[:_LOGGED_ENTRIES],
            hint="boost catalog price SERVICE_ID RATE (or --unpin) to sell them at a margin",
        )
    log.info(
        "catalog.synced",
        listed=report.listed,
        changed=report.changed,
        delisted=report.delisted,
        skipped=len(report.skipped),
        cut=report.cut,
    )
    return report


_LOGGED_ENTRIES = 10
"""How many unreadable entries a sync's warning shows (a garbled reply may hold thousands)."""


def _log_unreadable(entries: list[UnreadableService]) -> None:
    if entries:
        shown = [msgspec.structs.asdict(entry) for entry in entries[:_LOGGED_ENTRIES]]
        log.warning("catalog.entries_unreadable", count=len(entries), first=shown)


async def run(
    pool: asyncpg.Pool[Any],
    provider: ProviderClient,
    fx_rate: Decimal,
    markup_percent: Decimal,
    interval_s: float,
) -> None:
    backoff = Backoff(base_s=2.0, cap_s=max(2.0, interval_s))
    while True:
        try:
            await sync_once(pool, provider, fx_rate, markup_percent)
            backoff.succeeded()
            await asyncio.sleep(interval_s)
        except (ProviderError, OSError, asyncpg.PostgresError) as error:
            log.warning("catalog.sync_failed", error=str(error))
            await asyncio.sleep(backoff.failed())
        except Exception:  # a worker outlives its errors: logged, then retried after a pause
            log.exception("catalog.sync_unexpected_error")
            await asyncio.sleep(backoff.failed())
