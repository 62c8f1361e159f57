"""Pass 1 of a verification: every stream, in version order, streamed with a cursor.

Per stream: versions run 1, 2, 3 ... with no gap; each hash is sha256(previous hash ||
canonical bytes) (the same bytes as ``event_canonical_bytes`` in sql/0001_event_log.sql).
Per wallet stream: each balance_after follows from the previous one, never below zero; each
order is debited once and refunded at most once, never more than its charge; the debit, refund
and credit ids are the deterministic ones.
"""

from __future__ import annotations

import hashlib
from typing import Any

import asyncpg
import msgspec

from boost_ledger.audit.findings import Finding, Report
from boost_ledger.ledger.events import credit_event_id, debit_event_id, refund_event_id

CURSOR_PREFETCH = 10_000

_QUERY = """
select global_position, event_id, stream_id, version, type, data::text as data,
       metadata::text as metadata, hash
  from events order by stream_id, version
"""


class _WalletState:
    __slots__ = ("balance_kobo", "debits", "refunds")

    def __init__(self) -> None:
        self.balance_kobo = 0
        self.debits: dict[int, int] = {}
        self.refunds: dict[int, int] = {}


class _Money(msgspec.Struct):
    account_id: int
    amount_kobo: int
    balance_after_kobo: int
    order_id: int | None = None
    reference: str | None = None


_money_decoder = msgspec.json.Decoder(_Money)


def canonical_bytes(
    event_id: Any, stream_id: str, version: int, type_name: str, data: str, metadata: str
) -> bytes:
    """The bytes each hash covers: ``event_canonical_bytes`` of sql/0001_event_log.sql."""
    return f"{event_id}\n{stream_id}\n{version}\n{type_name}\n{data}\n{metadata}".encode()


async def verify_chains(connection: asyncpg.Connection[Any], report: Report) -> None:
    stream = ""
    previous_hash = b""
    expected_version = 1
    wallet: _WalletState | None = None
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        async for row in connection.cursor(_QUERY, prefetch=CURSOR_PREFETCH):
            report.events += 1
            if row["stream_id"] != stream:
                stream = row["stream_id"]
                report.streams += 1
                previous_hash, expected_version = b"", 1
                wallet = _WalletState() if stream.startswith("wallet-") else None
            where = {"global_position": row["global_position"], "stream_id": stream}
            if row["version"] != expected_version:
                report.add(
                    Finding(
                        "stream-versions",
                        f"expected version {expected_version},"
                        f" found {row['version']} (an event is missing or moved)",
                        **where,
                    )
                )
            canonical = canonical_bytes(
                row["event_id"], stream, row["version"], row["type"], row["data"], row["metadata"]
            )
            computed = hashlib.sha256(previous_hash + canonical).digest()
            if computed != row["hash"]:
                report.add(
                    Finding(
                        "hash-chain",
                        f"hash mismatch at version {row['version']}"
                        " (the event or one before it was altered)",
                        **where,
                    )
                )
            previous_hash = row["hash"]
            expected_version = row["version"] + 1
            if wallet is not None:
                _check_money(wallet, row, report, where)


def _check_money(wallet: _WalletState, row: Any, report: Report, where: dict[str, Any]) -> None:
    kind = row["type"]
    if kind not in ("WalletCredited", "FundsDebited", "Refunded"):
        return
    money = _money_decoder.decode(row["data"])
    if money.amount_kobo <= 0:
        report.add(Finding("amount", f"{kind} of {money.amount_kobo} kobo", **where))
    if kind == "WalletCredited":
        wallet.balance_kobo += money.amount_kobo
        expected_id = credit_event_id(money.account_id, money.reference or "")
    elif kind == "FundsDebited":
        order_id = money.order_id or 0
        wallet.balance_kobo -= money.amount_kobo
        if order_id in wallet.debits:
            report.add(Finding("debit-once", f"order {order_id} debited twice", **where))
        wallet.debits[order_id] = money.amount_kobo
        expected_id = debit_event_id(order_id)
    else:
        order_id = money.order_id or 0
        wallet.balance_kobo += money.amount_kobo
        if order_id in wallet.refunds:
            report.add(Finding("refund-once", f"order {order_id} refunded twice", **where))
        if money.amount_kobo > wallet.debits.get(order_id, 0):
            report.add(
                Finding(
                    "refund-bound",
                    f"refund of {money.amount_kobo} kobo exceeds the charge of order {order_id}",
                    **where,
                )
            )
        wallet.refunds[order_id] = money.amount_kobo
        expected_id = refund_event_id(order_id)
    if wallet.balance_kobo != money.balance_after_kobo:
        report.add(
            Finding(
                "balance",
                f"balance_after {money.balance_after_kobo} kobo, but the"
                f" stream sums to {wallet.balance_kobo}",
                **where,
            )
        )
        wallet.balance_kobo = money.balance_after_kobo  # report each break once, not every row
    if wallet.balance_kobo < 0:
        report.add(Finding("balance", f"balance below zero: {wallet.balance_kobo}", **where))
    if row["event_id"] != expected_id:
        report.add(
            Finding(
                "deterministic-id",
                f"{kind} has event id {row['event_id']}, expected {expected_id}",
                **where,
            )
        )
