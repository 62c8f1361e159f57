"""Wallet top-ups by an operator, each at most once per reference."""

from __future__ import annotations

from boost_ledger.ledger.accounts import AccountNotFound
from boost_ledger.ledger.commit import commit
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.events import WalletCredited, credit_event_id, wallet_stream
from boost_ledger.ledger.store import NewEvent

MAX_CREDIT_KOBO = 10**13  # a hundred billion naira: far above any real top-up
MAX_REFERENCE_LENGTH = 200


class CreditResult:
    __slots__ = ("amount_kobo", "balance_kobo", "credited")

    def __init__(self, credited: bool, amount_kobo: int, balance_kobo: int) -> None:
        self.credited = credited
        self.amount_kobo = amount_kobo
        self.balance_kobo = balance_kobo


def check_credit(amount_kobo: int, reference: str) -> None:
    if amount_kobo <= 0:
        raise ValueError("the amount must be positive")
    if amount_kobo > MAX_CREDIT_KOBO:
        raise ValueError("the amount is too large")
    check_reference(reference)


def check_reference(reference: str) -> None:
    too_long = len(reference) > MAX_REFERENCE_LENGTH
    if not reference.strip() or too_long or not reference.isprintable():
        raise ValueError(f"a reference is 1 to {MAX_REFERENCE_LENGTH} printable characters")
    # A reference is taken exactly as given (its credit's event id is derived from it), so
    # " bank-tx-1" would be another reference than "bank-tx-1" and credit one top-up twice.
    # It is refused rather than trimmed: a trimmed reference would be a new event id for a
    # padded one recorded before, which a retry of it would then credit again.
    if reference != reference.strip():
        raise ValueError("a reference has no leading or trailing spaces")


async def credit(
    connection: Connection,
    account_id: int,
    amount_kobo: int,
    reference: str,
    actor: str = "operator",
) -> CreditResult:
    """Credit the wallet once per (account, reference); a repeat reports the first credit.

    The wallet row lock serialises concurrent duplicates: the second one to get the lock sees
    the first one's event and records nothing. The deterministic event id is the backstop.
    """
    check_credit(amount_kobo, reference)
    event_id = credit_event_id(account_id, reference)
    async with connection.transaction():
        wallet = await connection.fetchrow(
            "select balance_kobo, version from wallets where account_id = $1 for update",
            account_id,
        )
        if wallet is None:
            raise AccountNotFound(account_id)
        earlier = await connection.fetchval(
            "select (data->>'amount_kobo')::bigint from events where event_id = $1", event_id
        )
        if earlier is not None:
            return CreditResult(False, int(earlier), wallet["balance_kobo"])
        balance_after = wallet["balance_kobo"] + amount_kobo
        event = WalletCredited(
            account_id=account_id,
            amount_kobo=amount_kobo,
            reference=reference,
            balance_after_kobo=balance_after,
        )
        await commit(
            connection,
            [
                NewEvent(
                    stream_id=wallet_stream(account_id),
                    version=wallet["version"] + 1,
                    event=event,
                    event_id=event_id,
                )
            ],
            {"actor": actor},
        )
    return CreditResult(True, amount_kobo, balance_after)
