"""Set-based replay: the projections' row folds applied to batches of events.

Replaying event by event costs a database round trip per event. A rebuild (and the auditor's
comparison) instead takes events in batches: it loads the rows the batch touches, folds the
events into them in memory (``fold`` of each projection module, the pure twin of its inline SQL
``apply``), deletes those rows and writes the new ones back with one COPY per table. The two
forms are held equal by the property that a replay equals the live tables.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from operator import itemgetter
from types import ModuleType
from typing import Any

import msgspec

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import EVENT_TYPES, RecordedEvent

Row = dict[str, Any]
State = dict[str, dict[Any, Row]]


class TableSpec(msgspec.Struct, frozen=True):
    """How a projection table is loaded and written by a batch: rows are fetched and replaced
    by ``partition`` (the column events name), and held in memory by ``key``."""

    name: str
    partition: str
    key: tuple[str, ...]
    columns: tuple[str, ...]

    def key_of(self, row: Row) -> Any:
        return tuple(row[column] for column in self.key) if len(self.key) > 1 else row[self.key[0]]

    @property
    def values_of(self) -> Callable[[Row], tuple[Any, ...]]:
        """A row's values in ``columns`` order, as COPY takes them (a C-level getter)."""
        assert len(self.columns) > 1
        return itemgetter(*self.columns)


class FoldRefused(Exception):
    """A projection's fold refused an event (it contradicts the events before it)."""

    def __init__(self, record: RecordedEvent, error: Exception) -> None:
        super().__init__(str(error))
        self.record = record
        self.error = error


async def apply_batch(
    connection: Connection,
    modules: Sequence[ModuleType],
    records: Sequence[RecordedEvent],
    schema: str | None,
) -> int:
    """Fold ``records`` into the copies (in ``schema``, or temporary tables when None); returns
    how many of them the modules folded (an event two modules fold counts twice)."""
    folded = 0
    for module in modules:
        classes = _classes(module)
        relevant = [record for record in records if type(record.event) in classes]
        if not relevant:
            continue
        folded += len(relevant)
        partitions = _touched(module, relevant)
        state = await _load(connection, module.BULK_TABLES, partitions, schema)
        present = _present(module.BULK_TABLES, state)
        for record in relevant:
            try:
                module.fold(state, record)
            # What a forged event's data can raise in a fold (a fact missing, an id that is no
            # hex, a value of the wrong kind): the replay names the event instead of failing.
            except (AssertionError, KeyError, ValueError, TypeError) as error:
                raise FoldRefused(record, error) from error
        await _store(connection, module.BULK_TABLES, present, state, schema)
    return folded


def _classes(module: ModuleType) -> frozenset[type]:
    """The event classes ``module`` folds (a class test is cheaper than a name per event)."""
    return frozenset(EVENT_TYPES[name] for name in module.EVENT_TYPES)


def _touched(module: ModuleType, records: Iterable[RecordedEvent]) -> dict[str, set[Any]]:
    """The partitions that the batch's events touch and whose rows may already exist: those
    first touched by an event that opens them (``OPENED_BY``) have none to load. Should a
    contradicting log have one anyway, writing the batch's row fails on the copy's unique key."""
    opened_by: frozenset[type] = getattr(module, "OPENED_BY", frozenset())
    partitions: dict[str, set[Any]] = {spec.name: set() for spec in module.BULK_TABLES}
    fresh: dict[str, set[Any]] = {spec.name: set() for spec in module.BULK_TABLES}
    for record in records:
        opens = type(record.event) in opened_by
        for table, value in module.touches(record):
            if value not in partitions[table]:
                partitions[table].add(value)
                if opens:
                    fresh[table].add(value)
    return {table: values - fresh[table] for table, values in partitions.items()}


def _qualified(schema: str | None, table: str) -> str:
    return f'"{table}"' if schema is None else f'"{schema}"."{table}"'


async def _load(
    connection: Connection,
    specs: Sequence[TableSpec],
    partitions: dict[str, set[Any]],
    schema: str | None,
) -> State:
    state: State = {}
    for spec in specs:
        values = list(partitions[spec.name])
        rows = (
            await connection.fetch(
                f"select {', '.join(spec.columns)} from {_qualified(schema, spec.name)}"
                f" where {spec.partition} = any($1)",
                values,
            )
            if values
            else []
        )
        state[spec.name] = {spec.key_of(dict(row)): dict(row) for row in rows}
    return state


def _present(specs: Sequence[TableSpec], state: State) -> dict[str, set[Any]]:
    """The partitions that have rows in the tables (as loaded): the others need no delete."""
    return {spec.name: {row[spec.partition] for row in state[spec.name].values()} for spec in specs}


async def _store(
    connection: Connection,
    specs: Sequence[TableSpec],
    present: dict[str, set[Any]],
    state: State,
    schema: str | None,
) -> None:
    """Replace the partitions' rows: those loaded are deleted, then the state is copied in."""
    for spec in specs:
        if values := list(present[spec.name]):
            await connection.execute(
                f"delete from {_qualified(schema, spec.name)} where {spec.partition} = any($1)",
                values,
            )
        rows = list(map(spec.values_of, state[spec.name].values()))
        if rows:
            await connection.copy_records_to_table(
                spec.name, records=rows, columns=list(spec.columns), schema_name=schema
            )
