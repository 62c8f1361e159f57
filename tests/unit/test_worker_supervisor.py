"""The supervisor of ``boost serve``'s worker child (pure: the process spawning is faked).

A child that cannot even be started (no file descriptor left, fork refused) is tried again
after a pause, as one that exits is: a supervisor that stopped on that error would leave paid
orders unsent, silently. Once the server is stopping, an exit is not restarted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from boost_ledger import server, server_group


class _Child:
    """A started child that runs until ``exit`` is set, then exits with ``code``."""

    def __init__(self, code: int = 0) -> None:
        self.exit = asyncio.Event()
        self.code = code

    async def wait(self) -> int:
        await self.exit.wait()
        return self.code


@pytest.fixture
def spawned(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """What each spawn does, in order: an exception to raise or a child to return."""
    outcomes: list[Any] = []

    async def spawn_worker(provider_url: str) -> Any:
        outcome = outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome

    async def stop(processes: list[Any]) -> None:
        for process in processes:
            process.exit.set()

    monkeypatch.setattr(server_group, "spawn_worker", spawn_worker)
    monkeypatch.setattr(server_group, "stop", stop)
    monkeypatch.setattr(server, "WORKER_RESTART_S", 0.01)
    return outcomes


async def test_a_child_that_cannot_be_started_is_tried_again(spawned):
    running = _Child()
    spawned += [OSError(24, "Too many open files"), OSError(11, "fork refused"), running]
    supervisor = asyncio.create_task(server._supervise_worker("http://p", lambda: False))
    for _ in range(200):
        if not spawned:
            break
        await asyncio.sleep(0.01)
    assert not spawned, "the supervisor gave up after a failed start"
    assert not supervisor.done()
    supervisor.cancel()
    await asyncio.gather(supervisor, return_exceptions=True)
    assert running.exit.is_set(), "the running child is stopped with its supervisor"


async def test_an_exit_is_restarted_unless_the_server_is_stopping(spawned):
    first, second = _Child(code=-9), _Child()
    spawned += [first, second]
    stopping = False
    supervisor = asyncio.create_task(server._supervise_worker("http://p", lambda: stopping))
    await asyncio.sleep(0.05)
    first.exit.set()  # killed: started again
    for _ in range(200):
        if not spawned:
            break
        await asyncio.sleep(0.01)
    assert not spawned, "the child that exited was not started again"
    stopping = True
    second.exit.set()  # the signal that stops the server reached it too
    await asyncio.wait_for(supervisor, 5)
