"""``send_and_read``, the way a provider call reads its reply: whole, bounded, and with the same
connection reuse as a response read to its end, on scripted servers over real sockets."""

import gzip

import httpx
import pytest
from test_transport import CLOSE, OK, Later, scripted

from boost_ledger.api import metrics
from boost_ledger.upstream import ProviderClient, ProviderMalformed, client
from boost_ledger.upstream.transport import ProviderTransport, ReplyTooLarge

CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'4\r\n{"a"\r\n5\r\n: 12}\r\n0\r\n\r\n'
)
UNTIL_CLOSED = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{}"
FAILED = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy"


async def read(
    transport: ProviderTransport, url: str, max_bytes: int = 1024, pool_s: float = 2.0
) -> tuple[int, bytes]:
    timeout = httpx.Timeout(2.0, pool=pool_s).as_dict()
    request = httpx.Request("POST", url, content=b"key=k", extensions={"timeout": timeout})
    return await transport.send_and_read(request, max_bytes)


@pytest.mark.parametrize(
    ("reply", "body", "connections"),
    [
        (OK, b'{"a": 1}\n', 1),  # Content-Length: the connection carries the next request
        (CHUNKED, b'{"a": 12}', 1),
        (UNTIL_CLOSED, b"{}", 2),  # framed by the connection's end: never reused
    ],
)
async def test_a_reply_is_read_whole_and_its_connection_reused_as_http_allows(
    transport: ProviderTransport, reply: bytes, body: bytes, connections: int
) -> None:
    replies = (reply, OK) if connections == 1 else (reply, CLOSE, OK)
    async with scripted(*replies) as server:
        assert await read(transport, server.url) == (200, body)
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == connections


async def test_a_body_that_arrives_after_its_head_is_waited_for(
    transport: ProviderTransport,
) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
    async with scripted(head, Later(b'{"a": 1}\n'), OK) as server:
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 1


async def test_bytes_after_the_body_keep_its_connection_from_reuse(
    transport: ProviderTransport,
) -> None:
    async with scripted(OK + b"stray", CLOSE, OK) as server:
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_a_coded_body_is_decoded(transport: ProviderTransport) -> None:
    coded = gzip.compress(b'{"a": 1}')
    reply = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(
        coded
    )
    async with scripted(reply + coded, OK) as server:
        assert await read(transport, server.url) == (200, b'{"a": 1}')
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 1


async def test_no_way_of_ending_a_read_keeps_the_only_slot() -> None:
    """With one connection slot, each read after a refused, failed or whole reply still gets
    it at once (a slot kept by any of them would make the next one time out)."""
    transport = ProviderTransport(max_connections=1)
    replies = (OK, CLOSE, FAILED, CLOSE, UNTIL_CLOSED, CLOSE, CHUNKED, OK)
    async with scripted(*replies) as server:
        with pytest.raises(ReplyTooLarge):
            await read(transport, server.url, max_bytes=5, pool_s=0.2)
        assert await read(transport, server.url, pool_s=0.2) == (503, b"")
        assert await read(transport, server.url, pool_s=0.2) == (200, b"{}")
        assert await read(transport, server.url, pool_s=0.2) == (200, b'{"a": 12}')
        assert await read(transport, server.url, pool_s=0.2) == (200, b'{"a": 1}\n')
    await transport.aclose()


@pytest.mark.parametrize("reply", [OK, CHUNKED])
async def test_a_body_above_the_bound_is_refused_and_its_connection_dropped(
    transport: ProviderTransport, reply: bytes
) -> None:
    async with scripted(reply, CLOSE, OK) as server:
        with pytest.raises(ReplyTooLarge):
            await read(transport, server.url, max_bytes=5)
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_a_failed_reply_is_left_unread_and_its_connection_dropped(
    transport: ProviderTransport,
) -> None:
    async with scripted(FAILED, CLOSE, OK) as server:
        assert await read(transport, server.url) == (503, b"")
        assert await read(transport, server.url) == (200, b'{"a": 1}\n')
    assert server.connections == 2


async def test_a_client_call_above_the_bound_is_malformed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "_MAX_REPLY_BYTES", 5)
    async with scripted(OK) as server:
        provider = ProviderClient(server.url, "k", read_retries=0)
        try:
            with pytest.raises(ProviderMalformed, match="above 5"):
                await provider.balance()
        finally:
            await provider.aclose()


@pytest.mark.parametrize("reading", [True, False])
async def test_the_metrics_wrapper_counts_a_call_whichever_way_it_is_read(reading: bool) -> None:
    """Over a transport that reads replies itself, and over any other httpx transport."""
    balance = b'{"balance": "1.50", "currency": "USD"}'

    def reply(request: httpx.Request) -> httpx.Response:
        assert request.content == b"key=k&action=balance"
        return httpx.Response(200, content=balance)

    async with scripted(
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(balance), balance)
    ) as server:
        inner = ProviderTransport() if reading else httpx.MockTransport(reply)
        counted = metrics.PROVIDER_CALLS.labels("balance", "ok")
        before = counted._value.get()
        provider = ProviderClient(
            server.url, "k", transport=metrics.InstrumentedTransport(inner), read_retries=0
        )
        try:
            assert (await provider.balance()).currency == "USD"
        finally:
            await provider.aclose()
    assert counted._value.get() == before + 1
