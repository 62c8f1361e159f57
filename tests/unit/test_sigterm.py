"""``boost worker``'s SIGTERM: delivered through the event loop, so that no callback can lose it."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
import uvloop

from boost_ledger.cli import serving


class _SignalsItself(asyncio.Protocol):
    """Sends this process SIGTERM from inside a transport's callback and runs on in Python
    there: a plain handler that raised SystemExit would raise it here, in the callback."""

    def __init__(self, done: asyncio.Event) -> None:
        self.done = done

    def data_received(self, data: bytes) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:  # bytecode after the signal, still in the callback
            pass
        self.done.set()


async def _stopped_while_a_callback_runs() -> bool:
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _SignalsItself(done), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        with serving._cancelled_by_sigterm():
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"x")
            await asyncio.sleep(10)  # the signal cancels this wait
            return False
    finally:
        assert done.is_set()
        server.close()


def test_a_sigterm_inside_a_transport_callback_still_stops_the_worker() -> None:
    """On uvloop, as the worker runs: the callback completes, the block is cancelled at its
    await and exits with status 143; afterwards SIGTERM is back at its default."""
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        uvloop.run(_stopped_while_a_callback_runs())
    assert exited.value.code == 128 + signal.SIGTERM
    assert time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
