"""The provider's HTTP transport: HTTP/1.1 keep-alive connections on asyncio streams, behind
httpx's transport interface.

A provider call is one small form POST and one small JSON reply, and the submitter makes one per
order. ``httpx.AsyncHTTPTransport`` spent 550-720 µs of CPU on each (its connection pool walks
every pooled connection twice per request and polls each idle socket, and every read and write
enters an anyio cancel scope) where the exchange itself costs about 60 µs: on a busy server the
submitter spent more on its HTTP client than on its two transactions. This transport keeps
httpx's request, response and exception types, so ``ProviderClient`` and its callers do not
change, and does what HTTP/1.1 asks of a client, no more:

- A request goes out in one write: its line, httpx's headers (``Host``, ``Content-Length``...)
  and its body, which httpx has already encoded.
- A reply is framed by ``Transfer-Encoding: chunked``, ``Content-Length`` or the end of the
  connection; interim 1xx replies are skipped; its head is bounded by ``MAX_HEAD_BYTES``.
- A connection is reused unless the reply said ``Connection: close``, was HTTP/1.0, ended with
  the connection or was not read to its end, and never after ``keepalive_expiry_s`` idle. One the
  server closed while idle has seen its end by then (asyncio reads it as it comes), so it is
  dropped before reuse without a system call.
- Every step is bounded by the request's httpx timeouts (pool, connect, write, read). Failures
  are httpx's exceptions: ``ConnectError``/``ConnectTimeout`` only when no byte of the request
  went out (the submitter retries only those), ``RemoteProtocolError`` for a reply that breaks
  HTTP/1.1, ``ReadError``/``WriteError`` and the timeouts otherwise.

HTTPS uses the standard library's TLS with certifi's CA bundle, as httpx does. Proxies are not
used (nor were they: the client never went through ``httpx.AsyncClient``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterator, Awaitable
from typing import NoReturn, TypeVar

import httpx

MAX_HEAD_BYTES = 64 * 1024
"""The longest status line and headers accepted (and the longest chunk-size line)."""
KEEPALIVE_EXPIRY_S = 4.0
"""Idle connections older than this are not reused: below the 5 s after which uvicorn and
Apache close theirs, so that a reused connection is not one the server is closing."""
_READ_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})

_Origin = tuple[str, str, int]
_T = TypeVar("_T")


class _Connection:
    __slots__ = ("idle_since", "reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.idle_since = 0.0

    def reusable(self, now: float, expiry_s: float) -> bool:
        return (
            now - self.idle_since < expiry_s
            and not self.reader.at_eof()
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        self.writer.close()


class _Head:
    """A reply's status line and headers, and how its body is framed."""

    __slots__ = ("chunked", "headers", "keep_alive", "length", "reason", "status")

    def __init__(self, raw: bytes, request: httpx.Request) -> None:
        lines = raw[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, self.reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or not code.isdigit():
            _protocol_error(f"not an HTTP/1.x status line: {lines[0][:80]!r}", request)
        self.status = int(code)
        self.headers: list[tuple[bytes, bytes]] = []
        fields: dict[bytes, list[bytes]] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                _protocol_error(f"malformed header line: {line[:80]!r}", request)
            self.headers.append((name, value.strip()))
            for token in value.lower().split(b","):
                fields.setdefault(name.lower(), []).append(token.strip())
        self._frame(version, fields, request)

    def _frame(
        self, version: bytes, fields: dict[bytes, list[bytes]], request: httpx.Request
    ) -> None:
        codings = fields.get(b"transfer-encoding")
        lengths = set(fields.get(b"content-length", ()))
        self.chunked = codings is not None and codings[-1] == b"chunked"
        self.length: int | None = None
        if codings is None and lengths:
            length = lengths.pop()
            if lengths or not length.isdigit():
                _protocol_error(f"bad Content-Length: {fields[b'content-length']!r}", request)
            self.length = int(length)
        framed = (
            self.status in _NO_BODY_STATUSES
            or (self.chunked and not lengths)  # both: read, then close (RFC 9112, 6.3)
            or self.length is not None
        )
        self.keep_alive = (
            framed and version == b"HTTP/1.1" and b"close" not in fields.get(b"connection", ())
        )


class ProviderTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` requests at once, each on a connection of its own; idle
    connections are kept for reuse (newest first)."""

    def __init__(
        self,
        *,
        max_connections: int = 20,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1 or keepalive_expiry_s < 0:
            raise ValueError("max_connections or keepalive_expiry_s out of range")
        self._slots = asyncio.Semaphore(max_connections)
        self._expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        if self._closed:
            raise RuntimeError("the transport is closed")
        try:
            async with asyncio.timeout(timeouts.get("pool")):
                await self._slots.acquire()
        except TimeoutError as error:
            raise httpx.PoolTimeout("no free connection in time", request=request) from error
        try:
            connection = await self._connection(request, timeouts.get("connect"))
        except BaseException:
            self._slots.release()
            raise
        try:
            await _send(connection, request, timeouts.get("write"))
            head = await _read_head(connection, request, timeouts.get("read"))
        except BaseException:
            connection.close()
            self._slots.release()
            raise
        reply = _Reply(self, connection, request, head, timeouts.get("read"))
        return httpx.Response(
            head.status,
            headers=head.headers,
            stream=reply,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _connection(self, request: httpx.Request, timeout_s: float | None) -> _Connection:
        origin = _origin(request.url)
        idle = self._idle.get(origin, [])
        now = time.monotonic()
        while idle:
            connection = idle.pop()
            if connection.reusable(now, self._expiry_s):
                return connection
            connection.close()
        scheme, host, port = origin
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        tls = (self._ssl_context or _default_ssl_context()) if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout_s):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=tls, server_hostname=host if tls else None, limit=MAX_HEAD_BYTES
                )
        except TimeoutError as error:
            raise httpx.ConnectTimeout(
                f"not connected within {timeout_s} s", request=request
            ) from error
        except OSError as error:  # refused, unreachable, unresolvable, TLS handshake failed
            raise httpx.ConnectError(f"{type(error).__name__}: {error}", request=request) from error
        return _Connection(reader, writer)

    def _release(self, connection: _Connection, request: httpx.Request, reusable: bool) -> None:
        if reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.setdefault(_origin(request.url), []).append(connection)
        else:
            connection.close()
        self._slots.release()


class _Reply(httpx.AsyncByteStream):
    """A reply's body, read from the connection as it is iterated; closing it gives the
    connection back to the pool if the body was read to its end and the server keeps it."""

    def __init__(
        self,
        transport: ProviderTransport,
        connection: _Connection,
        request: httpx.Request,
        head: _Head,
        timeout_s: float | None,
    ) -> None:
        self._transport = transport
        self._connection: _Connection | None = connection
        self._reader = connection.reader
        self._request = request
        self._head = head
        self._timeout_s = timeout_s
        self._complete = head.status in _NO_BODY_STATUSES or request.method == "HEAD"

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete:
            return
        if self._head.chunked:
            pieces = self._chunked()
        elif self._head.length is not None:
            pieces = self._exactly(self._head.length)
        else:
            pieces = self._until_closed()
        async for piece in pieces:
            yield piece
        self._complete = True

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            reusable = self._complete and self._head.keep_alive
            self._transport._release(connection, self._request, reusable)

    async def _exactly(self, length: int) -> AsyncIterator[bytes]:
        left = length
        while left:
            piece = await self._read(min(left, _READ_BYTES))
            if not piece:
                _protocol_error(f"the connection ended {left} bytes early", self._request)
            left -= len(piece)
            yield piece

    async def _until_closed(self) -> AsyncIterator[bytes]:
        while piece := await self._read(_READ_BYTES):
            yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        while size := _chunk_size(await self._line(), self._request):
            async for piece in self._exactly(size):
                yield piece
            if await self._line():
                _protocol_error("a chunk longer than its size", self._request)
        while await self._line():  # trailer fields, up to the empty line
            pass

    async def _read(self, size: int) -> bytes:
        return await _bounded(self._reader.read(size), self._timeout_s, self._request)

    async def _line(self) -> bytes:
        try:
            line = await _bounded(self._reader.readuntil(b"\r\n"), self._timeout_s, self._request)
        except asyncio.IncompleteReadError:
            _protocol_error("the connection ended inside a chunked reply", self._request)
        except asyncio.LimitOverrunError:
            _protocol_error(f"a chunk line longer than {MAX_HEAD_BYTES} bytes", self._request)
        return line[:-2]


_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,15}")


def _chunk_size(line: bytes, request: httpx.Request) -> int:
    digits = line.partition(b";")[0].strip()
    if not _CHUNK_SIZE.fullmatch(digits):
        _protocol_error(f"bad chunk size line: {line[:80]!r}", request)
    return int(digits, 16)


async def _send(connection: _Connection, request: httpx.Request, timeout_s: float | None) -> None:
    body = await request.aread()
    lines = [request.method.encode("ascii") + b" " + (request.url.raw_path or b"/") + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise httpx.LocalProtocolError("a header holds a line break", request=request)
        lines.append(name + b": " + value)
    try:
        connection.writer.write(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        async with asyncio.timeout(timeout_s):
            await connection.writer.drain()
    except TimeoutError as error:
        raise httpx.WriteTimeout(f"not sent within {timeout_s} s", request=request) from error
    except (OSError, RuntimeError) as error:  # RuntimeError: a transport closed under us
        raise httpx.WriteError(f"{type(error).__name__}: {error}", request=request) from error


async def _read_head(
    connection: _Connection, request: httpx.Request, timeout_s: float | None
) -> _Head:
    while True:  # interim 1xx replies are skipped
        try:
            raw = await _bounded(connection.reader.readuntil(b"\r\n\r\n"), timeout_s, request)
        except asyncio.IncompleteReadError as error:
            if not error.partial:
                _protocol_error("the server disconnected without sending a reply", request)
            _protocol_error("the connection ended inside the reply's head", request)
        except asyncio.LimitOverrunError:
            _protocol_error(f"a reply head longer than {MAX_HEAD_BYTES} bytes", request)
        head = _Head(raw, request)
        if head.status == 101:
            _protocol_error("the server switched protocols unasked", request)
        if head.status >= 200:
            return head


async def _bounded(step: Awaitable[_T], timeout_s: float | None, request: httpx.Request) -> _T:
    """A read of the reply within ``timeout_s`` seconds, its failures as httpx's."""
    try:
        async with asyncio.timeout(timeout_s):
            return await step
    except TimeoutError as error:
        raise httpx.ReadTimeout(f"no reply data within {timeout_s} s", request=request) from error
    except OSError as error:
        raise httpx.ReadError(f"{type(error).__name__}: {error}", request=request) from error


def _origin(url: httpx.URL) -> _Origin:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def _protocol_error(message: str, request: httpx.Request) -> NoReturn:
    raise httpx.RemoteProtocolError(message, request=request)


_ssl_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """Verified TLS with certifi's CA bundle (httpx's default), made once."""
    global _ssl_context
    if _ssl_context is None:
        import certifi

        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context
