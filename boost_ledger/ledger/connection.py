"""The connection type the ledger's functions take: a plain connection or a pool's proxy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from asyncpg import Connection as PlainConnection
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = PlainConnection[Any] | PoolConnectionProxy[Any]
else:
    Connection = Any  # annotations only; nothing checks it at run time
