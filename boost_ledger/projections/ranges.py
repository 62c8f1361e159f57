"""Folding a range of the log into a projection's copies, as fast as one process can.

Three things overlap: PostgreSQL reads the next batch on a second connection (when there is
one) while this process decodes the current one, a chunk at a time, while the previous batch is
folded and written on the first connection (one batch in flight: a batch's fold reads rows the
batch before wrote). Events are decoded from their JSON text straight into their structs, and
the cyclic garbage collector is paused meanwhile (see ``collector_paused``).
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
import msgspec

from boost_ledger.ledger import store
from boost_ledger.ledger.events import RecordedEvent
from boost_ledger.projections import bulk

BATCH_SIZE = 10_000
DECODE_CHUNK = 1000

# Called after each batch with how many log positions it covered.
Progress = Callable[[int], None]
# Awaited with each batch of rows read (``store.read_range`` rows), before they are folded.
Observer = Callable[[Sequence[Any]], Awaitable[None]]


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
    part: store.Part | None = None,
) -> tuple[int, Counter[str]]:
    """Fold the events with ``after < position <= up_to`` (no bound when None) into each
    target's copies, in position order, a batch per transaction (in the caller's, if it has
    one: a refusal then fails it, unless the caller holds a savepoint around the range).
    Returns the position reached and how many events each projection folded.

    With a ``reader`` (another connection, seeing what ``connection`` sees) the log is read
    there, a batch ahead, so PostgreSQL reads while this process folds. An ``observer`` sees
    every batch of rows (every event, not only the projections' types) before it is folded.
    With a ``part``, only its events (another process may fold the others meanwhile)."""
    wanted = event_types(module for module, _ in targets)
    types, relevant = (None, frozenset(wanted)) if observer is not None else (wanted, None)
    position = after
    batches = _batches(
        reader or connection, reader is not None, position, up_to, types, part, observer is None
    )
    writes = _Writes(connection, targets)
    with collector_paused():
        async with aclosing(batches), writes:
            async for rows in batches:
                try:
                    records = await _decoded(rows, relevant)
                except ReplayFailed as failure:
                    await writes.finish()  # a refusal of the batch before comes first
                    failure.resume_after = position  # the observer has not seen this batch
                    raise
                await writes.finish()  # the connection is free again
                if observer is not None:
                    await observer(rows)
                writes.start(records, rows[-1][0])
                if reader is None:  # the next batch is read on this connection: wait for it
                    await writes.finish()
                if progress is not None:
                    progress(rows[-1][0] - position)
                position = rows[-1][0]
            await writes.finish()
    # Every event up to the bound is handled, relevant or not: the next range starts there.
    return (position if up_to is None else max(position, up_to)), writes.folded


async def _decoded(rows: Sequence[Any], relevant: frozenset[str] | None) -> list[RecordedEvent]:
    """The batch's events (those of ``relevant`` types; all when None), decoded a chunk at a
    time: between chunks, the previous batch's write goes on, so PostgreSQL works while this
    process decodes."""
    records: list[RecordedEvent] = []
    for start in range(0, len(rows), DECODE_CHUNK):
        chunk = rows[start : start + DECODE_CHUNK]
        try:
            records += [
                store.record_from_fold_row(row)
                for row in chunk
                if relevant is None or row[3] in relevant  # its type
            ]
        except msgspec.DecodeError:
            raise _undecodable(chunk, relevant) from None
        await asyncio.sleep(0)
    return records


def _undecodable(rows: Sequence[Any], relevant: frozenset[str] | None) -> ReplayFailed:
    """The refusal naming the first row of ``rows`` (of ``relevant`` types) whose data its type
    does not decode."""
    for row in rows:
        if relevant is not None and row[3] not in relevant:
            continue
        try:
            store.record_from_fold_row(row)
        except msgspec.DecodeError as error:
            return ReplayFailed(row[0], row[1], row[2], row[3], error)
    raise AssertionError("no row of the chunk failed to decode")


class _Writes:
    """The fold of at most one batch in flight on ``connection`` (load, fold, write, commit)."""

    def __init__(self, connection: asyncpg.Connection[Any], targets: Sequence[Target]) -> None:
        self.connection, self.targets = connection, targets
        self.folded = Counter[str]()
        self._task: asyncio.Future[Counter[str]] | None = None

    def start(self, records: list[RecordedEvent], end: int) -> None:
        assert self._task is None, "one batch at a time"
        if records:
            self._task = asyncio.ensure_future(self._fold(records, end))

    async def finish(self) -> None:
        if self._task is not None:
            task, self._task = self._task, None
            self.folded.update(await task)

    async def _fold(self, records: list[RecordedEvent], end: int) -> Counter[str]:
        try:
            return await _fold(self.connection, self.targets, records)
        except ReplayFailed as failure:
            failure.resume_after = end  # the observer has seen every event up to there
            raise

    async def __aenter__(self) -> _Writes:
        return self

    async def __aexit__(self, *exception: object) -> None:
        if self._task is not None:  # left early (an error): the batch in flight is abandoned
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


async def _batches(
    reader: asyncpg.Connection[Any],
    prefetch: bool,
    after: int,
    up_to: int | None,
    types: Sequence[str] | None,
    part: store.Part | None,
    folding: bool,
) -> AsyncGenerator[list[Any], None]:
    """The rows of the range in batches; with ``prefetch``, the next batch is read meanwhile."""

    def read(start: int) -> Awaitable[list[Any]]:
        return store.read_range(reader, start, up_to, types, BATCH_SIZE, part, folding=folding)

    if not prefetch:
        while rows := await read(after):
            yield rows
            after = rows[-1][0]
        return
    pending = asyncio.ensure_future(read(after))
    try:
        while rows := await pending:
            pending = asyncio.ensure_future(read(rows[-1][0]))
            yield rows
    finally:
        # Left early (a refusal, an error): the read ahead is let end, not cancelled. Cancelled
        # while PostgreSQL runs it, it fails the statement and with it the reader's transaction,
        # the verification's shared snapshot, which the rest of the log is then read in
        # (``replay_and_compare`` after a refusal). One bounded batch read, on this path only.
        if not pending.done():
            with contextlib.suppress(Exception):
                await pending


async def _fold(
    connection: asyncpg.Connection[Any],
    targets: Sequence[Target],
    records: Sequence[RecordedEvent],
) -> Counter[str]:
    folded = Counter[str]()
    try:
        if connection.is_in_transaction():
            # The caller's transaction holds the batch (a verify's replay, a swap's tail): a
            # savepoint per batch would give a long replay a subtransaction per batch, and past
            # 64 of them every other session's snapshot overflows and looks each recent row's
            # transaction up in pg_subtrans while the replay runs.
            await _fold_targets(connection, targets, records, folded)
        else:
            async with connection.transaction():
                # A batch of copies needs no flush to disk at its commit: a crash loses the
                # whole rebuild anyway, and the swap's own commit is a normal one.
                await connection.execute("set local synchronous_commit = off")
                await _fold_targets(connection, targets, records, folded)
    except bulk.FoldRefused as refusal:
        raise ReplayFailed.at(refusal.record, refusal.error) from refusal
    except asyncpg.PostgresError as error:
        raise ReplayFailed.at(records[-1], error) from error
    return folded


async def _fold_targets(
    connection: asyncpg.Connection[Any],
    targets: Sequence[Target],
    records: Sequence[RecordedEvent],
    folded: Counter[str],
) -> None:
    for module, schema in targets:
        folded[module.NAME] += await bulk.apply_batch(connection, [module], records, schema)


class ReplayFailed(Exception):
    """The projections refused an event of the log, or its data is not its type's: the log
    contradicts itself there (for a database refusal, the last event of the failing batch is
    named)."""

    def __init__(
        self, position: int, stream_id: str, version: int, type_name: str, error: BaseException
    ) -> None:
        super().__init__(
            f"replaying event {position} ({stream_id} v{version}, {type_name})"
            f" failed: {type(error).__name__}: {error}"
        )
        self.resume_after = position  # set by apply_range: every event the observer has seen

    @classmethod
    def at(cls, record: RecordedEvent, error: BaseException) -> ReplayFailed:
        return cls(record.global_position, record.stream_id, record.version, record.type, error)
