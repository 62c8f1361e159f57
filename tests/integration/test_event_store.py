"""The event log on real PostgreSQL: atomic multi-stream appends, optimistic concurrency,
deterministic ids, the per-stream hash chain, and a log that nothing can change or remove."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from typing import Any

import asyncpg
import pytest

from boost_ledger.ledger import store
from boost_ledger.ledger.errors import ConcurrencyConflict, DuplicateEvent
from boost_ledger.ledger.events import AccountReinstated, CancelRequested, WalletCredited
from boost_ledger.ledger.store import NewEvent


def _stream(kind: str = "test") -> str:
    return f"{kind}-{uuid.uuid4().hex[:12]}"


def _event(stream: str, version: int, n: int = 1, event_id: uuid.UUID | None = None) -> NewEvent:
    return NewEvent(
        stream_id=stream, version=version, event=CancelRequested(order_id=n), event_id=event_id
    )


async def _append(pool: asyncpg.Pool[Any], *events: NewEvent) -> list[Any]:
    async with pool.acquire() as connection, connection.transaction():
        return await store.append(connection, list(events), {"actor": "test"})


async def _versions(pool: asyncpg.Pool[Any], stream: str) -> list[int]:
    rows = await pool.fetch("select version from events where stream_id = $1 order by 1", stream)
    return [row["version"] for row in rows]


async def test_one_append_writes_several_streams_atomically(pool):
    """Events of several streams go in one transaction: all of them, or none when one conflicts."""
    first, second, third = _stream(), _stream(), _stream()
    recorded = await _append(pool, _event(first, 1), _event(first, 2), _event(second, 1))
    assert [(r.stream_id, r.version) for r in recorded] == [(first, 1), (first, 2), (second, 1)]
    assert len({r.transaction_id for r in recorded}) == 1, "one transaction, one feed clock"
    positions = [r.global_position for r in recorded]
    assert positions == sorted(positions)

    with pytest.raises(ConcurrencyConflict) as conflict:
        await _append(pool, _event(third, 1), _event(second, 1))
    assert (conflict.value.stream_id, conflict.value.version) == (second, 1)
    assert await _versions(pool, third) == [], "the failed append left nothing behind"
    assert await _versions(pool, first) == [1, 2]


async def test_appends_share_the_callers_transaction(pool):
    """An append is part of its caller's transaction: rolled back with it."""
    stream = _stream()
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        await store.append(connection, [_event(stream, 1)])
        await transaction.rollback()
    assert await _versions(pool, stream) == []


async def _contend(
    pool: asyncpg.Pool[Any], stream: str, version: int, contenders: int
) -> list[Any]:
    """``contenders`` connections append ``version`` of ``stream`` at the same moment."""
    start = asyncio.Event()

    async def one(n: int) -> Any:
        async with pool.acquire() as connection:
            await start.wait()
            try:
                async with connection.transaction():
                    await store.append(connection, [_event(stream, version, n)])
                    await asyncio.sleep(0.01)  # hold the version a moment: the others queue up
                return n
            except ConcurrencyConflict as error:
                return error

    tasks = [asyncio.create_task(one(n)) for n in range(contenders)]
    await asyncio.sleep(0.05)  # every task holds its own connection before the start
    start.set()
    return await asyncio.gather(*tasks)


@pytest.mark.parametrize("contenders", [2, 8])
async def test_concurrent_appends_at_one_expected_version_have_exactly_one_winner(
    pool, contenders
):
    """Writers racing for one version over real connections: one commits, the rest conflict."""
    for _ in range(5):
        stream = _stream()
        await _append(pool, _event(stream, 1))
        outcomes = await _contend(pool, stream, 2, contenders)
        winners = [o for o in outcomes if isinstance(o, int)]
        losers = [o for o in outcomes if isinstance(o, ConcurrencyConflict)]
        assert len(winners) == 1 and len(losers) == contenders - 1, outcomes
        assert all((o.stream_id, o.version) == (stream, 2) for o in losers)
        assert await _versions(pool, stream) == [1, 2]
        stored = await pool.fetchval(
            "select data->>'order_id' from events where stream_id = $1 and version = 2", stream
        )
        assert int(stored) == winners[0]


async def test_the_second_writer_waits_for_the_first_and_then_conflicts(pool):
    """While the first append is uncommitted the second blocks; the first's commit decides."""
    stream = _stream()
    await _append(pool, _event(stream, 1))
    async with pool.acquire() as first, pool.acquire() as second:
        holding = first.transaction()
        await holding.start()
        await store.append(first, [_event(stream, 2, 1)])

        async def later() -> None:
            async with second.transaction():
                await store.append(second, [_event(stream, 2, 2)])

        waiting = asyncio.create_task(later())
        await asyncio.sleep(0.2)
        assert not waiting.done(), "the second append must wait on the first"
        await holding.commit()
        with pytest.raises(ConcurrencyConflict):
            await waiting
    assert await _versions(pool, stream) == [1, 2]


async def test_a_version_gap_is_refused(pool):
    """Expecting a version the stream has not reached is a conflict, and writes nothing."""
    stream = _stream()
    with pytest.raises(ConcurrencyConflict) as conflict:
        await _append(pool, _event(stream, 2))
    assert (conflict.value.stream_id, conflict.value.version) == (stream, 2)
    await _append(pool, _event(stream, 1))
    with pytest.raises(ConcurrencyConflict):
        await _append(pool, _event(stream, 3))
    with pytest.raises(ConcurrencyConflict):
        await _append(pool, _event(_stream(), 1), _event(stream, 5))
    assert await _versions(pool, stream) == [1]


async def test_appending_behind_an_uncommitted_version_is_a_conflict(pool):
    """Version 3 cannot follow a version 2 that another writer has not committed yet."""
    stream = _stream()
    await _append(pool, _event(stream, 1))
    async with pool.acquire() as first, first.transaction():
        await store.append(first, [_event(stream, 2)])
        with pytest.raises(ConcurrencyConflict) as conflict:
            await _append(pool, _event(stream, 3))
        assert conflict.value.version == 3
    assert await _versions(pool, stream) == [1, 2]


async def test_a_repeated_deterministic_event_id_is_a_duplicate(pool):
    """The same fact (same event id) cannot be recorded twice, on any stream."""
    event_id = uuid.uuid4()
    stream = _stream()
    await _append(pool, _event(stream, 1, event_id=event_id))
    with pytest.raises(DuplicateEvent):
        await _append(pool, _event(stream, 2, event_id=event_id))
    with pytest.raises(DuplicateEvent):
        await _append(pool, _event(_stream(), 1, event_id=event_id))
    assert await _versions(pool, stream) == [1]


def _chain(rows: list[asyncpg.Record]) -> list[bytes]:
    """The hashes an auditor recomputes: sha256(previous hash || canonical bytes), the canonical
    bytes being event id, stream, version, type, data and metadata, one per line."""
    hashes: list[bytes] = []
    previous = b""
    for row in rows:
        canonical = "\n".join(
            [row["event_id"], row["stream_id"], str(row["version"]), row["type"], row["data"],
             row["metadata"]]
        ).encode("utf-8")
        previous = hashlib.sha256(previous + canonical).digest()
        hashes.append(previous)
    return hashes


async def test_each_stream_is_a_hash_chain_an_auditor_can_recompute(pool):
    """Each hash is sha256(previous hash of the stream || canonical bytes of the event)."""
    stream, other = _stream("wallet"), _stream("wallet")
    events = [
        WalletCredited(account_id=1, amount_kobo=250_000, reference="ünï €", balance_after_kobo=1),
        AccountReinstated(account_id=1),
        WalletCredited(account_id=1, amount_kobo=1, reference='q"\\\n', balance_after_kobo=2),
    ]
    recorded = await _append(
        pool,
        *[NewEvent(stream_id=stream, version=v, event=e) for v, e in enumerate(events, 1)],
        NewEvent(stream_id=other, version=1, event=events[0]),
    )
    rows = await pool.fetch(
        "select event_id::text as event_id, stream_id, version, type, data::text as data,"
        " metadata::text as metadata, hash"
        " from events where stream_id = any($1::text[]) order by stream_id, version",
        [stream, other],
    )
    for name in (stream, other):
        of_stream = [row for row in rows if row["stream_id"] == name]
        assert [row["hash"] for row in of_stream] == _chain(of_stream)
    by_stream = {r.stream_id: [] for r in recorded}
    for r in recorded:
        by_stream[r.stream_id].append(r.hash)
    assert by_stream[stream] == [row["hash"] for row in rows if row["stream_id"] == stream]
    first_of = {row["stream_id"]: row["hash"] for row in rows if row["version"] == 1}
    assert first_of[stream] != first_of[other], "the stream name is part of what is hashed"


async def test_the_hash_is_computed_by_the_log_not_taken_from_the_writer(dsn):
    """Even the superuser cannot store a forged hash: the trigger overwrites it."""
    stream = _stream()
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute(
            "insert into events (event_id, stream_id, version, type, data, hash)"
            " values ($1, $2, 1, 'CancelRequested', '{\"order_id\": 1}', '\\x00')",
            uuid.uuid4(),
            stream,
        )
        row = await connection.fetchrow(
            "select event_id::text as event_id, stream_id, version, type, data::text as data,"
            " metadata::text as metadata, hash from events where stream_id = $1",
            stream,
        )
    finally:
        await connection.close()
    assert row["hash"] == _chain([row])[0]


_CHANGES = {
    "UPDATE": "update events set data = '{}'::jsonb",
    "DELETE": "delete from events",
    "TRUNCATE": "truncate events",
}


async def _log_fingerprint(pool: asyncpg.Pool[Any]) -> tuple[int, bytes]:
    count = await pool.fetchval("select count(*) from events")
    digest = await pool.fetchval(
        "select sha256(string_agg(hash, '' order by global_position)) from events"
    )
    return count, digest


@pytest.mark.parametrize("operation", sorted(_CHANGES))
async def test_the_application_role_may_not_change_the_log(pool, operation):
    """Through the application's pool (role boost_app), UPDATE/DELETE/TRUNCATE are denied."""
    await _append(pool, _event(_stream(), 1))
    before = await _log_fingerprint(pool)
    async with pool.acquire() as connection:
        assert await connection.fetchval("select current_user") == "boost_app"
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="permission denied"):
            await connection.execute(_CHANGES[operation])
    assert await _log_fingerprint(pool) == before


@pytest.mark.parametrize("operation", sorted(_CHANGES))
async def test_even_the_superuser_is_stopped_by_the_trigger(pool, dsn, operation):
    """As the owning superuser, the trigger refuses UPDATE, DELETE and TRUNCATE alike."""
    await _append(pool, _event(_stream(), 1))
    before = await _log_fingerprint(pool)
    connection = await asyncpg.connect(dsn)
    try:
        is_superuser = "select rolsuper from pg_roles where rolname = current_user"
        assert await connection.fetchval(is_superuser)
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match=f"append-only .{operation}"):
            await connection.execute(_CHANGES[operation])
    finally:
        await connection.close()
    assert await _log_fingerprint(pool) == before


async def test_the_application_role_has_only_insert_and_select_on_the_log(pool):
    """The grants are the second wall: INSERT and SELECT, nothing else."""
    privileges = {
        privilege: await pool.fetchval(
            "select has_table_privilege('boost_app', 'events', $1)", privilege
        )
        for privilege in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "REFERENCES")
    }
    assert privileges == {
        "SELECT": True, "INSERT": True, "UPDATE": False, "DELETE": False,
        "TRUNCATE": False, "REFERENCES": False,
    }


async def test_read_stream_returns_typed_events_in_version_order(pool):
    """A stream reads back as the typed events that were appended, by version."""
    stream = _stream()
    await _append(pool, _event(stream, 1, 10), _event(stream, 2, 20))
    await _append(pool, _event(stream, 3, 30))
    async with pool.acquire() as connection:
        events = await store.read_stream(connection, stream)
    assert [(e.version, e.event) for e in events] == [
        (1, CancelRequested(order_id=10)),
        (2, CancelRequested(order_id=20)),
        (3, CancelRequested(order_id=30)),
    ]
    assert all(e.metadata == {"actor": "test"} for e in events)
