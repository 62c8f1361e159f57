"""``boost audit replay``: an account's balance and statement as of a moment or a position."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from boost_ledger.ledger.events import wallet_stream
from boost_ledger.ledger.money import format_kobo

MAX_LINES = 100_000


class StatementLine(msgspec.Struct, frozen=True):
    global_position: int
    recorded_at: str
    kind: str
    amount: str
    balance_after: str
    order_id: str | None
    reference: str | None


class Statement(msgspec.Struct, frozen=True):
    account_id: str
    as_of: str
    balance: str
    credits: str
    debits: str
    refunds: str
    lines: list[StatementLine]


_SIGN = {"WalletCredited": 1, "FundsDebited": -1, "Refunded": 1}


async def statement(
    connection: asyncpg.Connection[Any],
    account_id: int,
    *,
    until: datetime | None = None,
    position: int | None = None,
) -> Statement:
    rows = await connection.fetch(
        "select global_position, recorded_at, type, data from events"
        " where stream_id = $1 and ($2::timestamptz is null or recorded_at <= $2)"
        " and ($3::bigint is null or global_position <= $3) order by version limit $4",
        wallet_stream(account_id),
        until,
        position,
        MAX_LINES,
    )
    totals = {"WalletCredited": 0, "FundsDebited": 0, "Refunded": 0}
    balance = 0
    lines = []
    for row in rows:
        data = row["data"]
        amount = data["amount_kobo"]
        totals[row["type"]] += amount
        balance += _SIGN[row["type"]] * amount
        assert balance == data["balance_after_kobo"], "the stream contradicts itself: run verify"
        lines.append(
            StatementLine(
                global_position=row["global_position"],
                recorded_at=row["recorded_at"].isoformat(),
                kind={"WalletCredited": "credit", "FundsDebited": "debit", "Refunded": "refund"}[
                    row["type"]
                ],
                amount=format_kobo(amount),
                balance_after=format_kobo(balance),
                order_id=None if data.get("order_id") is None else str(data["order_id"]),
                reference=data.get("reference"),
            )
        )
    as_of = until.isoformat() if until else (f"position {position}" if position else "now")
    return Statement(
        account_id=str(account_id),
        as_of=as_of,
        balance=format_kobo(balance),
        credits=format_kobo(totals["WalletCredited"]),
        debits=format_kobo(totals["FundsDebited"]),
        refunds=format_kobo(totals["Refunded"]),
        lines=lines,
    )
