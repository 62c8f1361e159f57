"""``boost serve --processes 2``: two API processes on one port, the workers in their parent
and in one ``boost worker`` child.

Orders placed over many connections are answered by both processes (each takes order ids in
blocks of its own), each order is submitted at once although the submitter's sweep is far off
(the workers' submitters look for new orders every BOOST_SUBMIT_POLL_INTERVAL_S), the
processes that run the workers (the parent and one ``boost worker``) alone run at the lower CPU
priority (BOOST_WORKER_NICE), and SIGTERM to the parent stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
from support import bearer, free_port
from test_serve_flow import WAIT_S, _demo_key, _until, serve_env

BOOST = str(Path(sys.executable).parent / "boost")
CONNECTIONS = 16
NICE = 7
ORDER_ID_BLOCK = 32  # checkout_state.OrderIds takes ids from the sequence in blocks this size


async def test_two_processes_serve_one_port_and_submit_their_orders_at_once(test_server):
    port = free_port()
    env = await serve_env(
        test_server, port, BOOST_SUBMIT_SWEEP_INTERVAL_S="300", BOOST_WORKER_NICE=str(NICE)
    )
    process = await asyncio.create_subprocess_exec(
        BOOST, "serve", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        key = await asyncio.wait_for(_demo_key(process.stderr), WAIT_S)
        base_url = f"http://127.0.0.1:{port}"
        order_ids = await asyncio.gather(
            *(_place_on_a_new_connection(base_url, key, index) for index in range(CONNECTIONS))
        )
        blocks = {(int(order_id) - 1) // ORDER_ID_BLOCK for order_id in order_ids}
        assert len(blocks) >= 2, f"one process answered every connection: {order_ids}"
        assert _niceness(process.pid) == os.nice(0) + NICE
        # Two API processes at this test's priority, one ``boost worker`` lowered as the parent.
        expected = sorted([os.nice(0)] * 2 + [os.nice(0) + NICE])
        await _until_true(lambda: sorted(map(_niceness, _children(process.pid))) == expected)
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            for order_id in order_ids:
                await _until(client, f"/api/v1/boost/orders/{order_id}", key,
                             lambda data: data["start_count"] is not None)
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
    await asyncio.sleep(0.2)
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")
        raise AssertionError("an API process still listens after its parent stopped")
    except httpx.ConnectError:
        pass


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _children(pid: int) -> list[int]:
    """The parent's child processes: its API and worker processes alone, since the test's
    PostgreSQL is given by DATABASE_URL (no embedded one is started)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


async def _until_true(check: Callable[[], bool]) -> None:
    """Until ``check()`` holds (a worker lowers its priority once it has started), or fail."""
    for _ in range(int(WAIT_S / 0.1)):
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("the processes' priorities never became the expected ones")


async def _place_on_a_new_connection(base_url: str, key: str, index: int) -> str:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        placed = await client.post(
            "/api/v1/boost/orders",
            json={"service_id": "1", "link": "https://instagram.com/p/many", "quantity": 100,
                  "idempotency_key": f"processes-{index}"},
            headers=bearer(key),
        )
    assert placed.status_code == 201, placed.text
    order_id: str = placed.json()["data"]["order_id"]
    return order_id
