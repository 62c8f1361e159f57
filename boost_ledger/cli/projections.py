"""``boost projections rebuild|status``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from types import ModuleType
from typing import Any

import asyncpg

from boost_ledger import projections
from boost_ledger.cli.common import CommandError, settings_from_env
from boost_ledger.database import open_owner_connection
from boost_ledger.projections import jobs, rebuild

# A rebuild of a child process never runs longer than this (bounded, like everything else).
CHILD_TIMEOUT_S = 3600.0


def register(commands: Any) -> None:
    group = commands.add_parser("projections", help="rebuild read models from the log, online")
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")
    names = ", ".join(module.NAME for module in projections.PROJECTIONS)
    build = actions.add_parser("rebuild", help=f"rebuild projections ({names}) while serving")
    build.add_argument("names", nargs="*", metavar="NAME")
    build.add_argument("--all", action="store_true")
    build.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="processes to share the projections between (default: 2 where there are 2 CPUs)",
    )
    build.set_defaults(handler=_rebuild)
    status = actions.add_parser("status", help="each projection's position and lag")
    status.set_defaults(handler=_status)


class _Bar:
    """A progress bar on stderr (only when it is a terminal, or plain lines otherwise)."""

    def __init__(self, name: str, total: int) -> None:
        self.name, self.total, self.done = name, max(total, 1), 0
        self.started = self.last = time.monotonic()

    def __call__(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last < 0.2 and self.done < self.total:
            return
        self.last = now
        share = min(1.0, self.done / self.total)
        bar = "#" * int(share * 30)
        rate = self.done / max(now - self.started, 1e-9)
        end = "\r" if sys.stderr.isatty() else "\n"
        sys.stderr.write(
            f"{self.name:<10} [{bar:<30}] {self.done}/{self.total} events {rate:,.0f}/s{end}"
        )
        sys.stderr.flush()


async def _rebuild(arguments: argparse.Namespace) -> int:
    try:
        modules = rebuild.chosen_modules(arguments.names, arguments.all)
    except KeyError as error:
        raise CommandError(f"no projection {error}") from None
    if arguments.jobs < 1:
        raise CommandError("--jobs must be at least 1")
    settings = settings_from_env()
    # A second connection reads the log a batch ahead while the first writes the copies.
    async with (
        open_owner_connection(settings) as connection,
        open_owner_connection(settings) as reader,
    ):
        groups = jobs.share_out(modules, await jobs.type_shares(connection), arguments.jobs)
        children = [await _spawn(group) for group in groups[1:]]
        try:
            await _rebuild_here(connection, reader, groups[0])
        finally:
            failed = await _wait(children)
    if failed:
        raise CommandError(f"rebuilding {', '.join(failed)} failed", exit_code=1)
    return 0


async def _rebuild_here(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any],
    modules: list[ModuleType],
) -> None:
    head = await connection.fetchval("select coalesce(max(global_position), 0) from events")
    names = "+".join(module.NAME for module in modules)
    started = time.monotonic()
    reports = await rebuild.rebuild_all(connection, modules, _Bar(names, head), reader)
    seconds = time.monotonic() - started
    sys.stderr.write("\n" if sys.stderr.isatty() else "")
    for report in reports:
        print(
            f"{report.name}: rebuilt from {report.events_applied} events"
            f" ({report.tail_events} applied under the swap lock,"
            f" attempt {report.swap_attempts})"
        )
    print(f"{names} rebuilt in {seconds:.2f} s, one pass over {head} log positions", flush=True)


async def _spawn(modules: list[ModuleType]) -> tuple[str, asyncio.subprocess.Process]:
    """``boost projections rebuild`` of ``modules`` in a process of its own (its lines are
    printed when it is done; its progress goes to stderr as it happens)."""
    names = [module.NAME for module in modules]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "boost_ledger.cli.main",
        "projections",
        "rebuild",
        "--jobs",
        "1",
        *names,
        stdout=asyncio.subprocess.PIPE,
    )
    return ", ".join(names), process


async def _wait(children: list[tuple[str, asyncio.subprocess.Process]]) -> list[str]:
    """Wait for the child rebuilds (bounded), print what they said; the names of those that
    failed."""
    failed = []
    for names, process in children:
        try:
            out, _ = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            process.kill()
            await process.wait()
            raise
        sys.stdout.write(out.decode(errors="replace"))
        if process.returncode != 0:
            failed.append(names)
    return failed


async def _status(arguments: argparse.Namespace) -> int:
    async with open_owner_connection(settings_from_env()) as connection:
        head = await connection.fetchval("select coalesce(max(global_position), 0) from events")
        rebuilding = {
            row["nspname"]
            for row in await connection.fetch(
                "select nspname from pg_namespace where nspname like 'rebuild\\_%'"
            )
        }
        print(f"log head: position {head}")
        for module in projections.PROJECTIONS:
            counts = []
            for table in module.TABLES:
                rows = await connection.fetchval(f'select count(*) from public."{table}"')
                counts.append(f"{table}={rows}")
            state = "rebuild in progress" if f"rebuild_{module.NAME}" in rebuilding else "live"
            # Inline projections are written in the appending transaction: never behind the log.
            print(f"{module.NAME:<10} position {head} lag 0 (inline, {state})  {' '.join(counts)}")
    return 0
