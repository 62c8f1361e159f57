"""The priced catalog: provider services turned into NGN rates, and operators' pinned rates.

A sync records a ``ServiceSynced`` only for a service whose terms changed, and a
``ServiceDelisted`` for one the provider no longer lists; orders keep their own snapshot. An entry
of the provider's reply that could not be read, or one past ``MAX_SERVICES``, leaves its service
as it was (see ``decide_sync``). An id offered twice is one service: synced once on the same
terms, not sold on terms that differ (see ``_synced``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import msgspec

from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    SERVICE_TERMS,
    Event,
    ServiceDelisted,
    ServiceRatePinned,
    ServiceSynced,
    service_stream,
)
from boost_ledger.ledger.money import ngn_rate_per_1000_kobo
from boost_ledger.ledger.order_types import MAX_QUANTITY, SERVICE_TYPES, is_flat
from boost_ledger.ledger.store import NewEvent

MAX_SERVICES = 5000
"""The most offers one sync processes; a longer listing is cut there (reported in ``cut``)."""
UNREADABLE_ID = "(no id)"
"""How a report names a skipped entry whose id could not be read."""


MAX_RATE_PER_1000_KOBO = 10**13
"""The highest NGN rate per 1000 a service may have (100,000,000,000.00), pinned or synced."""
SYNC_LOCK = "select pg_advisory_xact_lock(hashtext('catalog-sync'))"
"""Taken by a sync and by a pin, in their transactions: one changes the catalog at a time."""


class ProviderOffer(msgspec.Struct, frozen=True, kw_only=True):
    """What the provider lists for one service (the upstream client's view, decoupled)."""

    service: str
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool = False


class SyncReport(msgspec.Struct, frozen=True):
    listed: int
    changed: int
    delisted: int
    skipped: list[str]
    cut: int = 0
    """How many offers past ``MAX_SERVICES`` were left unprocessed (their services as they were)."""
    below_cost: list[str] = msgspec.field(default_factory=list)
    """Listed services whose pinned rate is below what the provider charges us for them (its
    rate at the FX rate, no markup): each of their orders is sold at a loss."""


class ServiceUnknown(LookupError):
    pass


def synced_event(offer: ProviderOffer, fx_rate: Decimal, markup_percent: Decimal) -> ServiceSynced:
    """The offer at our price; ValueError when it cannot be priced or no quantity of it can be
    ordered (see ``_quantities``)."""
    min_quantity, max_quantity = _quantities(offer)
    return ServiceSynced(
        service_id=offer.service,
        provider_service_id=offer.service,
        name=offer.name[:200],
        category=offer.category[:200],
        type=offer.type,
        provider_rate=str(offer.rate),
        rate_per_1000_kobo=ngn_rate_per_1000_kobo(offer.rate, fx_rate, markup_percent),
        min_quantity=min_quantity,
        max_quantity=max_quantity,
        refill=offer.refill,
        cancel=offer.cancel,
        dripfeed=offer.dripfeed,
    )


def _quantities(offer: ProviderOffer) -> tuple[int, int]:
    """The range of quantities we sell: the provider's, within 1 to ``MAX_QUANTITY``.

    A range that holds no quantity (a minimum above the maximum, or above ``MAX_QUANTITY``) is
    an offer no order can meet: every one would be refused upstream (ValueError; the offer is
    not sold). Raising the maximum to the minimum, as was done, listed such a service at
    quantities the provider refuses, and a minimum past a database integer failed the whole
    sync. A Package's range is never checked (one package is ordered), so it is only bounded.
    """
    minimum, maximum = max(1, offer.min), min(offer.max, MAX_QUANTITY)
    if is_flat(offer.type):
        minimum = min(minimum, MAX_QUANTITY)
        return minimum, max(minimum, maximum)
    if minimum > maximum:
        raise ValueError(f"no quantity from {offer.min} to {offer.max} can be ordered")
    return minimum, maximum


def decide_sync(
    current: Mapping[str, Mapping[str, Any]],
    offers: Sequence[ProviderOffer],
    fx_rate: Decimal,
    markup_percent: Decimal,
    unread: Sequence[str | None] = (),
) -> tuple[list[Event], list[str]]:
    """Events that bring the catalog in line with the offers, and the entries skipped: the
    offers that cannot be sold (delisted were they listed), then the entries of the reply that
    could not be read (``unread``: their ids, None for one whose id could not be read either).

    Only the first ``MAX_SERVICES`` offers are processed. A listed service is delisted only when
    the reply shows it withdrawn, so two kinds are kept as they are, neither synced nor
    delisted: one whose entry could not be read (an entry we could not read is not one the
    provider withdrew), and one offered past the cap (still offered). When an entry's id could
    not be read, no service missing from the reply is delisted (it may be that one); those the
    reply offers on terms that cannot be sold still are.
    """
    events, skipped, offered = _synced(current, offers[:MAX_SERVICES], fx_rate, markup_percent)
    kept = offered.union(unread, (offer.service for offer in offers[MAX_SERVICES:]))
    unsellable = set(skipped)  # in the reply, on terms that cannot be sold
    events += [
        ServiceDelisted(service_id=service_id)
        for service_id, row in current.items()
        if row["listed"]
        and service_id not in kept
        and (None not in unread or service_id in unsellable)
    ]
    return events, skipped + [UNREADABLE_ID if entry is None else entry for entry in unread]


def _synced(
    current: Mapping[str, Mapping[str, Any]],
    offers: Sequence[ProviderOffer],
    fx_rate: Decimal,
    markup_percent: Decimal,
) -> tuple[list[Event], list[str], set[str]]:
    """The events of the offers whose terms changed, the offers skipped, and those offered.

    An id the reply offers more than once is one service: on the same terms (its name and
    category aside, taken from its first entry), it is synced once
    (two events for one stream at one version failed the whole sync); on terms that differ, we
    cannot know the price the provider will charge, so it is skipped as an offer that cannot be
    sold (delisted were it listed)."""
    terms: dict[str, ServiceSynced | None] = {}
    contradicted: set[str] = set()
    for offer in offers:
        event = _sellable(offer, fx_rate, markup_percent)
        if offer.service not in terms:
            terms[offer.service] = event
        elif not _same_terms(terms[offer.service], event):
            contradicted.add(offer.service)
    events: list[Event] = []
    skipped: list[str] = []
    offered: set[str] = set()
    for service_id, event in terms.items():
        if event is None or service_id in contradicted:  # not sold: delisted if it was listed
            skipped.append(service_id)
            continue
        offered.add(service_id)
        existing = current.get(service_id)
        if existing is None or not existing["listed"] or _terms(existing) != _event_terms(event):
            events.append(event)
    return events, skipped, offered


def _sellable(
    offer: ProviderOffer, fx_rate: Decimal, markup_percent: Decimal
) -> ServiceSynced | None:
    """The offer as a service at our price, or None when it cannot be sold."""
    if offer.type not in SERVICE_TYPES or not usable_service_id(offer.service):
        return None
    return _priced(offer, fx_rate, markup_percent)


MAX_SERVICE_ID_CHARS = 64


def usable_service_id(service_id: str) -> bool:
    """Whether a client can name the service in every endpoint that takes an id: 1 to
    ``MAX_SERVICE_ID_CHARS`` printable characters, not all blank (checkout reads a blank
    service_id as missing) and no path of its own (``/boost/services/{id}`` takes no "/", and
    clients resolve "." and ".."). An id that failed this was listed, and then could not be
    bought or looked up."""
    return (
        0 < len(service_id) <= MAX_SERVICE_ID_CHARS
        and service_id.isprintable()
        and bool(service_id.strip())
        and "/" not in service_id
        and service_id not in (".", "..")
    )


def _same_terms(first: ServiceSynced | None, second: ServiceSynced | None) -> bool:
    """Whether two offers of one id sell on the same terms (a rate of "0.9" is the rate "0.90"):
    its name and category are only shown, so one listed under two categories is listed under
    the first."""
    if first is None or second is None:
        return first is second
    same_rate = Decimal(first.provider_rate) == Decimal(second.provider_rate)
    shown = {"provider_rate": first.provider_rate, "name": first.name, "category": first.category}
    return same_rate and msgspec.structs.replace(second, **shown) == first


def _priced(
    offer: ProviderOffer, fx_rate: Decimal, markup_percent: Decimal
) -> ServiceSynced | None:
    """The offer as a service at our price, or None when it cannot be sold: a rate that
    cannot be priced (negative, or not exactly computable), a price below a kobo per 1000
    (nothing is sold for nothing) or above what a pin may set, or a range of quantities that
    holds none."""
    try:
        event = synced_event(offer, fx_rate, markup_percent)
    except ValueError:
        return None
    return event if 1 <= event.rate_per_1000_kobo <= MAX_RATE_PER_1000_KOBO else None


_TERMS = SERVICE_TERMS


def _terms(row: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in _TERMS)


def _event_terms(event: ServiceSynced) -> tuple[Any, ...]:
    return tuple(getattr(event, name) for name in _TERMS)


async def sync(
    connection: Connection,
    offers: Sequence[ProviderOffer],
    fx_rate: Decimal,
    markup_percent: Decimal,
    unread: Sequence[str | None] = (),
) -> SyncReport:
    """Apply one provider listing to the catalog in one transaction (one sync at a time);
    ``unread`` names the entries of the listing that could not be read (see ``decide_sync``)."""
    async with connection.transaction():
        await connection.execute(SYNC_LOCK)
        rows = await connection.fetch(
            f"select service_id, listed, version, {', '.join(_TERMS)} from services"
        )
        current = {row["service_id"]: row for row in rows}
        events, skipped = decide_sync(current, offers, fx_rate, markup_percent, unread)
        new_events = []
        for event in events:
            service_id = getattr(event, "service_id")  # noqa: B009 - both kinds carry it
            version = current[service_id]["version"] + 1 if service_id in current else 1
            new_events.append(
                NewEvent(stream_id=service_stream(service_id), version=version, event=event)
            )
        for start in range(0, len(new_events), 100):
            await commit(connection, new_events[start : start + 100], {"actor": "catalog-sync"})
        below_cost = await _pinned_below_cost(connection, fx_rate)
    return _report(offers, events, skipped, len(unread), below_cost)


async def _pinned_below_cost(connection: Connection, fx_rate: Decimal) -> list[str]:
    """The listed services whose pin sells them for less than the provider charges us: a pin
    is the operator's to set (a promotion, say), but a provider's rise past it is worth saying."""
    rows = await connection.fetch(
        "select service_id, provider_rate, pinned_rate_kobo from services"
        " where listed and pinned_rate_kobo is not null"
        " order by length(service_id), service_id limit $1",
        MAX_SERVICES,
    )
    return [
        row["service_id"]
        for row in rows
        if row["pinned_rate_kobo"] < _cost_kobo(row["provider_rate"], fx_rate)
    ]


def _cost_kobo(provider_rate: str, fx_rate: Decimal) -> int:
    """What 1000 of a service cost us in kobo (no markup); 0 when it cannot be priced, which a
    listed service's rate always can."""
    try:
        return ngn_rate_per_1000_kobo(Decimal(provider_rate), fx_rate, Decimal(0))
    except (ValueError, ArithmeticError):
        return 0


def _report(
    offers: Sequence[ProviderOffer],
    events: list[Event],
    skipped: list[str],
    unread: int,
    below_cost: list[str],
) -> SyncReport:
    delisted = sum(isinstance(event, ServiceDelisted) for event in events)
    processed = offers[:MAX_SERVICES]
    cut = len(offers) - len(processed)
    # ``skipped`` holds the processed ids skipped (each once), then the unread entries.
    listed = len({offer.service for offer in processed}) - (len(skipped) - unread)
    return SyncReport(listed, len(events) - delisted, delisted, skipped, cut, below_cost)


async def pin_rate(connection: Connection, service_id: str, rate_per_1000_kobo: int | None) -> None:
    """Fix (or, with ``None``, release) a service's NGN rate per 1000."""
    # Never 0: an order of a free service would debit 0 kobo, which no wallet event may hold.
    if rate_per_1000_kobo is not None and not 1 <= rate_per_1000_kobo <= MAX_RATE_PER_1000_KOBO:
        raise ValueError("the rate must be between 0.01 and 100000000000.00")
    async with connection.transaction():
        # The sync's lock: a pin committed between a sync's read and its write would make the
        # sync's events conflict with it.
        await connection.execute(SYNC_LOCK)
        version = await connection.fetchval(
            "select version from services where service_id = $1 for update", service_id
        )
        if version is None:
            raise ServiceUnknown(service_id)
        event = ServiceRatePinned(service_id=service_id, rate_per_1000_kobo=rate_per_1000_kobo)
        await commit(
            connection,
            [NewEvent(stream_id=service_stream(service_id), version=version + 1, event=event)],
            {"actor": "operator"},
        )
