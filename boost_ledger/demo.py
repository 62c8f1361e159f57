"""The demo account a new user gets on the first start of an empty database."""

from __future__ import annotations

from typing import Any

import asyncpg

from boost_ledger.ledger import accounts, wallet
from boost_ledger.ledger.keys import ABILITIES

DEMO_CREDIT_KOBO = 12_500_00
_DEMO_LOCK = 0x64656D6F  # "demo": one process opens it even when several start together


async def open_demo_account_if_empty(pool: asyncpg.Pool[Any]) -> tuple[int, str] | None:
    """Open and fund the demo account when no account exists yet; return (id, key) if opened."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute("select pg_advisory_xact_lock($1)", _DEMO_LOCK)
        if await connection.fetchval("select exists (select 1 from accounts)"):
            return None
        account_id, key = await accounts.open_account(
            connection, "Demo", list(ABILITIES), actor="demo"
        )
        await wallet.credit(
            connection, account_id, DEMO_CREDIT_KOBO, "demo-opening-credit", actor="demo"
        )
    return account_id, key.secret


def demo_banner(account_id: int, api_key: str, base_url: str) -> str:
    return (
        "\n"
        f"  Demo account {account_id} opened with 12500.00 NGN. Its API key (shown once):\n\n"
        f"    {api_key}\n\n"
        "  Try it:\n\n"
        f'    curl -s {base_url}/api/v1/wallet -H "Accept: application/json"'
        f' -H "Authorization: Bearer {api_key}"\n'
    )
