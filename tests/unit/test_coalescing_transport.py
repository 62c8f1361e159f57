"""The coalescing transport on its own, with a recording transport in place of a socket."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from boost_ledger.http_protocol import HIGH_WATER_BYTES, CoalescingTransport


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []
        self.closing = False

    def write(self, data: Any) -> None:
        self.calls.append(("write", bytes(data)))

    def close(self) -> None:
        self.calls.append(("close", None))
        self.closing = True

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.closing = True

    def write_eof(self) -> None:
        self.calls.append(("write_eof", None))

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return 7


async def _step() -> None:
    await asyncio.sleep(0)


async def test_the_writes_of_one_step_go_out_as_one_write_in_their_order() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
    transport.write(memoryview(b"{}"))
    assert inner.calls == [], "nothing sent before the step ends"
    assert transport.get_write_buffer_size() == 7 + 21
    await _step()
    assert inner.calls == [("write", b"HTTP/1.1 200 OK\r\n\r\n{}")]
    transport.write(b"next")
    await _step()
    assert inner.calls[1:] == [("write", b"next")], "a later step is a write of its own"


async def test_flush_sends_at_once_and_the_scheduled_send_then_has_nothing_to_add() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"body")
    transport.flush()
    assert inner.calls == [("write", b"headbody")]
    await _step()
    assert inner.calls == [("write", b"headbody")]


async def test_close_and_half_close_send_what_is_held_first() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"bye")
    transport.write_eof()
    with pytest.raises(RuntimeError):
        transport.write(b"!")  # as a socket's transport refuses it, at once
    transport.close()
    await _step()
    assert inner.calls == [("write", b"bye"), ("write_eof", None), ("close", None)]


async def test_close_still_closes_when_sending_what_is_held_fails() -> None:
    inner = Recording()
    inner.write = _refuse  # type: ignore[method-assign]
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"x")
    with pytest.raises(ConnectionResetError):
        transport.close()
    assert inner.calls == [("close", None)]


def _refuse(data: Any) -> None:
    raise ConnectionResetError


async def test_a_large_body_goes_out_before_the_step_ends() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"head")
    transport.write(b"x" * HIGH_WATER_BYTES)
    assert inner.calls == [("write", b"head" + b"x" * HIGH_WATER_BYTES)], "the socket's own flow"
    transport.write(b"tail")  # control sees it: pause_writing can act within the step
    await _step()
    assert inner.calls[1:] == [("write", b"tail")]


async def test_abort_drops_what_is_held_and_a_closing_connection_is_sent_nothing() -> None:
    inner = Recording()
    transport = CoalescingTransport(inner, asyncio.get_running_loop())
    transport.write(b"lost")
    transport.abort()
    await _step()
    assert inner.calls == [("abort", None)]
    closed = Recording()
    closed.closing = True
    late = CoalescingTransport(closed, asyncio.get_running_loop())
    late.write(b"late")
    await _step()
    assert closed.calls == []
