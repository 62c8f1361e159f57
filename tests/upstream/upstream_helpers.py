"""Helpers shared by the upstream tests: serving an app over real HTTP, driving the control API."""

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette

from boost_ledger.upstream import ProviderClient

API_KEY = "sim-key"
_STARTUP_LIMIT_S = 5.0


@contextlib.asynccontextmanager
async def running_server(
    app: Starlette, *, graceful_shutdown_s: int | None = 2
) -> AsyncIterator[str]:
    """Serve ``app`` on a free port of 127.0.0.1 for the block; yields its base URL."""
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="on",
        log_level="critical",
        access_log=False,
        ws="none",
        timeout_graceful_shutdown=graceful_shutdown_s,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(_STARTUP_LIMIT_S):
            # uvicorn offers a flag, not an event, for "listening"; poll it briefly.
            while not server.started:
                if task.done():
                    raise RuntimeError("the server stopped while starting")
                await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def set_fault(control: httpx.AsyncClient, action: str, mode: str, **extra: Any) -> None:
    response = await control.post("/faults", json={"action": action, "mode": mode, **extra})
    response.raise_for_status()


async def request_count(control: httpx.AsyncClient, action: str) -> int:
    counts: dict[str, int] = (await control.get("/stats")).json()["requests"]
    return counts.get(action, 0)


async def control_orders(control: httpx.AsyncClient) -> list[dict[str, Any]]:
    orders: list[dict[str, Any]] = (await control.get("/orders")).json()
    return orders


TERMINAL_STATUSES = frozenset({"Completed", "Partial", "Canceled"})


async def wait_until_terminal(
    client: ProviderClient, order_ids: list[str], *, limit_s: float = 3.0, poll_s: float = 0.05
) -> dict[str, str]:
    """Poll until every order is terminal; returns their statuses, or fails after ``limit_s``."""
    statuses: dict[str, str] = {}
    for _ in range(int(limit_s / poll_s)):
        replies = await client.multi_status(order_ids)
        statuses = {key: getattr(reply, "status", "") for key, reply in replies.items()}
        if all(status in TERMINAL_STATUSES for status in statuses.values()):
            return statuses
        await asyncio.sleep(poll_s)
    raise AssertionError(f"orders not finished after {limit_s} s: {statuses}")
