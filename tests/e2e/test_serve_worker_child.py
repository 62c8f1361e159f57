"""``boost serve``: the API in the server process, the workers in one ``boost worker`` child.

The child runs at the lower CPU priority (BOOST_WORKER_NICE) and submits the orders the API
takes; killed, it is started again and the orders placed meanwhile still go out; and it does
not outlive the server, even a server killed with SIGKILL (nothing could stop it then).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

import httpx
import pytest
from support import bearer, free_port, wait_for
from test_serve_flow import BOOST, WAIT_S, _demo_key, _until, serve_env, without_settings
from test_serve_processes import NICE, _children, _niceness

from boost_ledger.postgres import process_alive

SUBMITTED_WITHIN_S = 15.0  # the sweep is 300 s away: the child's own look at the queue sends it
LOWERED = min(19, os.nice(0) + 10)  # a worker's niceness at the default BOOST_WORKER_NICE


class Served:
    """A running ``boost serve``: its process, the demo key it printed, and the worker pids
    a test has seen (killed with it at the end, should the test fail)."""

    def __init__(self, process: asyncio.subprocess.Process, key: str) -> None:
        self.process = process
        self.key = key
        self.workers: list[int] = []

    @property
    def stderr(self) -> asyncio.StreamReader:
        assert self.process.stderr is not None
        return self.process.stderr


@asynccontextmanager
async def served(env: dict[str, str], *, new_session: bool = False) -> AsyncIterator[Served]:
    """``boost serve`` with ``env``, once it has printed its demo key; killed (SIGKILL, with
    the workers seen) when the block ends, whatever happened in it."""
    process = await asyncio.create_subprocess_exec(
        BOOST,
        "serve",
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=new_session,
    )
    server: Served | None = None
    try:
        assert process.stderr is not None
        server = Served(process, await asyncio.wait_for(_demo_key(process.stderr), WAIT_S))
        yield server
    finally:
        for pid in [process.pid, *(server.workers if server else [])]:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        await asyncio.wait_for(process.wait(), WAIT_S)


async def test_the_workers_run_in_a_niced_child_that_is_restarted_and_dies_with_the_server(
    test_server,
):
    port = free_port()
    env = await serve_env(
        test_server, port, BOOST_SUBMIT_SWEEP_INTERVAL_S="300", BOOST_WORKER_NICE=str(NICE)
    )
    async with served(env) as server:
        # Keep the logs from filling the pipe; bounded, since no worker outlives its server.
        drain = asyncio.create_task(server.stderr.read())
        pid, workers = server.process.pid, server.workers
        lowered = min(19, os.nice(0) + NICE)
        workers.append(await _the_worker(pid, lowered))
        assert _niceness(pid) == os.nice(0), "the API process keeps its priority"
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            await _placed_and_submitted(client, server.key, "before")
            os.kill(workers[0], signal.SIGKILL)
            workers.append(await _the_worker(pid, lowered, other_than=workers[0]))
            await _placed_and_submitted(client, server.key, "after")
            exposed = (await client.get("/metrics")).text
            assert "boost_worker_child_running 1.0" in exposed
            assert "boost_worker_child_restarts_total 1.0" in exposed
        server.process.send_signal(signal.SIGKILL)
        stopped = await wait_for(lambda: not process_alive(workers[1]), WAIT_S)
        assert stopped, "the worker outlived serve"
        await asyncio.wait_for(drain, WAIT_S)


async def _the_worker(server_pid: int, niceness: int, other_than: int | None = None) -> int:
    """The server's one child, once it runs at ``niceness`` (it lowers its own priority once it
    has started), and is not ``other_than``."""

    def ready() -> bool:
        children = _children(server_pid)
        return (
            len(children) == 1 and children[0] != other_than and _niceness(children[0]) == niceness
        )

    assert await wait_for(ready, WAIT_S), f"children {_children(server_pid)}"
    return _children(server_pid)[0]


async def _placed_and_submitted(client: httpx.AsyncClient, key: str, label: str) -> None:
    placed = await client.post(
        "/api/v1/boost/orders",
        json={
            "service_id": "1",
            "link": f"https://instagram.com/p/{label}",
            "quantity": 100,
            "idempotency_key": f"worker-child-{label}",
        },
        headers=bearer(key),
    )
    assert placed.status_code == 201, placed.text
    order_id = placed.json()["data"]["order_id"]
    await asyncio.wait_for(
        _until(
            client,
            f"/api/v1/boost/orders/{order_id}",
            key,
            lambda data: data["start_count"] is not None,
        ),
        SUBMITTED_WITHIN_S,
    )


@pytest.mark.parametrize(
    ("signum", "whole_group"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGTERM, False)],
)
async def test_a_stopped_server_stops_its_worker_first_and_never_restarts_it(
    test_server, signum, whole_group
):
    """SIGTERM to the server stops its worker before the server exits. Ctrl-C in a terminal, or
    a service manager stopping the unit, signals every process of the group: the worker child
    must then neither linger nor be mistaken for a crash."""
    env = await serve_env(test_server, free_port())
    async with served(env, new_session=True) as server:
        worker = await _the_worker(server.process.pid, LOWERED)
        server.workers.append(worker)
        (os.killpg if whole_group else os.kill)(server.process.pid, signum)
        logs = await asyncio.wait_for(server.stderr.read(), WAIT_S)
        await asyncio.wait_for(server.process.wait(), WAIT_S)
        assert not process_alive(worker)
        # Stopped by the server, not left to find its parent gone; not taken for a crash.
        assert b"worker.parent_gone" not in logs, logs.decode()[-2000:]
        assert b"worker.exited" not in logs, logs.decode()[-2000:]


async def test_a_killed_worker_does_not_keep_the_embedded_database_running(tmp_path):
    """The embedded PostgreSQL stops when the last process attached to it leaves: a worker
    killed just before the server stops must not count as still attached."""
    env = {**without_settings(), "BOOST_DATA_DIR": str(tmp_path), "BOOST_PORT": str(free_port())}
    postmaster_pid = tmp_path / "pgdata" / "postmaster.pid"
    try:
        async with served(env) as server:
            drain = asyncio.create_task(server.stderr.read())
            worker = await _the_worker(server.process.pid, LOWERED)
            os.kill(worker, signal.SIGKILL)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(server.process.wait(), WAIT_S)
            await asyncio.wait_for(drain, WAIT_S)
            stopped = await wait_for(lambda: not postmaster_pid.exists(), WAIT_S)
            assert stopped, "the embedded PostgreSQL outlived every process attached to it"
    finally:
        if postmaster_pid.exists():  # stop what the failed test left behind
            os.kill(int(postmaster_pid.read_text().split()[0]), signal.SIGINT)
