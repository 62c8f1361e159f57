"""``boost orders unknown|resolve``: settle submissions whose outcome is unknown."""

from __future__ import annotations

import argparse
from typing import Any

import asyncpg

from boost_ledger.cli.common import CommandError, database, order_id_argument, print_json
from boost_ledger.cli.listing import first_rows
from boost_ledger.ledger import fulfilment
from boost_ledger.ledger.connection import Connection
from boost_ledger.ledger.money import format_kobo
from boost_ledger.upstream.parsing import usable_order_id

MAX_UNKNOWN_LISTED = 1000
"""Orders ``orders unknown`` lists at most (a stderr line says when there are more)."""


def register(commands: Any) -> None:
    group = commands.add_parser("orders", help="orders that need an operator")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    unknown = actions.add_parser("unknown", help="list orders whose submission outcome is unknown")
    unknown.add_argument("--json", action="store_true")
    unknown.set_defaults(handler=_unknown)
    resolve = actions.add_parser(
        "resolve", help="settle an unknown submission: the provider's order id, or --refund"
    )
    resolve.add_argument("order_id", type=order_id_argument)
    choice = resolve.add_mutually_exclusive_group(required=True)
    choice.add_argument("--provider-order-id", help="the provider did place it, under this id")
    choice.add_argument("--refund", action="store_true", help="it was never placed: refund it")
    resolve.set_defaults(handler=_resolve)


async def _unknown(arguments: argparse.Namespace) -> int:
    async with database() as pool:
        rows = await pool.fetch(
            "select o.order_id, o.account_id, o.service_id, o.link, o.quantity, o.price_kobo,"
            " o.created_at, o.updated_at, (select e.data->>'reason' from events e"
            "   where e.stream_id = 'order-' || o.order_id and e.type = 'SubmissionUnknown'"
            "   order by e.version desc limit 1) as reason"
            # Placed first, listed first: ids are taken in blocks per process (sql/0017), so
            # they do not give that order.
            " from orders o where o.submission = 'unknown'"
            " order by o.created_at, o.order_id limit $1",
            MAX_UNKNOWN_LISTED + 1,
        )
    rows = first_rows(rows, MAX_UNKNOWN_LISTED, "orders awaiting an operator (oldest first)")
    items = [
        {
            "order_id": str(row["order_id"]),
            "account_id": str(row["account_id"]),
            "service_id": row["service_id"],
            "link": row["link"],
            "quantity": row["quantity"],
            "price": format_kobo(row["price_kobo"]),
            "created_at": row["created_at"].isoformat(),
            "since": row["updated_at"].isoformat(),
            "reason": row["reason"],
        }
        for row in rows
    ]
    if arguments.json:
        print_json(items)
    elif not items:
        print("no order awaits an operator")
    else:
        # What the runbook has the operator look the order up by in the provider's panel: its
        # link and quantity, around the time it was placed.
        for item in items:
            print(
                f"{item['order_id']}  account {item['account_id']}  service {item['service_id']}"
                f"  link {item['link'] or '-'}  quantity {_shown(item['quantity'])}"
                f"  {item['price']} NGN"
                f"  placed {item['created_at']}  unknown since {item['since']}"
                f"  ({item['reason']})"
            )
    return 0


def _shown(value: object) -> str:
    return "-" if value is None else str(value)


async def _resolve(arguments: argparse.Namespace) -> int:
    outcome: dict[str, str]
    if arguments.refund:
        outcome = {"refused": "operator: never placed at the provider"}
    else:
        provider_order_id = arguments.provider_order_id.strip()
        if not usable_order_id(provider_order_id):
            raise CommandError(
                "a provider order id is 1 to 64 printable characters, with no space or comma"
            )
        outcome = {"provider_order_id": provider_order_id}
    async with database() as pool, pool.acquire() as connection:
        if "provider_order_id" in outcome:
            await _refuse_a_shared_provider_id(
                connection, arguments.order_id, outcome["provider_order_id"]
            )
        try:
            settled = await fulfilment.settle_submission(
                connection,
                arguments.order_id,
                actor="operator",
                expected_submission="unknown",
                provider_order_id=outcome.get("provider_order_id"),
                refused=outcome.get("refused"),
            )
        except fulfilment.OrderMissing:
            raise CommandError(f"no order {arguments.order_id}", exit_code=1) from None
        except asyncpg.UniqueViolationError:  # another resolve recorded the id meanwhile
            await _refuse_a_shared_provider_id(
                connection, arguments.order_id, outcome["provider_order_id"]
            )
            raise
    if not settled:
        raise CommandError(f"order {arguments.order_id} is not awaiting an operator", exit_code=1)
    print(
        f"order {arguments.order_id} "
        + (
            "refunded"
            if arguments.refund
            else f"recorded as provider order {outcome['provider_order_id']}"
        )
    )
    return 0


async def _refuse_a_shared_provider_id(
    connection: Connection, order_id: int, provider_order_id: str
) -> None:
    """One provider order answers for one of ours (the database's unique index on the id
    says so too, sql/0021): an id already recorded is refused by name, before any lock."""
    holder = await connection.fetchval(
        "select order_id from orders where provider_order_id = $1 and order_id <> $2 limit 1",
        provider_order_id,
        order_id,
    )
    if holder is not None:
        raise CommandError(
            f"provider order {provider_order_id} is already recorded for order {holder}",
            exit_code=1,
        )
