"""Sharing a rebuild of several projections between processes.

A rebuild is bound by this process's CPU (decoding events, folding them, encoding rows), and
each projection is rebuilt and swapped on its own, so projections can be rebuilt by separate
processes at once, each reading the log for itself. They are shared out by the share of the log
each one folds, as PostgreSQL's statistics of ``events.type`` estimate it (equal shares when
there are none yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import asyncpg


async def type_shares(connection: asyncpg.Connection[Any]) -> dict[str, float]:
    """Each common event type's estimated share of the log (empty before any ANALYZE)."""
    row = await connection.fetchrow(
        "select most_common_vals::text::text[] as types, most_common_freqs as shares"
        " from pg_stats where schemaname = 'public' and tablename = 'events'"
        " and attname = 'type'"
    )
    if row is None or row["types"] is None:
        return {}
    return dict(zip(row["types"], row["shares"], strict=True))


def share_out(
    modules: Sequence[ModuleType], shares: dict[str, float], jobs: int
) -> list[list[ModuleType]]:
    """``modules`` in at most ``jobs`` groups of about equal work, each in ``modules``' order;
    the heaviest group first."""
    assert jobs >= 1
    weight = {
        module.NAME: sum(shares.get(name, 0.0) for name in module.EVENT_TYPES) + 1e-6
        for module in modules
    }
    groups: list[list[ModuleType]] = [[] for _ in range(min(jobs, len(modules)))]
    loads = [0.0] * len(groups)
    for module in sorted(modules, key=lambda module: -weight[module.NAME]):
        lightest = loads.index(min(loads))
        groups[lightest].append(module)
        loads[lightest] += weight[module.NAME]
    order = {module.NAME: index for index, module in enumerate(modules)}
    for group in groups:
        group.sort(key=lambda module: order[module.NAME])
    ranked = sorted(zip(loads, groups, strict=True), key=lambda pair: -pair[0])
    return [group for _, group in ranked if group]
