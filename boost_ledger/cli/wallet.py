"""``boost wallet credit|show``."""

from __future__ import annotations

import argparse
from typing import Any

from boost_ledger.cli.common import (
    CommandError,
    account_id_argument,
    connection,
    database,
    print_json,
)
from boost_ledger.ledger import wallet
from boost_ledger.ledger.accounts import AccountNotFound
from boost_ledger.ledger.money import format_kobo, parse_naira


def register(commands: Any) -> None:
    group = commands.add_parser("wallet", help="credit and inspect wallets")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    credit = actions.add_parser("credit", help="credit a wallet once per reference")
    credit.add_argument("account_id", type=account_id_argument)
    credit.add_argument("amount", help="NGN with at most two decimals, e.g. 2500.00")
    credit.add_argument("--reference", required=True, help="the top-up's unique reference")
    credit.add_argument("--json", action="store_true")
    credit.set_defaults(handler=_credit)
    show = actions.add_parser("show", help="print a wallet's balance")
    show.add_argument("account_id", type=account_id_argument)
    show.add_argument("--json", action="store_true")
    show.set_defaults(handler=_show)


def _amount(text: str) -> int:
    try:
        amount_kobo = parse_naira(text)
        wallet.check_credit(amount_kobo, "x")
    except ValueError as error:
        raise CommandError(f"invalid amount {text!r}: {error}") from None
    return amount_kobo


def _check_reference(text: str) -> None:
    try:
        wallet.check_reference(text)
    except ValueError as error:
        raise CommandError(f"invalid reference {text!r}: {error}") from None


async def _credit(arguments: argparse.Namespace) -> int:
    amount_kobo = _amount(arguments.amount)
    _check_reference(arguments.reference)
    async with connection() as open_connection:
        try:
            result = await wallet.credit(
                open_connection, arguments.account_id, amount_kobo, arguments.reference
            )
        except AccountNotFound as error:
            raise CommandError(str(error), exit_code=1) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
    if arguments.json:
        print_json(
            {
                "credited": result.credited,
                "amount": format_kobo(result.amount_kobo),
                "balance": format_kobo(result.balance_kobo),
            }
        )
    elif result.credited:
        print(
            f"credited {format_kobo(amount_kobo)} NGN;"
            f" balance {format_kobo(result.balance_kobo)} NGN"
        )
    else:
        print(
            f"reference {arguments.reference!r} was already credited"
            f" ({format_kobo(result.amount_kobo)} NGN); nothing changed;"
            f" balance {format_kobo(result.balance_kobo)} NGN"
        )
    return 0


async def _show(arguments: argparse.Namespace) -> int:
    async with database() as pool:
        row = await pool.fetchrow(
            "select balance_kobo, credited_kobo, debited_kobo, refunded_kobo from wallets"
            " where account_id = $1",
            arguments.account_id,
        )
    if row is None:
        raise CommandError(f"no account {arguments.account_id}", exit_code=1)
    figures = {name.removesuffix("_kobo"): format_kobo(value) for name, value in row.items()}
    if arguments.json:
        print_json({"account_id": str(arguments.account_id), "currency": "NGN", **figures})
    else:
        print(" ".join(f"{name}={value}" for name, value in figures.items()) + " NGN")
    return 0
