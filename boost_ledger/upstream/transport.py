"""The provider's HTTP transport: HTTP/1.1 keep-alive connections, behind httpx's transport
interface.

A provider call is one small form POST and one small JSON reply, and the submitter makes one per
order. ``httpx.AsyncHTTPTransport`` spent 550-720 µs of CPU on each (its connection pool walks
every pooled connection twice per request and polls each idle socket, and every read and write
enters an anyio cancel scope) where the exchange itself costs about 60 µs: on a busy server the
submitter spent more on its HTTP client than on its two transactions. This transport keeps
httpx's request, response and exception types, so ``ProviderClient`` and its callers do not
change, and does what HTTP/1.1 asks of a client, no more (the wire format is ``http11.py``).
``ProviderClient`` itself calls ``send_and_read``: the reply read whole, with no
``httpx.Response`` built or streamed, and no deadline armed for a step that cannot wait (a free
slot, a write the socket takes at once, a body that arrived with its head):

- A request goes out in one write: its line, httpx's headers (``Host``, ``Content-Length``...)
  and its body, which httpx has already encoded. A body of unknown length is refused.
- A connection is reused unless the reply said ``Connection: close``, was HTTP/1.0, ended with
  the connection or was not read to its end, and only while it holds no unread byte, has not
  seen its end and has been idle less than ``keepalive_expiry_s`` (or a second less than the
  server's ``Keep-Alive: timeout``). The idle connections are checked on each request, so one the
  server closed does not linger.
- Every step is bounded by the request's httpx timeouts (pool, connect, write, read). Failures are
  httpx's exceptions: ``ConnectError``/``ConnectTimeout`` before any byte of the request went out,
  ``RemoteProtocolError`` for a reply that breaks HTTP/1.1, ``ReadError``/``WriteError`` and the
  timeouts otherwise. Whatever the failure, the request's ``SENT_EXTENSION`` says whether a byte
  of it was written, which a deadline around the whole call cannot otherwise tell.
- Every response must be closed (``ProviderClient`` does): that frees its connection slot.

HTTPS uses the standard library's TLS with certifi's CA bundle, as httpx does. Proxies are not
used (nor were they: the client never went through ``httpx.AsyncClient``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol, TypeVar, runtime_checkable

import httpx

from boost_ledger.upstream.http11 import (
    MAX_HEAD_BYTES,
    Connection,
    Ended,
    Head,
    TooLong,
    chunk_size,
    protocol_error,
)

MAX_CONNECTIONS = 20
"""Connections to the provider at once, by default (and so requests in flight)."""
KEEPALIVE_EXPIRY_S = 4.0
"""Idle connections older than this are not reused: below the 5 s after which uvicorn and
Apache close theirs, so that a reused connection is not one the server is closing."""
SENT_EXTENSION = "boost_request_sent"
"""Set on each request: False until its first byte is written, then True for good."""
_READ_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})

_Origin = tuple[str, str, int]


class ReplyTooLarge(Exception):
    """A reply body above the bound ``send_and_read`` was given."""


@runtime_checkable
class ReadingTransport(Protocol):
    """A transport that reads a reply whole itself (``ProviderTransport``, and the metrics'
    wrapper of one)."""

    async def send_and_read(self, request: httpx.Request, max_bytes: int) -> tuple[int, bytes]:
        """The reply's status and body, as ``ProviderTransport.send_and_read``."""
        ...


WholeReads = Callable[[httpx.Request, int], Awaitable[tuple[int, bytes]]]
"""``send_and_read``'s signature: (request, max_bytes) -> (status, body)."""


def whole_reads(transport: httpx.AsyncBaseTransport) -> WholeReads:
    """How to read a reply whole through ``transport``: its own ``send_and_read`` if it has one,
    else its response read to the end (``read_whole``). Asked once, by whoever holds it."""
    if isinstance(transport, ReadingTransport):
        return transport.send_and_read

    async def through_response(request: httpx.Request, max_bytes: int) -> tuple[int, bytes]:
        response = await transport.handle_async_request(request)
        return await read_whole(response, request, max_bytes)

    return through_response


async def read_whole(
    response: httpx.Response, request: httpx.Request, max_bytes: int
) -> tuple[int, bytes]:
    """``send_and_read`` on any httpx transport's ``response``, which it closes."""
    response.request = request
    try:
        if response.status_code >= 500:
            return response.status_code, b""
        return response.status_code, await _joined(response.aiter_bytes(), max_bytes)
    finally:
        await response.aclose()


async def _joined(pieces: AsyncIterator[bytes], max_bytes: int) -> bytes:
    """The pieces of a body as one (``ReplyTooLarge`` past ``max_bytes``)."""
    joined: list[bytes] = []
    size = 0
    async for piece in pieces:
        size += len(piece)
        if size > max_bytes:
            raise ReplyTooLarge(f"a reply larger than {max_bytes} bytes")
        joined.append(piece)
    return b"".join(joined)


_T = TypeVar("_T")


class ProviderTransport(httpx.AsyncBaseTransport):
    """At most ``max_connections`` requests at once, each on a connection of its own; idle
    connections are kept for reuse (newest first)."""

    def __init__(
        self,
        *,
        max_connections: int = MAX_CONNECTIONS,
        keepalive_expiry_s: float = KEEPALIVE_EXPIRY_S,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1 or keepalive_expiry_s < 0:
            raise ValueError("max_connections or keepalive_expiry_s out of range")
        self._slots = asyncio.Semaphore(max_connections)
        self._expiry_s = keepalive_expiry_s
        self._ssl_context = ssl_context
        self._idle: dict[_Origin, list[Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return (await self._exchange(request)).response()

    async def send_and_read(self, request: httpx.Request, max_bytes: int) -> tuple[int, bytes]:
        """``handle_async_request`` with the reply read whole and its connection released: the
        status and the body (``ReplyTooLarge`` past ``max_bytes``; left unread, and the connection
        closed, from status 500 on). What a provider call needs, without the ``httpx.Response``
        and the stream iteration that were a fifth of its CPU (a small reply's body has usually
        arrived with its head, and is taken without waiting). A coded body (``Content-Encoding``:
        gzip and the like) is read through the response, which decodes it."""
        reply = await self._exchange(request)
        if reply.head.coded:
            return await read_whole(reply.response(), request, max_bytes)
        try:
            status = reply.head.status
            return status, (b"" if status >= 500 else await reply.read_all(max_bytes))
        finally:
            await reply.aclose()

    async def _exchange(self, request: httpx.Request) -> _Reply:
        """Send ``request`` on a connection and read its reply's head; the body is the
        ``_Reply``'s to read, and closing it releases the connection."""
        # One way: a request handed in again (a retrying wrapper) stays "sent" once it was.
        request.extensions.setdefault(SENT_EXTENSION, False)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        await self._take_slot(request, timeouts.get("pool"))
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
        return _Reply(self, connection, request, head, timeouts.get("read"))

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _take_slot(self, request: httpx.Request, timeout_s: float | None) -> None:
        if self._closed:
            raise RuntimeError("the transport is closed")
        if not self._slots.locked():  # a free slot is taken at once: no deadline to arm
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(timeout_s):
                await self._slots.acquire()
        except TimeoutError as error:
            raise httpx.PoolTimeout("no free connection in time", request=request) from error
        if self._closed:  # closed while this request waited
            self._slots.release()
            raise RuntimeError("the transport is closed")

    async def _connection(self, request: httpx.Request, timeout_s: float | None) -> Connection:
        origin = _origin(request.url)
        reused = self._reusable(origin)
        if reused is not None:
            return reused
        scheme, host, port = origin
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported scheme {scheme!r}", request=request)
        tls = (self._ssl_context or _default_ssl_context()) if scheme == "https" else None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                _, connection = await loop.create_connection(
                    Connection, host, port, ssl=tls, server_hostname=host if tls else None
                )
        except TimeoutError as error:
            message = f"not connected within {timeout_s} s"
            raise httpx.ConnectTimeout(message, request=request) from error
        # OSError: refused, unreachable, unresolvable, TLS handshake failed. ValueError: a name
        # the resolver or TLS cannot take (UnicodeError for an empty or over-long label).
        except (OSError, ValueError) as error:
            message = f"{type(error).__name__}: {error}"
            raise httpx.ConnectError(message, request=request) from error
        return connection

    def _reusable(self, origin: _Origin) -> Connection | None:
        """The newest idle connection fit for reuse; the unfit ones are closed."""
        idle = self._idle.get(origin)
        if not idle:
            return None
        now = time.monotonic()
        fit = []
        for connection in idle:
            if connection.reusable(now, self._expiry_s):
                fit.append(connection)
            else:
                connection.close()
        self._idle[origin] = fit
        return fit.pop() if fit else None

    def _release(self, connection: Connection, request: httpx.Request, reusable: bool) -> None:
        if reusable and not self._closed and not connection.holds_unread_bytes():
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
        connection: Connection,
        request: httpx.Request,
        head: Head,
        timeout_s: float | None,
    ) -> None:
        self._transport = transport
        self._connection: Connection | None = connection
        self._wire = connection
        self._request = request
        self.head = head
        self._timeout_s = timeout_s
        self._complete = head.status in _NO_BODY_STATUSES or request.method == "HEAD"
        connection.expiry_s = head.keep_alive_s

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete:
            return
        if self.head.chunked:
            pieces = self._chunked()
        elif self.head.length is not None:
            pieces = self._exactly(self.head.length)
        else:
            pieces = self._until_closed()
        async for piece in pieces:
            yield piece
        self._complete = True

    def response(self) -> httpx.Response:
        """The reply as httpx's response, whose stream this is."""
        head = self.head
        return httpx.Response(
            head.status,
            headers=head.headers,
            stream=self,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": head.reason},
        )

    async def read_all(self, max_bytes: int) -> bytes:
        """The whole body (``ReplyTooLarge`` past ``max_bytes``)."""
        length = self.head.length
        if length is not None and not self.head.chunked and not self._complete:
            if length > max_bytes:
                raise ReplyTooLarge(f"a reply of {length} bytes, above {max_bytes}")
            body = self._wire.take_buffered(length)
            if body is not None:
                self._complete = True
                return body
        return await _joined(self.__aiter__(), max_bytes)

    async def aclose(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            reusable = self._complete and self.head.keep_alive
            self._transport._release(connection, self._request, reusable)

    async def _exactly(self, length: int) -> AsyncIterator[bytes]:
        left = length
        while left:
            piece = await self._read(min(left, _READ_BYTES))
            if not piece:
                protocol_error(f"the connection ended {left} bytes early", self._request)
            left -= len(piece)
            yield piece

    async def _until_closed(self) -> AsyncIterator[bytes]:
        while piece := await self._read(_READ_BYTES):
            yield piece

    async def _chunked(self) -> AsyncIterator[bytes]:
        while size := chunk_size(await self._line(), self._request):
            async for piece in self._exactly(size):
                yield piece
            if await self._line():
                protocol_error("a chunk longer than its size", self._request)
        while await self._line():  # trailer fields, up to the empty line
            pass

    async def _read(self, most: int) -> bytes:
        return await _bounded(self._wire.read_some(most), self._timeout_s, self._request)

    async def _line(self) -> bytes:
        reading = self._wire.read_until(b"\r\n", MAX_HEAD_BYTES)
        try:
            line = await _bounded(reading, self._timeout_s, self._request)
        except Ended:
            protocol_error("the connection ended inside a chunked reply", self._request)
        except TooLong:
            protocol_error(f"a chunk line longer than {MAX_HEAD_BYTES} bytes", self._request)
        return line[:-2]


async def _send(connection: Connection, request: httpx.Request, timeout_s: float | None) -> None:
    if "content-length" not in request.headers:
        raise httpx.LocalProtocolError("a request body of unknown length", request=request)
    body = await request.aread()
    lines = [request.method.encode("ascii") + b" " + (request.url.raw_path or b"/") + b" HTTP/1.1"]
    for name, value in request.headers.raw:
        if b"\r" in value or b"\n" in value or b"\r" in name or b"\n" in name:
            raise httpx.LocalProtocolError("a header holds a line break", request=request)
        lines.append(name + b": " + value)
    request.extensions[SENT_EXTENSION] = True
    try:
        if connection.write(b"\r\n".join(lines) + b"\r\n\r\n" + body):
            async with asyncio.timeout(timeout_s):  # only a full socket buffer makes it wait
                await connection.drained()
    except TimeoutError as error:
        raise httpx.WriteTimeout(f"not sent within {timeout_s} s", request=request) from error
    except (OSError, RuntimeError) as error:  # RuntimeError: a transport closed under us
        raise httpx.WriteError(f"{type(error).__name__}: {error}", request=request) from error


async def _read_head(
    connection: Connection, request: httpx.Request, timeout_s: float | None
) -> Head:
    while True:  # interim 1xx replies are skipped
        reading = connection.read_until(b"\r\n\r\n", MAX_HEAD_BYTES)
        try:
            raw = await _bounded(reading, timeout_s, request)
        except Ended as ended:
            if not ended.partial:
                protocol_error("the server disconnected without sending a reply", request)
            protocol_error("the connection ended inside the reply's head", request)
        except TooLong:
            protocol_error(f"a reply head longer than {MAX_HEAD_BYTES} bytes", request)
        head = Head(raw, request)
        if head.status == 101:
            protocol_error("the server switched protocols unasked", request)
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
    # The host as the URL spells it in ASCII (an IDNA A-label: what httpx sends in ``Host``), not
    # ``url.host``: that one is the Unicode form of an ``xn--`` name, which the resolver and the
    # TLS hostname check would encode by IDNA 2003, into another name for some (faß -> fass).
    host = url.raw_host.decode("ascii")
    return url.scheme, host, url.port or (443 if url.scheme == "https" else 80)


_ssl_context: ssl.SSLContext | None = None


def _default_ssl_context() -> ssl.SSLContext:
    """Verified TLS with certifi's CA bundle (httpx's default), made once."""
    global _ssl_context
    if _ssl_context is None:
        import certifi

        _ssl_context = ssl.create_default_context(cafile=certifi.where())
    return _ssl_context
