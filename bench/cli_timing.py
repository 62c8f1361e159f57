"""Timing an operator command (``boost projections rebuild``, ``boost audit verify``) on the
log database: bounded in time, its PostgreSQL CPU counted, its first seconds sampled by py-spy
(with idle samples, so time spent waiting for the database shows), and a snapshot of every
backend of the cluster half-way, so a stall can be explained."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.profile_phase import HAVE_PY_SPY, PY_SPY
from bench.profile_stacks import summarize
from bench.sampler import Sampler
from bench.server import BOOST


def _has_command(*words: str) -> bool:
    shown = subprocess.run([BOOST, *words, "--help"], capture_output=True, text=True, check=False)
    return shown.returncode == 0


async def _spy(pid: int, seconds: float, path: Path) -> None:
    """py-spy on a CLI process for its first ``seconds`` (native stacks, so idle shows)."""
    if not HAVE_PY_SPY:
        return
    spy = await asyncio.create_subprocess_exec(
        PY_SPY,
        "record",
        "--native",
        "--idle",
        "-r",
        "50",
        "-d",
        str(max(1, round(seconds))),
        "-f",
        "raw",
        "-o",
        str(path),
        "-p",
        str(pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await spy.wait()


async def _activity(dsn: str, delay_s: float) -> list[str]:
    """Every backend of the cluster after ``delay_s``: database, state, wait, xmin and query."""
    import asyncpg

    await asyncio.sleep(delay_s)
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(
            "select datname, backend_type, state, wait_event_type, wait_event,"
            " backend_xmin::text as xmin, now() - xact_start as in_transaction,"
            " left(query, 100) as query"
            " from pg_stat_activity where pid <> pg_backend_pid() and datname is not null"
        )
    finally:
        await connection.close()
    return [
        f"{row['datname']} {row['backend_type']} {row['state']}"
        f" {row['wait_event_type'] or ''}/{row['wait_event'] or ''} xmin={row['xmin']}"
        f" in_transaction={row['in_transaction']}: {' '.join((row['query'] or '').split())}"
        for row in rows
    ]


def _last_progress(text: str) -> str:
    lines = [line for line in text.replace("\r", "\n").splitlines() if "events" in line]
    return lines[-1].strip() if lines else ""


async def timed_cli(
    cluster: Cluster, dsn: str, events: int, timeout_s: float, *arguments: str
) -> dict[str, Any]:
    """Run ``boost <arguments>`` against the log database, timed, bounded and profiled."""
    command = " ".join(arguments)
    if not _has_command(*arguments[:2]):
        print(f"  boost {command}: not available", flush=True)
        return {"command": command, "available": False}
    quiet = await cluster.quiesce()
    stem = cluster.root / command.replace(" ", "_").replace("-", "")
    out_path, err_path = stem.with_suffix(".out"), stem.with_suffix(".err")
    started = time.perf_counter()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        async with Sampler(None, cluster.postmaster()) as sampler:
            process = await asyncio.create_subprocess_exec(
                BOOST,
                *arguments,
                env={**cluster.env(), "DATABASE_URL": dsn},
                stdout=out,
                stderr=err,
            )
            spy = asyncio.create_task(
                _spy(process.pid, min(timeout_s, 20.0), stem.with_suffix(".stacks"))
            )
            activity = asyncio.create_task(_activity(dsn, min(timeout_s / 2, 10.0)))
            try:
                await asyncio.wait_for(process.wait(), timeout_s)
                timed_out = False
            except TimeoutError:
                process.kill()
                await process.wait()
                timed_out = True
            await spy
            snapshot = await activity if activity.done() else []
            activity.cancel()
    seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "command": command,
        "available": True,
        "started_quiet": quiet,
        "timed_out": timed_out,
        "exit_code": process.returncode,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "output": out_path.read_text(errors="replace")[-1500:],
        "last_progress": _last_progress(err_path.read_text(errors="replace")),
        "postgres_cpu_s": sampler.result["postgres_cpu_s"],
        "activity_snapshot": snapshot,
    }
    stacks = stem.with_suffix(".stacks")
    if stacks.exists():
        profile = summarize(stacks.read_text(), 0.0, top=10)
        busy, idle = profile["busy_samples"], profile["idle_samples"]
        result["profile"] = {**profile, "idle_share": idle / max(busy + idle, 1)}
    print(
        f"  boost {command}: {'timed out' if timed_out else f'exit {process.returncode}'},"
        f" {seconds:.1f} s, {result['events_per_s']:.0f} events/s"
        f" {result['last_progress']}",
        flush=True,
    )
    return result
