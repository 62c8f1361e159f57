"""The server's HTTP protocol (uvicorn's httptools one, each response in one write) on a real
socket: what a client receives, and how many writes a response took."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from boost_ledger.http_protocol import CoalescingHttpToolsProtocol
from boost_ledger.server import _uvicorn_config
from boost_ledger.settings import Settings

WAIT_S = 10.0


class _Counting(asyncio.Transport):
    """Counts the writes that reach the socket's transport."""

    def __init__(self, transport: Any, writes: list[bytes]) -> None:
        super().__init__()
        self._transport = transport
        self._writes = writes

    def write(self, data: Any) -> None:
        self._writes.append(bytes(data))
        self._transport.write(data)

    def __getattribute__(self, name: str) -> Any:
        if name in ("write", "_transport", "_writes"):
            return object.__getattribute__(self, name)
        return getattr(object.__getattribute__(self, "_transport"), name)


WRITES: list[bytes] = []


class _CountedProtocol(CoalescingHttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_Counting(transport, WRITES))


async def _one(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def _stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"a" * 10, b"b" * 20, b"c" * 30):
            await asyncio.sleep(0.01)
            yield part

    return StreamingResponse(chunks(), media_type="text/plain")


async def _echo(request: Request) -> JSONResponse:
    return JSONResponse({"length": len(await request.body())})


CLIENT_HAS_IT = threading.Event()
ANSWERED_BEFORE_THE_STEP_ENDED: list[bool] = []


async def _then_busy(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers, then holds the event loop (as the request log does, briefly) until the client,
    in a thread of its own, has the answer: it only can if the answer left at once."""
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})
    ANSWERED_BEFORE_THE_STEP_ENDED.append(CLIENT_HAS_IT.wait(WAIT_S))


@pytest.fixture
async def port() -> AsyncIterator[int]:
    routes = Starlette(routes=[Route("/one", _one), Route("/stream", _stream),
                               Route("/echo", _echo, methods=["POST"])])

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        handler = _then_busy if scope.get("path") == "/then-busy" else routes
        await handler(scope, receive, send)

    sock = socket.socket()
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, http=_CountedProtocol, log_config=None, lifespan="off",
                            loop="none")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, WAIT_S)
        sock.close()


async def _response(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    if b"transfer-encoding: chunked" in head:
        body = b""
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                return head, body
            body += chunk[:-2]
    length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
    return head, await asyncio.wait_for(reader.readexactly(length), WAIT_S)


async def test_a_response_is_one_write_and_keep_alive_carries_the_next(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    WRITES.clear()
    for _ in range(2):
        writer.write(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n")
        head, body = await _response(reader)
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert body == b'{"ok":true}'
    assert len(WRITES) == 2, "one write for each response, its head and body together"
    assert all(write.endswith(b'{"ok":true}') for write in WRITES)
    writer.close()


async def test_connection_close_gets_the_whole_answer_then_the_end(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /one HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    head, body = await _response(reader)
    assert b"connection: close" in head
    assert body == b'{"ok":true}'
    assert await asyncio.wait_for(reader.read(), WAIT_S) == b"", "then the server closes"
    writer.close()


async def test_a_streamed_body_arrives_whole_and_in_order(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /stream HTTP/1.1\r\nhost: x\r\n\r\n")
    _, body = await _response(reader)
    assert body == b"a" * 10 + b"b" * 20 + b"c" * 30
    writer.close()


async def test_expect_100_continue_is_answered_before_the_body_is_sent(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                 b"expect: 100-continue\r\n\r\n")
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT_S)
    assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    _, body = await _response(reader)
    assert body == b'{"length":5}'
    writer.close()


async def test_pipelined_requests_are_answered_in_order_one_write_each(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    WRITES.clear()
    writer.write(b"GET /one HTTP/1.1\r\nhost: x\r\n\r\n"
                 b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\n\r\nabc")
    _, first = await _response(reader)
    _, second = await _response(reader)
    assert (first, second) == (b'{"ok":true}', b'{"length":3}')
    assert len(WRITES) == 2
    writer.close()


async def test_a_complete_answer_leaves_before_the_app_is_done_with_the_request(port: int) -> None:
    CLIENT_HAS_IT.clear()
    ANSWERED_BEFORE_THE_STEP_ENDED.clear()

    def client() -> None:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as sock:
            sock.sendall(b"GET /then-busy HTTP/1.1\r\nhost: x\r\n\r\n")
            received = b""
            while not received.endswith(b"\r\n\r\nok"):
                received += sock.recv(4096)
            CLIENT_HAS_IT.set()

    thread = threading.Thread(target=client)
    thread.start()
    async with asyncio.timeout(2 * WAIT_S):
        while not ANSWERED_BEFORE_THE_STEP_ENDED:  # noqa: ASYNC110 - the app appends when done
            await asyncio.sleep(0.01)
    await asyncio.to_thread(thread.join, WAIT_S)
    assert ANSWERED_BEFORE_THE_STEP_ENDED == [True]


def test_the_server_and_the_simulator_are_served_with_it() -> None:
    config = _uvicorn_config(Starlette(), Settings())
    assert config.http is CoalescingHttpToolsProtocol
