"""``boost catalog sync|price|list``."""

from __future__ import annotations

import argparse
from typing import Any

from boost_ledger.cli.common import CommandError, database, print_json, settings_from_env
from boost_ledger.cli.listing import first_rows
from boost_ledger.ledger import catalog
from boost_ledger.ledger.money import format_kobo, parse_naira

MAX_SERVICES_LISTED = 5000
"""Services ``catalog list`` prints at most (a stderr line says when there are more)."""


def register(commands: Any) -> None:
    group = commands.add_parser("catalog", help="sync and price the service catalog")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    sync = actions.add_parser("sync", help="read the provider's services now (BOOST_PROVIDER_URL)")
    sync.set_defaults(handler=_sync)
    price = actions.add_parser("price", help="pin a service's NGN rate per 1000 (or --unpin)")
    price.add_argument("service_id", type=_service_id_argument)
    price.add_argument("rate", nargs="?", help="NGN per 1000, e.g. 1500.00")
    price.add_argument("--unpin", action="store_true", help="return to the synced rate")
    price.set_defaults(handler=_price)
    listing = actions.add_parser("list", help="print the catalog with its NGN rates")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)


def _service_id_argument(text: str) -> str:
    """An id a synced service can have (``catalog.usable_service_id``): one that is not (a
    "/", a control character, argv bytes that were not UTF-8, which the database driver
    cannot even encode) is a bad id, not a service that does not exist."""
    if not catalog.usable_service_id(text):
        raise argparse.ArgumentTypeError(f"not a service id: {text!r}")
    return text


async def _sync(arguments: argparse.Namespace) -> int:
    settings = settings_from_env()
    if settings.provider_url is None:
        raise CommandError(
            "set BOOST_PROVIDER_URL (the built-in simulator lives inside `boost serve`,"
            " at http://HOST:PORT/simulator/api/v2)"
        )
    # Here, not at the top: the provider's client (httpx) is only loaded by the command using it.
    from boost_ledger.upstream.client import ProviderClient
    from boost_ledger.upstream.errors import ProviderError
    from boost_ledger.workers.catalog_sync import sync_once

    provider = ProviderClient(
        settings.provider_url, settings.provider_key, timeout_s=settings.provider_timeout_s
    )
    try:
        async with database(settings) as pool:
            report = await sync_once(pool, provider, settings.fx_rate, settings.markup_percent)
    except ProviderError as error:
        # The provider's own text (a refusal's): escaped, or a newline in it would print a
        # second line in the provider's words.
        raise CommandError(f"the provider failed: {_printable(str(error))}", exit_code=1) from None
    finally:
        await provider.aclose()
    # The prices come from this process's BOOST_FX_RATE and BOOST_MARKUP_PERCENT, not the
    # server's: saying which lets an operator whose shell lacks the server's values see it.
    print(
        f"{_summary(report)}; priced at BOOST_FX_RATE={settings.fx_rate}"
        f" and BOOST_MARKUP_PERCENT={settings.markup_percent}"
    )
    return 0


_SHOWN_SKIPPED = 20
"""How many skipped entries the summary names (a garbled reply may hold thousands)."""


def _summary(report: catalog.SyncReport) -> str:
    text = f"{report.listed} services listed, {report.changed} changed, {report.delisted} delisted"
    if report.skipped:
        text += f", skipped {_named(report.skipped)}"
    if report.cut:
        text += f"; the list was cut at {catalog.MAX_SERVICES}: {report.cut} more left as they were"
    if report.below_cost:
        text += f"; pinned below the provider's cost: {_named(report.below_cost)}"
    return text


def _named(service_ids: list[str]) -> str:
    text = ", ".join(_shown_id(service_id) for service_id in service_ids[:_SHOWN_SKIPPED])
    if len(service_ids) > _SHOWN_SKIPPED:
        text += f" and {len(service_ids) - _SHOWN_SKIPPED} more"
    return text


def _shown_id(service_id: str) -> str:
    """An id as the summary names it: a skipped one is the provider's text, which may hold a
    newline or a terminal escape (why it was skipped), so one no service can have is escaped
    (Python's repr, its first ``MAX_SERVICE_ID_CHARS`` characters)."""
    if catalog.usable_service_id(service_id):
        return service_id
    shown = repr(service_id[: catalog.MAX_SERVICE_ID_CHARS])
    return shown + "..." if len(service_id) > catalog.MAX_SERVICE_ID_CHARS else shown


async def _price(arguments: argparse.Namespace) -> int:
    if arguments.unpin == (arguments.rate is not None):
        raise CommandError("give either a RATE or --unpin")
    rate_kobo = None
    if arguments.rate is not None:
        try:
            rate_kobo = parse_naira(arguments.rate)
        except ValueError as error:
            raise CommandError(str(error)) from None
    async with database() as pool, pool.acquire() as connection:
        try:
            await catalog.pin_rate(connection, arguments.service_id, rate_kobo)
        except catalog.ServiceUnknown:
            raise CommandError(f"no service {arguments.service_id}", exit_code=1) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
    if rate_kobo is None:
        print(f"service {arguments.service_id} unpinned: the synced rate applies")
    else:
        print(f"service {arguments.service_id} pinned at {format_kobo(rate_kobo)} NGN per 1000")
    return 0


async def _list(arguments: argparse.Namespace) -> int:
    async with database() as pool:
        rows = await pool.fetch(
            "select service_id, name, category, type, listed, rate_per_1000_kobo,"
            " pinned_rate_kobo from services order by length(service_id), service_id limit $1",
            MAX_SERVICES_LISTED + 1,
        )
    rows = first_rows(rows, MAX_SERVICES_LISTED, "services (by id)")
    services = [
        {
            "service_id": row["service_id"],
            "name": row["name"],
            "category": row["category"],
            "type": row["type"],
            "listed": row["listed"],
            "rate_per_1000": format_kobo(row["pinned_rate_kobo"] or row["rate_per_1000_kobo"]),
            "pinned": row["pinned_rate_kobo"] is not None,
        }
        for row in rows
    ]
    if arguments.json:
        print_json(services)
    else:
        for item in services:
            flags = ("" if item["listed"] else " (delisted)") + (
                " (pinned)" if item["pinned"] else ""
            )
            print(
                f"{item['service_id']:>6}  {item['rate_per_1000']:>12} NGN"
                f"  {_printable(item['type']):<24} {_printable(item['name'])}{flags}"
            )
    return 0


def _printable(text: str) -> str:
    """The provider's text on one line of the operator's terminal: one with a newline (which
    would print a line that looks like another service) or a terminal escape is shown escaped,
    as Python writes it in a string literal."""
    return text if text.isprintable() else repr(text)[1:-1]
