"""``boost``: the operator's and auditor's command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from boost_ledger.cli import accounts, audit, catalog, orders, projections, serving, wallet
from boost_ledger.cli.common import CommandError, run
from boost_ledger.migrations import MigrationError

COMMAND_MODULES = (serving, accounts, wallet, catalog, orders, projections, audit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="boost",
        description="Run and operate the boost-ledger server (settings: BOOST_* variables).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
