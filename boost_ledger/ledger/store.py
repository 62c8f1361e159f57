"""The event store: every read and write of the ``events`` table goes through here.

Appends name the version each event will take in its stream (expected version + 1, + 2 ...);
the ``unique (stream_id, version)`` constraint turns a lost race into ``ConcurrencyConflict``,
and a deterministic ``event_id`` turns a repeated "at most once" fact into ``DuplicateEvent``.
Both abort the caller's transaction, which is the point: one decision, one transaction. An append
past the stream's end (a version gap, or a version whose predecessor another writer has not yet
committed) is refused by the log's trigger and also reported as ``ConcurrencyConflict``.

The global feed is read in ``(transaction_id, global_position)`` order and only below the oldest
transaction still running, so a slow transaction's events are never passed over (see
``read_feed``). ``transaction_id`` is a *feed clock*: the inserting transaction's id plus
``feed_epoch.xid_offset``, stamped by a trigger (``sql/0009_feed_epoch.sql``). Transaction ids
belong to a cluster, and a dump restored into another cluster brings ids that cluster has not
reached: without the offset its new events would sort before the restored history and a reader
resuming from a restored checkpoint would skip them. A visible row at or past the current clock
can only come from another cluster; while one exists the trigger refuses appends (stuck, never
wrong), and the migration runner, which every ``boost`` process runs at start, calls
``feed_epoch_realign()`` to move the offset past the newest row. Until then the reader simply does
not return the restored rows beyond its horizon; afterwards history comes first, then the new
events, and checkpoints taken before the dump resume exactly. Restore into a quiet database (no
appends while ``pg_restore`` runs), as one does anyway.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import asyncpg
import msgspec

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.errors import ConcurrencyConflict, DuplicateEvent
from boost_ledger.ledger.events import Event, RecordedEvent, decode_event
from boost_ledger.ledger.replay_types import decode_event_json

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
    connection: Connection,
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
    except asyncpg.SerializationError as error:
        conflict = _gap(error, new_events)
        if conflict is None:
            raise
        raise conflict from error
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


# "Key (stream_id, version)=(wallet-1001, 3) already exists."
_TAKEN_VERSION = re.compile(r"\(stream_id, version\)=\((?P<stream>.*), (?P<version>\d+)\)")
_GAP_CONSTRAINT = "events_version_contiguous"


def _translate(error: asyncpg.UniqueViolationError, events: Sequence[NewEvent]) -> Exception:
    constraint = getattr(error, "constraint_name", "") or ""
    if "event_id" in constraint:
        return DuplicateEvent(str(error.detail or error))
    taken = _TAKEN_VERSION.search(error.detail or "")
    if taken is not None:
        return ConcurrencyConflict(taken["stream"], int(taken["version"]))
    first = events[0]
    return ConcurrencyConflict(first.stream_id, first.version)


def _gap(error: asyncpg.SerializationError, events: Sequence[NewEvent]) -> Exception | None:
    """The trigger's refusal of a version gap, as a conflict; None for any other 40001."""
    if getattr(error, "constraint_name", None) != _GAP_CONSTRAINT:
        return None
    message = str(error)
    for item in events:
        if f"stream {item.stream_id} has no version {item.version - 1} " in f"{message} ":
            return ConcurrencyConflict(item.stream_id, item.version)
    return ConcurrencyConflict(events[0].stream_id, events[0].version)


SELECT_COLUMNS = (
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


# Replays read the log in position order, in bounded batches, with data and metadata as JSON
# text: the data is decoded once, straight into its typed struct (no dict in between), and the text
# is also what an auditor hashes. Columns in this order (see record_from_fold_row). A part is
# asked for as "not any other part": PostgreSQL takes that for an unselective test and keeps
# walking the positions in order (as "= part" it would expect few rows, and sort a scan of the
# whole log for every batch).
_RANGE = """
select {columns}
  from events
 where global_position > $1 and ($2::bigint is null or global_position <= $2)
   and ($3::text[] is null or type = any($3::text[]))
   and ($5::text is null
        or coalesce(mod(mod(hashtext(data->>$5)::bigint, $6) + $6, $6), 0) <> all($7::bigint[]))
 order by global_position
 limit $4
"""
RANGE_BATCH_MAX = 50_000
# What a projection's fold reads of an event. A replay that only folds leaves the rest out, and
# PostgreSQL then renders neither the metadata's JSON nor the transaction id for each event.
_FOLD_COLUMNS = "global_position, stream_id, version, type, data::text, recorded_at"
# What an auditor checks of each event (audit/chains.py names the columns): those a fold reads
# first (``record_from_fold_row`` reads both kinds of rows), then the id as text, as it is hashed
# (no UUID object per event), the metadata and the hash; the transaction id is left out.
_AUDIT_COLUMNS = f"{_FOLD_COLUMNS}, event_id::text, metadata::text, hash"
_RANGE_AUDIT = _RANGE.format(columns=_AUDIT_COLUMNS)
_RANGE_FOLD = _RANGE.format(columns=_FOLD_COLUMNS)


class Part(msgspec.Struct, frozen=True):
    """One of ``count`` disjoint parts of the events, by a hash of their data's ``field`` (the
    events without it are in part 0)."""

    field: str
    count: int
    index: int


async def read_range(
    connection: Connection,
    after: int,
    up_to: int | None,
    types: Sequence[str] | None,
    limit: int,
    part: Part | None = None,
    *,
    folding: bool = False,
) -> list[Any]:
    """Rows of the events with ``after < global_position <= up_to`` (no bound when None) of
    ``types`` (all when None), of ``part`` (all when None), in position order, at most
    ``limit``: those an auditor checks, or with ``folding`` only those a fold reads (both
    begin with the latter: see ``record_from_fold_row``)."""
    assert 0 < limit <= RANGE_BATCH_MAX
    assert part is None or 0 <= part.index < part.count
    return await connection.fetch(
        _RANGE_FOLD if folding else _RANGE_AUDIT,
        after,
        up_to,
        None if types is None else list(types),
        limit,
        None if part is None else part.field,
        1 if part is None else part.count,
        [] if part is None else [other for other in range(part.count) if other != part.index],
    )


_NOT_READ_ID = uuid.UUID(int=0)
_NOT_READ_METADATA: dict[str, Any] = {}


def record_from_fold_row(row: Sequence[Any]) -> RecordedEvent:
    """The event of a ``read_range`` row (either kind), for a projection's fold: only what a
    fold reads (a nil id, no metadata, transaction zero, no hash bytes)."""
    return RecordedEvent(
        global_position=row[0],
        event_id=_NOT_READ_ID,
        stream_id=row[1],
        version=row[2],
        event=decode_event_json(row[3], row[4]),
        metadata=_NOT_READ_METADATA,
        transaction_id=0,
        recorded_at=row[5],
        hash=b"",
    )


async def read_stream(
    connection: Connection, stream_id: str, *, limit: int = 10_000
) -> list[RecordedEvent]:
    """A stream's events in version order (bounded: streams here stay short)."""
    rows = await connection.fetch(
        f"select {SELECT_COLUMNS} from events where stream_id = $1 order by version limit $2",
        stream_id,
        limit,
    )
    return [record_from_row(row) for row in rows]


class FeedPosition(msgspec.Struct, frozen=True):
    """Where a feed reader stands: the last (transaction_id, global_position) it handled."""

    transaction_id: int = 0
    global_position: int = 0


# The horizon is the snapshot's xmin on the feed clock: every transaction below it has ended, so
# no row can appear below it later. It is computed in the query itself, from the same snapshot
# that decides which rows are visible.
_FEED = f"""
select {SELECT_COLUMNS} from events
where (transaction_id, global_position) > ($1::text::xid8, $2)
  and transaction_id < (
      select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + xid_offset)::text::xid8
        from feed_epoch)
-- Qualified: the bare name would sort by the bigint alias above and miss the feed index.
order by events.transaction_id, events.global_position
limit $3
"""


async def read_feed(
    connection: Connection, after: FeedPosition, *, limit: int = 1000
) -> list[RecordedEvent]:
    """The next events of the global feed after ``after``, in an order that never skips one.

    A global position is taken at insert time but becomes visible at commit, so a reader going
    by position alone would pass over the rows of a slower transaction. Rows are read in
    (transaction_id, global_position) order and only from transactions older than every
    transaction still running (the snapshot's xmin), so nothing can later appear behind the
    returned batch. Run it outside a transaction that has written (or in a fresh one): a
    transaction's own events only show once it has ended.
    """
    assert 0 < limit <= FEED_BATCH_MAX
    rows = await connection.fetch(_FEED, str(after.transaction_id), after.global_position, limit)
    return [record_from_row(row) for row in rows]


async def iterate_feed(
    connection: Connection, after: FeedPosition, *, batch_size: int = 1000
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


async def load_checkpoint(connection: Connection, reader: str) -> FeedPosition:
    row = await connection.fetchrow(
        "select transaction_id::text::bigint as transaction_id, global_position"
        " from feed_checkpoints where reader = $1",
        reader,
    )
    if row is None:
        return FeedPosition()
    return FeedPosition(row["transaction_id"], row["global_position"])


async def save_checkpoint(connection: Connection, reader: str, position: FeedPosition) -> None:
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
