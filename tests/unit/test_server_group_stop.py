"""``server_group.stop``: every child gets SIGTERM, and the whole stop is bounded by one
``STOP_TIMEOUT_S``, however many children ignore it (each of those is then killed).

Real child processes; a child that ignores SIGTERM stands for one stuck in its shutdown.
"""

from __future__ import annotations

import asyncio
import sys
import time

import pytest

from boost_ledger import server_group

IGNORES_SIGTERM = (
    "import signal, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)
CHILDREN = 4
TIMEOUT_S = 1.0


async def _stubborn_child() -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", IGNORES_SIGTERM, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    return process


async def test_children_that_ignore_sigterm_are_all_killed_within_one_timeout(monkeypatch):
    monkeypatch.setattr(server_group, "STOP_TIMEOUT_S", TIMEOUT_S)
    children = [await _stubborn_child() for _ in range(CHILDREN)]
    try:
        started = time.monotonic()
        await asyncio.wait_for(server_group.stop(children), 30)
        took_s = time.monotonic() - started
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()
    assert all(child.returncode is not None for child in children)
    assert took_s < TIMEOUT_S + 0.5 * TIMEOUT_S, (
        f"stop took {took_s:.1f} s for {CHILDREN} stuck children: one timeout each, in turn"
    )


@pytest.mark.parametrize("count", [0, 1])
async def test_children_that_exit_on_sigterm_are_waited_for(count):
    children = [
        await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(60)")
        for _ in range(count)
    ]
    await asyncio.wait_for(server_group.stop(children), 30)
    assert all(child.returncode is not None for child in children)
