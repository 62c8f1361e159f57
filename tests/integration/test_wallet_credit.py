"""Operator top-ups on real PostgreSQL: once per reference, even under concurrent duplicates,
and only for amounts that are positive naira with at most two decimals."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest
from support import open_funded_account

from boost_ledger.ledger import wallet
from boost_ledger.ledger.accounts import AccountNotFound
from boost_ledger.ledger.events import credit_event_id, wallet_stream
from boost_ledger.ledger.money import parse_naira


async def _balance(pool: asyncpg.Pool[Any], account_id: int) -> int:
    return int(
        await pool.fetchval("select balance_kobo from wallets where account_id = $1", account_id)
    )


async def _credits(pool: asyncpg.Pool[Any], account_id: int) -> list[asyncpg.Record]:
    return await pool.fetch(
        "select event_id, version, data from events where stream_id = $1"
        " and type = 'WalletCredited' order by version",
        wallet_stream(account_id),
    )


async def test_the_same_reference_credited_20_times_at_once_credits_once(pool):
    """Twenty concurrent credits with one reference over real connections: one event, one move."""
    account_id, _ = await open_funded_account(pool)
    start = asyncio.Event()

    async def credit_once() -> wallet.CreditResult:
        async with pool.acquire() as connection:
            await start.wait()
            return await wallet.credit(connection, account_id, 2_500_00, "bank-transfer-0001")

    tasks = [asyncio.create_task(credit_once()) for _ in range(20)]
    await asyncio.sleep(0.05)  # every task holds its own connection before the start
    start.set()
    results = await asyncio.gather(*tasks)

    assert sum(result.credited for result in results) == 1
    assert all(result.amount_kobo == 2_500_00 for result in results)
    assert all(result.balance_kobo == 2_500_00 for result in results)
    assert await _balance(pool, account_id) == 2_500_00
    credits = await _credits(pool, account_id)
    assert len(credits) == 1
    assert credits[0]["event_id"] == credit_event_id(account_id, "bank-transfer-0001")
    assert credits[0]["data"]["balance_after_kobo"] == 2_500_00


async def test_distinct_references_at_once_all_credit(pool):
    """Concurrent credits with different references all land, each in its own version."""
    account_id, _ = await open_funded_account(pool)

    async def credit(reference: str) -> wallet.CreditResult:
        async with pool.acquire() as connection:
            return await wallet.credit(connection, account_id, 1_00, reference)

    results = await asyncio.gather(*(credit(f"ref-{n}") for n in range(10)))
    assert all(result.credited for result in results)
    assert await _balance(pool, account_id) == 10_00
    credits = await _credits(pool, account_id)
    assert [row["version"] for row in credits] == list(range(1, 11))
    assert sorted(row["data"]["balance_after_kobo"] for row in credits) == [
        n * 1_00 for n in range(1, 11)
    ]


async def test_a_repeated_reference_reports_the_first_credit_and_changes_nothing(pool):
    """A repeat, even with another amount, returns the first credit's amount and the balance."""
    account_id, _ = await open_funded_account(pool)
    async with pool.acquire() as connection:
        first = await wallet.credit(connection, account_id, 1_000_00, "topup-A")
        again = await wallet.credit(connection, account_id, 9_999_00, "topup-A")
        other_account, _ = await open_funded_account(pool)
        elsewhere = await wallet.credit(connection, other_account, 1_00, "topup-A")
    assert (first.credited, first.amount_kobo, first.balance_kobo) == (True, 1_000_00, 1_000_00)
    assert (again.credited, again.amount_kobo, again.balance_kobo) == (False, 1_000_00, 1_000_00)
    assert elsewhere.credited, "a reference is unique per account, not across accounts"
    assert await _balance(pool, account_id) == 1_000_00
    assert len(await _credits(pool, account_id)) == 1


async def test_crediting_an_unknown_account_is_refused(pool):
    """No wallet, no credit: nothing is appended."""
    async with pool.acquire() as connection:
        with pytest.raises(AccountNotFound):
            await wallet.credit(connection, 987_654_321, 1_00, "ghost")
    written = "select count(*) from events where stream_id = 'wallet-987654321'"
    assert await pool.fetchval(written) == 0


@pytest.mark.parametrize(
    "text",
    ["0", "0.00", "-1", "-0.01", "1.001", "2500.000", "abc", "", " 100", "1e3", "NaN", "Infinity",
     "+5", "1,000.00", "12.", ".5", "\u0661\u0660\u0660"],
)
def test_amounts_that_are_not_positive_naira_with_two_decimals_are_refused(text):
    """Zero, negatives, more than two decimals and non-numbers never become a credit."""
    with pytest.raises(ValueError):
        wallet.check_credit(parse_naira(text), "ref")


@pytest.mark.parametrize(("text", "kobo"), [("0.01", 1), ("2500", 2_500_00), ("2500.5", 2_500_50)])
def test_positive_amounts_with_at_most_two_decimals_are_accepted(text, kobo):
    """The amounts an operator types are read exactly, in kobo."""
    assert parse_naira(text) == kobo
    wallet.check_credit(kobo, "ref")


@pytest.mark.parametrize("reference", ["", "   ", "x" * 201, "tab\there", "new\nline"])
def test_blank_overlong_or_unprintable_references_are_refused(reference):
    """A reference is what makes a credit unique, so it must be a real, printable one."""
    with pytest.raises(ValueError):
        wallet.check_credit(1_00, reference)


@pytest.mark.parametrize("reference", [" bank-tx-1", "bank-tx-1 ", "  bank-tx-1  "])
async def test_a_padded_reference_is_refused_and_never_credits_twice(pool, reference):
    """A reference is taken exactly as given, so " bank-tx-1" would be another reference than
    "bank-tx-1" and credit one top-up twice: one with leading or trailing spaces is refused
    before anything is written, and the unpadded one still credits once."""
    account_id, _ = await open_funded_account(pool)
    async with pool.acquire() as connection:
        first = await wallet.credit(connection, account_id, 1_00, "bank-tx-1")
        with pytest.raises(ValueError, match="no leading or trailing spaces"):
            await wallet.credit(connection, account_id, 1_00, reference)
    assert first.credited
    assert await _balance(pool, account_id) == 1_00
    assert len(await _credits(pool, account_id)) == 1


async def test_a_refused_amount_never_reaches_the_log(pool):
    """The ledger itself re-checks: a zero or negative credit raises before anything is written."""
    account_id, _ = await open_funded_account(pool)
    async with pool.acquire() as connection:
        for amount_kobo in (0, -1_00, wallet.MAX_CREDIT_KOBO + 1):
            with pytest.raises(ValueError):
                await wallet.credit(connection, account_id, amount_kobo, f"bad-{amount_kobo}")
    assert await _credits(pool, account_id) == []
    assert await _balance(pool, account_id) == 0
