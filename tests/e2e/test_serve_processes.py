"""``boost serve --processes 2``: two API processes on one port, the workers in two
``boost worker`` children.

Orders placed over many connections are answered by both API processes (each takes order ids
in blocks of its own); the worker processes alone run at the lower CPU priority
(BOOST_WORKER_NICE); orders placed once they run are submitted although the submitter's sweep
is far off (nothing wakes them: they look for new orders every BOOST_SUBMIT_POLL_INTERVAL_S);
and SIGTERM to the parent stops them all.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import httpx
from support import bearer, free_port, wait_for
from test_serve_flow import WAIT_S, _demo_key, _until, serve_env

BOOST = str(Path(sys.executable).parent / "boost")
CONNECTIONS = 16
NICE = 7
SUBMITTED_WITHIN_S = 15.0  # the sweep is 300 s away; a poll every 0.05 s is well within
ORDER_ID_BLOCK = 32  # checkout_state.OrderIds takes ids from the sequence in blocks this size


async def test_two_api_processes_share_the_port_and_niced_workers_submit_their_orders(test_server):
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
        # The API processes and the parent at this test's priority, the two workers lowered.
        ours, lowered = os.nice(0), min(19, os.nice(0) + NICE)
        expected = sorted([ours] * 2 + [lowered] * 2)
        # A worker lowers its priority once it has started.
        settled = await wait_for(
            lambda: sorted(map(_niceness, _children(process.pid))) == expected, WAIT_S
        )
        assert settled, f"priorities {[_niceness(c) for c in _children(process.pid)]}"
        assert _niceness(process.pid) == ours
        await asyncio.sleep(1.0)  # the workers' first look at the queue, at their start, is over
        base_url = f"http://127.0.0.1:{port}"
        order_ids = await asyncio.gather(
            *(_place_on_a_new_connection(base_url, key, index) for index in range(CONNECTIONS))
        )
        blocks = {(int(order_id) - 1) // ORDER_ID_BLOCK for order_id in order_ids}
        assert len(blocks) >= 2, f"one process answered every connection: {order_ids}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            for order_id in order_ids:
                await asyncio.wait_for(
                    _until(client, f"/api/v1/boost/orders/{order_id}", key,
                           lambda data: data["start_count"] is not None),
                    SUBMITTED_WITHIN_S,
                )
    finally:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
    await asyncio.sleep(0.2)
    await _assert_nothing_listens(port, "an API process still listens after its parent stopped")


async def _assert_nothing_listens(port: int, message: str) -> None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            await client.get(f"http://127.0.0.1:{port}/healthz")
    except httpx.ConnectError:
        return
    raise AssertionError(message)


def _niceness(pid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, pid)


def _children(pid: int) -> list[int]:
    """The parent's child processes: its API and worker processes alone, since the test's
    PostgreSQL is given by DATABASE_URL (no embedded one is started)."""
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


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


async def test_a_killed_parent_leaves_no_api_process_taking_orders(test_server):
    """SIGKILL to the parent of ``--processes 2`` (nothing of it runs to stop its children):
    the API processes notice they have no parent and shut down, as the workers do, instead of
    taking paid orders that nobody would send."""
    port = free_port()
    env = await serve_env(test_server, port)
    process = await asyncio.create_subprocess_exec(
        BOOST, "serve", "--processes", "2", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    await asyncio.wait_for(_demo_key(process.stderr), WAIT_S)
    children = _children(process.pid)
    assert len(children) == 4, children  # two API processes, two workers

    process.kill()

    try:
        # Not process.wait(): it also waits for the stderr pipe, which a survivor would hold.
        gone = await wait_for(lambda: not any(_alive(child) for child in children), WAIT_S)
        assert gone, [child for child in children if _alive(child)]
        await _assert_nothing_listens(port, "an API process listens after its parent was killed")
    finally:
        for child in children:  # none should be left; should one be, it is not left running
            if _alive(child):
                os.kill(child, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), WAIT_S)


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, which init reaps, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


async def _serve_on_a_taken_port(test_server, *arguments: str) -> tuple[int | None, str, int]:
    """``boost serve`` with ``arguments`` on a port another program listens on (without
    SO_REUSEPORT): its exit status, its stderr, and the port."""
    port = free_port()
    env = await serve_env(test_server, port)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        process = await asyncio.create_subprocess_exec(
            BOOST, "serve", *arguments, env=env, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(process.communicate(), WAIT_S)
    return process.returncode, err.decode(), port


async def test_a_port_taken_by_another_program_is_one_line_of_each_process_not_a_trace(
    test_server,
):
    """``--processes 2`` on a taken port: the API processes cannot bind it. Each that got as far
    as the bind says so in one line (the parent stops the other once the first has failed,
    which may be before its own try), the parent that they did not start, and the command
    exits 1 with no process left behind; nothing else but log lines is printed."""
    code, text, port = await _serve_on_a_taken_port(test_server, "--processes", "2")
    assert code == 1, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    assert text.count(f"boost: cannot listen on 127.0.0.1:{port}") in (1, 2), text[-3000:]
    assert "boost: API process" in text, text[-3000:]
    others = [line for line in text.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith("boost: ") for line in others), text[-3000:]


async def test_a_port_taken_by_another_program_stops_one_process_before_it_starts(test_server):
    """``boost serve`` alone on a taken port: one line and exit 1 before the database is used
    or a demo key shown (uvicorn bound the port itself, after both, printed its own line,
    without ``boost:``, and exited 3, an exit status the command does not document)."""
    code, text, port = await _serve_on_a_taken_port(test_server)
    assert code == 1, text[-3000:]
    assert text.strip().splitlines() == [
        f"boost: cannot listen on 127.0.0.1:{port}: Address already in use"
    ], text[-3000:]
