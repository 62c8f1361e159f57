"""Accounts: opening, key rotation and standing (disable, ban, reinstate)."""

from __future__ import annotations

import secrets
from typing import Literal

import asyncpg

from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import (
    AccountBanned,
    AccountDisabled,
    AccountOpened,
    AccountReinstated,
    ApiKeyIssued,
    Event,
    account_stream,
)
from boost_ledger.ledger.keys import ABILITIES, GeneratedKey, generate_key
from boost_ledger.ledger.store import NewEvent

StandingChange = Literal["disable", "ban", "reinstate"]


class AccountNotFound(LookupError):
    def __init__(self, account_id: int) -> None:
        super().__init__(f"no account {account_id}")


def new_key() -> GeneratedKey:
    return generate_key(secrets.token_bytes(6), secrets.token_bytes(32))


def _key_event(account_id: int, key: GeneratedKey, abilities: list[str]) -> ApiKeyIssued:
    return ApiKeyIssued(
        account_id=account_id, key_id=key.key_id, key_hash=key.key_hash.hex(), abilities=abilities
    )


async def open_account(
    connection: Connection, name: str, abilities: list[str], actor: str = "operator"
) -> tuple[int, GeneratedKey]:
    """Open an account with its wallet and first key; return the id and the key (shown once)."""
    name = name.strip()
    # Printable: no control character, and no surrogate (bytes of argv that were not UTF-8),
    # which the database driver cannot encode.
    if not name or len(name) > 200 or not name.isprintable():
        raise ValueError("an account name is 1 to 200 printable characters")
    key = new_key()
    async with connection.transaction():
        account_id = int(await connection.fetchval("select nextval('account_id_seq')"))
        stream = account_stream(account_id)
        await commit(
            connection,
            [
                NewEvent(
                    stream_id=stream,
                    version=1,
                    event=AccountOpened(account_id=account_id, name=name),
                ),
                NewEvent(stream_id=stream, version=2, event=_key_event(account_id, key, abilities)),
            ],
            {"actor": actor},
        )
    return account_id, key


async def _locked_account(connection: Connection, account_id: int) -> asyncpg.Record:
    row: asyncpg.Record | None = await connection.fetchrow(
        "select status, version from accounts where account_id = $1 for update", account_id
    )
    if row is None:
        raise AccountNotFound(account_id)
    return row


async def live_abilities(connection: Connection, account_id: int) -> list[str] | None:
    """The abilities of the account's live key, or None when it has none."""
    live = await connection.fetchval(
        "select abilities from api_keys where account_id = $1 and not revoked", account_id
    )
    return None if live is None else list(live)


async def rotate_key(
    connection: Connection,
    account_id: int,
    abilities: list[str] | None = None,
    actor: str = "operator",
) -> tuple[GeneratedKey, list[str]]:
    """Issue a new key, and say with which abilities; the previous one stops working when this
    transaction commits. ``abilities`` None keeps the live key's (all of them if the account has
    none): a leaked read-only key is not replaced by one that can buy."""
    key = new_key()
    async with connection.transaction():
        row = await _locked_account(connection, account_id)
        if abilities is None:
            abilities = await live_abilities(connection, account_id) or list(ABILITIES)
        await commit(
            connection,
            [
                NewEvent(
                    stream_id=account_stream(account_id),
                    version=row["version"] + 1,
                    event=_key_event(account_id, key, abilities),
                )
            ],
            {"actor": actor},
        )
    return key, abilities


def decide_standing(account_id: int, status: str, change: StandingChange) -> Event | None:
    """The event a standing change records, or None when the account is already there.

    A disable of a banned account is None too: a ban lasts until the account is reinstated, and
    a disable would turn it into the weaker standing (USER_DISABLED) without one.
    """
    target = {"disable": "disabled", "ban": "banned", "reinstate": "active"}[change]
    if status == target or (change == "disable" and status == "banned"):
        return None
    if change == "disable":
        return AccountDisabled(account_id=account_id)
    if change == "ban":
        return AccountBanned(account_id=account_id)
    return AccountReinstated(account_id=account_id)


async def change_standing(
    connection: Connection,
    account_id: int,
    change: StandingChange,
    actor: str = "operator",
) -> bool:
    """Apply a standing change; False when it changed nothing."""
    async with connection.transaction():
        row = await _locked_account(connection, account_id)
        event = decide_standing(account_id, row["status"], change)
        if event is None:
            return False
        await commit(
            connection,
            [
                NewEvent(
                    stream_id=account_stream(account_id), version=row["version"] + 1, event=event
                )
            ],
            {"actor": actor},
        )
    return True
