"""``boost audit replay``: an account's balance and statement as of a moment or a position."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
import msgspec

from boost_ledger.ledger.accounts import AccountNotFound
from boost_ledger.ledger.events import account_stream, wallet_stream
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
    earlier_lines: int = 0
    """Lines before ``lines`` not shown (past ``MAX_LINES``); the balance and totals count them."""


class StatementContradicted(Exception):
    """The wallet's stream contradicts itself (a balance after that its amounts do not give)."""


_SIGN = {"WalletCredited": 1, "FundsDebited": -1, "Refunded": 1}
_KIND = {"WalletCredited": "credit", "FundsDebited": "debit", "Refunded": "refund"}
_BOUND = (
    " where stream_id = $1 and ($2::timestamptz is null or recorded_at <= $2)"
    " and ($3::bigint is null or global_position <= $3)"
)


async def statement(
    connection: asyncpg.Connection[Any],
    account_id: int,
    *,
    until: datetime | None = None,
    position: int | None = None,
    max_lines: int = MAX_LINES,
) -> Statement:
    """The balance and totals over every event of the wallet up to the bound, and its latest
    ``max_lines`` lines (each checked against the balance after it that the event recorded)."""
    if connection.is_in_transaction():
        return await _statement(connection, account_id, until, position, max_lines)
    # One snapshot for the totals and the lines: an event committed between them would make
    # a valid stream look self-contradictory.
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        return await _statement(connection, account_id, until, position, max_lines)


async def _statement(
    connection: asyncpg.Connection[Any],
    account_id: int,
    until: datetime | None,
    position: int | None,
    max_lines: int,
) -> Statement:
    # An account never opened has no statement, not an empty one: a mistyped id must not read
    # as a wallet of 0.00. One opened after the bound has a statement of nothing yet.
    opened = await connection.fetchval(
        "select exists (select 1 from events where stream_id = $1)", account_stream(account_id)
    )
    if not opened:
        raise AccountNotFound(account_id)
    bound = (wallet_stream(account_id), until, position)
    try:
        sums = await connection.fetch(
            "select type, count(*) as lines, sum((data->>'amount_kobo')::bigint) as kobo"
            f" from events{_BOUND} group by type",
            *bound,
        )
    except (asyncpg.DataError, asyncpg.NumericValueOutOfRangeError) as error:
        raise StatementContradicted(f"an amount is no number ({error}): run verify") from None
    totals = {"WalletCredited": 0, "FundsDebited": 0, "Refunded": 0}
    totals.update({row["type"]: int(row["kobo"]) for row in sums if row["type"] in totals})
    balance = sum(_SIGN[kind] * kobo for kind, kobo in totals.items())
    rows = await connection.fetch(
        f"select global_position, recorded_at, type, data from events{_BOUND}"
        " order by version desc limit $4",
        *bound,
        max_lines,
    )
    rows.reverse()
    lines = _lines(rows, balance)
    return Statement(
        account_id=str(account_id),
        as_of=(
            until.isoformat()
            if until is not None
            else (f"position {position}" if position is not None else "now")
        ),
        balance=format_kobo(balance),
        credits=format_kobo(totals["WalletCredited"]),
        debits=format_kobo(totals["FundsDebited"]),
        refunds=format_kobo(totals["Refunded"]),
        lines=lines,
        earlier_lines=sum(row["lines"] for row in sums) - len(lines),
    )


def _lines(rows: list[Any], balance: int) -> list[StatementLine]:
    """The lines of ``rows`` (the latest of the stream, in order), which end at ``balance``."""
    for row in rows:
        # Only money events belong in a wallet stream; another type (or data that is no
        # object) is a forgery for verify to report, not a line of the statement.
        if row["type"] not in _SIGN or not isinstance(row["data"], dict):
            raise StatementContradicted(
                f"event {row['global_position']} ({row['type']}) is no money event: run verify"
            )
        if type(row["data"].get("amount_kobo")) is not int:
            raise StatementContradicted(f"event {row['global_position']} has no amount: run verify")
    running = balance - sum(_SIGN[row["type"]] * row["data"]["amount_kobo"] for row in rows)
    lines = []
    for row in rows:
        data = row["data"]
        running += _SIGN[row["type"]] * data["amount_kobo"]
        if running != data.get("balance_after_kobo"):
            raise StatementContradicted(
                f"event {row['global_position']} records a balance of"
                f" {data.get('balance_after_kobo')} kobo after it, its amounts give {running}:"
                " run verify"
            )
        lines.append(
            StatementLine(
                global_position=row["global_position"],
                recorded_at=row["recorded_at"].isoformat(),
                kind=_KIND[row["type"]],
                amount=format_kobo(data["amount_kobo"]),
                balance_after=format_kobo(running),
                order_id=None if data.get("order_id") is None else str(data["order_id"]),
                reference=data.get("reference"),
            )
        )
    return lines
