"""What a request handler may use: the pool, the settings, the provider and the workers' bell."""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
from starlette.requests import Request

from boost_ledger.api.auth import Principals
from boost_ledger.ledger.checkout import Place, placing_alone
from boost_ledger.ledger.checkout_batch import CheckoutBatcher
from boost_ledger.ledger.checkout_state import CheckoutState
from boost_ledger.ledger.connection import Connection
from boost_ledger.settings import Settings

if TYPE_CHECKING:
    from boost_ledger.upstream.client import ProviderClient


@dataclass
class Runtime:
    settings: Settings
    pool: asyncpg.Pool[Any]
    provider: ProviderClient | None = None
    submit_wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    checkout: CheckoutState = field(default_factory=CheckoutState.for_server)
    principals: Principals = field(default_factory=Principals)
    place: Place = field(init=False)
    """How this process places its checkouts: gathered into batches (BOOST_CHECKOUT_BATCH_MAX),
    or each on its own when that is 1."""

    def __post_init__(self) -> None:
        batch_max = self.settings.checkout_batch_max
        if batch_max > 1:
            self.place = CheckoutBatcher(self, max_batch=batch_max).place
        else:
            self.place = placing_alone(self)

    def acquire(self) -> AbstractAsyncContextManager[Connection]:
        """A connection of the pool the runtime holds now (a test may give it another)."""
        return self.pool.acquire()

    def wake_submitter(self) -> None:
        """Tell a submitter in this process, if any (``build_app(start_workers=True)``), that an
        order is waiting. ``boost serve``'s worker child, like any ``boost worker``, looks for
        new orders every BOOST_SUBMIT_POLL_INTERVAL_S instead."""
        self.submit_wakeup.set()


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime
