"""A faithful in-memory SMM Panel API v2 provider, as a Starlette app.

Serve it on its own (``uvicorn --factory boost_ledger.upstream.simulator:create_simulator_app``)
or mount it inside another app; it answers ``POST /api/v2`` and the ``/control`` API relative to
wherever it is mounted.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated

import msgspec
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from boost_ledger.settings import SIMULATOR_KEY, read_env
from boost_ledger.upstream.sim_control import CONTROL_ROUTES
from boost_ledger.upstream.sim_progression import progression_running
from boost_ledger.upstream.sim_protocol import api_endpoint
from boost_ledger.upstream.sim_state import MAX_ORDERS, SimulatorState, fixed_first_order_id


class SimulatorOptions(msgspec.Struct, frozen=True, kw_only=True):
    """The built-in simulator's own knobs, read from the environment like the settings."""

    autoprogress: bool = True
    """BOOST_SIMULATOR_AUTOPROGRESS: "0" stops orders from moving on their own."""
    partial_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.2
    """BOOST_SIMULATOR_PARTIAL_SHARE: share of orders that end Partial (0 to 1)."""
    max_orders: Annotated[int, msgspec.Meta(ge=1, le=10_000_000)] = MAX_ORDERS
    """BOOST_SIMULATOR_MAX_ORDERS: orders held at most (its memory's bound)."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorOptions:
        """The options, or a ValueError naming the variable and its value."""
        return read_env(cls, _VARIABLES, environ)


_VARIABLES = {
    "autoprogress": "BOOST_SIMULATOR_AUTOPROGRESS",
    "partial_share": "BOOST_SIMULATOR_PARTIAL_SHARE",
    "max_orders": "BOOST_SIMULATOR_MAX_ORDERS",
}


def create_simulator_app(
    *,
    api_key: str = SIMULATOR_KEY,
    autoprogress: bool | None = None,
    tick_s: float = 1.0,
    seed: int | None = None,
    first_order_id: Callable[[], int] = fixed_first_order_id,
) -> Starlette:
    """A new simulator with its own state and the options of the environment (a ValueError
    names a bad one); ``autoprogress`` None takes the environment's;
    ``first_order_id`` says where order ids start (``clock_first_order_id`` for a simulator a
    ledger uses across restarts)."""
    if tick_s <= 0:
        raise ValueError("tick_s must be positive")
    options = SimulatorOptions.from_env()
    state = SimulatorState(
        api_key=api_key,
        tick_s=tick_s,
        initial_autoprogress=options.autoprogress if autoprogress is None else autoprogress,
        seed=seed,
        partial_share=options.partial_share,
        max_orders=options.max_orders,
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
