"""Shared plumbing of the ``boost`` subcommands."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator, Coroutine, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, cast

import asyncpg
import msgspec

from boost_ledger.database import LOST_ERRORS, REFUSED_ERRORS, open_owner_connection, open_pool
from boost_ledger.settings import Settings

Subparsers = "argparse._SubParsersAction[argparse.ArgumentParser]"


class CommandError(Exception):
    """A refusal to report in one line, with the exit code to return."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run(coroutine: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def settings_from_env() -> Settings:
    """The settings, or a one-line refusal naming the bad variable."""
    try:
        return Settings.from_env()
    except ValueError as error:
        raise CommandError(str(error)) from None


def _first_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")


@contextmanager
def _database_failures_in_one_line() -> Iterator[None]:
    """A failure of the database while a command runs is one line and exit 1, as the README's
    exit statuses say (the driver's stack trace is for a crash, and this is none): an operator
    running a command against a busy server meets a lock timeout sooner or later, and a
    restart of PostgreSQL ends its connection."""
    try:
        yield
    except BrokenPipeError:
        raise  # stdout's reader went away: main() ends quietly (141)
    except REFUSED_ERRORS as error:
        raise CommandError(
            f"the database refused the command ({_first_line(error)}); nothing was"
            " changed: run it again",
            exit_code=1,
        ) from None
    except LOST_ERRORS as error:
        raise CommandError(
            f"the connection to the database was lost ({_first_line(error)}); if it was"
            " lost while committing, the command may have been done: check before running"
            " it again",
            exit_code=1,
        ) from None


@asynccontextmanager
async def database(settings: Settings | None = None) -> AsyncIterator[asyncpg.Pool[Any]]:
    """A small pool for one operator command (migrating first, like the server does); the
    database's failures meanwhile are one line (``_database_failures_in_one_line``)."""
    base = settings or settings_from_env()
    small = msgspec.structs.replace(base, pool_min_size=1, pool_max_size=4)
    async with open_pool(small, application_name="boost-cli") as pool:
        with _database_failures_in_one_line():
            yield pool


@asynccontextmanager
async def owner_connection(settings: Settings) -> AsyncIterator[asyncpg.Connection[Any]]:
    """``database.open_owner_connection`` (rebuilds and audits), its failures one line too."""
    async with open_owner_connection(settings) as connection:
        with _database_failures_in_one_line():
            yield connection


@asynccontextmanager
async def connection(settings: Settings | None = None) -> AsyncIterator[asyncpg.Connection[Any]]:
    """One connection for one operator command, typed as the ledger's functions expect.

    A pool hands out a proxy that forwards every call to its connection; the cast says so.
    """
    async with database(settings) as pool, pool.acquire() as proxy:
        yield cast("asyncpg.Connection[Any]", proxy)


def print_json(value: Any) -> None:
    json.dump(value, sys.stdout)
    sys.stdout.write("\n")


def port_argument(text: str) -> int:
    """A TCP port to bind, 1 to 65535 (0 would bind a port chosen at random, not the one shown)."""
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"not a port (1 to 65535): {text!r}")
    return int(text)


def account_id_argument(text: str) -> int:
    """ASCII digits only: ``str.isdigit`` also takes "١٠٠٢" (which ``int`` reads as 1002)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise argparse.ArgumentTypeError(f"not an account id: {text!r}")
    return int(text)


def _bigint_argument(text: str, what: str, least: int = 0) -> int:
    """A whole number the database holds as a bigint, so at most 18 decimal digits (a longer
    one would reach it as an out-of-range argument, a stack trace instead of a refusal)."""
    if not (text.isascii() and text.isdigit()) or len(text) > 18 or int(text) < least:
        raise argparse.ArgumentTypeError(f"not {what}: {text!r}")
    return int(text)


def order_id_argument(text: str) -> int:
    return _bigint_argument(text, "an order id")


def position_argument(text: str) -> int:
    """A position in the log, 0 (before the first event) included."""
    return _bigint_argument(text, "a log position")


def sealed_position_argument(text: str) -> int:
    """The last position a seal covers: a seal covers at least the first event."""
    return _bigint_argument(text, "a log position of at least 1", least=1)
