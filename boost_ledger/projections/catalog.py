"""Read model of the priced catalog, from the ``service-<id>`` streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    SERVICE_TERMS,
    RecordedEvent,
    ServiceDelisted,
    ServiceRatePinned,
    ServiceSynced,
)
from boost_ledger.projections.bulk import State, TableSpec

NAME = "catalog"
TABLES = ("services",)
EVENT_TYPES = frozenset({"ServiceSynced", "ServiceDelisted", "ServiceRatePinned"})


async def apply(
    connection: Connection, record: RecordedEvent, batch: Sequence[RecordedEvent] = ()
) -> None:
    """Update the read model for ``record``; ``batch`` is everything appended with it."""
    event = record.event
    if isinstance(event, ServiceSynced):
        await connection.execute(
            """
            insert into services (service_id, provider_service_id, name, category, type,
                provider_rate, rate_per_1000_kobo, min_quantity, max_quantity, refill, cancel,
                dripfeed, listed, version, updated_at)
            values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, true, $13, $14)
            on conflict (service_id) do update set
                provider_service_id = excluded.provider_service_id, name = excluded.name,
                category = excluded.category, type = excluded.type,
                provider_rate = excluded.provider_rate,
                rate_per_1000_kobo = excluded.rate_per_1000_kobo,
                min_quantity = excluded.min_quantity, max_quantity = excluded.max_quantity,
                refill = excluded.refill, cancel = excluded.cancel,
                dripfeed = excluded.dripfeed, listed = true, version = excluded.version,
                updated_at = excluded.updated_at
            """,
            event.service_id,
            event.provider_service_id,
            event.name,
            event.category,
            event.type,
            event.provider_rate,
            event.rate_per_1000_kobo,
            event.min_quantity,
            event.max_quantity,
            event.refill,
            event.cancel,
            event.dripfeed,
            record.version,
            record.recorded_at,
        )
    elif isinstance(event, ServiceDelisted):
        await connection.execute(
            "update services set listed = false, version = $2, updated_at = $3"
            " where service_id = $1",
            event.service_id,
            record.version,
            record.recorded_at,
        )
    elif isinstance(event, ServiceRatePinned):
        await connection.execute(
            "update services set pinned_rate_kobo = $2, version = $3, updated_at = $4"
            " where service_id = $1",
            event.service_id,
            event.rate_per_1000_kobo,
            record.version,
            record.recorded_at,
        )


# ---- the same read model as a pure fold, for set-based replays (see projections/bulk.py) ----

BULK_TABLES = (
    TableSpec(
        name="services",
        partition="service_id",
        key=("service_id",),
        columns=(
            "service_id",
            "provider_service_id",
            "name",
            "category",
            "type",
            "provider_rate",
            "rate_per_1000_kobo",
            "pinned_rate_kobo",
            "min_quantity",
            "max_quantity",
            "refill",
            "cancel",
            "dripfeed",
            "listed",
            "version",
            "updated_at",
        ),
    ),
)

_SYNCED = SERVICE_TERMS


def touches(record: RecordedEvent) -> list[tuple[str, Any]]:
    return [("services", getattr(record.event, "service_id"))]  # noqa: B009


def fold(state: State, record: RecordedEvent) -> None:
    event = record.event
    services = state["services"]
    if isinstance(event, ServiceSynced):
        row = services.setdefault(
            event.service_id, {"service_id": event.service_id, "pinned_rate_kobo": None}
        )
        row.update({name: getattr(event, name) for name in _SYNCED})
        row["listed"] = True
    else:
        existing = services.get(getattr(event, "service_id"))  # noqa: B009
        if existing is None:
            return  # the inline update touches no row either
        row = existing
        if isinstance(event, ServiceDelisted):
            row["listed"] = False
        elif isinstance(event, ServiceRatePinned):
            row["pinned_rate_kobo"] = event.rate_per_1000_kobo
    row["version"] = record.version
    row["updated_at"] = record.recorded_at
