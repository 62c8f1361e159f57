"""``boost audit export``: the log as JSON Lines, streamed in position order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec

CURSOR_PREFETCH = 5000


class ExportedEvent(msgspec.Struct, frozen=True):
    global_position: int
    event_id: str
    stream_id: str
    version: int
    type: str
    data: msgspec.Raw
    metadata: msgspec.Raw
    transaction_id: int
    recorded_at: str
    hash: str


_encoder = msgspec.json.Encoder()


async def export_lines(connection: asyncpg.Connection[Any], after: int = 0) -> AsyncIterator[bytes]:
    """One JSON object per event with ``after < global_position <= `` the log's stable head,
    newline-terminated.

    The head is stable (``replay.stable_head`` waits for the transactions running when it was
    read): a position is drawn at insert but shows at commit, so an export of whatever was
    visible could end past a position a slower transaction filled later, and an export resumed
    after its last position (``--after``) would never show that event. Up to a stable head, the
    last position exported is a safe place to resume from."""
    from boost_ledger.projections.replay import stable_head

    head = await stable_head(connection)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(
            "select global_position, event_id::text, stream_id, version, type, data::text as data,"
            " metadata::text as metadata, transaction_id::text::bigint as transaction_id,"
            " recorded_at, hash from events where global_position > $1 and global_position <= $2"
            " order by global_position",
            after,
            head,
            prefetch=CURSOR_PREFETCH,
        ):
            yield (
                _encoder.encode(
                    ExportedEvent(
                        global_position=row["global_position"],
                        event_id=row["event_id"],
                        stream_id=row["stream_id"],
                        version=row["version"],
                        type=row["type"],
                        data=msgspec.Raw(row["data"].encode()),
                        metadata=msgspec.Raw(row["metadata"].encode()),
                        transaction_id=row["transaction_id"],
                        recorded_at=row["recorded_at"].isoformat(),
                        hash=row["hash"].hex(),
                    )
                )
                + b"\n"
            )
