"""What checkout keeps between requests: the services it priced with, and a block of order ids.

Both save a database round trip per checkout without trusting stale state. A cached service row
is named by its version, and ``checkout_place`` (sql/0011_checkout.sql) refuses a version that is
no longer current, so a price change or a delisting is never missed: the caller re-reads the row
and tries again. Order ids come from the ``order_id_seq`` sequence a block at a time, as
PostgreSQL's own sequence cache hands them out: unique, increasing within one process, with gaps
where a checkout was refused or a process stopped with ids unused.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import msgspec

from boost_ledger.ledger.connection import Connections

MAX_CACHED_SERVICES = 10_000
ORDER_ID_BLOCK = 32


class PricedService(msgspec.Struct, frozen=True):
    """A listed service as checkout validates and prices against it."""

    service_id: str
    provider_service_id: str
    name: str
    category: str
    type: str
    min_quantity: int
    max_quantity: int
    cancel: bool
    dripfeed: bool
    rate_per_1000_kobo: int
    version: int


_SERVICE = """
select service_id, provider_service_id, name, category, type, min_quantity, max_quantity,
       cancel, dripfeed, coalesce(pinned_rate_kobo, rate_per_1000_kobo) as rate_per_1000_kobo,
       version
  from services where service_id = $1 and listed
"""


class ServiceCache:
    """Listed services by id, as last read; unlisted or unknown ids are never kept."""

    def __init__(self, capacity: int = MAX_CACHED_SERVICES) -> None:
        self._capacity = capacity
        self._services: dict[str, PricedService] = {}

    async def get(
        self, connections: Connections, service_id: str, *, fresh: bool = False
    ) -> PricedService | None:
        service = None if fresh else self._services.get(service_id)
        if service is not None:
            return service
        async with connections.acquire() as connection:
            row = await connection.fetchrow(_SERVICE, service_id)
        if row is None:
            self._services.pop(service_id, None)
            return None
        service = PricedService(**dict(row))
        if self._capacity == 0:
            return service
        if len(self._services) >= self._capacity:
            self._services.clear()
        self._services[service_id] = service
        return service


class OrderIds:
    """Order ids taken from the sequence ``block`` at a time, handed out in increasing order."""

    def __init__(self, block: int = ORDER_ID_BLOCK) -> None:
        assert 1 <= block <= 1000, block
        self._block = block
        self._ids: deque[int] = deque()
        self._refill = asyncio.Lock()

    async def take(self, connections: Connections) -> int:
        while not self._ids:
            async with self._refill:
                if not self._ids:
                    async with connections.acquire() as connection:
                        rows = await connection.fetch(
                            "select nextval('order_id_seq') from generate_series(1, $1)",
                            self._block,
                        )
                    self._ids.extend(sorted(row[0] for row in rows))
        return self._ids.popleft()


@dataclass
class CheckoutState:
    """The per-process state of checkout; a fresh one caches nothing and takes ids one by one."""

    services: ServiceCache = field(default_factory=lambda: ServiceCache(capacity=0))
    order_ids: OrderIds = field(default_factory=lambda: OrderIds(block=1))

    @classmethod
    def for_server(cls) -> CheckoutState:
        return cls(ServiceCache(), OrderIds())
