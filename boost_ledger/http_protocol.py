"""uvicorn's httptools protocol, sending each response's head and body in one write.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body when
the app sends ``http.response.body``: two send syscalls per response, two TCP segments, and a
client that may wake up for each. Our responses are one body, sent in the same step of the
event loop as their head. Here the connection's transport holds the writes made during one
step and sends them together: as soon as uvicorn marks the response complete (so what the app
does after its last write, such as the request log, does not delay the answer), else once the
step ends (``loop.call_soon``), always in the order they were made. A large body goes out as
soon as ``HIGH_WATER_BYTES`` are held, so the socket's flow control still acts within a step.
Closing, a half close or a protocol switch sends what is held first; an abort drops it.

It also answers what its parser refuses in the API's error envelope (uvicorn's is text/plain),
and bounds a request's head (its line and headers), which uvicorn holds in memory until it
ends however long it grows and however long it takes: past ``MAX_HEAD_BYTES``, 431, and past
``HEAD_TIMEOUT_S`` from the connection's start or the head's first byte (or the end of the
answer before it), 408 (or nothing, if nothing came), each time with the connection closed;
either waits for an answer in flight to be sent first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from boost_ledger.api.errors import ApiError, bad_request, head_timeout, headers_too_large

HIGH_WATER_BYTES = 64 * 1024
"""Held bytes that are sent at once (uvicorn's own write buffer pauses the app at this size)."""

MAX_HEAD_BYTES = 64 * 1024
"""A request's line and headers; the body has its own bound (api/http.py)."""

HEAD_TIMEOUT_S = 10.0
"""For a request's head to arrive, from a new connection's start or the head's first byte, or
from the end of the answer before it if that comes later (the keep-alive timeout, 5 s, bounds
the wait between requests; the body's bound is BOOST_BODY_TIMEOUT_S, api/deadlines.py)."""


class CoalescingTransport(asyncio.Transport):
    """A transport whose writes within one event-loop step go out as one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []
        self._held_bytes = 0
        self._scheduled: asyncio.Handle | None = None
        self._eof = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._eof:
            raise RuntimeError("cannot write after write_eof()")
        self._held.append(bytes(data))
        self._held_bytes += len(data)
        if self._held_bytes >= HIGH_WATER_BYTES:
            self.flush()
        elif self._scheduled is None:
            self._scheduled = self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what is held (nothing once the connection is closing: it would go nowhere)."""
        held = self._take_held()
        if held and not self._transport.is_closing():
            self._transport.write(b"".join(held))  # (a single part is sent as it is, uncopied)

    def _take_held(self) -> list[bytes]:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        held, self._held, self._held_bytes = self._held, [], 0
        return held

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._eof = True
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def abort(self) -> None:
        self._take_held()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._held_bytes

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)


class _HeadRefused(Exception):
    """Raised from a parser callback to stop the parser (uvicorn reads it as a parser error,
    which ``send_400_response`` then knows was answered)."""


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a ``CoalescingTransport`` (``uvicorn.Config(http=...)``)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # (uvicorn narrows the parameter the same way; uvloop's transports are not subclasses
        # of asyncio.Transport, so no isinstance check either.)
        self.coalescing = CoalescingTransport(transport, self.loop)
        # Bytes received since the current head began (or the last message ended), counted
        # while a head is being read; a head ending in a chunk resets the count, so a body read
        # in the same chunk is not counted (and the next head's start in it only delays the
        # refusal of a head not yet ended by one chunk; one that ends is measured).
        self.reading_head = True
        self.head_bytes = 0
        # The chunk being read, and the bytes of the one a message ended in, whose rest (the
        # next head's start, uncounted) is at most that long: a head those may put past the
        # bound is measured when it ends.
        self.chunk_bytes = 0
        self.uncounted_bytes = 0
        self.head_begun = False  # a head's first byte came, and not yet its end
        self.refusal: ApiError | None = None  # made while an answer was in flight: sent after it
        self.head_timer: asyncio.TimerHandle | None = None
        super().connection_made(self.coalescing)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.head_begun = True
        if self.head_timer is None:  # a new connection's first head has its timer already
            self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        self.head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.transport.is_closing():
            return
        if self._answer_in_flight():
            # A request before it is still being answered (pipelined): its answer goes first,
            # and is bounded by BOOST_REQUEST_TIMEOUT_S.
            self._arm_head_timer()
            return
        self.logger.warning("Request head not received in time.")
        if not self.head_begun:  # no request begun: nobody to answer
            self.transport.close()
        else:
            self._send_error(head_timeout())

    def data_received(self, data: bytes) -> None:
        if self.refusal is not None:
            return  # refused, answered once the answer in flight is sent: nothing more is read
        self.chunk_bytes = len(data)
        if self.reading_head:
            self.head_bytes += len(data)
        super().data_received(data)
        too_large = self.reading_head and self.head_bytes > MAX_HEAD_BYTES
        if too_large and self.refusal is None and not self.transport.is_closing():
            self.logger.warning("Request head too large.")
            self._refuse(headers_too_large(MAX_HEAD_BYTES))

    def _answer_in_flight(self) -> bool:
        """A request (the last one read, so any before it too) is not yet answered in full."""
        return self.cycle is not None and not self.cycle.response_complete

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self.head_begun = False
        self.reading_head = False
        may_be_too_large = self.head_bytes + self.uncounted_bytes > MAX_HEAD_BYTES
        self.head_bytes = self.uncounted_bytes = 0
        if may_be_too_large and self._head_size() > MAX_HEAD_BYTES:
            self.logger.warning("Request head too large.")
            self._refuse(headers_too_large(MAX_HEAD_BYTES))
            raise _HeadRefused  # the parser stops: nothing after this head is read
        super().on_headers_complete()

    def _head_size(self) -> int:
        """The bytes of the head just read, at least (its method, and spaces around a value,
        aside): a head within the bound is never measured past it."""
        fields = sum(len(name) + len(value) + 3 for name, value in self.headers)
        return len(self.url) + len(" HTTP/1.1\r\n") + fields + 2

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.reading_head = True
        self.uncounted_bytes = self.chunk_bytes

    def on_response_complete(self) -> None:
        self.coalescing.flush()
        super().on_response_complete()
        refusal = self.refusal
        if refusal is not None and not self._answer_in_flight() and not self.transport.is_closing():
            self._send_error(refusal)
        elif self.head_begun and not self._answer_in_flight():
            # A head begun behind the answers (pipelined) has its time from now: the wait for
            # them, in which the server may not even read it, is not the client's.
            self._cancel_head_timer()
            self._arm_head_timer()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes its parser refuses (an unknown method, a malformed header,
        bad body framing), sent before any route and then the connection closed: the one error
        envelope, as JSON, where uvicorn sends its ``msg`` as text/plain."""
        if self.refusal is not None or self.transport.is_closing():
            return  # a head refused as too large (_HeadRefused): answered already, or to be
        if self.reading_head:
            self._refuse(bad_request())  # a head after the requests before it
        else:
            self._send_error(bad_request())  # the body of the request being answered: no answer

    def _refuse(self, error: ApiError) -> None:
        """``error`` sent and the connection closed; while a request before is still being
        answered, after its answer (``on_response_complete``), as the 408 is, nothing more read
        meanwhile: closed at once, the connection lost the answer being made."""
        if self._answer_in_flight():
            self.refusal = error
            self.flow.pause_reading()
        else:
            self._send_error(error)

    def _send_error(self, error: ApiError) -> None:
        """``error`` in the envelope, written by the protocol itself, then the connection closed."""
        body = error.body()
        content = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
