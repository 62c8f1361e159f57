"""``boost audit verify|replay|export|seal``: the auditor's commands."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from types import ModuleType
from typing import Any

import msgspec

from boost_ledger import postgres, projections
from boost_ledger.audit import export, seals, statement, verify
from boost_ledger.cli.common import (
    CommandError,
    account_id_argument,
    owner_connection,
    position_argument,
    print_json,
    sealed_position_argument,
    settings_from_env,
)
from boost_ledger.ledger.accounts import AccountNotFound
from boost_ledger.projections.replay import HeadNotStable

# A child process of a verification never runs longer than this.
CHILD_TIMEOUT_S = 3600.0


def register(commands: Any) -> None:
    group = commands.add_parser("audit", help="verify, replay, export and seal the ledger")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "verify", help="check every invariant of the whole log (exit 1 if any fails)"
    )
    check.add_argument("--json", action="store_true")
    check.add_argument(
        "--skip-projections",
        action="store_true",
        help="do not compare the projections with a replay",
    )
    check.set_defaults(handler=_verify)
    # The other process of a verification (its projection replay, in the verifier's snapshot);
    # no help, so that ``boost audit --help`` leaves it out (see cli/projections.py).
    part = actions.add_parser("verify-part")
    part.add_argument("--snapshot", required=True)
    part.add_argument("names", nargs="+", metavar="NAME")
    part.set_defaults(handler=_verify_part)
    replay = actions.add_parser("replay", help="an account's balance and statement as of a moment")
    replay.add_argument("--account", required=True, type=account_id_argument)
    when = replay.add_mutually_exclusive_group()
    when.add_argument("--until", help="ISO time, e.g. 2026-11-27T12:00:00Z")
    when.add_argument("--position", type=position_argument, help="global position")
    replay.add_argument("--json", action="store_true")
    replay.set_defaults(handler=_replay)
    dump = actions.add_parser("export", help="the log as JSON Lines on stdout")
    dump.add_argument(
        "--after", type=position_argument, default=0, help="only events after this position"
    )
    dump.set_defaults(handler=_export)
    seal = actions.add_parser("seal", help="record a checkpoint hash over the feed")
    seal.add_argument(
        "--position",
        type=sealed_position_argument,
        help="seal up to this position (default: the head)",
    )
    seal.add_argument("--json", action="store_true")
    seal.set_defaults(handler=_seal)


async def _verify(arguments: argparse.Namespace) -> int:
    settings = settings_from_env()
    async with owner_connection(settings) as connection:
        # More connections, sharing the first one's snapshot, let PostgreSQL work meanwhile.
        dsn = await postgres.prepare_dsn(settings.database_url, settings.data_dir)
        report = await verify.verify(
            connection,
            projections_too=not arguments.skip_projections,
            connect=lambda: postgres.owner_connection(dsn),
            offload=_replay_in_a_child,
        )
    if arguments.json:
        sys.stdout.buffer.write(
            msgspec.json.encode({**msgspec.structs.asdict(report), "ok": report.ok}) + b"\n"
        )
    else:
        print(
            f"{report.events} events in {report.streams} streams, {report.seals} seal(s),"
            f" verified in {report.seconds} s"
        )
        for finding in report.findings:
            where = (
                f" at position {finding.global_position} ({finding.stream_id})"
                if finding.global_position
                else ""
            )
            print(f"FAIL {finding.check}{where}: {finding.detail}")
        print("OK: every check holds" if report.ok else f"{len(report.findings)} finding(s)")
    return 0 if report.ok else 1


async def _replay_in_a_child(snapshot: str, modules: list[ModuleType]) -> list[str]:
    """``verify-part``: the replay of ``modules`` in a process of its own (a second CPU)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "boost_ledger.cli.main",
        "audit",
        "verify-part",
        "--snapshot",
        snapshot,
        *[module.NAME for module in modules],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT_S)
    except (TimeoutError, asyncio.CancelledError):
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        raise CommandError(f"the replay in a child process failed: {err.decode()[-500:]}", 1)
    differences: list[str] = msgspec.json.decode(out, type=list[str])
    return differences


async def _verify_part(arguments: argparse.Namespace) -> int:
    modules = [projections.by_name(name) for name in arguments.names]
    async with (
        owner_connection(settings_from_env()) as connection,
        owner_connection(settings_from_env()) as reader,
    ):
        found = await verify.replay_elsewhere(connection, reader, arguments.snapshot, modules)
    sys.stdout.buffer.write(msgspec.json.encode(found) + b"\n")
    return 0


def _parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"not an ISO time: {text!r}") from None
    if moment.tzinfo is None:
        raise CommandError("give the time zone, e.g. 2026-11-27T12:00:00Z")
    return moment


async def _replay(arguments: argparse.Namespace) -> int:
    until = _parse_time(arguments.until) if arguments.until else None
    async with owner_connection(settings_from_env()) as connection:
        try:
            result = await statement.statement(
                connection, arguments.account, until=until, position=arguments.position
            )
        except (statement.StatementContradicted, AccountNotFound) as error:
            raise CommandError(str(error), exit_code=1) from None
    if arguments.json:
        sys.stdout.buffer.write(msgspec.json.encode(result) + b"\n")
        return 0
    print(
        f"account {result.account_id} as of {result.as_of}: balance {result.balance} NGN"
        f" (credits {result.credits}, debits {result.debits}, refunds {result.refunds})"
    )
    if result.earlier_lines:
        print(f"  ({result.earlier_lines} earlier lines not shown; the totals count them)")
    for line in result.lines:
        about = f"order {line.order_id}" if line.order_id else f"reference {line.reference}"
        print(
            f"  {line.recorded_at}  #{line.global_position:<10} {line.kind:<6} {line.amount:>14}"
            f"  balance {line.balance_after:>14}  {about}"
        )
    return 0


async def _export(arguments: argparse.Namespace) -> int:
    out = sys.stdout.buffer
    async with owner_connection(settings_from_env()) as connection:
        try:
            async for line in export.export_lines(connection, arguments.after):
                out.write(line)
        except HeadNotStable as error:
            raise CommandError(str(error), exit_code=1) from None
    out.flush()
    return 0


async def _seal(arguments: argparse.Namespace) -> int:
    async with owner_connection(settings_from_env()) as connection:
        try:
            sealed = await seals.seal(connection, arguments.position)
        except HeadNotStable as error:
            raise CommandError(str(error), exit_code=1) from None
    if arguments.json:
        print_json(msgspec.structs.asdict(sealed))
    else:
        print(f"sealed positions 1..{sealed.position} ({sealed.events} events): {sealed.digest}")
    return 0
