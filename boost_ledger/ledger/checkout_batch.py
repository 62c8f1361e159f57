"""Checkouts that arrive together, placed together: one statement and one transaction.

A server process places its checkouts through one ``CheckoutBatcher``. A checkout that finds
fewer than ``FLIGHTS`` statements in flight and none waiting is sent at once, on its own, so a
lone checkout waits for no other; those that arrive while every flight is busy queue, and a
flight that comes back takes up to ``max_batch`` of them at a time into one call of
``checkout_place_batch`` (sql/0014_checkout_batch.sql). They then share a round trip, a
commit and its WAL flush, which on two cores is most of what a checkout costs beyond its own
rows.

Each checkout is still ``checkout_place``'s decision, made in account order and in arrival
order within an account (the function's own order, so that wallet row locks are always taken in
one order whatever a caller sends), and its client hears of
it only once the transaction that holds it has committed. Should the batch's statement fail
(an error aborts it all: nothing of it is written), each of its checkouts is placed again on its
own, so one bad request fails alone. A checkout whose client gave up before its statement was
sent is dropped unplaced; once sent, it may be placed, and a retry with its key replays it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec
import structlog

from boost_ledger.ledger.checkout import PLACE, place_alone
from boost_ledger.ledger.connection import Connection, Connections

log = structlog.get_logger("boost.checkout")

MAX_BATCH = 32
"""Checkouts one statement carries at most (``checkout_place_batch`` refuses more than 100)."""
FLIGHTS = 2
"""Batches one process has in flight at once: one executing in PostgreSQL while the next is
built and sent, on two cores."""

_PLACE_BATCH = """
select item, outcome, status_code, response, order_id, balance_kobo
  from checkout_place_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
"""
_RETRIED = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions._base.InternalClientError,  # a connection that died mid-operation
)
"""Failures of a batch's statement after which its checkouts are placed one by one."""


class _Waiting(msgspec.Struct):
    arguments: tuple[Any, ...]
    answer: asyncio.Future[Mapping[str, Any]]


class CheckoutBatcher:
    """A ``checkout.Place`` that gathers concurrent checkouts into batches."""

    def __init__(
        self, connections: Connections, *, max_batch: int = MAX_BATCH, flights: int = FLIGHTS
    ) -> None:
        if not 1 <= max_batch <= 100 or flights < 1:
            raise ValueError("max_batch must be 1 to 100 and flights at least 1")
        self._connections = connections
        self._max_batch = max_batch
        self._max_flights = flights
        self._waiting: deque[_Waiting] = deque()
        self._flying = 0
        """Flights whose loop has not ended: counted by ``_fly`` itself, since a task's done
        callbacks run a loop step after its last look at the queue."""
        self._tasks: set[asyncio.Task[None]] = set()  # strong references to the flights

    async def place(self, arguments: tuple[Any, ...]) -> Mapping[str, Any]:
        if not self._waiting and self._flying < self._max_flights:
            return await self._place_at_once(arguments)
        answer: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(arguments, answer))
        self._launch()
        return await answer

    async def _place_at_once(self, arguments: tuple[Any, ...]) -> Mapping[str, Any]:
        """Nothing waits and a flight is free: the checkout flies alone on its caller's task,
        without a hop to a flight's (a lone checkout's case: 8% more checkouts per second at one
        client than through a flight task). Its caller's errors and cancellation are its own."""
        self._flying += 1
        try:
            return await place_alone(self._connections, arguments)
        finally:
            self._flying -= 1
            self._launch()  # for the checkouts that queued meanwhile

    def _launch(self) -> None:
        if self._waiting and self._flying < self._max_flights:
            self._flying += 1
            flight = asyncio.create_task(self._fly())
            self._tasks.add(flight)
            flight.add_done_callback(self._tasks.discard)

    async def _fly(self) -> None:
        """Send batches until none is waiting. No caller is left waiting: on an unforeseen
        error its batch fails with it, and on cancellation (shutdown) every waiting checkout is
        cancelled too."""
        batch: list[_Waiting] = []
        try:
            while batch := self._take():
                try:
                    await self._send(batch)
                except Exception as error:
                    log.exception("checkout.batch_failed", checkouts=len(batch))
                    _fail(batch, error)
        except asyncio.CancelledError:
            _fail([*batch, *self._waiting], asyncio.CancelledError())
            self._waiting.clear()
            raise
        finally:
            self._flying -= 1  # no await since the last look at the queue found it empty

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        while self._waiting and len(batch) < self._max_batch:
            waiting = self._waiting.popleft()
            if not waiting.answer.done():  # else its caller was cancelled: nothing is placed
                batch.append(waiting)
        return batch

    async def _send(self, batch: list[_Waiting]) -> None:
        """Place ``batch`` in one statement; should that fail, each checkout on its own."""
        failed = None
        async with contextlib.AsyncExitStack() as stack:
            try:
                connection = await stack.enter_async_context(self._connections.acquire())
            except _RETRIED as error:  # no connection: one each would fare no better
                _fail(batch, error)
                return
            batch[:] = [waiting for waiting in batch if not waiting.answer.done()]
            try:
                rows = await _execute(connection, batch)
            except _RETRIED as error:
                failed = error
        if failed is None:
            for waiting, row in zip(batch, rows, strict=True):
                _answer(waiting, row)
        elif len(batch) == 1:
            _fail(batch, failed)
        else:
            log.warning("checkout.batch_placed_alone", checkouts=len(batch), error=str(failed))
            for waiting in batch:
                if not waiting.answer.done():
                    await self._send([waiting])


async def _execute(connection: Connection, batch: list[_Waiting]) -> list[Mapping[str, Any]]:
    if not batch:
        return []
    if len(batch) == 1:
        row = await connection.fetchrow(PLACE, *batch[0].arguments)
        assert row is not None
        return [row]
    columns = [list(column) for column in zip(*(w.arguments for w in batch), strict=True)]
    by_item = {row["item"]: row for row in await connection.fetch(_PLACE_BATCH, *columns)}
    assert sorted(by_item) == list(range(1, len(batch) + 1)), "a row for each checkout"
    return [by_item[item] for item in range(1, len(batch) + 1)]


def _answer(waiting: _Waiting, row: Mapping[str, Any]) -> None:
    if not waiting.answer.done():
        waiting.answer.set_result(row)


def _fail(batch: list[_Waiting], error: BaseException) -> None:
    for waiting in batch:
        if waiting.answer.done():
            continue
        if isinstance(error, asyncio.CancelledError):
            waiting.answer.cancel()
        else:
            waiting.answer.set_exception(error)
