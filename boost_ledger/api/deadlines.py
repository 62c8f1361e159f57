"""Deadlines, so that one slow client or one slow dependency cannot hold the server.

- The request body must arrive within ``body_timeout_s`` of the request's start, or the request
  is answered 408 ``REQUEST_TIMEOUT`` (a client trickling its body holds nothing for long).
- The whole request must be answered within ``request_timeout_s``, or it is cancelled and
  answered 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After``. A cancelled checkout rolls back or
  has committed; either way the client's retry with the same idempotency key gets one order.

The database bounds each statement on its own (``statement_timeout`` and ``lock_timeout`` on
every pooled connection, see postgres.create_pool), and the provider client each call.
"""

from __future__ import annotations

import asyncio

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boost_ledger.api.errors import request_timeout, service_unavailable
from boost_ledger.api.middleware import route_template

log = structlog.get_logger("boost.http")


class Deadlines:
    def __init__(self, app: ASGIApp, *, request_timeout_s: float, body_timeout_s: float) -> None:
        if request_timeout_s <= 0 or body_timeout_s <= 0:
            raise ValueError("request_timeout_s and body_timeout_s must be positive")
        self.app = app
        self.request_timeout_s = request_timeout_s
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        body_deadline = loop.time() + self.body_timeout_s
        body_complete = False
        response_started = False

        async def bounded_receive() -> Message:
            nonlocal body_complete
            if body_complete:
                return await receive()
            try:
                async with asyncio.timeout_at(body_deadline):
                    message = await receive()
            except TimeoutError:
                raise request_timeout() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_complete = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            await send(message)
            # Only once the server took the head: it may first wait for a client that does not
            # read what it was sent before (uvicorn's write flow control), and a deadline there
            # cancels the send with nothing written, so the 503 below still can be sent.
            if message["type"] == "http.response.start":
                response_started = True

        deadline = asyncio.timeout(self.request_timeout_s)
        try:
            async with deadline:
                await self.app(scope, bounded_receive, tracking_send)
        except TimeoutError:
            if not deadline.expired():
                raise
            log.warning(
                "request.timed_out", route=route_template(scope), after_s=self.request_timeout_s
            )
            if not response_started:
                await self._answer_late(scope, receive, send)

    async def _answer_late(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The 503 of a request past its deadline, sent within ``body_timeout_s``: it waits for
        a client that does not read what it was sent before as any answer would, and without a
        bound such a client held the request's place under the server's in-flight limit for as
        long as it kept the connection open (the bound of any slow client's hold). When that
        runs out, the request ends: uvicorn answers 500 if nothing of the 503 was written, and
        ends the connection if part of it was, outside the limit."""
        error = service_unavailable("The request could not be completed in time. Retry shortly.")
        try:
            async with asyncio.timeout(self.body_timeout_s):
                await error.response()(scope, receive, send)
        except TimeoutError:
            log.warning("request.answer_unsent", route=route_template(scope))
