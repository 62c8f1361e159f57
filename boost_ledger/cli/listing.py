"""Bounded listings: a command lists at most so many rows, and says on stderr when it cut."""

from __future__ import annotations

import sys
from typing import TypeVar

Row = TypeVar("Row")


def first_rows(rows: list[Row], limit: int, what: str) -> list[Row]:
    """The first ``limit`` of ``rows``, fetched with ``limit + 1`` so that the extra row tells
    that more exist; when it does, one line on stderr says how many are shown, so that stdout
    (text or JSON) keeps its format and a cut list is never taken for the whole one."""
    assert limit >= 1 and len(rows) <= limit + 1, (limit, len(rows))
    if len(rows) > limit:
        print(f"boost: showing the first {limit} {what}; more exist", file=sys.stderr)
    return rows[:limit]
