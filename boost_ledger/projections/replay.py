"""Replaying the log into copies of a projection's tables.

The copies live in another schema (rebuilds) or are temporary tables (the auditor's comparison).
Replays fold batches of events with each projection's ``fold`` (projections/bulk.py), the pure
twin of the SQL ``apply`` that inline writes use; "a replay equals the live tables" is the
property that holds the two equal.

Replays go in ``global_position`` order, not in the feed's commit-safe order: every writer takes
its row locks before it inserts events, so two transactions that touched the same projection row
inserted their events in the order they held the lock, and positions are taken at insert time.
(Transaction ids are not: they are assigned at the first lock, possibly before a wait.) To never
pass over a position that a slower transaction still holds, a replay only goes up to a *stable
head*: the highest position seen, once every transaction that was running then has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from contextlib import aclosing
from types import ModuleType
from typing import Any

import asyncpg

from boost_ledger.ledger import store
from boost_ledger.ledger.events import RecordedEvent
from boost_ledger.projections import bulk

BATCH_SIZE = 10_000
STABLE_WAIT_S = 60.0

# Called after each batch with how many log positions it covered.
Progress = Callable[[int], None]
# Awaited with each batch of rows read (``store.read_range`` rows), before they are folded.
Observer = Callable[[Sequence[Any]], Awaitable[None]]


def quoted(identifier: str) -> str:
    assert identifier.replace("_", "").isalnum(), f"unsafe identifier {identifier!r}"
    return f'"{identifier}"'


async def create_copies(
    connection: asyncpg.Connection[Any], schema: str, modules: Iterable[ModuleType]
) -> None:
    """An empty schema holding a structural copy (columns, defaults, checks, indexes) of each
    table of ``modules``."""
    await connection.execute(f"drop schema if exists {quoted(schema)} cascade")
    await connection.execute(f"create schema {quoted(schema)}")
    for module in modules:
        for table in module.TABLES:
            await connection.execute(
                f"create table {quoted(schema)}.{quoted(table)}"
                f" (like public.{quoted(table)} including all)"
                # Autovacuum would take a fresh copy up while it fills (CPU spent meanwhile, and
                # a lock that makes the swap wait); the swap switches it back on.
                " with (autovacuum_enabled = false)"
            )


async def stable_head(connection: asyncpg.Connection[Any]) -> int:
    """A position at or below which no event can still appear (waits for running writers)."""
    row = await connection.fetchrow(
        "select coalesce(max(global_position), 0) as head,"
        " pg_snapshot_xmax(pg_current_snapshot())::text as horizon from events"
    )
    assert row is not None
    async with asyncio.timeout(STABLE_WAIT_S):
        while not await connection.fetchval(  # noqa: ASYNC110 - polling the database
            "select pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8", row["horizon"]
        ):
            await asyncio.sleep(0.005)
    head: int = row["head"]
    return head


# A projection and where its copies live: a schema (rebuilds), or temporary tables when None.
Target = tuple[ModuleType, str | None]


def event_types(modules: Iterable[ModuleType]) -> list[str]:
    return sorted(frozenset().union(*(module.EVENT_TYPES for module in modules)))


_paused = 0
_was_enabled = True


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """A replay allocates millions of short-lived, acyclic objects (rows, events, row dicts): the
    cyclic garbage collector would traverse them again and again to free nothing (a sixth of a
    rebuild's time on a 1M-event log). Reference counting still frees them; the collector is
    back on once the last replay running in the process ends."""
    global _paused, _was_enabled
    if _paused == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _paused += 1
    try:
        yield
    finally:
        _paused -= 1
        if _paused == 0 and _was_enabled:
            gc.enable()


async def apply_range(
    connection: asyncpg.Connection[Any],
    targets: Sequence[Target],
    after: int,
    up_to: int | None,
    progress: Progress | None = None,
    *,
    reader: asyncpg.Connection[Any] | None = None,
    observer: Observer | None = None,
) -> tuple[int, Counter[str]]:
    """Fold the events with ``after < position <= up_to`` (no bound when None) into each
    target's copies, in position order, a batch per transaction (a savepoint if the caller has
    one). Returns the position reached and how many events each projection folded.

    With a ``reader`` (another connection, seeing what ``connection`` sees) the log is read
    there, a batch ahead, so PostgreSQL reads while this process folds. An ``observer`` sees
    every batch of rows (every event, not only the projections' types) before it is folded."""
    wanted = event_types(module for module, _ in targets)
    types, relevant = (None, frozenset(wanted)) if observer is not None else (wanted, None)
    position, folded = after, Counter[str]()
    batches = _batches(reader or connection, reader is not None, position, up_to, types)
    with collector_paused():
        async with aclosing(batches):
            async for rows in batches:
                if observer is not None:
                    await observer(rows)
                records = [
                    store.record_from_text_row(row)
                    for row in rows
                    if relevant is None or row[4] in relevant
                ]
                if records:
                    try:
                        folded.update(await _fold(connection, targets, records))
                    except ReplayFailed as failure:
                        failure.resume_after = rows[-1][0]
                        raise
                if progress is not None:
                    progress(rows[-1][0] - position)
                position = rows[-1][0]
    # Every event up to the bound is handled, relevant or not: the next range starts there.
    return (position if up_to is None else max(position, up_to)), folded


async def _batches(
    reader: asyncpg.Connection[Any],
    prefetch: bool,
    after: int,
    up_to: int | None,
    types: Sequence[str] | None,
) -> AsyncGenerator[list[Any], None]:
    """The rows of the range in batches; with ``prefetch``, the next batch is read meanwhile."""
    if not prefetch:
        while rows := await store.read_range(reader, after, up_to, types, BATCH_SIZE):
            yield rows
            after = rows[-1][0]
        return
    pending = asyncio.ensure_future(store.read_range(reader, after, up_to, types, BATCH_SIZE))
    try:
        while rows := await pending:
            pending = asyncio.ensure_future(
                store.read_range(reader, rows[-1][0], up_to, types, BATCH_SIZE)
            )
            yield rows
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending


async def _fold(
    connection: asyncpg.Connection[Any],
    targets: Sequence[Target],
    records: Sequence[RecordedEvent],
) -> Counter[str]:
    folded = Counter[str]()
    try:
        async with connection.transaction():
            for module, schema in targets:
                folded[module.NAME] += await bulk.apply_batch(connection, [module], records, schema)
    except bulk.FoldRefused as refusal:
        raise ReplayFailed(refusal.record, refusal.error) from refusal
    except asyncpg.PostgresError as error:
        raise ReplayFailed(records[-1], error) from error
    return folded


async def differences(
    connection: asyncpg.Connection[Any], copy: str, spec: bulk.TableSpec, limit: int = 5
) -> list[str]:
    """Rows that differ between the live table and its replayed copy, matched by key (one hash
    join): a row only one side has, or the two rows of a key that differ."""
    matched = " and ".join(f"l.{quoted(column)} = r.{quoted(column)}" for column in spec.key)
    rows = await connection.fetch(
        "select row_to_json(l)::text as live, row_to_json(r)::text as replay"
        f" from public.{quoted(spec.name)} l full join {copy} r on {matched}"
        " where l is distinct from r limit $1",
        limit,
    )
    found: list[str] = []
    for row in rows:
        if row["live"] is not None:
            found.append(f"{spec.name} (live only): {row['live']}")
        if row["replay"] is not None:
            found.append(f"{spec.name} (replay only): {row['replay']}")
    return found


async def compare_with_replay(
    connection: asyncpg.Connection[Any], modules: Sequence[ModuleType]
) -> list[str]:
    """Replay the whole log into temporary tables and compare them with the live tables, all in
    one REPEATABLE READ snapshot (so writers running meanwhile cannot cause false alarms)."""
    async with connection.transaction(isolation="repeatable_read"):
        return await replay_and_compare(connection, modules)


async def replay_and_compare(
    connection: asyncpg.Connection[Any],
    modules: Sequence[ModuleType],
    *,
    reader: asyncpg.Connection[Any] | None = None,
    observer: Observer | None = None,
) -> list[str]:
    """``compare_with_replay`` in the caller's REPEATABLE READ transaction; ``reader`` (seeing
    the same snapshot) and ``observer`` as for ``apply_range``. Should the projections refuse an
    event, that is the one difference, and the observer still sees the rest of the log."""
    for module in modules:
        await _create_temporary_copies(connection, module)
    # Temporary tables come first in the search path: the projectors now write into them.
    targets = [(module, None) for module in modules]
    try:
        await apply_range(connection, targets, 0, None, reader=reader, observer=observer)
    except ReplayFailed as failure:
        if observer is not None:
            await apply_range(
                connection, [], failure.resume_after, None, reader=reader, observer=observer
            )
        return [str(failure)]
    found: list[str] = []
    for module in modules:
        assert {spec.name for spec in module.BULK_TABLES} == set(module.TABLES), module.NAME
        for spec in module.BULK_TABLES:
            found.extend(await differences(connection, f"pg_temp.{quoted(spec.name)}", spec))
    return found


async def _create_temporary_copies(connection: asyncpg.Connection[Any], module: ModuleType) -> None:
    for table in module.TABLES:
        await connection.execute(
            f"create temporary table {quoted(table)}"
            f" (like public.{quoted(table)} including all) on commit drop"
        )


class ReplayFailed(Exception):
    """The projections refused an event of the log: the log contradicts itself there (for a
    database refusal, the last event of the failing batch is named)."""

    def __init__(self, record: RecordedEvent, error: BaseException) -> None:
        super().__init__(
            f"replaying event {record.global_position} ({record.stream_id} v{record.version},"
            f" {record.type}) failed: {type(error).__name__}: {error}"
        )
        self.resume_after = record.global_position  # set to the batch's end by apply_range
