"""Online rebuild: replay a projection into fresh tables and swap them in while serving.

1. copy the tables' structure into a schema of their own;
2. replay the log into the copies, round after round up to a stable head, without locks;
3. lock the live tables briefly (writers queue for a moment, readers too), apply the tail of
   committed events, drop the live tables and move the copies into their place.
A writer blocked by the lock continues on the new tables once it is released: it had not yet
touched them (or the lock would not have been granted), so it reads and writes the new ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from types import ModuleType
from typing import Any

import asyncpg
import msgspec

from boost_ledger import projections
from boost_ledger.ledger import store
from boost_ledger.postgres import APPLICATION_ROLE
from boost_ledger.projections.ranges import Progress, apply_range
from boost_ledger.projections.replay import (
    copy_storage,
    create_copies,
    index_names,
    quoted,
    rename_indexes,
    stable_head,
)

SMALL_TAIL = 2000
MAX_SWAP_ATTEMPTS = 40
# Catch-up rounds before each swap attempt: a log that grows faster than the rebuild folds it
# (each round ends with more than SMALL_TAIL new events) ends the rebuild instead of holding
# its copies, its connections and its advisory locks for as long as the writers keep up.
MAX_CATCH_UP_ROUNDS = 50
# The swap waits at most this long for its locks, and never longer than half the server's
# deadlock_timeout: should its locks close a cycle with a writer's (opening an account writes
# accounts then api_keys, and checkout's key check locks rows of accounts then api_keys, where
# authentication reads api_keys then accounts, so no lock order suits them all), the swap
# gives up first and retries, instead of PostgreSQL failing the writer.
SWAP_LOCK_TIMEOUT_MS = 500
# Writers touch these tables before the other table of their projection: a checkout reads the
# key's idempotency record before it inserts the order, and every request's authentication reads
# the API key before its account. Locking them first avoids the cycles with those writers.
LOCKED_FIRST = ("idempotency_keys", "api_keys")

# Fills the copies up to a stable head (given) and says how many events each projection folded.
Fill = Callable[[int], Awaitable[Counter[str]]]


# Each projection's rebuild holds a session advisory lock on this class and its name for the
# whole run: two rebuilds of one projection share its copies' schema, so a second one would
# drop and recreate the copies under the first, which could then swap an empty table in.
LOCK_CLASS = "boost.projections.rebuild"


class RebuildRunning(Exception):
    """Another rebuild of this projection is running (it holds the projection's lock)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"a rebuild of {name} is already running")
        self.name = name


class SwapNotLocked(RuntimeError):
    """The live tables of ``pending`` stayed locked through every swap attempt (a long reader
    holds them, such as an ``audit verify``, which keeps them for its whole run): those were
    left as they were; ``reports`` are the rebuilds that did swap."""

    def __init__(self, pending: list[str], reports: list[RebuildReport]) -> None:
        names = ", ".join(pending)
        super().__init__(
            f"could not lock {names} for the swap (a long reader, such as an audit verify,"
            " holds it); retry when it has ended"
        )
        self.pending = pending
        self.reports = reports


class LogOutpaced(RuntimeError):
    """Every catch-up round of ``pending`` ended with more than SMALL_TAIL new events: the log
    grows faster than the rebuild folds it. The live tables were left as they were."""

    def __init__(self, pending: list[str], rounds: int) -> None:
        names = ", ".join(pending)
        super().__init__(
            f"the log grew by more than {SMALL_TAIL} events in each of {rounds} catch-up"
            f" rounds while rebuilding {names}; retry when the write load is lower"
        )
        self.pending = pending


class RebuildReport(msgspec.Struct, frozen=True):
    name: str
    events_applied: int
    tail_events: int
    swap_attempts: int


def _schema(module: ModuleType) -> str:
    return f"rebuild_{module.NAME}"


async def rebuild(
    connection: asyncpg.Connection[Any], module: ModuleType, progress: Progress | None = None
) -> RebuildReport:
    """Rebuild one projection online; ``connection`` is an owner's (postgres.owner_connection)."""
    (report,) = await rebuild_all(connection, [module], progress)
    return report


async def rebuild_all(
    connection: asyncpg.Connection[Any],
    modules: Sequence[ModuleType],
    progress: Progress | None = None,
    reader: asyncpg.Connection[Any] | None = None,
    fill: Fill | None = None,
) -> list[RebuildReport]:
    """Rebuild projections online in one pass over the log (each event read once, folded by
    every projection that wants it), then swap each in; reports in the order of ``modules``.
    With a ``reader`` (a second owner connection) the log is read there, a batch ahead. With
    ``fill``, the copies are first filled up to a stable head by it (see ``fill_part``).
    Raises ``RebuildRunning``, having changed nothing, while another rebuild of one of them
    runs."""
    assert len({module.NAME for module in modules}) == len(modules), "each projection once"
    await _lock(connection, modules)
    try:
        return await _rebuild_locked(connection, modules, progress, reader, fill)
    finally:
        await _unlock(connection, modules)


async def _lock(connection: asyncpg.Connection[Any], modules: Sequence[ModuleType]) -> None:
    taken: list[ModuleType] = []
    for module in modules:
        locked = await connection.fetchval(
            "select pg_try_advisory_lock(hashtext($1), hashtext($2))", LOCK_CLASS, module.NAME
        )
        if not locked:
            await _unlock(connection, taken)
            raise RebuildRunning(module.NAME)
        taken.append(module)


async def _unlock(connection: asyncpg.Connection[Any], modules: Sequence[ModuleType]) -> None:
    if connection.is_closed():
        return  # a session's locks end with it
    for module in modules:
        await connection.execute(
            "select pg_advisory_unlock(hashtext($1), hashtext($2))", LOCK_CLASS, module.NAME
        )


async def _rebuild_locked(
    connection: asyncpg.Connection[Any],
    modules: Sequence[ModuleType],
    progress: Progress | None,
    reader: asyncpg.Connection[Any] | None,
    fill: Fill | None,
) -> list[RebuildReport]:
    for module in modules:
        await create_copies(connection, _schema(module), [module])
    try:
        reports: dict[str, RebuildReport] = {}
        pending, position, folded = list(modules), 0, Counter[str]()
        if fill is not None:
            position = await stable_head(connection)
            folded.update(await fill(position))
        for attempt in range(1, MAX_SWAP_ATTEMPTS + 1):
            position = await _catch_up(connection, reader, pending, position, folded, progress)
            for module in list(pending):
                tail = await _try_swap(connection, reader, module, position, progress)
                if tail is not None:
                    applied = folded[module.NAME] + tail
                    reports[module.NAME] = RebuildReport(module.NAME, applied, tail, attempt)
                    pending.remove(module)
            if not pending:
                return [reports[module.NAME] for module in modules]
        swapped = [reports[module.NAME] for module in modules if module.NAME in reports]
        raise SwapNotLocked([module.NAME for module in pending], swapped)
    finally:
        for module in modules:
            await connection.execute(f"drop schema if exists {quoted(_schema(module))} cascade")


async def fill_part(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any] | None,
    module: ModuleType,
    up_to: int,
    part: store.Part,
    progress: Progress | None = None,
) -> Counter[str]:
    """Fold one part of the events up to ``up_to`` into ``module``'s copies (made by a
    ``rebuild_all`` running meanwhile, whose ``fill`` waits for every part). Parts split the
    events by the field the projection's rows are partitioned by, so each part writes rows of
    its own: several processes can fill one projection at once."""
    target = [(module, _schema(module))]
    _, folded = await apply_range(connection, target, 0, up_to, progress, reader=reader, part=part)
    return folded


def partition_field(module: ModuleType) -> str:
    """The event field that names the rows of ``module``'s tables (one for all its tables)."""
    fields: set[str] = {spec.partition for spec in module.BULK_TABLES}
    assert len(fields) == 1, f"{module.NAME} partitions its tables by {fields}"
    return fields.pop()


async def _catch_up(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any] | None,
    modules: Sequence[ModuleType],
    position: int,
    folded: Counter[str],
    progress: Progress | None,
) -> int:
    """Replay round after round up to a stable head, until a round had only a small tail;
    raises ``LogOutpaced`` after MAX_CATCH_UP_ROUNDS rounds without one."""
    targets = [(module, _schema(module)) for module in modules]
    for _ in range(MAX_CATCH_UP_ROUNDS):
        head = await stable_head(connection)
        before = position
        position, counts = await apply_range(
            connection, targets, position, head, progress, reader=reader
        )
        folded.update(counts)
        if head - before <= SMALL_TAIL:
            return position
    raise LogOutpaced([module.NAME for module in modules], MAX_CATCH_UP_ROUNDS)


async def _try_swap(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any] | None,
    module: ModuleType,
    position: int,
    progress: Progress | None,
) -> int | None:
    """Lock, apply the tail, swap. None when the lock could not be had in time."""
    schema = _schema(module)
    in_lock_order = sorted(module.TABLES, key=lambda table: table not in LOCKED_FIRST)
    tables = ", ".join(f"public.{quoted(table)}" for table in in_lock_order)
    lock_timeout_ms = await _lock_timeout_ms(connection)
    try:
        async with connection.transaction():
            await connection.execute(f"set local lock_timeout = {lock_timeout_ms}")
            await connection.execute(f"lock table {tables} in access exclusive mode")
            # The tail is read after the lock is held: every event of these tables is committed.
            _, counts = await apply_range(
                connection, [(module, schema)], position, None, progress, reader=reader
            )
            for table in module.TABLES:
                await _replace(connection, schema, table)
            return counts[module.NAME]
    except asyncpg.LockNotAvailableError:
        return None


async def _replace(connection: asyncpg.Connection[Any], schema: str, table: str) -> None:
    """The live ``table`` dropped and its copy moved into its place, with the live one's index
    names, storage parameters and grants."""
    live, copy = f"public.{quoted(table)}", f"{quoted(schema)}.{quoted(table)}"
    names = await index_names(connection, live)
    await copy_storage(connection, live, copy)
    await connection.execute(f"drop table {live}")
    await connection.execute(f"alter table {copy} set schema public")
    await rename_indexes(connection, live, names)
    await _grant(connection, table)


async def _lock_timeout_ms(connection: asyncpg.Connection[Any]) -> int:
    deadlock_ms: int = await connection.fetchval(
        "select setting::int from pg_settings where name = 'deadlock_timeout'"
    )
    return max(1, min(SWAP_LOCK_TIMEOUT_MS, deadlock_ms // 2))


async def _grant(connection: asyncpg.Connection[Any], table: str) -> None:
    role_exists = await connection.fetchval(
        "select exists (select 1 from pg_roles where rolname = $1)", APPLICATION_ROLE
    )
    if role_exists:
        await connection.execute(
            f"grant select, insert, update, delete on public.{quoted(table)} to {APPLICATION_ROLE}"
        )


def chosen_modules(names: list[str], every: bool) -> list[ModuleType]:
    """The projections ``names`` (each once, however often named), or all of them."""
    if every or not names:
        return list(projections.PROJECTIONS)
    # A name given twice would be rebuilt twice in one run (its session's advisory lock is
    # taken again, not refused): its copies made again and folded twice, and the second swap
    # finding the copies already swapped in.
    return [projections.by_name(name) for name in dict.fromkeys(names)]
