"""The provider transport against scripted servers on real sockets: framing, reuse, limits,
timeouts, and each failure as the httpx exception its callers rely on."""

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest
import trustme
import uvloop

from boost_ledger.upstream import ProviderClient, ProviderUnavailable
from boost_ledger.upstream.http11 import MAX_HEAD_BYTES
from boost_ledger.upstream.transport import ProviderTransport
from boost_ledger.workers.submitter import _outcome_of

OK = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"a": 1}\n'
CLOSE = b"close"  # the server closes the connection (instead of replying, or after a reply)
HANG = b"hang"  # the server never replies


@dataclass(frozen=True)
class Later:
    """Bytes the server sends unasked, a moment after its previous reply."""

    data: bytes


@dataclass
class Scripted:
    """A server that reads each request and answers with the next scripted reply."""

    replies: list[bytes | Later]
    url: str = ""
    connections: int = 0
    open_now: int = 0
    most_open: int = 0
    requests: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open_now += 1
        self.most_open = max(self.most_open, self.open_now)
        try:
            while self.replies:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.IncompleteReadError:
                    return
                length = _content_length(head)
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                if reply == CLOSE:
                    return
                if reply == HANG:
                    await asyncio.sleep(3600)
                assert isinstance(reply, bytes)
                writer.write(reply)
                await writer.drain()
                if self.replies and isinstance(self.replies[0], Later):
                    await asyncio.sleep(0.05)
                    writer.write(self.replies.pop(0).data)  # type: ignore[union-attr]
                if self.replies[:1] == [CLOSE]:
                    self.replies.pop(0)
                    return
        finally:
            self.open_now -= 1
            writer.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return int(value)
    return 0


@contextlib.asynccontextmanager
async def scripted(*replies: bytes, tls: ssl.SSLContext | None = None) -> AsyncIterator[Scripted]:
    server = Scripted(list(replies))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = (
        f"{'https' if tls else 'http'}://{'localhost' if tls else '127.0.0.1'}:{port}/api/v2"
    )
    try:
        yield server
    finally:
        listener.close()


async def call(
    transport: ProviderTransport, url: str, *, timeout_s: float = 2.0, pool_s: float = 2.0
) -> tuple[int, bytes]:
    timeout = httpx.Timeout(timeout_s, pool=pool_s).as_dict()
    request = httpx.Request(
        "POST", url, data={"key": "k", "action": "balance"}, extensions={"timeout": timeout}
    )
    response = await transport.handle_async_request(request)
    try:
        return response.status_code, await response.aread()
    finally:
        await response.aclose()


async def time_out_behind_a_stuck_request(transport: ProviderTransport, url: str) -> None:
    """With the only slot held by a request the server never answers, the next request times
    out waiting for a connection; then the stuck one is cancelled."""
    stuck = asyncio.create_task(call(transport, url, timeout_s=5))
    await asyncio.sleep(0.05)
    with pytest.raises(httpx.PoolTimeout):
        await call(transport, url, pool_s=0.05)
    stuck.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await stuck


async def test_a_kept_alive_connection_carries_the_next_request(
    transport: ProviderTransport,
) -> None:
    async with scripted(OK, OK) as server:
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 1
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v2 HTTP/1.1"
    assert b"content-type: application/x-www-form-urlencoded" in [line.lower() for line in lines]
    assert body == b"key=k&action=balance"


async def test_a_chunked_reply_is_joined_and_its_trailers_skipped(
    transport: ProviderTransport,
) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4;ext=1\r\n{"a"\r\n5\r\n: 12}\r\n0\r\nX-Trailer: yes\r\n\r\n'
    )
    async with scripted(chunked, OK) as server:
        assert await call(transport, server.url) == (200, b'{"a": 12}')
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 1


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}",  # framed by the connection's end
        b"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}",
    ],
)
async def test_a_connection_the_reply_ends_is_not_reused(
    transport: ProviderTransport, reply: bytes
) -> None:
    async with scripted(reply, CLOSE, OK) as server:
        assert await call(transport, server.url) == (200, b"{}")
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_interim_replies_are_skipped(transport: ProviderTransport) -> None:
    async with scripted(b"HTTP/1.1 100 Continue\r\n\r\n" + OK) as server:
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')


async def test_an_idle_connection_closed_by_the_server_is_dropped_before_reuse(
    transport: ProviderTransport,
) -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    async with scripted(reply, CLOSE, OK) as server:  # keep-alive promised, then closed
        assert await call(transport, server.url) == (200, b"{}")
        await asyncio.sleep(0.05)  # the close reaches the client
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_idle_connections_expire() -> None:
    transport = ProviderTransport(keepalive_expiry_s=0)
    async with scripted(OK, OK) as server:
        await call(transport, server.url)
        await call(transport, server.url)
    await transport.aclose()
    assert server.connections == 2


async def test_a_refused_connection_is_a_connect_error(transport: ProviderTransport) -> None:
    async with scripted() as server:
        url = server.url
    with pytest.raises(httpx.ConnectError):
        await call(transport, url)


async def test_a_silent_server_is_a_read_timeout(transport: ProviderTransport) -> None:
    async with scripted(HANG) as server:
        with pytest.raises(httpx.ReadTimeout):
            await call(transport, server.url, timeout_s=0.1)


async def test_a_disconnect_without_reply_is_a_protocol_error_not_a_connect_error(
    transport: ProviderTransport,
) -> None:
    async with scripted(CLOSE) as server:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a reply"):
            await call(transport, server.url)


@pytest.mark.parametrize(
    "reply",
    [
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n bad: fold\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
        # More digits than int() converts (4300): a ValueError, were they not refused first.
        b"HTTP/1.1 200 OK\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{}",  # then the server closes
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}}\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
        b"HTTP/1.1 099 Odd\r\n\r\n" + OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent Length: 2\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nX-Long: " + b"x" * MAX_HEAD_BYTES + b"\r\n\r\n",
    ],
)
async def test_a_reply_that_breaks_http_is_a_protocol_error(
    transport: ProviderTransport, reply: bytes
) -> None:
    async with scripted(reply, CLOSE, OK) as server:
        with pytest.raises(httpx.RemoteProtocolError):
            await call(transport, server.url)
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2  # the broken connection was not reused


async def test_requests_beyond_the_limit_wait_for_a_connection() -> None:
    transport = ProviderTransport(max_connections=2)
    slow = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"
    async with scripted(*[slow] * 6) as server:
        results = await asyncio.gather(*(call(transport, server.url) for _ in range(6)))
    await transport.aclose()
    assert results == [(200, b"{}")] * 6
    assert server.most_open <= 2


async def test_a_full_pool_times_out_as_a_pool_timeout() -> None:
    transport = ProviderTransport(max_connections=1)
    async with scripted(HANG, OK) as server:
        await time_out_behind_a_stuck_request(transport, server.url)
        # The cancelled request gave its slot back and its connection was not reused.
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    await transport.aclose()
    assert server.connections == 2


async def test_a_reply_not_read_to_its_end_closes_its_connection(
    transport: ProviderTransport,
) -> None:
    async with scripted(OK, OK) as server:
        request = httpx.Request("POST", server.url, data={"action": "balance"})
        response = await transport.handle_async_request(request)
        await response.aclose()
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_a_closed_transport_refuses_requests(transport: ProviderTransport) -> None:
    await transport.aclose()
    with pytest.raises(RuntimeError):
        await call(transport, "http://127.0.0.1:9/api/v2")


async def test_https_verifies_the_provider_certificate() -> None:
    authority = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(served)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    async with scripted(OK, OK, tls=served) as server:
        transport = ProviderTransport(ssl_context=trusting)
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
        await transport.aclose()
        assert server.connections == 1
        default = ProviderTransport()  # certifi's authorities: the test CA is not one of them
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await call(default, server.url)
        await default.aclose()


STRAY = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize("then", [[Later(STRAY), CLOSE], [Later(b"junk")]])
async def test_a_connection_holding_unread_bytes_is_not_reused(
    transport: ProviderTransport, then: list[bytes | Later]
) -> None:
    """Bytes a server sends while the connection is idle are never read as the next reply."""
    async with scripted(OK, *then, OK) as server:
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
        await asyncio.sleep(0.15)  # the stray bytes (and the close) reach the client
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_the_servers_keep_alive_timeout_is_honoured(transport: ProviderTransport) -> None:
    short = b"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=1\r\nContent-Length: 2\r\n\r\n{}"
    async with scripted(short, OK) as server:
        assert await call(transport, server.url) == (200, b"{}")
        assert await call(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2  # a second short of one second: never reused


async def test_a_body_of_unknown_length_is_refused(transport: ProviderTransport) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b"key=k"

    async with scripted(OK) as server:
        request = httpx.Request("POST", server.url, content=body())
        with pytest.raises(httpx.LocalProtocolError):
            await transport.handle_async_request(request)
    assert server.requests == []


async def test_requests_waiting_for_a_slot_fail_once_the_transport_closes() -> None:
    transport = ProviderTransport(max_connections=1)
    async with scripted(HANG) as server:
        stuck = asyncio.create_task(call(transport, server.url, timeout_s=5))
        waiting = asyncio.create_task(call(transport, server.url, timeout_s=5))
        await asyncio.sleep(0.05)
        await transport.aclose()
        stuck.cancel()
        with pytest.raises(RuntimeError, match="closed"):
            await waiting
        with contextlib.suppress(asyncio.CancelledError):
            await stuck
    assert server.connections == 1


async def test_an_add_that_never_left_is_deferred_and_one_that_did_is_unknown() -> None:
    """The call's own deadline cuts both short; only the transport knows which one was sent.
    (The deadline leaves the first call time to be sent on a loaded machine: at 0.3 s the
    outcomes came out otherwise once, with another test suite running on the same cores.)"""
    async with scripted(HANG, HANG) as server:
        client = ProviderClient(server.url, "k", timeout_s=1.0, max_connections=1)
        outcomes = await asyncio.gather(
            client.add("1", {"link": "a"}), client.add("1", {"link": "b"}), return_exceptions=True
        )
        await client.aclose()
    assert all(isinstance(outcome, ProviderUnavailable) for outcome in outcomes)
    assert [next(iter(_outcome_of(outcome))) for outcome in outcomes] == ["unknown", "deferred"]
    assert len(server.requests) == 1


async def test_a_tls_handshake_that_never_ends_is_deferred() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers the handshake
        writer.close()

    listener = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = ProviderClient(f"https://localhost:{port}/api/v2", "k", timeout_s=0.3)
    with pytest.raises(ProviderUnavailable) as raised:
        await client.add("1", {"link": "a"})
    await client.aclose()
    listener.close()
    assert _outcome_of(raised.value) == {
        "deferred": "provider not reached: add: no connection within 0.3 s"
    }


def test_the_same_under_uvloop() -> None:
    """The server runs on uvloop, whose transports are not asyncio's: reuse, framing, stray
    bytes, a full pool and a refused connection behave the same there."""

    async def scenario() -> None:
        transport = ProviderTransport(max_connections=1)
        chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
        async with scripted(OK, chunked, Later(STRAY), CLOSE, OK, HANG) as server:
            assert await call(transport, server.url) == (200, b'{"a": 1}\n')
            assert await call(transport, server.url) == (200, b"{}")
            await asyncio.sleep(0.15)
            assert await call(transport, server.url) == (200, b'{"a": 1}\n')
            await time_out_behind_a_stuck_request(transport, server.url)
            url = server.url
        assert server.connections == 2
        with pytest.raises(httpx.ConnectError):
            await call(transport, url)
        await transport.aclose()

    uvloop.run(scenario())


async def test_an_internationalized_host_is_reached_and_verified_by_its_own_ascii_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``xn--fa-hia.example`` is ``faß.example``. httpx's ``URL.host`` gives the Unicode form,
    which the resolver and the TLS hostname check encode by IDNA 2003 into another name,
    ``fass.example``: the provider's key would go to whoever holds that one. The transport must
    resolve, and verify the certificate of, the name the URL (and its ``Host`` header) says."""
    name = "xn--fa-hia.example"
    authority = trustme.CA()
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(name).configure_cert(served)
    trusting = ssl.create_default_context()
    authority.configure_trust(trusting)
    loop = asyncio.get_running_loop()
    resolve = loop.getaddrinfo
    asked: list[object] = []

    async def to_this_machine(host: object, *args: object, **kwargs: object) -> object:
        asked.append(host)
        return await resolve("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loop, "getaddrinfo", to_this_machine)
    async with scripted(OK, tls=served) as server:
        transport = ProviderTransport(ssl_context=trusting)
        url = server.url.replace("localhost", name)
        try:
            assert await call(transport, url) == (200, b'{"a": 1}\n')
        finally:
            await transport.aclose()
    assert asked == [name]
    assert f"\r\nHost: {name}:".encode() in server.requests[0]


@pytest.mark.parametrize("url", ["http://api..example/v2", f"https://{'a' * 64}.example/v2"])
async def test_a_host_that_cannot_be_resolved_as_written_is_a_connect_error(url: str) -> None:
    """An empty or over-long label (a typo in BOOST_PROVIDER_URL, which its pattern lets
    through) fails before any lookup, with the resolver's ``UnicodeError``: that must be a
    ``ConnectError``, so that an ``add`` is deferred (nothing was sent), not an unexpected
    error recorded as an unknown outcome."""
    client = ProviderClient(url, "k", timeout_s=1.0, read_retries=0)
    try:
        with pytest.raises(ProviderUnavailable) as raised:
            await client.add("1", {"link": "a"})
    finally:
        await client.aclose()
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert next(iter(_outcome_of(raised.value))) == "deferred"
