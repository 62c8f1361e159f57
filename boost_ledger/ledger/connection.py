"""The connection types the ledger's functions take: a plain connection or a pool's proxy, and
a source of them (a pool, or one connection lent for every use)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from asyncpg import Connection as PlainConnection
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PlainConnection[Any] | PoolConnectionProxy[Any]
else:
    Connection = Any  # annotations only; nothing checks it at run time


class Connections(Protocol):
    """Where a function that needs a connection only now and then takes one: ``asyncpg.Pool``
    or ``Lent``."""

    def acquire(self) -> AbstractAsyncContextManager[Connection]: ...


class Lent:
    """One connection lent for every ``acquire``: the caller's, in the caller's transaction."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Connection]:
        yield self._connection
