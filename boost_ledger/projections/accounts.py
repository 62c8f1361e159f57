"""Read model of accounts and API keys, from the ``account-<id>`` streams."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    AccountBanned,
    AccountDisabled,
    AccountOpened,
    AccountReinstated,
    ApiKeyIssued,
    RecordedEvent,
)
from boost_ledger.projections.bulk import State, TableSpec

NAME = "accounts"
TABLES = ("accounts", "api_keys")
EVENT_TYPES = frozenset(
    {"AccountOpened", "ApiKeyIssued", "AccountDisabled", "AccountBanned", "AccountReinstated"}
)

_STATUS_AFTER = {
    AccountDisabled: "disabled",
    AccountBanned: "banned",
    AccountReinstated: "active",
}


async def apply(
    connection: Connection, record: RecordedEvent, batch: Sequence[RecordedEvent] = ()
) -> None:
    """Update the read model for ``record``; ``batch`` is everything appended with it."""
    event = record.event
    if isinstance(event, AccountOpened):
        await connection.execute(
            "insert into accounts (account_id, name, status, version, created_at)"
            " values ($1, $2, 'active', $3, $4)",
            event.account_id,
            event.name,
            record.version,
            record.recorded_at,
        )
    elif isinstance(event, ApiKeyIssued):
        await connection.execute(
            "update api_keys set revoked = true where account_id = $1 and not revoked",
            event.account_id,
        )
        await connection.execute(
            "insert into api_keys (key_id, account_id, key_hash, abilities, issued_at)"
            " values ($1, $2, $3, $4, $5)",
            event.key_id,
            event.account_id,
            bytes.fromhex(event.key_hash),
            event.abilities,
            record.recorded_at,
        )
        await _bump(connection, event.account_id, record.version)
    elif isinstance(event, AccountDisabled | AccountBanned | AccountReinstated):
        status = _STATUS_AFTER[type(event)]
        await connection.execute(
            "update accounts set status = $2, version = $3 where account_id = $1",
            event.account_id,
            status,
            record.version,
        )


async def _bump(connection: Connection, account_id: int, version: int) -> None:
    await connection.execute(
        "update accounts set version = $2 where account_id = $1", account_id, version
    )


# ---- the same read model as a pure fold, for set-based replays (see projections/bulk.py) ----

BULK_TABLES = (
    TableSpec(
        name="accounts",
        partition="account_id",
        key=("account_id",),
        columns=("account_id", "name", "status", "version", "created_at"),
    ),
    TableSpec(
        name="api_keys",
        partition="account_id",
        key=("key_id",),
        columns=("key_id", "account_id", "key_hash", "abilities", "issued_at", "revoked"),
    ),
)


def touches(record: RecordedEvent) -> list[tuple[str, Any]]:
    account_id = getattr(record.event, "account_id")  # noqa: B009 - every account event has it
    return [("accounts", account_id), ("api_keys", account_id)]


def fold(state: State, record: RecordedEvent) -> None:
    event = record.event
    accounts = state["accounts"]
    if isinstance(event, AccountOpened):
        accounts[event.account_id] = {
            "account_id": event.account_id,
            "name": event.name,
            "status": "active",
            "version": record.version,
            "created_at": record.recorded_at,
        }
        return
    account = accounts[getattr(event, "account_id")]  # noqa: B009
    account["version"] = record.version
    if isinstance(event, ApiKeyIssued):
        for key in state["api_keys"].values():
            if key["account_id"] == event.account_id:
                key["revoked"] = True
        state["api_keys"][event.key_id] = {
            "key_id": event.key_id,
            "account_id": event.account_id,
            "key_hash": bytes.fromhex(event.key_hash),
            "abilities": list(event.abilities),
            "issued_at": record.recorded_at,
            "revoked": False,
        }
    elif isinstance(event, AccountDisabled | AccountBanned | AccountReinstated):
        account["status"] = _STATUS_AFTER[type(event)]
