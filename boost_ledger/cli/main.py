"""``boost``: the operator's and auditor's command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from boost_ledger import logs
from boost_ledger.cli import accounts, audit, catalog, orders, projections, serving, wallet
from boost_ledger.cli.common import CommandError, run
from boost_ledger.migrations import MigrationError

COMMAND_MODULES = (serving, accounts, wallet, catalog, orders, projections, audit)
OUTPUT_CLOSED = 141  # 128 + SIGPIPE, what a shell reports for a tool its pipe's reader left

EXIT_STATUS = (
    "Exit status: 0 done, also when there was nothing to do (a reference already credited, an"
    " account already in that standing); 1 the command could not do it, or a check failed: no"
    " such account, order or service, an order not awaiting an operator, a provider order id"
    " already recorded, a rebuild or seal that could not go ahead, a provider call that failed,"
    " a database that cannot be used or a migration it refused, a statement the database refused"
    " under load (a lock or statement timeout, a deadlock: nothing was changed, run it again) or a"
    " connection lost midway (a commit may have landed: check first), a failed check of audit"
    " verify,"
    " an audit replay of a wallet that contradicts itself (and a crash, with its stack trace);"
    " 2 refused input or settings: a bad argument, amount, reference or id, or a bad or missing"
    " BOOST_* value. The reason is one line on stderr (boost: ...), but for the findings of audit"
    " verify, which its report lists; an operator command interrupted with Ctrl-C exits 130, and"
    " one whose output was closed before it ended (boost audit export | head) exits 141, quietly."
)
"""What each exit status means, in general: ``boost --help`` ends with it, and the README and
the runbook say it in these words (tests/e2e/test_cli.py holds them to it)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boost",
        description="Run and operate the boost-ledger server (settings: BOOST_* variables).",
        epilog=EXIT_STATUS,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
    # Log lines go to stderr from the start (structlog's default is stdout, where they would mix
    # with a command's output, its --json included); ``serve`` and ``worker`` configure again.
    logs.configure(os.environ.get("BOOST_LOG_LEVEL") or "info")
    try:
        return run(arguments.handler(arguments))
    except CommandError as error:
        print(f"boost: {error}", file=sys.stderr)
        return error.exit_code
    except MigrationError as error:
        print(f"boost: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return _output_closed()


def _output_closed() -> int:
    """The reader of stdout went away (``| head``): stop quietly, as a shell tool killed by
    SIGPIPE would. What Python still holds for stdout goes to /dev/null, so its flush at exit
    raises no second BrokenPipeError."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return OUTPUT_CLOSED


if __name__ == "__main__":
    sys.exit(main())
