"""What a new user sees from ``make run``: a real ``boost serve`` with its built-in simulator.

The server prints a demo key; the catalog lists all 13 service types; an order progresses to
completed on its own (submitter, simulator and poller at work); another is canceled at the
provider, shows ``canceling``, then ``canceled`` with ``refunded: true``, and the wallet is back
where it was before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import bearer, free_port

from boost_ledger.ledger.order_types import SERVICE_TYPES

BOOST = str(Path(sys.executable).parent / "boost")
WAIT_S = 60.0
KEY_PATTERN = re.compile(rb"blk_[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
async def served(test_server: Any) -> AsyncIterator[tuple[str, str]]:
    """``boost serve`` on a fresh database; yields (base URL, the demo key it printed)."""
    port = free_port()
    env = await serve_env(test_server, port, BOOST_SIMULATOR_PARTIAL_SHARE="0")
    process = await asyncio.create_subprocess_exec(
        BOOST, "serve", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        key = await asyncio.wait_for(_demo_key(process.stderr, built_in_simulator=True), WAIT_S)
        yield f"http://127.0.0.1:{port}", key
    finally:
        process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(process.wait(), WAIT_S)


async def serve_env(test_server: Any, port: int, **settings: str) -> dict[str, str]:
    """The environment of a ``boost serve`` on a fresh database and ``port``: none of this
    process's settings, a fast poller, and ``settings``."""
    env = without_settings()
    env.update(
        DATABASE_URL=await test_server.fresh_database(), BOOST_PORT=str(port),
        BOOST_POLL_INTERVAL_S="0.3", **settings,
    )
    return env


def without_settings() -> dict[str, str]:
    """This process's environment without any BOOST_ setting or DATABASE_URL."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith("BOOST_") and name != "DATABASE_URL"}


async def _demo_key(stream: asyncio.StreamReader, *, built_in_simulator: bool = False) -> str:
    """The demo key, from the banner that ``boost serve`` prints once it listens (its last
    line is the curl line); the "serving" log line comes before it, and so does the warning
    that a built-in simulator's controls are open to anyone, when one runs."""
    key, serving, warned = None, False, False
    while True:
        line = await stream.readline()
        assert line, "boost serve exited before printing the demo banner"
        found = KEY_PATTERN.search(line)
        key = key or (found.group().decode() if found else None)
        serving = serving or b'"serving"' in line
        warned = warned or (b'"simulator.built_in"' in line and b'"warning"' in line)
        if b"curl" in line:
            assert key is not None and serving, "the banner comes with a key, once serving"
            assert warned or not built_in_simulator, "no warning of the simulator's controls"
            return key


async def _until(client: httpx.AsyncClient, path: str, key: str, done: Any) -> dict[str, Any]:
    """Poll ``path`` until ``done(data)``; the last data seen."""
    async with asyncio.timeout(WAIT_S):
        while True:
            data: dict[str, Any] = (await client.get(path, headers=bearer(key))).json()["data"]
            if done(data):
                return data
            await asyncio.sleep(0.3)


async def _balance(client: httpx.AsyncClient, key: str) -> str:
    response = await client.get("/api/v1/wallet", headers=bearer(key))
    balance: str = response.json()["data"]["balance"]
    return balance


async def test_a_new_user_sees_the_catalog_and_a_funded_wallet(served):
    """The demo key works at once: 12500.00 NGN and a catalog with all 13 service types."""
    base_url, key = served
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        assert await _balance(client, key) == "12500.00"
        services = (await client.get("/api/v1/boost/services", headers=bearer(key))).json()
    assert {service["type"] for service in services["data"]} == set(SERVICE_TYPES)


async def test_an_order_completes_and_a_canceled_one_is_refunded(served):
    """One order is delivered by the provider; one is canceled upstream and refunded whole."""
    base_url, key = served
    order = {"service_id": "1", "link": "https://instagram.com/p/flow", "quantity": 100}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        placed = await client.post(
            "/api/v1/boost/orders", json={**order, "idempotency_key": "flow-1"},
            headers=bearer(key),
        )
        assert placed.status_code == 201, placed.text
        first = placed.json()["data"]["order_id"]
        done = await _until(client, f"/api/v1/boost/orders/{first}", key,
                            lambda data: data["status"] == "completed")
        assert done["remains"] == 0 and done["refunded"] is False

        # With progression paused the provider holds the next order until told to move on.
        control = f"{base_url}/simulator/control"
        await client.post(f"{control}/progression", json={"auto": False})
        before = await _balance(client, key)
        placed = await client.post(
            "/api/v1/boost/orders", json={**order, "idempotency_key": "flow-2"},
            headers=bearer(key),
        )
        second = placed.json()["data"]["order_id"]
        await _until(client, f"/api/v1/boost/orders/{second}", key,
                     lambda data: data["start_count"] is not None or data["status"] != "pending")
        cancel = await client.post(f"/api/v1/boost/orders/{second}/cancel", headers=bearer(key))
        assert cancel.status_code == 200, cancel.text
        assert cancel.json()["message"] == "Cancellation request submitted."
        assert cancel.json()["data"]["status"] == "canceling"
        await client.post(f"{control}/tick")
        settled = await _until(client, f"/api/v1/boost/orders/{second}", key,
                               lambda data: data["status"] == "canceled" and data["refunded"])
        assert settled["cancel"] is False
        assert await _balance(client, key) == before
        await client.post(f"{control}/progression", json={"auto": True})


async def _serve(
    env: dict[str, str], base_url: str, key: str | None
) -> tuple[asyncio.subprocess.Process, str]:
    """``boost serve``, and the key to use: the demo key its banner shows on a new database, or
    ``key`` (a database that has its demo account prints none) once it is ready."""
    process = await asyncio.create_subprocess_exec(
        BOOST, "serve", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL if key else asyncio.subprocess.PIPE,
    )
    try:
        return process, await _ready(process, base_url, key)
    except BaseException:  # never started as it should: it must not outlive the test
        process.kill()
        await process.wait()
        raise


_READERS: set[asyncio.Future[bytes]] = set()


async def _ready(process: asyncio.subprocess.Process, base_url: str, key: str | None) -> str:
    if key is None:
        assert process.stderr is not None
        key = await asyncio.wait_for(_demo_key(process.stderr, built_in_simulator=True), WAIT_S)
        # The rest of its log is read and dropped, so that a full pipe never blocks the server.
        _READERS.add(asyncio.ensure_future(process.stderr.read()))
        return key
    async with httpx.AsyncClient(base_url=base_url, timeout=2) as client, asyncio.timeout(WAIT_S):
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get("/readyz")).status_code == 200:
                    return key
            await asyncio.sleep(0.2)


async def _stop(process: asyncio.subprocess.Process) -> None:
    process.send_signal(signal.SIGTERM)
    await asyncio.wait_for(process.wait(), WAIT_S)


async def test_after_a_restart_the_new_built_in_simulator_takes_orders_again(test_server):
    """Restarted on the same database, ``boost serve`` starts a new built-in simulator, whose
    order ids must not be those the first one handed out (the ledger holds each provider id for
    one order): an order placed after the restart is sent and delivered like the first."""
    port = free_port()
    env = await serve_env(test_server, port, BOOST_SIMULATOR_PARTIAL_SHARE="0")
    base_url = f"http://127.0.0.1:{port}"
    key = None
    for run in range(2):
        process, key = await _serve(env, base_url, key)
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
                placed = await client.post(
                    "/api/v1/boost/orders", headers=bearer(key),
                    json={"service_id": "1", "link": "https://instagram.com/p/restart",
                          "quantity": 100, "idempotency_key": f"restart-{run}"},
                )
                assert placed.status_code == 201, placed.text
                order_id = placed.json()["data"]["order_id"]
                done = await _until(client, f"/api/v1/boost/orders/{order_id}", key,
                                    lambda data: data["status"] == "completed")
                assert done["remains"] == 0
        finally:
            await _stop(process)
