"""``boost audit replay``'s statement of a wallet: totals over the whole stream, the latest
lines only when there are more than it shows, and a contradicting stream refused by name."""

from __future__ import annotations

from typing import Any

import pytest

from boost_ledger import postgres
from boost_ledger.audit import statement
from boost_ledger.ledger import wallet
from boost_ledger.ledger.money import format_kobo


async def test_a_long_history_shows_its_latest_lines_and_counts_every_one(ledger, owner):
    """Past the line bound, the statement shows the latest lines and says how many came
    before; the balance and the totals are those of the whole stream, as without a bound."""
    whole = await statement.statement(owner, ledger.spender)
    assert whole.earlier_lines == 0 and len(whole.lines) >= 4
    cut = await statement.statement(owner, ledger.spender, max_lines=2)
    assert (cut.balance, cut.credits, cut.debits, cut.refunds) == (
        whole.balance, whole.credits, whole.debits, whole.refunds
    )
    assert cut.lines == whole.lines[-2:]
    assert cut.earlier_lines == len(whole.lines) - 2
    balance = await owner.fetchval(
        "select balance_kobo from wallets where account_id = $1", ledger.spender
    )
    assert cut.balance == format_kobo(balance)


async def test_a_stream_that_contradicts_itself_is_refused_by_name(ledger, owner):
    """A balance after that the amounts do not give is named (run verify), not an assertion."""
    from tampering import triggers_off

    stream = f"wallet-{ledger.spender}"
    position = await owner.fetchval(
        "select max(global_position) from events where stream_id = $1", stream
    )
    async with triggers_off(owner):
        await owner.execute(
            "update events set data = jsonb_set(data, '{balance_after_kobo}', '1')"
            " where global_position = $1",
            position,
        )
    with pytest.raises(statement.StatementContradicted, match=f"event {position} records a"
                       " balance of 1 kobo"):
        await statement.statement(owner, ledger.spender)


class _CreditBetween:
    """The owner's connection, a credit to the wallet committed by another session right after
    the statement's first query (as a checkout or a credit might, on a live server)."""

    def __init__(self, connection: Any, dsn: str, account_id: int) -> None:
        self._connection, self._dsn, self._account_id = connection, dsn, account_id
        self.credited = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)

    async def fetch(self, *arguments: Any) -> Any:
        rows = await self._connection.fetch(*arguments)
        if not self.credited:
            self.credited = True
            other = await postgres.owner_connection(self._dsn)
            try:
                await wallet.credit(other, self._account_id, 1_00, "between-the-queries")
            finally:
                await other.close()
        return rows


async def test_a_credit_committed_during_the_statement_changes_nothing_of_it(ledger, owner):
    """The totals and the lines are read in one snapshot: a credit committed between the two
    queries is in neither (the statement stays consistent, not 'contradicted')."""
    before = await statement.statement(owner, ledger.spender)
    between = _CreditBetween(owner, ledger.dsn, ledger.spender)
    during = await statement.statement(between, ledger.spender)  # type: ignore[arg-type]
    assert between.credited
    assert (during.balance, during.lines) == (before.balance, before.lines)
    after = await statement.statement(owner, ledger.spender)
    assert after.lines[-1].reference == "between-the-queries"


@pytest.mark.parametrize(
    ("kind", "data"),
    [
        ("AccountBanned", '{"account_id": 1}'),  # a type no wallet stream holds
        ("AccountBanned", '{"account_id": 1, "amount_kobo": 5}'),  # ... with an amount
        ("WalletCredited", "[1, 2]"),  # a money event whose data is no object
        ("FundsDebited", '"text"'),
    ],
)
async def test_a_forged_event_in_the_wallet_stream_is_refused_by_name(ledger, owner, kind, data):
    """An event appended to the wallet stream that is no money event (another type, or data
    that is no object) is named (run verify), not a KeyError or AttributeError."""
    stream = f"wallet-{ledger.partial}"
    version = await owner.fetchval(
        "select max(version) from events where stream_id = $1", stream
    )
    position = await owner.fetchval(
        "insert into events (event_id, stream_id, version, type, data)"
        " values (gen_random_uuid(), $1, $2, $3, $4::text::jsonb) returning global_position",
        stream, version + 1, kind, data,
    )
    with pytest.raises(statement.StatementContradicted, match=f"event {position} "):
        await statement.statement(owner, ledger.partial)
