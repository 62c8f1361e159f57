"""``boost accounts ...`` and ``boost keys rotate``."""

from __future__ import annotations

import argparse
from typing import Any

from boost_ledger.cli.common import (
    CommandError,
    account_id_argument,
    connection,
    print_json,
)
from boost_ledger.ledger import accounts
from boost_ledger.ledger.keys import ABILITIES, parse_abilities


def register(commands: Any) -> None:
    group = commands.add_parser("accounts", help="open accounts and change their standing")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="open an account and print its first API key")
    create.add_argument("--name", required=True)
    create.add_argument("--abilities", help=f"comma list of {', '.join(ABILITIES)} (default: all)")
    create.add_argument("--json", action="store_true")
    create.set_defaults(handler=_create)
    for change in ("disable", "ban", "reinstate"):
        parser = actions.add_parser(change, help=f"{change} an account")
        parser.add_argument("account_id", type=account_id_argument)
        parser.set_defaults(handler=_standing, change=change)

    keys = commands.add_parser("keys", help="issue API keys")
    key_actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    rotate = key_actions.add_parser(
        "rotate", help="issue a new key; the previous one stops working"
    )
    rotate.add_argument("account_id", type=account_id_argument)
    rotate.add_argument(
        "--abilities",
        help=f"comma list of {', '.join(ABILITIES)} (default: those of the key it replaces)",
    )
    rotate.add_argument("--json", action="store_true")
    rotate.set_defaults(handler=_rotate)


def _abilities(text: str | None) -> list[str]:
    try:
        return parse_abilities(text)
    except ValueError as error:
        raise CommandError(str(error)) from None


async def _create(arguments: argparse.Namespace) -> int:
    abilities = _abilities(arguments.abilities)
    async with connection() as open_connection:
        try:
            account_id, key = await accounts.open_account(
                open_connection, arguments.name, abilities
            )
        except ValueError as error:
            raise CommandError(str(error)) from None
    if arguments.json:
        print_json({"account_id": str(account_id), "api_key": key.secret})
    else:
        print(f"account {account_id} opened")
        print(f"API key (shown once): {key.secret}")
    return 0


async def _rotate(arguments: argparse.Namespace) -> int:
    if arguments.abilities == "":
        # parse_abilities reads "" as all four (the default of ``accounts create``); here the
        # default is the replaced key's abilities, and an empty list (a script's empty variable)
        # must not turn a read-only key into one that can spend the wallet.
        raise CommandError(
            f"--abilities names no ability: name some of {', '.join(ABILITIES)}, or leave it"
            " out to keep those of the key it replaces"
        )
    chosen = None if arguments.abilities is None else _abilities(arguments.abilities)
    async with connection() as open_connection:
        try:
            key, abilities = await accounts.rotate_key(
                open_connection, arguments.account_id, chosen
            )
        except accounts.AccountNotFound as error:
            raise CommandError(str(error), exit_code=1) from None
    if arguments.json:
        print_json(
            {"account_id": str(arguments.account_id), "api_key": key.secret, "abilities": abilities}
        )
    else:
        print(f"new API key for account {arguments.account_id} (shown once): {key.secret}")
        print("the previous key no longer works")
    return 0


async def _standing(arguments: argparse.Namespace) -> int:
    account_id = arguments.account_id
    async with connection() as open_connection, open_connection.transaction():
        try:
            changed = await accounts.change_standing(open_connection, account_id, arguments.change)
        except accounts.AccountNotFound as error:
            raise CommandError(str(error), exit_code=1) from None
        # Read in the transaction that holds the account's row lock since the change was
        # decided: the status is the one that decision saw.
        status = await open_connection.fetchval(
            "select status from accounts where account_id = $1", account_id
        )
    past = {"disable": "disabled", "ban": "banned", "reinstate": "reinstated"}[arguments.change]
    if changed:
        print(f"account {account_id} {past}")
    elif status == "banned" and arguments.change == "disable":
        print(
            f"account {account_id} is banned, which a disable would weaken; nothing changed"
            f" (it stays banned until `boost accounts reinstate {account_id}`)"
        )
    else:
        print(f"account {account_id} was already {past}")
    return 0
