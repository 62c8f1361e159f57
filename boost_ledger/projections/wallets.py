"""Read model of wallet balances, from the ``wallet-<account_id>`` streams.

Each money event carries the balance after it, and the table's check constraint ties that
balance to the running sums of credits, debits and refunds: a projector that drifted from the
events would fail loudly instead of storing a wrong balance.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from boost_ledger.ledger.events import (
    AccountOpened,
    FundsDebited,
    RecordedEvent,
    Refunded,
    WalletCredited,
)

NAME = "wallets"
TABLES = ("wallets",)
EVENT_TYPES = frozenset({"AccountOpened", "WalletCredited", "FundsDebited", "Refunded"})

_COLUMN = {WalletCredited: "credited_kobo", FundsDebited: "debited_kobo", Refunded: "refunded_kobo"}


async def apply(connection: asyncpg.Connection[Any], record: RecordedEvent) -> None:
    event = record.event
    if isinstance(event, AccountOpened):
        await connection.execute(
            "insert into wallets (account_id, balance_kobo, version) values ($1, 0, 0)",
            event.account_id,
        )
    elif isinstance(event, WalletCredited | FundsDebited | Refunded):
        column = _COLUMN[type(event)]
        updated = await connection.fetchval(
            f"update wallets set balance_kobo = $2, {column} = {column} + $3, version = $4"
            " where account_id = $1 and version = $4 - 1 returning 1",
            event.account_id,
            event.balance_after_kobo,
            event.amount_kobo,
            record.version,
        )
        assert updated == 1, f"wallet {event.account_id} is not at version {record.version - 1}"
