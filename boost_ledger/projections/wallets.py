"""Read model of wallet balances, from the ``wallet-<account_id>`` streams.

Each money event carries the balance after it, and the table's check constraint ties that
balance to the running sums of credits, debits and refunds: a projector that drifted from the
events would fail loudly instead of storing a wrong balance.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    AccountOpened,
    FundsDebited,
    RecordedEvent,
    Refunded,
    WalletCredited,
)
from boost_ledger.projections.bulk import State, TableSpec

NAME = "wallets"
TABLES = ("wallets",)
EVENT_TYPES = frozenset({"AccountOpened", "WalletCredited", "FundsDebited", "Refunded"})

_COLUMN = {WalletCredited: "credited_kobo", FundsDebited: "debited_kobo", Refunded: "refunded_kobo"}


async def apply(
    connection: Connection, record: RecordedEvent, batch: Sequence[RecordedEvent] = ()
) -> None:
    """Update the read model for ``record``; ``batch`` is everything appended with it."""
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


async def apply_refunds(connection: Connection, records: Sequence[RecordedEvent]) -> None:
    """Project several Refunded events in one statement, as ``apply`` does one at a time: each
    wallet moves from the version before its first refund of ``records`` to its last one."""
    by_wallet: dict[int, list[tuple[int, Refunded]]] = {}
    for record in records:
        assert isinstance(record.event, Refunded), "only Refunded events"
        by_wallet.setdefault(record.event.account_id, []).append((record.version, record.event))
    rows = []
    for account_id, refunds in by_wallet.items():
        refunds.sort(key=lambda refund: refund[0])
        first, last = refunds[0][0], refunds[-1][0]
        assert last - first == len(refunds) - 1, f"wallet {account_id}: versions not contiguous"
        amount_kobo = sum(event.amount_kobo for _, event in refunds)
        rows.append((account_id, refunds[-1][1].balance_after_kobo, amount_kobo, first, last))
    status = await connection.execute(
        "update wallets w set balance_kobo = c.balance_kobo,"
        " refunded_kobo = w.refunded_kobo + c.amount_kobo, version = c.last_version"
        " from unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::int[])"
        " as c(account_id, balance_kobo, amount_kobo, first_version, last_version)"
        " where w.account_id = c.account_id and w.version = c.first_version - 1",
        *(list(column) for column in zip(*rows, strict=True)),
    )
    assert status == f"UPDATE {len(rows)}", f"wallets not at the expected versions: {status}"


# ---- the same read model as a pure fold, for set-based replays (see projections/bulk.py) ----

BULK_TABLES = (
    TableSpec(
        name="wallets",
        partition="account_id",
        key=("account_id",),
        columns=(
            "account_id",
            "balance_kobo",
            "credited_kobo",
            "debited_kobo",
            "refunded_kobo",
            "version",
        ),
    ),
)


def touches(record: RecordedEvent) -> list[tuple[str, Any]]:
    return [("wallets", getattr(record.event, "account_id"))]  # noqa: B009


def fold(state: State, record: RecordedEvent) -> None:
    event = record.event
    wallets = state["wallets"]
    if isinstance(event, AccountOpened):
        wallets[event.account_id] = {
            "account_id": event.account_id,
            "balance_kobo": 0,
            "credited_kobo": 0,
            "debited_kobo": 0,
            "refunded_kobo": 0,
            "version": 0,
        }
    elif isinstance(event, WalletCredited | FundsDebited | Refunded):
        wallet = wallets[event.account_id]
        assert wallet["version"] == record.version - 1, f"wallet {event.account_id} out of order"
        wallet[_COLUMN[type(event)]] += event.amount_kobo
        wallet["balance_kobo"] = event.balance_after_kobo
        wallet["version"] = record.version
        assert wallet["balance_kobo"] >= 0
        assert wallet["balance_kobo"] == (
            wallet["credited_kobo"] - wallet["debited_kobo"] + wallet["refunded_kobo"]
        ), f"wallet {event.account_id}: balance_after contradicts the sums"
