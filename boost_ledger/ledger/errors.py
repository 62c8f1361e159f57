"""Errors of the ledger's write side, independent of any transport."""

from __future__ import annotations


class LedgerError(Exception):
    """Base of the ledger's errors."""


class ConcurrencyConflict(LedgerError):
    """Another writer appended to a stream at the version this append expected."""

    def __init__(self, stream_id: str, version: int) -> None:
        super().__init__(f"stream {stream_id} already has version {version}")
        self.stream_id = stream_id
        self.version = version


class DuplicateEvent(LedgerError):
    """An event with this deterministic id exists: the operation was already done."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
