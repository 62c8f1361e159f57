"""The composition root of ``boost serve``: settings, pool, provider, workers and the app."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute

from boost_ledger import demo, logs
from boost_ledger.api.app import create_app
from boost_ledger.api.runtime import Runtime
from boost_ledger.database import open_pool
from boost_ledger.settings import Settings

log = structlog.get_logger("boost.server")


def build_app(runtime: Runtime, *, start_workers: bool) -> Starlette:
    """The HTTP app; when ``start_workers``, its lifespan runs the background workers."""
    extra_routes: list[BaseRoute] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        if start_workers:
            tasks = await _start_workers(runtime)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return create_app(runtime, extra_routes=extra_routes, lifespan=lifespan)


async def _start_workers(runtime: Runtime) -> list[asyncio.Task[Any]]:
    return []


async def serve(settings: Settings) -> None:
    logs.configure(settings.log_level)
    async with open_pool(settings) as pool:
        runtime = Runtime(settings=settings, pool=pool)
        if settings.demo_account:
            opened = await demo.open_demo_account_if_empty(pool)
            if opened is not None:
                base_url = f"http://{settings.host}:{settings.port}"
                print(demo.demo_banner(opened[0], opened[1], base_url), file=sys.stderr, flush=True)
        app = build_app(runtime, start_workers=settings.workers_enabled)
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            loop="none",
            http="httptools",
            timeout_keep_alive=5,
            limit_concurrency=1000,
        )
        server = uvicorn.Server(config)
        log.info("serving", host=settings.host, port=settings.port)
        await server.serve()
