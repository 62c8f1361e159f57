"""HTTP/1.1 on the wire, for the provider transport: a connection's bytes, and a reply's head.

``Connection`` is an asyncio protocol with a buffer of its own, rather than a StreamReader,
because reuse needs what a StreamReader does not tell: a connection is handed to the next request
only if it holds no unread byte (a server's stray reply, or its ``408`` before closing, would
otherwise be read as the next answer) and has not seen its end. Reads fail with the peer's
error, or with ``Ended`` at the end of the stream; the buffer is bounded by pausing the socket.

``Head`` parses a status line and headers strictly enough that a reply is never misframed:
framing comes from ``Transfer-Encoding: chunked`` (no other coding), a single ``Content-Length``,
or the connection's end; anything else is a ``RemoteProtocolError``.
"""

from __future__ import annotations

import asyncio
import re
from typing import NoReturn, cast

import httpx

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line and headers accepted (and the longest chunk-size line)."""
_HIGH_WATER = 256 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")
_KEEP_ALIVE_TIMEOUT = re.compile(rb"(?:^|,)\s*timeout\s*=\s*(\d{1,6})", re.IGNORECASE)


class Ended(Exception):
    """The stream ended before what was asked for; ``partial`` is whether bytes came first."""

    def __init__(self, partial: bool) -> None:
        super().__init__("the connection ended")
        self.partial = partial


class TooLong(Exception):
    """A line longer than its limit."""


class Connection(asyncio.Protocol):
    """One TCP (or TLS) connection's bytes, read on demand."""

    def __init__(self) -> None:
        self.idle_since = 0.0
        self.expiry_s: float | None = None
        """The server's own keep-alive limit (``Keep-Alive: timeout``), when it gave one."""
        self._transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ended = False
        self._error: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._paused = False

    # ---- the protocol's side: asyncio calls these ----

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not derive from asyncio.Transport, but is one).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _HIGH_WATER and self._transport is not None and not self._paused:
            self._transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool:
        self._ended = True
        self._wake()
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._error = exc
        self._wake()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # ---- the client's side ----

    def reusable(self, now: float, expiry_s: float) -> bool:
        """Idle, clean and alive: no unread byte, no end seen, not past either expiry."""
        limit = expiry_s if self.expiry_s is None else min(expiry_s, self.expiry_s)
        return (
            not self._buffer
            and not self._ended
            and self._transport is not None
            and not self._transport.is_closing()
            and now - self.idle_since < limit
        )

    def holds_unread_bytes(self) -> bool:
        return bool(self._buffer)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def write(self, data: bytes) -> bool:
        """Hand ``data`` to the socket; whether the caller must then wait for ``drained`` (the
        socket's buffer is full), which it can then bound in time."""
        if self._transport is None or self._transport.is_closing() or self._ended:
            raise ConnectionResetError("the connection is closed")
        self._transport.write(data)
        return self._writable is not None

    async def drained(self) -> None:
        if self._writable is not None:
            await self._writable
            if self._ended:
                raise self._error or ConnectionResetError("the connection closed while writing")

    async def read_until(self, separator: bytes, limit: int) -> bytes:
        """The bytes up to and including ``separator``; ``TooLong`` past ``limit`` bytes."""
        searched = 0
        while True:
            found = self._buffer.find(separator, searched)
            if found > limit or (found < 0 and len(self._buffer) > limit):
                raise TooLong()
            if found >= 0:
                return self._take(found + len(separator))
            searched = max(0, len(self._buffer) - len(separator) + 1)
            await self._more()

    async def read_some(self, most: int) -> bytes:
        """Up to ``most`` bytes, at least one; ``b""`` once the stream has ended."""
        while not self._buffer:
            if self._ended:
                if self._error is not None:
                    raise self._error
                return b""
            await self._more()
        return self._take(most)

    def take_buffered(self, size: int) -> bytes | None:
        """Exactly ``size`` bytes if they have all arrived already, else None (nothing taken)."""
        return self._take(size) if len(self._buffer) >= size else None

    def _take(self, size: int) -> bytes:
        piece = bytes(self._buffer[:size])
        del self._buffer[:size]
        if self._paused and len(self._buffer) <= _HIGH_WATER // 2 and self._transport is not None:
            self._transport.resume_reading()
            self._paused = False
        return piece

    async def _more(self) -> None:
        if self._ended:
            if self._error is not None:
                raise self._error
            raise Ended(partial=bool(self._buffer))
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Head:
    """A reply's status line and headers, how its body is framed, and whether it is coded
    (``Content-Encoding`` other than ``identity``: gzip and the like, which httpx decodes)."""

    __slots__ = (
        "chunked",
        "coded",
        "headers",
        "keep_alive",
        "keep_alive_s",
        "length",
        "reason",
        "status",
    )

    def __init__(self, raw: bytes, request: httpx.Request) -> None:
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, self.reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or not code.isdigit() or len(code) != 3:
            protocol_error(f"not an HTTP/1.x status line: {lines[0][:80]!r}", request)
        self.status = int(code)
        if not 100 <= self.status <= 599:
            protocol_error(f"status {self.status} out of range", request)
        self.headers: list[tuple[bytes, bytes]] = []
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not _TOKEN.fullmatch(name):
                protocol_error(f"malformed header line: {line[:80]!r}", request)
            self.headers.append((name, value.strip()))
            fields.setdefault(name.lower(), []).extend(
                token.strip() for token in value.lower().split(b",")
            )
        self.coded = any(coding != b"identity" for coding in fields.get(b"content-encoding", ()))
        self._frame(version, fields, request)

    def _frame(
        self, version: bytes, fields: dict[bytes, list[bytes]], request: httpx.Request
    ) -> None:
        codings = fields.get(b"transfer-encoding")
        lengths = set(fields.get(b"content-length", ()))
        if codings is not None and codings != [b"chunked"]:
            protocol_error(f"unsupported Transfer-Encoding: {codings!r}", request)
        self.chunked = codings is not None
        self.length: int | None = None
        if not self.chunked and lengths:
            length = lengths.pop()
            # At most 18 digits: int() refuses more than 4300 with a ValueError, not an HTTP error.
            if lengths or not length.isdigit() or len(length) > 18:
                protocol_error(f"bad Content-Length: {fields[b'content-length']!r}", request)
            self.length = int(length)
        framed = (
            self.status in _NO_BODY_STATUSES
            or (self.chunked and not lengths)  # both: read, then close (RFC 9112, 6.3)
            or self.length is not None
        )
        self.keep_alive = (
            framed and version == b"HTTP/1.1" and b"close" not in fields.get(b"connection", ())
        )
        timeout = _KEEP_ALIVE_TIMEOUT.search(b",".join(fields.get(b"keep-alive", ())))
        # A second short of the server's word, so that a connection is not reused as it closes.
        self.keep_alive_s = None if timeout is None else max(0.0, int(timeout[1]) - 1.0)


def chunk_size(line: bytes, request: httpx.Request) -> int:
    digits = line.partition(b";")[0].strip()
    if not _CHUNK_SIZE.fullmatch(digits):
        protocol_error(f"bad chunk size line: {line[:80]!r}", request)
    return int(digits, 16)


def protocol_error(message: str, request: httpx.Request) -> NoReturn:
    raise httpx.RemoteProtocolError(message, request=request)
