"""How simulated orders move: Pending → Processing → In progress → Completed (or Partial).

One ``tick`` moves every order one step. About one order in five is chosen at creation to stop
short as Partial; a drip-feed order delivers one run per step; a subscription delivers one post
per step while "Active". Randomness comes from the state's seeded generator, so a seed gives the
same history.
"""

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from decimal import ROUND_DOWN, Decimal

from boost_ledger.upstream.sim_state import SimulatedOrder, SimulatedRefill, SimulatorState

TERMINAL_STATUSES = frozenset(
    {"Completed", "Partial", "Canceled", "Refunded", "Fail", "Error", "Expired"}
)
_MONEY_STEP = Decimal("0.00001")


def choose_partial_remains(
    quantity: int, generator: random.Random, partial_share: float = 0.2
) -> int:
    """The remains an order will stop at as Partial (for about ``partial_share`` of orders), or 0
    for an order that completes."""
    if quantity < 2 or generator.random() >= partial_share:
        return 0
    return generator.randint(1, quantity // 2)


TICK_CHUNK = 500
"""Orders advanced between two returns to the event loop by the background progression."""


def tick(state: SimulatorState) -> None:
    for order in list(state.moving.values()):
        _advance(state, order)
    for refill in state.refills.values():
        _advance_refill(refill)


async def tick_in_steps(state: SimulatorState, chunk: int = TICK_CHUNK) -> None:
    """``tick``, giving the event loop back every ``chunk`` orders: a simulator holding many
    orders then never holds up the server whose process it runs in. The orders are those of
    the tick's start; one placed meanwhile moves at the next tick."""
    orders = list(state.moving.values())
    generation = state.generation
    for start in range(0, len(orders), chunk):
        # Turned off or reset meanwhile: the rest of this tick is dropped.
        if not state.autoprogress or state.generation != generation:
            return
        for order in orders[start : start + chunk]:
            _advance(state, order)
        await asyncio.sleep(0)
    for refill in list(state.refills.values()):
        _advance_refill(refill)


def _advance(state: SimulatorState, order: SimulatedOrder) -> None:
    advance_order(state, order)
    if order.status in TERMINAL_STATUSES:
        state.settled(order)


def advance_order(state: SimulatorState, order: SimulatedOrder) -> None:
    if order.status in TERMINAL_STATUSES:
        return
    if order.cancel_requested:
        _settle_cancel(state, order)
        return
    working = "Active" if order.service.type == "Subscriptions" else "In progress"
    if order.status == "Pending":
        order.status = "Processing"
    elif order.status == "Processing":
        order.status = working
        order.start_count = state.progress_random.randint(0, 5000)
    elif order.status == working:
        _deliver(state, order)
    # Any other string (Paused, or whatever a test forced) stays put, as panels leave it.


def _deliver(state: SimulatorState, order: SimulatedOrder) -> None:
    step = _units_per_step(order, state.progress_random)
    # A remains forced below zero (over-delivery) is kept as it is.
    order.remains = order.remains - step if order.remains > step else min(order.remains, 0)
    if order.runs > 1:
        order.runs_done = min(order.runs, order.runs_done + 1)
    if order.partial_remains and order.remains <= order.partial_remains:
        order.remains = order.partial_remains
        order.status = "Partial"
        _refund(state, order)
    elif order.remains <= 0:
        order.status = "Completed"


def _units_per_step(order: SimulatedOrder, generator: random.Random) -> int:
    if order.runs > 1:
        return order.quantity // order.runs
    if order.service.type == "Subscriptions":
        return 1
    # Two to four steps from start to finish keeps tests short and still shows progress.
    return generator.randint(-(-order.quantity // 4), -(-order.quantity // 2))


def _settle_cancel(state: SimulatorState, order: SimulatedOrder) -> None:
    order.status = "Canceled" if order.remains >= order.quantity else "Partial"
    _refund(state, order)


def _refund(state: SimulatorState, order: SimulatedOrder) -> None:
    """Give back the undelivered share of the charge, as the panel credits the reseller."""
    remains = max(0, min(order.remains, order.quantity))
    share = Decimal(remains) / Decimal(order.quantity)
    state.balance += (order.charge * share).quantize(_MONEY_STEP, rounding=ROUND_DOWN)


def _advance_refill(refill: SimulatedRefill) -> None:
    following = {"Pending": "In progress", "In progress": "Completed"}
    refill.status = following.get(refill.status, refill.status)


async def _run_progression(state: SimulatorState) -> None:
    # Runs for the life of the app; the lifespan cancels it on shutdown.
    while True:
        await asyncio.sleep(state.tick_s)
        if state.autoprogress:
            await tick_in_steps(state)


@contextlib.asynccontextmanager
async def progression_running(state: SimulatorState) -> AsyncIterator[None]:
    """Advance orders in the background every ``state.tick_s`` while the block runs."""
    task = asyncio.create_task(_run_progression(state), name="simulator-progression")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
