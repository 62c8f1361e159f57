"""Orders move through the lifecycle: by hand with /control/tick, or on their own when auto."""

import asyncio
from typing import Any

import httpx
import pytest
from upstream_helpers import API_KEY, control_orders, running_server, wait_until_terminal

from boost_ledger.upstream import ProviderClient, create_simulator_app
from boost_ledger.upstream.sim_actions import add
from boost_ledger.upstream.sim_progression import TERMINAL_STATUSES, tick, tick_in_steps
from boost_ledger.upstream.sim_state import SimulatorState

FOLLOWERS = {"link": "https://instagram.com/someone", "quantity": "1000"}


async def test_ticks_walk_an_order_to_its_end(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """Pending → Processing → In progress with falling remains → Completed (0) or Partial (>0)."""
    order_id = await provider.add("1", FOLLOWERS)
    seen = [await provider.status(order_id)]
    for _ in range(8):
        await control.post("/tick")
        seen.append(await provider.status(order_id))
    statuses = [status.status for status in seen]
    assert statuses[:3] == ["Pending", "Processing", "In progress"]
    assert seen[2].start_count is not None and seen[2].start_count >= 0
    final = seen[-1]
    assert final.status in {"Completed", "Partial"}
    assert final.remains == 0 if final.status == "Completed" else 0 < (final.remains or 0) < 1000
    remains = [status.remains or 0 for status in seen]
    assert remains == sorted(remains, reverse=True)


async def test_drip_feed_delivers_one_run_per_step(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A drip-feed order counts its runs, delivering quantity/runs each step while in progress."""
    await provider.add("1", {**FOLLOWERS, "quantity": "100", "runs": "4", "interval": "5"})
    await control.post("/tick", json={"steps": 3})
    [order] = await control_orders(control)
    assert (order["status"], order["runs_done"], order["remains"]) == ("In progress", 1, 300)


async def test_nothing_moves_while_progression_is_off(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """With autoprogress off, an order stays where it is however long we wait."""
    order_id = await provider.add("1", FOLLOWERS)
    await asyncio.sleep(0.2)  # four of the shared simulator's 0.05 s ticks
    assert (await provider.status(order_id)).status == "Pending"


async def test_progression_can_be_switched_on_at_run_time(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """POST /control/progression {"auto": true} makes orders finish without manual ticks."""
    order_id = await provider.add("1", FOLLOWERS)
    assert (await control.post("/progression", json={"auto": True})).json() == {"auto": True}
    assert await wait_until_terminal(provider, [order_id])


async def test_autoprogress_from_creation_finishes_orders() -> None:
    """A simulator created with autoprogress on finishes orders on its own, tick after tick."""
    app = create_simulator_app(api_key=API_KEY, autoprogress=True, tick_s=0.02, seed=3)
    async with running_server(app) as base_url:
        client = ProviderClient(f"{base_url}/api/v2", API_KEY, timeout_s=2.0)
        try:
            order_ids = [await client.add("3", {"link": "x", "quantity": "500"}) for _ in range(5)]
            statuses = await wait_until_terminal(client, order_ids)
            assert set(statuses) == set(order_ids)
        finally:
            await client.aclose()


def _history(seed: int) -> list[tuple[Any, ...]]:
    state = SimulatorState(api_key="k", tick_s=1.0, initial_autoprogress=False, seed=seed)
    for _ in range(200):
        assert "order" in add(state, {"service": "3", "link": "x", "quantity": "1000"})
    for _ in range(6):
        tick(state)
    return [(o.status, o.remains, o.start_count) for o in state.orders.values()]


def test_progression_is_deterministic_and_about_one_in_five_is_partial() -> None:
    """The same seed gives the same history; roughly a fifth of orders end Partial."""
    history = _history(seed=11)
    assert history == _history(seed=11)
    assert history != _history(seed=12)
    statuses = [status for status, _, _ in history]
    assert set(statuses) == {"Completed", "Partial"}
    assert 20 <= statuses.count("Partial") <= 60
    assert all(remains > 0 for status, remains, _ in history if status == "Partial")


async def test_a_background_tick_gives_the_loop_back_and_moves_orders_as_a_tick_does() -> None:
    """The background progression advances the same orders by the same step as ``tick`` (same
    seed, same history), returning to the event loop between chunks of orders."""
    def placed(seed: int) -> SimulatorState:
        state = SimulatorState(api_key="k", tick_s=1.0, initial_autoprogress=True, seed=seed)
        for _ in range(50):
            assert "order" in add(state, {"service": "3", "link": "x", "quantity": "1000"})
        return state

    by_tick, in_steps = placed(seed=5), placed(seed=5)
    turns = 0

    async def other_task() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    await asyncio.sleep(0)
    for _ in range(6):
        tick(by_tick)
        before, in_flight = turns, len(in_steps.moving)
        await tick_in_steps(in_steps, chunk=10)
        # The orders in flight in chunks of 10 (50 at the first tick): the loop ran between them.
        assert turns - before >= in_flight // 10
    assert in_steps.moving == by_tick.moving == {}
    other.cancel()
    assert [(o.status, o.remains) for o in in_steps.orders.values()] == [
        (o.status, o.remains) for o in by_tick.orders.values()
    ]


def test_a_tick_looks_only_at_orders_in_flight() -> None:
    """Orders that reached a final status leave the tick's list: a tick costs the orders in
    flight, not every order the simulator ever took."""
    state = SimulatorState(api_key="k", tick_s=1.0, initial_autoprogress=False, seed=4)
    for _ in range(20):
        assert "order" in add(state, {"service": "3", "link": "x", "quantity": "1000"})
    assert len(state.moving) == 20
    for _ in range(6):
        tick(state)
    assert all(order.status in TERMINAL_STATUSES for order in state.orders.values())
    assert state.moving == {}


async def test_a_reset_during_a_background_tick_leaves_the_new_orders_moving() -> None:
    """A tick that paused across a reset stops: it neither moves the forgotten orders nor
    drops the new ones that reuse their ids from the orders in flight."""
    state = SimulatorState(api_key="k", tick_s=1.0, initial_autoprogress=True, seed=8)
    for _ in range(50):
        assert "order" in add(state, {"service": "3", "link": "x", "quantity": "1000"})
    for _ in range(3):
        tick(state)  # the old orders are delivering: their next step finishes many
    background = asyncio.create_task(tick_in_steps(state, chunk=10))
    await asyncio.sleep(0)  # the tick has moved its first chunk and paused
    state.reset()
    for _ in range(20):
        assert "order" in add(state, {"service": "3", "link": "x", "quantity": "1000"})
    await background
    assert len(state.moving) == 20
    assert {order.status for order in state.orders.values()} == {"Pending"}
    for _ in range(6):
        tick(state)
    assert all(order.status in TERMINAL_STATUSES for order in state.orders.values())


def test_a_full_simulator_refuses_new_orders_until_it_is_reset() -> None:
    """The simulator's memory is bounded: past its cap ``add`` refuses, and a reset frees it."""
    state = SimulatorState(
        api_key="k", tick_s=1.0, initial_autoprogress=False, seed=1, max_orders=3
    )
    form = {"service": "3", "link": "x", "quantity": "1000"}
    assert all("order" in add(state, form) for _ in range(3))
    assert add(state, form) == {"error": "Too many orders, please reset the simulator"}
    assert len(state.orders) == 3
    state.reset()
    assert "order" in add(state, form)


def test_the_simulators_options_are_read_from_the_environment_and_bad_ones_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BOOST_SIMULATOR_MAX_ORDERS", "250000")
    assert create_simulator_app(seed=1).state.simulator.max_orders == 250_000
    monkeypatch.setenv("BOOST_SIMULATOR_MAX_ORDERS", "")
    assert create_simulator_app(seed=1).state.simulator.max_orders == 100_000
    for bad in ("0", "10000001", "many"):
        monkeypatch.setenv("BOOST_SIMULATOR_MAX_ORDERS", bad)
        with pytest.raises(ValueError, match=f"^BOOST_SIMULATOR_MAX_ORDERS='{bad}' is not valid"):
            create_simulator_app(seed=1)
    monkeypatch.delenv("BOOST_SIMULATOR_MAX_ORDERS")
    for bad in ("-0.1", "1.5", "nan", "half"):
        monkeypatch.setenv("BOOST_SIMULATOR_PARTIAL_SHARE", bad)
        with pytest.raises(ValueError, match=r"^BOOST_SIMULATOR_PARTIAL_SHARE="):
            create_simulator_app(seed=1)
    monkeypatch.setenv("BOOST_SIMULATOR_AUTOPROGRESS", "maybe")
    monkeypatch.delenv("BOOST_SIMULATOR_PARTIAL_SHARE")
    with pytest.raises(ValueError, match=r"^BOOST_SIMULATOR_AUTOPROGRESS='maybe'"):
        create_simulator_app(seed=1)
