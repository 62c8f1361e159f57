"""Every wallet's money, checked event by event on the pass over the log (position order, which
is each stream's version order: see chains.py).

Each credit, debit and refund lies in the stream of the wallet it names (wherever it lies, the
projections move that wallet's money, and the checks of refunds only look in wallet streams),
moves a positive amount; its ``balance_after`` follows from the wallet's previous one and is
never below zero; its event id is the deterministic one. That an order is debited once,
refunded at most once and never above its charge is a question about sets of events: checks.py
asks it in SQL.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from boost_ledger.audit.chains import DATA, EVENT_ID, POSITION, STREAM, TYPE
from boost_ledger.audit.findings import Finding, Report
from boost_ledger.ledger.events import (
    ID_NAMESPACE,
    credit_event_id,
    debit_event_id,
    refund_event_id,
)

MONEY_TYPES = frozenset({"WalletCredited", "FundsDebited", "Refunded"})
_SIGN = {"WalletCredited": 1, "FundsDebited": -1, "Refunded": 1}


class _Money(msgspec.Struct):
    account_id: int
    amount_kobo: int
    balance_after_kobo: int
    order_id: int | None = None
    reference: str | None = None


_money_decoder = msgspec.json.Decoder(_Money)


class MoneyCheck:
    """Amounts, balances and deterministic ids of the wallet streams' money events."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self._balance_kobo: dict[str, int] = {}  # wallet stream -> its last balance_after

    def check(self, rows: Sequence[Any]) -> None:
        decode = _money_decoder.decode
        for row in rows:
            kind = row[TYPE]
            if kind in MONEY_TYPES:
                try:
                    money = decode(row[DATA])
                except msgspec.DecodeError as error:
                    self._add("amount", f"{kind} does not hold a money event: {error}", row)
                    continue
                stream = row[STREAM]
                if stream != f"wallet-{money.account_id}":
                    self._add_foreign(row, kind, money)
                    if not stream.startswith("wallet-"):
                        continue  # no wallet's balance to follow there
                self._check_one(row, kind, money)

    def _add_foreign(self, row: Any, kind: str, money: _Money) -> None:
        self._add(
            "wallet-stream",
            f"{kind} of account {money.account_id} in stream {row[STREAM]}, not in its"
            f" wallet's stream wallet-{money.account_id}",
            row,
        )

    def _check_one(self, row: Any, kind: str, money: _Money) -> None:
        if money.amount_kobo <= 0:
            self._add("amount", f"{kind} of {money.amount_kobo} kobo", row)
        expected_kobo = self._balance_kobo.get(row[STREAM], 0) + _SIGN[kind] * money.amount_kobo
        if expected_kobo != money.balance_after_kobo:
            self._add(
                "balance",
                f"balance_after {money.balance_after_kobo} kobo, but the"
                f" stream sums to {expected_kobo}",
                row,
            )
        # Each break is reported once, not on every event after it.
        self._balance_kobo[row[STREAM]] = money.balance_after_kobo
        if money.balance_after_kobo < 0:
            self._add("balance", f"balance below zero: {money.balance_after_kobo}", row)
        expected_id = _deterministic_id(kind, money)
        if row[EVENT_ID].replace("-", "") != expected_id.hex():  # the id as PostgreSQL prints it
            self._add(
                "deterministic-id",
                f"{kind} has event id {row[EVENT_ID]}, expected {uuid.UUID(bytes=expected_id)}",
                row,
            )

    def _add(self, check: str, detail: str, row: Any) -> None:
        self.report.add(Finding(check, detail, row[POSITION], row[STREAM]))


def _deterministic_id(kind: str, money: _Money) -> bytes:
    """The bytes of the event's one possible id. ``uuid.uuid5`` spends most of its time building
    the UUID object; here the name-based (version 5) id is hashed straight to bytes, the names
    being those of events.py (pinned against its functions below)."""
    if kind == "WalletCredited":
        name = f"credit:{money.account_id}:{money.reference or ''}"
    elif kind == "FundsDebited":
        name = f"debit:{money.order_id or 0}"
    else:
        name = f"refund:{money.order_id or 0}"
    hasher = _NAMESPACE_HASH.copy()
    hasher.update(name.encode())
    digest = bytearray(hasher.digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return bytes(digest)


_NAMESPACE_HASH = hashlib.sha1(ID_NAMESPACE.bytes, usedforsecurity=False)
_SAMPLE = _Money(account_id=1001, amount_kobo=1, balance_after_kobo=1, order_id=7, reference="r")
assert _deterministic_id("WalletCredited", _SAMPLE) == credit_event_id(1001, "r").bytes
assert _deterministic_id("FundsDebited", _SAMPLE) == debit_event_id(7).bytes
assert _deterministic_id("Refunded", _SAMPLE) == refund_event_id(7).bytes
