"""``boost projections rebuild|status``."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from types import ModuleType
from typing import Any

import asyncpg
import msgspec

from boost_ledger import projections
from boost_ledger.cli.common import CommandError, owner_connection, settings_from_env
from boost_ledger.ledger import store
from boost_ledger.projections import jobs, rebuild
from boost_ledger.projections.replay import HeadNotStable

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
        help="processes to share the projections between (default: 2, or 1 on a one-CPU machine)",
    )
    build.set_defaults(handler=_rebuild)
    # The other process of a rebuild whose biggest projection is filled by two at once. It is
    # given no help: argparse (in Python 3.11 at least) lists a sub-command whose help is
    # SUPPRESS as "==SUPPRESS==" rather than hiding it, and leaves one without help out.
    part = actions.add_parser("fill-part")
    part.add_argument("--up-to", type=int, required=True)
    part.add_argument("--part", required=True, help="INDEX/COUNT")
    part.add_argument("name", metavar="NAME")
    part.set_defaults(handler=_fill_part)
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
        owner_connection(settings) as connection,
        owner_connection(settings) as reader,
    ):
        groups = jobs.share_out(modules, await jobs.type_shares(connection), arguments.jobs)
        children = [await _spawn("rebuild", "--jobs", "1", *_names(group)) for group in groups[1:]]
        # The heaviest projection alone (the usual case) is filled by two processes at once.
        split = arguments.jobs > 1 and len(groups[0]) == 1
        refused = None
        try:
            await _rebuild_here(connection, reader, groups[0], split)
        except (
            rebuild.RebuildRunning, rebuild.SwapNotLocked, rebuild.LogOutpaced, HeadNotStable
        ) as running:
            # the others go on
            refused = running
        finally:
            said = await _wait(children)
    for _, out in said:
        sys.stdout.write(out.decode(errors="replace"))
    if isinstance(refused, rebuild.SwapNotLocked):
        _print_reports(refused.reports)
        raise CommandError(f"{refused}; {', '.join(refused.pending)} left as they were", 1)
    if refused is not None:
        left = ", ".join(module.NAME for module in groups[0])
        raise CommandError(f"{refused}; {left} left as they were", exit_code=1)
    return 0


def _print_reports(reports: list[rebuild.RebuildReport]) -> None:
    for report in reports:
        print(
            f"{report.name}: rebuilt from {report.events_applied} events"
            f" ({report.tail_events} applied under the swap lock,"
            f" attempt {report.swap_attempts})"
        )


async def _rebuild_here(
    connection: asyncpg.Connection[Any],
    reader: asyncpg.Connection[Any],
    modules: list[ModuleType],
    split: bool,
) -> None:
    head = await connection.fetchval("select coalesce(max(global_position), 0) from events")
    names = "+".join(module.NAME for module in modules)
    bar = _Bar(names, head)
    started = time.monotonic()

    async def fill_in_two(up_to: int) -> Counter[str]:
        """Part 0 here, part 1 in a child process, at the same time."""
        (module,) = modules
        field = rebuild.partition_field(module)
        child = await _spawn("fill-part", "--up-to", str(up_to), "--part", "1/2", module.NAME)
        try:
            part = store.Part(field=field, count=2, index=0)
            folded = await rebuild.fill_part(connection, reader, module, up_to, part, bar)
        finally:
            out = await _wait([child])
        folded.update(msgspec.json.decode(out[0][1], type=dict[str, int]))
        return folded

    fill = fill_in_two if split else None
    reports = await rebuild.rebuild_all(connection, modules, bar, reader, fill)
    seconds = time.monotonic() - started
    sys.stderr.write("\n" if sys.stderr.isatty() else "")
    _print_reports(reports)
    print(f"{names} rebuilt in {seconds:.2f} s, one pass over {head} log positions", flush=True)


def _names(modules: list[ModuleType]) -> list[str]:
    return [module.NAME for module in modules]


async def _spawn(*arguments: str) -> tuple[str, asyncio.subprocess.Process]:
    """``boost projections <arguments>`` in a process of its own (its progress goes to stderr
    as it happens; what it prints is read when it is done)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "boost_ledger.cli.main",
        "projections",
        *arguments,
        stdout=asyncio.subprocess.PIPE,
    )
    return " ".join(arguments), process


async def _wait(children: list[tuple[str, asyncio.subprocess.Process]]) -> list[tuple[str, bytes]]:
    """Wait for the children (bounded); what each printed, or a refusal naming those that
    failed."""
    said, failed = [], []
    for command, process in children:
        try:
            out, _ = await asyncio.wait_for(process.communicate(), CHILD_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            process.kill()
            await process.wait()
            raise
        said.append((command, out))
        if process.returncode != 0:
            failed.append(command)
    if failed:
        raise CommandError(f"boost projections {'; '.join(failed)}: failed", exit_code=1)
    return said


async def _fill_part(arguments: argparse.Namespace) -> int:
    """The other process of a split fill: one part of one projection's copies."""
    module = projections.by_name(arguments.name)
    index, _, count = arguments.part.partition("/")
    part = store.Part(field=rebuild.partition_field(module), count=int(count), index=int(index))
    settings = settings_from_env()
    async with (
        owner_connection(settings) as connection,
        owner_connection(settings) as reader,
    ):
        folded = await rebuild.fill_part(connection, reader, module, arguments.up_to, part)
    sys.stdout.buffer.write(msgspec.json.encode(dict(folded)) + b"\n")
    return 0


async def _status(arguments: argparse.Namespace) -> int:
    async with owner_connection(settings_from_env()) as connection:
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
