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
from collections.abc import Iterable, Sequence
from types import ModuleType
from typing import Any

import asyncpg

from boost_ledger.projections import bulk
from boost_ledger.projections.ranges import Observer, ReplayFailed, apply_range

STABLE_WAIT_S = 60.0


def quoted(identifier: str) -> str:
    assert identifier.replace("_", "").isalnum(), f"unsafe identifier {identifier!r}"
    return f'"{identifier}"'


# The storage parameters of a table (a fillfactor, sql/0013, an operator's autovacuum settings)
# as ``set (...)`` items; empty without any. ``like`` leaves them out of a copy.
_STORAGE = """
select coalesce(string_agg(format('%I = %L', split_part(o, '=', 1), substr(o, strpos(o, '=') + 1)),
                           ', '), '')
  from pg_class c, unnest(c.reloptions) o
 where c.oid = $1::regclass
"""

# Each index of a table by its definition without its name and table ("USING btree (...) WHERE
# ..."), in name order.
_INDEXES = """
select regexp_replace(pg_get_indexdef(i.indexrelid), '^CREATE .*?INDEX \\S+ ON (ONLY )?\\S+ ', '')
       as shape, c.relname::text as name
  from pg_index i join pg_class c on c.oid = i.indexrelid
 where i.indrelid = $1::regclass
 order by c.relname
"""


async def create_copies(
    connection: asyncpg.Connection[Any], schema: str, modules: Iterable[ModuleType]
) -> None:
    """An empty schema holding a structural copy (columns, defaults, checks, indexes) of each
    table of ``modules``; the swap gives it the live table's storage parameters
    (``copy_storage``), so that it fills densely and keeps any changed meanwhile."""
    await connection.execute(f"drop schema if exists {quoted(schema)} cascade")
    await connection.execute(f"create schema {quoted(schema)}")
    for module in modules:
        for table in module.TABLES:
            await connection.execute(
                f"create table {quoted(schema)}.{quoted(table)}"
                f" (like public.{quoted(table)} including all)"
                # Autovacuum would take a fresh copy up while it fills (CPU spent meanwhile, and
                # a lock that makes the swap wait); the swap sets it as the live table has it.
                " with (autovacuum_enabled = false)"
            )


async def copy_storage(connection: asyncpg.Connection[Any], live: str, copy: str) -> None:
    """``copy`` gets the storage parameters of ``live`` (and its autovacuum setting: none set
    means on)."""
    storage = await connection.fetchval(_STORAGE, live)
    await connection.execute(f"alter table {copy} reset (autovacuum_enabled)")
    if storage:
        await connection.execute(f"alter table {copy} set ({storage})")


async def index_names(connection: asyncpg.Connection[Any], table: str) -> dict[str, list[str]]:
    """The names of ``table``'s indexes by definition (``_INDEXES``)."""
    names: dict[str, list[str]] = {}
    for row in await connection.fetch(_INDEXES, table):
        names.setdefault(row["shape"], []).append(row["name"])
    return names


async def rename_indexes(
    connection: asyncpg.Connection[Any], table: str, wanted: dict[str, list[str]]
) -> None:
    """Give ``table``'s indexes the names in ``wanted`` (the live table's, by definition: ``like``
    names the copies' indexes itself, and a migration may name an index). Through temporary
    names, so that no rename meets a name another index of the table still holds."""
    schema = table.partition(".")[0]
    renames = [
        (old, new)
        for shape, olds in (await index_names(connection, table)).items()
        for old, new in zip(olds, wanted.get(shape, []), strict=False)
        if old != new
    ]
    for step, (old, _) in enumerate(renames):
        await connection.execute(
            f"alter index {schema}.{quoted(old)} rename to {quoted(f'rebuild_swap_{step}')}"
        )
    for step, (_, new) in enumerate(renames):
        await connection.execute(
            f"alter index {schema}.{quoted(f'rebuild_swap_{step}')} rename to {quoted(new)}"
        )


async def stable_head(connection: asyncpg.Connection[Any]) -> int:
    """A position at or below which no event can still appear (waits for running writers).

    Every event at or below the head was appended by a transaction that had its id before it
    drew its position (sql/0019), so before the head's snapshot: an id assigned after that
    snapshot (the horizon) is above all of theirs, and once the oldest running transaction is
    at or past the horizon, each of them has ended. The snapshot's xmax is no such horizon: it
    is one past the highest *completed* id, and a transaction with a higher id may be running,
    holding a position below the head (it drew it before a transaction with a lower id drew
    the head and committed)."""
    row = await connection.fetchrow(
        "select coalesce(max(global_position), 0) as head,"
        " pg_current_xact_id()::text as horizon from events"
    )
    assert row is not None
    try:
        async with asyncio.timeout(STABLE_WAIT_S):
            while not await connection.fetchval(  # noqa: ASYNC110 - polling the database
                "select pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
                row["horizon"],
            ):
                await asyncio.sleep(0.005)
    except TimeoutError:
        raise HeadNotStable() from None
    head: int = row["head"]
    return head


class HeadNotStable(RuntimeError):
    """``stable_head`` waited ``STABLE_WAIT_S`` for a transaction older than its head."""

    def __init__(self) -> None:
        super().__init__(
            f"a transaction older than the log's head still ran after {STABLE_WAIT_S:.0f} s (an"
            " audit verify, which holds one for its whole run, or a session idle in a"
            " transaction: see pg_stat_activity); run again once it has ended"
        )


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
        # One savepoint for the whole replay (the batches fold in it, none of their own): a
        # refusal rolls the copies back and leaves the snapshot's transaction usable for the
        # rest of the log.
        async with connection.transaction():
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
    """Temporary copies with the live tables' columns, defaults and checks, indexed only on the
    partition column that each batch loads and replaces rows by (unique where it is the key):
    the live tables' other indexes serve readers, and maintaining them row by row would cost a
    replay more than its fold."""
    for spec in module.BULK_TABLES:
        await connection.execute(
            f"create temporary table {quoted(spec.name)} (like public.{quoted(spec.name)}"
            " including defaults including constraints) on commit drop"
        )
        unique = "unique " if spec.key == (spec.partition,) else ""
        await connection.execute(
            f"create {unique}index on pg_temp.{quoted(spec.name)} ({quoted(spec.partition)})"
        )
