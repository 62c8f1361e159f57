"""What the tampering tests do to a log, as a superuser who knows the hash scheme would."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from boost_ledger.audit.chains import canonical_bytes
from boost_ledger.audit.findings import Report


@asynccontextmanager
async def triggers_off(connection: asyncpg.Connection[Any]) -> AsyncIterator[None]:
    """What only a superuser can do: switch off the log's append-only triggers for a moment."""
    await connection.execute("alter table events disable trigger user")
    try:
        yield
    finally:
        await connection.execute("alter table events enable trigger user")


async def rechain(connection: asyncpg.Connection[Any], stream: str, from_version: int) -> None:
    """Recompute the hashes of a stream from a version on, as a forger who knows the scheme
    would: sha256(previous hash || canonical bytes)."""
    rows = await connection.fetch(
        "select global_position, event_id, version, type, data::text as data,"
        " metadata::text as metadata, hash from events"
        " where stream_id = $1 and version >= $2 - 1 order by version",
        stream, from_version,
    )
    previous = rows[0]["hash"] if from_version > 1 else b""
    for row in rows[1:] if from_version > 1 else rows:
        computed = hashlib.sha256(
            previous + canonical_bytes(row["event_id"], stream, row["version"], row["type"],
                                       row["data"], row["metadata"])
        ).digest()
        await connection.execute(
            "update events set hash = $2 where global_position = $1",
            row["global_position"], computed,
        )
        previous = computed


async def position_of(owner: asyncpg.Connection[Any], stream: str, version: int) -> int:
    position: int = await owner.fetchval(
        "select global_position from events where stream_id = $1 and version = $2",
        stream, version,
    )
    return position


async def forge_data(
    owner: asyncpg.Connection[Any], stream: str, version: int, field: str, value: str
) -> int:
    """Set ``field`` of the event's data to ``value`` (JSON text), its stream's hashes
    recomputed from there; its position."""
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set data = jsonb_set(data, $3::text[], $4::jsonb)"
            " where stream_id = $1 and version = $2",
            stream, version, [field], value,
        )
        await rechain(owner, stream, version)
    return await position_of(owner, stream, version)


async def append_forged(
    owner: asyncpg.Connection[Any], stream: str, kind: str, data: dict[str, Any]
) -> int:
    """An event of ``kind`` after the last one of ``stream`` (a new stream: version 1), under
    a random id, chained as the trigger would; its position."""
    version = 1 + await owner.fetchval(
        "select coalesce(max(version), 0) from events where stream_id = $1", stream
    )
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "insert into events (event_id, stream_id, version, type, data, metadata, hash)"
            " values ($1, $2, $3, $4, $5, '{\"actor\": \"forger\"}', '')",
            uuid.uuid4(), stream, version, kind, data,
        )
        await rechain(owner, stream, version)
    return await position_of(owner, stream, version)


def named(report: Report, check: str, position: int) -> bool:
    return any(f.check == check and f.global_position == position for f in report.findings)
