"""Reading py-spy's collapsed stacks (``-f raw``): which part of the server a sample was in.

py-spy's own idle detection does not apply to native (``--native``) stacks of an event loop, so
a sample whose innermost frame is the loop's ``epoll_wait`` is counted as idle here and left out.
Shares are of the remaining (busy) samples; the report scales them to CPU ms per request with
the OS's CPU counters, which are exact where sampling is not.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

_LINE = re.compile(r":\d+\)$")

IDLE_LEAVES = ("epoll_wait", "epoll_pwait", "poll (", "select (", "nanosleep", "futex")
SYSCALL_LEAVES = ("write (", "read (", "send", "recv", "writev (", "readv (")

# Innermost matching frame wins; frames that match nothing (libc, CPython internals) are skipped.
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("asyncpg (driver, protocol, records)", ("asyncpg/", "protocol.c", "pgproto.c", "recordobj.c")),
    ("logging (structlog)", ("structlog/", "logging/", "boost_ledger/logs")),
    ("msgspec (JSON)", ("msgspec",)),
    ("uvicorn + httptools (HTTP server)", ("uvicorn/", "httptools", "llhttp")),
    ("httpx (client to the provider)", ("httpx/", "httpcore/", "anyio/", "h11/")),
    ("Starlette", ("starlette/",)),
    ("simulator (the provider, when built in)", ("boost_ledger/upstream/sim",)),
    ("provider client", ("boost_ledger/upstream/",)),
    ("workers' own code", ("boost_ledger/workers/",)),
    (
        "ledger, projections, API code",
        (
            "boost_ledger/ledger/",
            "boost_ledger/projections/",
            "boost_ledger/api/",
            "boost_ledger/audit/",
        ),
    ),
    ("event loop (uvloop, asyncio)", ("loop.c", "uvloop", "asyncio/", "core.c", "linux.c")),
)
OTHER_LAYER = "interpreter and other"

# What the sample was working for, by the outermost distinguishing frame on its stack.
ACTIVITIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("API requests (from the middleware down)", ("boost_ledger/api/",)),
    ("simulator requests", ("boost_ledger/upstream/sim",)),
    ("workers (submitter, poller, catalog sync)", ("boost_ledger/workers/",)),
    ("projection rebuild", ("boost_ledger/projections/rebuild", "boost_ledger/projections/replay")),
    ("audit", ("boost_ledger/audit/",)),
    ("HTTP parsing outside the app", ("uvicorn/", "httptools", "llhttp")),
    ("database replies outside a query call", ("asyncpg/", "protocol.c", "pgproto.c")),
)


def _layer(frames: list[str]) -> str:
    leaf = frames[-1]
    if any(leaf.startswith(name) for name in SYSCALL_LEAVES):
        return "socket send/receive syscalls"
    for frame in reversed(frames):
        if "boost_ledger/cli/" in frame:
            continue
        for name, needles in LAYERS:
            if any(needle in frame for needle in needles):
                return name
    return OTHER_LAYER


def _activity(frames: list[str]) -> str:
    joined = ";".join(frames)
    for name, needles in ACTIVITIES:
        if any(needle in joined for needle in needles):
            return name
    return "event loop and other"


def summarize(raw: str, cpu_ms_per_request: float, top: int = 20) -> dict[str, Any]:
    """Layers, activities and hottest functions of the busy samples, in share and ms/request."""
    layers: Counter[str] = Counter()
    activities: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    busy = idle = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames, count = stack.split(";"), int(count_text)
        if any(frames[-1].startswith(name) for name in IDLE_LEAVES):
            idle += count
            continue
        busy += count
        layers[_layer(frames)] += count
        activities[_activity(frames)] += count
        # Per function (not per line), each counted once per sample.
        for function in {_LINE.sub(")", frame) for frame in frames}:
            if "boost_ledger/" in function and "boost_ledger/cli/" not in function:
                functions[function] += count

    def rows(counter: Counter[str], limit: int) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "share": count / max(busy, 1),
                "cpu_ms_per_request": cpu_ms_per_request * count / max(busy, 1),
            }
            for name, count in counter.most_common(limit)
        ]

    return {
        "busy_samples": busy,
        "idle_samples": idle,
        "layers": rows(layers, len(LAYERS) + 2),
        "activities": rows(activities, 10),
        "functions": rows(functions, top),
    }
