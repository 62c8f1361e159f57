"""How ``audit verify`` schedules its parts (``verify._concurrently``): the set checks start
once one of the two replays has ended, and a failure anywhere cancels whatever still runs."""

from __future__ import annotations

import asyncio

import pytest

from boost_ledger.audit.verify import _concurrently


async def _step(name: str, seconds: float, log: list[str], fail: bool = False) -> str:
    log.append(f"{name} started")
    await asyncio.sleep(seconds)
    if fail:
        raise RuntimeError(name)
    log.append(f"{name} ended")
    return name


async def test_then_starts_once_the_first_of_them_ends_and_results_keep_their_order() -> None:
    """``then`` starts once ``quick`` has ended, while ``slow`` still runs: ``slow`` waits for
    ``then`` itself, so the order cannot depend on the machine's speed."""
    log: list[str] = []
    then_started = asyncio.Event()

    async def slow() -> str:
        log.append("slow started")
        await then_started.wait()
        log.append("slow ended")
        return "slow"

    async def then() -> str:
        log.append("then started")
        then_started.set()
        return "then"

    results = await _concurrently([slow(), _step("quick", 0.0, log)], then)
    assert results == ["slow", "quick", "then"]
    assert log.index("quick ended") < log.index("then started") < log.index("slow ended")


async def test_without_then_everything_runs_from_the_start() -> None:
    log: list[str] = []
    assert await _concurrently([_step("a", 0.02, log), _step("b", 0.01, log)]) == ["a", "b"]
    assert log[:2] == ["a started", "b started"]


async def test_a_failure_first_cancels_the_other_and_never_starts_then() -> None:
    log: list[str] = []
    started = []
    with pytest.raises(RuntimeError, match="broken"):
        await _concurrently(
            [_step("long", 5.0, log), _step("broken", 0.01, log, fail=True)],
            lambda: started.append(True) or _step("then", 0.0, log),
        )
    assert started == []
    assert "long ended" not in log


async def test_a_failure_of_then_cancels_what_still_runs() -> None:
    log: list[str] = []
    with pytest.raises(RuntimeError, match="then"):
        await _concurrently(
            [_step("long", 5.0, log), _step("quick", 0.0, log)],
            lambda: _step("then", 0.01, log, fail=True),
        )
    assert "long ended" not in log
