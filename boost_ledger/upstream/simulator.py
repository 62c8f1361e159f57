"""A faithful in-memory SMM Panel API v2 provider, as a Starlette app.

Serve it on its own (``uvicorn --factory boost_ledger.upstream.simulator:create_simulator_app``)
or mount it inside another app; it answers ``POST /api/v2`` and the ``/control`` API relative to
wherever it is mounted.
"""

import contextlib
import os
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette
from starlette.routing import Mount, Route

from boost_ledger.settings import SIMULATOR_KEY
from boost_ledger.upstream.sim_control import CONTROL_ROUTES
from boost_ledger.upstream.sim_progression import progression_running
from boost_ledger.upstream.sim_protocol import api_endpoint
from boost_ledger.upstream.sim_state import MAX_ORDERS, SimulatorState, fixed_first_order_id

AUTOPROGRESS_VARIABLE = "BOOST_SIMULATOR_AUTOPROGRESS"
PARTIAL_SHARE_VARIABLE = "BOOST_SIMULATOR_PARTIAL_SHARE"
MAX_ORDERS_VARIABLE = "BOOST_SIMULATOR_MAX_ORDERS"


def create_simulator_app(
    *,
    api_key: str = SIMULATOR_KEY,
    autoprogress: bool | None = None,
    tick_s: float = 1.0,
    seed: int | None = None,
    first_order_id: Callable[[], int] = fixed_first_order_id,
) -> Starlette:
    """A new simulator with its own state; ``autoprogress`` None reads the environment;
    ``first_order_id`` says where order ids start (``clock_first_order_id`` for a simulator a
    ledger uses across restarts)."""
    if tick_s <= 0:
        raise ValueError("tick_s must be positive")
    if autoprogress is None:
        autoprogress = os.environ.get(AUTOPROGRESS_VARIABLE, "1").strip() != "0"
    partial_share = float(os.environ.get(PARTIAL_SHARE_VARIABLE, "0.2") or "0.2")
    if not 0 <= partial_share <= 1:
        raise ValueError(f"{PARTIAL_SHARE_VARIABLE} must be between 0 and 1")
    max_orders = int(os.environ.get(MAX_ORDERS_VARIABLE, "") or MAX_ORDERS)
    if not 1 <= max_orders <= 10_000_000:
        raise ValueError(f"{MAX_ORDERS_VARIABLE} must be between 1 and 10000000")
    state = SimulatorState(
        api_key=api_key,
        tick_s=tick_s,
        initial_autoprogress=autoprogress,
        seed=seed,
        partial_share=partial_share,
        max_orders=max_orders,
        first_order_id=first_order_id,
    )
    app = Starlette(
        routes=[
            Route("/api/v2", api_endpoint, methods=["POST"]),
            Mount("/control", routes=CONTROL_ROUTES),
        ],
        lifespan=simulator_lifespan,
    )
    app.state.simulator = state
    return app


@contextlib.asynccontextmanager
async def simulator_lifespan(app: Starlette) -> AsyncIterator[None]:
    """Runs progression while the app lives.

    Starlette does not run the lifespan of a mounted app, so a host app that mounts the simulator
    calls this from its own lifespan: ``async with simulator_lifespan(simulator_app): ...``.
    """
    async with progression_running(app.state.simulator):
        yield
