"""Everything the simulator remembers, in one object owned by the app (``app.state``).

The simulator runs on one asyncio loop and no mutation below awaits halfway, so each change is
atomic with respect to other requests without a lock.
"""

import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from boost_ledger.upstream.sim_catalog import CatalogService

FIRST_ORDER_ID = 23501


def fixed_first_order_id() -> int:
    """Order ids from ``FIRST_ORDER_ID`` on every start and reset: a simulator's tests know them."""
    return FIRST_ORDER_ID


def clock_first_order_id() -> int:
    """Order ids from the clock's microseconds since the epoch: a simulator started (or reset)
    again never hands out an id an earlier one did, as a real panel never does, while the
    ledger, which holds each provider id for one order, remembers them. (Under 2**53, a JSON
    number any client reads exactly, until the year 2255.)"""
    return max(FIRST_ORDER_ID, time.time_ns() // 1000)


FIRST_REFILL_ID = 501
STARTING_BALANCE = Decimal("10000.00000")
CURRENCY = "USD"
MAX_ORDERS = 100_000

FAULT_MODES = frozenset(
    {"none", "latency", "http_500", "html", "malformed_json", "error", "timeout", "reply_lost"}
)
FAULT_ACTIONS = frozenset(
    {"services", "add", "status", "cancel", "refill", "refill_status", "balance", "*"}
)


@dataclass(slots=True)  # a simulator holds every order it took: no __dict__ for each
class SimulatedOrder:
    order_id: int
    service: CatalogService
    fields: dict[str, str]
    # Total units: for drip-feed, quantity per run times runs; for subscriptions, posts.
    quantity: int
    charge: Decimal
    runs: int
    # The order stops as Partial once remains falls to this; 0 means it completes.
    partial_remains: int
    status: str = "Pending"
    start_count: int = 0
    remains: int = 0
    runs_done: int = 0
    cancel_requested: bool = False

    def __post_init__(self) -> None:
        self.remains = self.quantity

    def to_control(self) -> dict[str, Any]:
        return {
            "order": self.order_id,
            "service": self.service.service_id,
            "link": self.fields.get("link", ""),
            "quantity": self.quantity,
            "status": self.status,
            "remains": self.remains,
            "start_count": self.start_count,
            "charge": str(self.charge),
            "runs": self.runs,
            "runs_done": self.runs_done,
            "cancel_requested": self.cancel_requested,
            "fields": dict(self.fields),
        }


@dataclass(slots=True)
class SimulatedRefill:
    refill_id: int
    order_id: int
    status: str = "Pending"


@dataclass(frozen=True)
class FaultRule:
    mode: str
    rate: float
    latency_ms: int


@dataclass
class SimulatorState:
    api_key: str
    tick_s: float
    initial_autoprogress: bool
    seed: int | None
    partial_share: float = 0.2
    max_orders: int = MAX_ORDERS
    """Orders the simulator holds at most (its memory's bound); past it ``add`` refuses."""
    first_order_id: Callable[[], int] = fixed_first_order_id
    """Where order ids start, at the start and at each reset."""
    autoprogress: bool = False
    orders: dict[int, SimulatedOrder] = field(default_factory=dict)
    moving: dict[int, SimulatedOrder] = field(default_factory=dict)
    """The orders a tick still looks at: all but those it found in a final status, so a tick
    costs the orders in flight, not every order the simulator ever took."""
    refills: dict[int, SimulatedRefill] = field(default_factory=dict)
    faults: dict[str, FaultRule] = field(default_factory=dict)
    request_counts: Counter[str] = field(default_factory=Counter)
    balance: Decimal = STARTING_BALANCE
    next_order_id: int = FIRST_ORDER_ID
    generation: int = 0
    """Counts resets: a background tick that paused across one stops instead of moving the
    forgotten orders (whose ids the new ones reuse)."""
    next_refill_id: int = FIRST_REFILL_ID
    progress_random: random.Random = field(default_factory=random.Random)
    fault_random: random.Random = field(default_factory=random.Random)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget orders, refills, faults and counters; progression returns to its setting."""
        self.autoprogress = self.initial_autoprogress
        self.generation += 1
        self.orders.clear()
        self.moving.clear()
        self.refills.clear()
        self.faults.clear()
        self.request_counts.clear()
        self.balance = STARTING_BALANCE
        self.next_order_id = self.first_order_id()
        self.next_refill_id = FIRST_REFILL_ID
        # Two streams, so injecting faults does not change how orders progress for a given seed.
        self.progress_random = random.Random(self.seed)
        self.fault_random = random.Random(None if self.seed is None else self.seed + 1)

    def set_fault(self, action: str, rule: FaultRule) -> None:
        assert action in FAULT_ACTIONS and rule.mode in FAULT_MODES
        if rule.mode != "none":
            self.faults[action] = rule
        elif action == "*":
            # Clearing the wildcard clears everything: the usual "back to normal" in a test.
            self.faults.clear()
        else:
            self.faults.pop(action, None)

    def fault_for(self, action: str) -> FaultRule | None:
        """The fault to inject into this request, if any (a specific action beats ``*``)."""
        rule = self.faults.get(action) or self.faults.get("*")
        if rule is None or self.fault_random.random() >= rule.rate:
            return None
        return rule

    def add_order(self, order: SimulatedOrder) -> None:
        assert order.order_id == self.next_order_id
        self.orders[order.order_id] = order
        self.moving[order.order_id] = order
        self.next_order_id += 1
        self.balance -= order.charge

    def keep_moving(self, order: SimulatedOrder) -> None:
        """Put ``order`` back in the ticks' list (its status was forced and may move on)."""
        self.moving[order.order_id] = order

    def settled(self, order: SimulatedOrder) -> None:
        """Take ``order`` out of the ticks' list, unless a reset gave its id to a new one."""
        if self.moving.get(order.order_id) is order:
            del self.moving[order.order_id]

    def add_refill(self, order_id: int) -> SimulatedRefill:
        refill = SimulatedRefill(self.next_refill_id, order_id)
        self.refills[refill.refill_id] = refill
        self.next_refill_id += 1
        return refill

    def order_by_text(self, text: str) -> SimulatedOrder | None:
        number = numeric_id(text)
        return None if number is None else self.orders.get(number)


MAX_ID_DIGITS = 100
"""Digits an id may have and still be read as a number: far more than any id (or its leading
zeros) takes, and far fewer than the 4300 past which ``int`` raises (a 500, not an answer)."""


def numeric_id(text: str) -> int | None:
    """The number an order or refill id names, or None when its text names none."""
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or len(text) > MAX_ID_DIGITS:
        return None
    return int(text)
