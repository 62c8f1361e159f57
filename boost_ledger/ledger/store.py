"""The event store: every read and write of the ``events`` table goes through here.

Appends name the version each event will take in its stream (expected version + 1, + 2 ...);
the ``unique (stream_id, version)`` constraint turns a lost race into ``ConcurrencyConflict``,
and a deterministic ``event_id`` turns a repeated "at most once" fact into ``DuplicateEvent``.
Both abort the caller's transaction, which is the point: one decision, one transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from boost_ledger.ledger.errors import ConcurrencyConflict, DuplicateEvent
from boost_ledger.ledger.events import Event, RecordedEvent, decode_event

MAX_APPEND_BATCH = 100
FEED_BATCH_MAX = 10_000

_encoder = msgspec.json.Encoder()

_INSERT = """
insert into events (event_id, stream_id, version, type, data, metadata)
select * from unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::jsonb[], $6::jsonb[])
returning global_position, event_id, transaction_id::text::bigint, recorded_at, hash
"""


class NewEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event to append at ``version`` of ``stream_id`` (the expected version + 1)."""

    stream_id: str
    version: int
    event: Event
    event_id: uuid.UUID | None = None


async def append(
    connection: asyncpg.Connection[Any],
    new_events: Sequence[NewEvent],
    metadata: Mapping[str, Any] | None = None,
) -> list[RecordedEvent]:
    """Append events (possibly of several streams) in the caller's transaction."""
    assert connection.is_in_transaction(), "appends belong to the caller's transaction"
    assert 0 < len(new_events) <= MAX_APPEND_BATCH
    ids = [item.event_id or uuid.uuid4() for item in new_events]
    meta = dict(metadata or {})
    try:
        rows = await connection.fetch(
            _INSERT,
            ids,
            [item.stream_id for item in new_events],
            [item.version for item in new_events],
            [type(item.event).__name__ for item in new_events],
            [msgspec.to_builtins(item.event) for item in new_events],
            [meta] * len(new_events),
        )
    except asyncpg.UniqueViolationError as error:
        raise _translate(error, new_events) from error
    by_id = {row["event_id"]: row for row in rows}
    recorded = []
    for event_id, item in zip(ids, new_events, strict=True):
        row = by_id[event_id]
        recorded.append(
            RecordedEvent(
                global_position=row["global_position"],
                event_id=event_id,
                stream_id=item.stream_id,
                version=item.version,
                event=item.event,
                metadata=meta,
                transaction_id=row["transaction_id"],
                recorded_at=row["recorded_at"],
                hash=row["hash"],
            )
        )
    return recorded


def _translate(error: asyncpg.UniqueViolationError, events: Sequence[NewEvent]) -> Exception:
    constraint = getattr(error, "constraint_name", "") or ""
    if "event_id" in constraint:
        return DuplicateEvent(str(error.detail or error))
    first = events[0]
    return ConcurrencyConflict(first.stream_id, first.version)


_SELECT_COLUMNS = (
    "global_position, event_id, stream_id, version, type, data, metadata,"
    " transaction_id::text::bigint as transaction_id, recorded_at, hash"
)


def record_from_row(row: Mapping[str, Any]) -> RecordedEvent:
    return RecordedEvent(
        global_position=row["global_position"],
        event_id=row["event_id"],
        stream_id=row["stream_id"],
        version=row["version"],
        event=decode_event(row["type"], row["data"]),
        metadata=row["metadata"],
        transaction_id=row["transaction_id"],
        recorded_at=row["recorded_at"],
        hash=row["hash"],
    )


async def read_stream(
    connection: asyncpg.Connection[Any], stream_id: str, *, limit: int = 10_000
) -> list[RecordedEvent]:
    """A stream's events in version order (bounded: streams here stay short)."""
    rows = await connection.fetch(
        f"select {_SELECT_COLUMNS} from events where stream_id = $1 order by version limit $2",
        stream_id,
        limit,
    )
    return [record_from_row(row) for row in rows]


class FeedPosition(msgspec.Struct, frozen=True):
    """Where a feed reader stands: the last (transaction_id, global_position) it handled."""

    transaction_id: int = 0
    global_position: int = 0


_FEED = f"""
select {_SELECT_COLUMNS} from events
where (transaction_id, global_position) > ($1::text::xid8, $2)
  and transaction_id < pg_snapshot_xmin(pg_current_snapshot())
order by transaction_id, global_position
limit $3
"""


async def read_feed(
    connection: asyncpg.Connection[Any], after: FeedPosition, *, limit: int = 1000
) -> list[RecordedEvent]:
    """The next events of the global feed after ``after``, in an order that never skips one.

    A global position is taken at insert time but becomes visible at commit, so a reader going
    by position alone would pass over the rows of a slower transaction. Rows are read in
    (transaction_id, global_position) order and only from transactions older than every
    transaction still running (the snapshot's xmin), so nothing can later appear behind the
    returned batch.
    """
    assert 0 < limit <= FEED_BATCH_MAX
    rows = await connection.fetch(
        _FEED, str(after.transaction_id), after.global_position, limit
    )
    return [record_from_row(row) for row in rows]


async def iterate_feed(
    connection: asyncpg.Connection[Any], after: FeedPosition, *, batch_size: int = 1000
) -> AsyncIterator[RecordedEvent]:
    """Every visible event after ``after``, batch by batch (never the whole log in memory)."""
    position = after
    while True:
        batch = await read_feed(connection, position, limit=batch_size)
        for event in batch:
            yield event
        if len(batch) < batch_size:
            return
        last = batch[-1]
        position = FeedPosition(last.transaction_id, last.global_position)


async def load_checkpoint(connection: asyncpg.Connection[Any], reader: str) -> FeedPosition:
    row = await connection.fetchrow(
        "select transaction_id::text::bigint as transaction_id, global_position"
        " from feed_checkpoints where reader = $1",
        reader,
    )
    if row is None:
        return FeedPosition()
    return FeedPosition(row["transaction_id"], row["global_position"])


async def save_checkpoint(
    connection: asyncpg.Connection[Any], reader: str, position: FeedPosition
) -> None:
    await connection.execute(
        """
        insert into feed_checkpoints (reader, transaction_id, global_position)
        values ($1, $2::text::xid8, $3)
        on conflict (reader) do update
           set transaction_id = excluded.transaction_id,
               global_position = excluded.global_position,
               updated_at = now()
        """,
        reader,
        str(position.transaction_id),
        position.global_position,
    )


def encode_json(value: Any) -> bytes:
    return _encoder.encode(value)
