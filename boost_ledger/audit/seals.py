"""Seals: checkpoints over the feed that make any later change to what they cover visible.

A seal is a ``LedgerSealed`` event on the ``audit-seals`` stream holding the digest of every
event hash up to a position, in position order. Each event's hash already chains its stream, so
the digest covers contents, order and presence of every event under the seal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import asyncpg
import msgspec

from boost_ledger.audit.chains import HASH
from boost_ledger.audit.findings import Finding, Report
from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.events import SEAL_STREAM, LedgerSealed
from boost_ledger.ledger.replay_types import decode_seal
from boost_ledger.ledger.store import NewEvent

CURSOR_PREFETCH = 10_000


class Digest:
    """The running digest of event hashes in position order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.events = 0

    def add(self, event_hash: bytes) -> None:
        self._hash.update(event_hash)
        self.events += 1

    def add_all(self, event_hashes: list[bytes]) -> None:
        self._hash.update(b"".join(event_hashes))
        self.events += len(event_hashes)

    def hexdigest(self) -> str:
        return self._hash.copy().hexdigest()


async def seal(connection: asyncpg.Connection[Any], position: int | None = None) -> LedgerSealed:
    """Record a seal over the feed up to ``position`` (default: the stable head)."""
    from boost_ledger.projections.replay import stable_head

    head = await stable_head(connection)
    target = head if position is None else min(position, head)
    digest = Digest()
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(
            "select hash from events where global_position <= $1 order by global_position",
            target,
            prefetch=CURSOR_PREFETCH,
        ):
            digest.add(row["hash"])
    event = LedgerSealed(position=target, events=digest.events, digest=digest.hexdigest())
    async with connection.transaction():
        await connection.execute("select pg_advisory_xact_lock(hashtext($1))", SEAL_STREAM)
        version = await connection.fetchval(
            "select coalesce(max(version), 0) from events where stream_id = $1", SEAL_STREAM
        )
        await commit(
            connection,
            [NewEvent(stream_id=SEAL_STREAM, version=version + 1, event=event)],
            {"actor": "auditor"},
        )
    return event


async def read_seals(
    connection: asyncpg.Connection[Any], report: Report
) -> list[tuple[int, LedgerSealed]]:
    """Every seal of the log: (its own position, what it sealed). One whose data is not a
    seal's is a finding of ``report``, and checks nothing."""
    rows = await connection.fetch(
        "select global_position, data::text as data from events"
        " where stream_id = $1 order by version",
        SEAL_STREAM,
    )
    seals = []
    for row in rows:
        try:
            seals.append((row["global_position"], decode_seal(row["data"])))
        except msgspec.DecodeError as error:
            detail = f"the seal's data is not a seal's: {error}"
            report.add(Finding("seal", detail, row["global_position"], SEAL_STREAM))
    return seals


class SealCheck:
    """Every seal's digest, recomputed on the pass over the log in position order."""

    def __init__(self, report: Report, seals: list[tuple[int, LedgerSealed]]) -> None:
        self.report = report
        self._pending = sorted(seals, key=lambda item: item[1].position)
        self._index = 0
        self._digest = Digest()
        report.seals = len(seals)

    def check(self, rows: Sequence[Any]) -> None:
        pending, digest = self._pending, self._digest
        if self._index == len(pending) or pending[self._index][1].position >= rows[-1][0]:
            digest.add_all([row[HASH] for row in rows])  # no seal ends inside this batch
            return
        for row in rows:
            while self._index < len(pending) and pending[self._index][1].position < row[0]:
                _check_seal(pending[self._index], digest, self.report)
                self._index += 1
            digest.add(row[HASH])

    def finish(self) -> None:
        """After the last event: the seals over positions beyond it."""
        while self._index < len(self._pending):
            _check_seal(self._pending[self._index], self._digest, self.report)
            self._index += 1


def _check_seal(item: tuple[int, LedgerSealed], digest: Digest, report: Report) -> None:
    seal_position, sealed = item
    if digest.hexdigest() != sealed.digest or digest.events != sealed.events:
        report.add(
            Finding(
                "seal",
                f"the seal at position {seal_position} over positions 1..{sealed.position}"
                f" no longer matches ({sealed.events} events sealed, {digest.events} now):"
                " an event it covers was altered, removed or added",
                global_position=seal_position,
                stream_id=SEAL_STREAM,
            )
        )
