"""Checkouts that arrive together, placed together: one statement and one transaction.

A server process places its checkouts through one ``CheckoutBatcher``. A checkout that finds
fewer than ``FLIGHTS`` batches in flight starts one at once, so a lone checkout waits for no
other; those that arrive while every flight is busy queue, and a flight that comes back takes up
to ``max_batch`` of them at a time into one call of ``checkout_place_batch``
(sql/0014_checkout_batch.sql). They then share a round trip, a commit and its WAL flush, which
on two cores is most of what a checkout costs beyond its own rows.

Each checkout is still ``checkout_place``'s decision, made in the order the batch lists them
(by account, so that wallet row locks are always taken in one order), and its client hears of
it only once the transaction that holds it has committed. Should the batch's statement fail
(an error aborts it all: nothing of it is written), each of its checkouts is placed again on its
own, so one bad request fails alone. A checkout whose client gave up before its batch left is
dropped unplaced; once sent, it is placed, and a retry with its key replays it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from typing import Any

import asyncpg
import msgspec
import structlog

from boost_ledger.ledger.checkout import PLACE
from boost_ledger.ledger.connection import Connections

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
_ACCOUNT = 1
"""Where the account id sits in ``checkout_place``'s arguments."""
_RETRIED = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""Failures of a batch after which its checkouts are placed one by one."""


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
        self._flights: set[asyncio.Task[None]] = set()

    async def place(self, arguments: tuple[Any, ...]) -> Mapping[str, Any]:
        answer: asyncio.Future[Mapping[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(arguments, answer))
        if len(self._flights) < self._max_flights:
            flight = asyncio.create_task(self._fly())
            self._flights.add(flight)
            flight.add_done_callback(self._flights.discard)
        return await answer

    async def _fly(self) -> None:
        """Send batches until none is waiting. No caller is left waiting: on an unforeseen
        error its batch fails with it, and on cancellation (shutdown) every waiting checkout is
        cancelled too."""
        while batch := self._take():
            try:
                await self._send(batch)
            except asyncio.CancelledError:
                _fail([*batch, *self._waiting], asyncio.CancelledError())
                self._waiting.clear()
                raise
            except Exception as error:
                log.exception("checkout.batch_failed", checkouts=len(batch))
                _fail(batch, error)

    def _take(self) -> list[_Waiting]:
        batch: list[_Waiting] = []
        while self._waiting and len(batch) < self._max_batch:
            waiting = self._waiting.popleft()
            if not waiting.answer.done():  # else its caller was cancelled: nothing is placed
                batch.append(waiting)
        batch.sort(key=lambda waiting: waiting.arguments[_ACCOUNT])
        return batch

    async def _send(self, batch: list[_Waiting]) -> None:
        try:
            async with self._connections.acquire() as connection:
                batch[:] = [waiting for waiting in batch if not waiting.answer.done()]
                if len(batch) > 1:
                    columns = [list(c) for c in zip(*(w.arguments for w in batch), strict=True)]
                    rows = await connection.fetch(_PLACE_BATCH, *columns)
                elif batch:
                    rows = [await connection.fetchrow(PLACE, *batch[0].arguments)]
                else:
                    return
        except _RETRIED as error:
            if len(batch) == 1:
                _fail(batch, error)
                return
            for waiting in batch:
                await self._send([waiting])
            return
        assert len(rows) == len(batch), "one row per checkout"
        for waiting, row in zip(batch, rows, strict=True):
            _answer(waiting, row)


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
