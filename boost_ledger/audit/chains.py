"""Every stream's versions and hash chain, checked event by event on the pass over the log.

The pass goes in position order. Each event must follow the previous event of its stream (the
last one before it in the log): version + 1, hash = sha256(previous hash || canonical bytes),
the same bytes as ``event_canonical_bytes`` in sql/0001_event_log.sql, hashed here rather than by
a function stored in the database that a forger could replace. A stream's events can only be
appended in version order (an append needs its predecessor committed), so on an honest log
position order is version order; an event moved, removed or altered breaks the chain at the
event after it, or at itself.

The last (version, hash) of the streams seen most recently is kept in memory (a bounded number
of streams); an event whose stream has dropped out of it looks its predecessor up in the
database, a batch at a time. ``(stream_id, version)`` is unique by the log's own index, which the
auditor checks is still in place; should it be gone, duplicates are looked for by a query.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from typing import Any

import asyncpg

from boost_ledger.audit.findings import Finding, Report
from boost_ledger.ledger.events import EVENT_TYPES

MAX_CACHED_STREAMS = 100_000

# Row columns, as ``store.read_range`` returns them.
POSITION, STREAM, VERSION, TYPE, DATA, _, EVENT_ID, METADATA, HASH = range(9)

_PREDECESSORS = """
select m.position, p.version, p.hash
  from unnest($1::text[], $2::bigint[]) as m(stream_id, position)
  cross join lateral (
      select e.version, e.hash from events e
       where e.stream_id = m.stream_id and e.global_position < m.position
       order by e.version desc limit 1) p
"""


def canonical_bytes(
    event_id: Any, stream_id: str, version: int, type_name: str, data: str, metadata: str
) -> bytes:
    """The bytes each hash covers: ``event_canonical_bytes`` of sql/0001_event_log.sql."""
    return f"{event_id}\n{stream_id}\n{version}\n{type_name}\n{data}\n{metadata}".encode()


class ChainCheck:
    """Versions and hashes of every stream, fed the log's rows in position order."""

    def __init__(self, report: Report) -> None:
        self.report = report
        # stream -> (version, hash) of its last event seen; insertion order is recency.
        self._last: dict[str, tuple[int, bytes]] = {}

    async def check(self, connection: asyncpg.Connection[Any], rows: Sequence[Any]) -> None:
        assert len(rows) <= MAX_CACHED_STREAMS // 2, "a batch's streams must stay in memory"
        looked_up = await self._look_up(connection, rows)
        last, sha256, known = self._last, hashlib.sha256, EVENT_TYPES
        # The loop every event goes through: kept tight, the findings are worded elsewhere.
        for row in rows:
            position, stream, version, kind, data, _, event_id, metadata, stored = row
            previous = last.pop(stream, None) or looked_up.get(position)
            if previous is None:
                self.report.streams += 1
                previous = (0, b"")
            canonical = f"{event_id}\n{stream}\n{version}\n{kind}\n{data}\n{metadata}".encode()
            if version != previous[0] + 1 or sha256(previous[1] + canonical).digest() != stored:
                self._report_break(row, previous)
            if kind not in known:
                self._add("event-type", f"{kind!r} is no event type of the ledger", row)
            last[stream] = (version, stored)
        # Only after the batch (``_look_up`` counted on the streams in memory staying there), and
        # in one go: the most recent half stays (deleting from a dict's front one key at a time
        # would rescan the deleted slots every time).
        if len(last) > MAX_CACHED_STREAMS:
            kept = itertools.islice(last.items(), len(last) - MAX_CACHED_STREAMS // 2, None)
            self._last = dict(kept)

    def _report_break(self, row: Any, previous: tuple[int, bytes]) -> None:
        version = row[VERSION]
        if version != previous[0] + 1:
            self._add(
                "stream-versions",
                f"expected version {previous[0] + 1},"
                f" found {version} (an event is missing or moved)",
                row,
            )
        canonical = canonical_bytes(
            row[EVENT_ID], row[STREAM], version, row[TYPE], row[DATA], row[METADATA]
        )
        if hashlib.sha256(previous[1] + canonical).digest() != row[HASH]:
            self._add(
                "hash-chain",
                f"hash mismatch at version {version} (the event or one before it was altered)",
                row,
            )

    def _add(self, check: str, detail: str, row: Any) -> None:
        self.report.add(Finding(check, detail, row[POSITION], row[STREAM]))

    async def _look_up(
        self, connection: asyncpg.Connection[Any], rows: Sequence[Any]
    ) -> dict[int, tuple[int, bytes]]:
        """Predecessors of the batch's events whose stream is not in memory (by position)."""
        seen: set[str] = set()
        streams, positions = [], []
        for row in rows:
            stream = row[STREAM]
            if stream in seen or stream in self._last:
                continue
            seen.add(stream)
            if row[VERSION] != 1:  # a first version has none (duplicates: see the docstring)
                streams.append(stream)
                positions.append(row[POSITION])
        if not streams:
            return {}
        found = await connection.fetch(_PREDECESSORS, streams, positions)
        return {record[0]: (record[1], record[2]) for record in found}


# Whether a valid unique index of the log, without a predicate, holds exactly these columns
# (their names, sorted).
_GUARDED = (
    "select exists (select 1 from pg_index i join pg_attribute a"
    " on a.attrelid = i.indrelid and a.attnum = any(i.indkey)"
    " where i.indrelid = 'public.events'::regclass and i.indisunique and i.indisvalid"
    " and i.indnatts = cardinality($1::text[]) and i.indpred is null"
    " group by i.indexrelid having array_agg(a.attname::text order by a.attname) = $1::text[])"
)


async def verify_unique_versions(connection: asyncpg.Connection[Any], report: Report) -> None:
    """``(stream_id, version)`` is unique: by the log's unique index while it stands and is
    valid, otherwise by looking for duplicates."""
    if await connection.fetchval(_GUARDED, ["stream_id", "version"]):
        return
    for row in await connection.fetch(
        "select min(global_position) as global_position, stream_id, version from events"
        " group by stream_id, version having count(*) > 1 order by 1 limit 100"
    ):
        report.add(
            Finding(
                "stream-versions",
                f"version {row['version']} appears more than once",
                row["global_position"],
                row["stream_id"],
            )
        )


async def verify_unique_ids(connection: asyncpg.Connection[Any], report: Report) -> None:
    """``event_id`` is unique, as every "at most once" of the ledger counts on (a credit's
    reference, an order's debit and refund: their ids are deterministic): by the log's unique
    index while it stands and is valid, otherwise by looking for duplicates."""
    if await connection.fetchval(_GUARDED, ["event_id"]):
        return
    for row in await connection.fetch(
        "select (array_agg(global_position order by global_position))[2] as global_position,"
        " (array_agg(stream_id order by global_position))[2] as stream_id,"
        " event_id::text as event_id, count(*) as copies from events"
        " group by event_id having count(*) > 1 order by 1 limit 100"
    ):
        report.add(
            Finding(
                "unique-event-id",
                f"event id {row['event_id']} appears {row['copies']} times"
                " (a fact recorded once happened again)",
                row["global_position"],
                row["stream_id"],
            )
        )
