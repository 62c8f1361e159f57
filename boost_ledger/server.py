"""The composition root of ``boost serve`` and ``boost worker``: settings, pool, provider,
workers and the app, wired in one place."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, TextIO

import structlog
import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount

from boost_ledger import demo, logs, server_group
from boost_ledger.api import metrics
from boost_ledger.api.app import create_app
from boost_ledger.api.middleware import MAX_IN_FLIGHT
from boost_ledger.api.runtime import Runtime
from boost_ledger.database import open_pool
from boost_ledger.http_protocol import CoalescingHttpToolsProtocol
from boost_ledger.settings import Settings
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError
from boost_ledger.upstream.sim_state import clock_first_order_id
from boost_ledger.upstream.simulator import create_simulator_app
from boost_ledger.workers import catalog_sync, poller, submitter
from boost_ledger.workers.backoff import Backoff

log = structlog.get_logger("boost.server")

INITIAL_SYNC_TIMEOUT_S = 30.0
WORKER_RESTART_S = 1.0
WORKER_RESTART_CAP_S = 30.0
PARENT_CHECK_S = 0.5


def build_app(
    runtime: Runtime, *, start_workers: bool, simulator: Starlette | None = None
) -> Starlette:
    """The HTTP app; when ``start_workers``, its lifespan runs the background workers."""
    extra_routes: list[BaseRoute] = []
    if simulator is not None:
        extra_routes.append(Mount("/simulator", app=simulator))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = start_worker_tasks(runtime, beside_api=True) if start_workers else []
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return create_app(runtime, extra_routes=extra_routes, lifespan=lifespan)


def start_worker_tasks(runtime: Runtime, *, beside_api: bool) -> list[asyncio.Task[Any]]:
    """Submitter, poller and catalog sync as tasks of the running loop. ``beside_api``: this
    process serves the API too, and its checkouts wake the submitter; otherwise the submitter
    looks for new orders every BOOST_SUBMIT_POLL_INTERVAL_S."""
    provider = runtime.provider
    if provider is None:
        return []
    settings = runtime.settings
    return [
        asyncio.create_task(
            submitter.run(
                runtime.pool,
                provider,
                runtime.submit_wakeup,
                settings.submit_sweep_interval_s,
                settings.submit_abandoned_after_s,
                poll_interval_s=None if beside_api else settings.submit_poll_interval_s,
            ),
            name="submitter",
        ),
        asyncio.create_task(
            poller.run(runtime.pool, provider, settings.poll_interval_s), name="poller"
        ),
        asyncio.create_task(
            catalog_sync.run(
                runtime.pool,
                provider,
                settings.fx_rate,
                settings.markup_percent,
                settings.catalog_sync_interval_s,
            ),
            name="catalog-sync",
        ),
    ]


def lower_priority(settings: Settings) -> None:
    """Make this process, which runs the workers apart from the API, yield the CPU to API
    requests (and to PostgreSQL) when the cores are busy; on idle cores it runs as fast.
    Called once the database is open: an embedded PostgreSQL this process starts keeps the
    normal priority."""
    if settings.worker_nice:
        os.nice(settings.worker_nice)


def _bound_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # "::" as uvicorn reads it
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:  # several processes listen on the port; the kernel shares connections out
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # Inherited by accepted connections. asyncio's own loop does not set it on connections of a
    # socket handed to it, and a reply written in two parts then waits out the client's delayed
    # ACK: 40 ms per provider call.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def _listening_socket(host: str, port: int, *, reuse_port: bool) -> socket.socket:
    """The API's port (shared with the other API processes of ``--processes`` when
    ``reuse_port``), bound before anything starts; one that cannot be had (another program
    listens on it) is a one-line refusal (uvicorn, binding it itself, printed its error once the
    database was open and the demo key shown, and exited 3)."""
    try:
        return _bound_socket(host, port, reuse_port=reuse_port)
    except OSError as error:
        reason = error.strerror or str(error)
        raise server_group.StartFailed(f"cannot listen on {host}:{port}: {reason}") from None


def _uvicorn_config(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Config:
    options: dict[str, Any] = {
        "log_config": None,
        "access_log": False,
        "loop": "none",
        "http": CoalescingHttpToolsProtocol,
        "timeout_keep_alive": 5,
        # Connections and tasks; the API's own bound on requests in flight (api/middleware.py),
        # below it, answers in the envelope.
        "limit_concurrency": 4 * MAX_IN_FLIGHT,
        "timeout_graceful_shutdown": 10,
        "host": settings.host,
        "port": settings.port,
    }
    options.update(overrides)
    return uvicorn.Config(app, **options)


def _uvicorn(app: Any, settings: Settings, **overrides: Any) -> uvicorn.Server:
    return uvicorn.Server(_uvicorn_config(app, settings, **overrides))


@asynccontextmanager
async def built_in_simulator(settings: Settings) -> AsyncIterator[tuple[Starlette, str]]:
    """The simulator, served on a private loopback port (and mounted at /simulator too)."""
    app = create_simulator_app(
        api_key=settings.provider_key, first_order_id=clock_first_order_id
    )
    sock = _bound_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = _uvicorn(app, settings, host="127.0.0.1", port=port, lifespan="on")
    task = asyncio.create_task(server.serve(sockets=[sock]), name="simulator")
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn offers no event
        await asyncio.sleep(0.01)
    try:
        yield app, f"http://127.0.0.1:{port}/api/v2"
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        sock.close()


async def initial_catalog_sync(runtime: Runtime) -> None:
    """Sync before serving so that the first request sees a catalog (a failure only logs)."""
    assert runtime.provider is not None
    settings = runtime.settings
    try:
        async with asyncio.timeout(INITIAL_SYNC_TIMEOUT_S):
            await catalog_sync.sync_once(
                runtime.pool, runtime.provider, settings.fx_rate, settings.markup_percent
            )
    except (ProviderError, TimeoutError) as error:
        log.warning("catalog.initial_sync_failed", error=str(error))
    except Exception:  # the worker's sync retries it; the API serves the catalog it has
        log.exception("catalog.initial_sync_unexpected_error")


@asynccontextmanager
async def running_runtime(settings: Settings) -> AsyncIterator[tuple[Runtime, Starlette | None]]:
    """Pool, provider (the built-in simulator unless BOOST_PROVIDER_URL is set), first sync."""
    async with AsyncExitStack() as stack:
        pool = await stack.enter_async_context(open_pool(settings))
        simulator_app: Starlette | None = None
        if settings.provider_url is None:
            simulator_app, provider_url = await stack.enter_async_context(
                built_in_simulator(settings)
            )
            # Its controls set any order's status (and so pay refunds) and list every order.
            log.warning(
                "simulator.built_in",
                note="a demo provider: /simulator/control needs no key; set BOOST_PROVIDER_URL"
                " for real orders",
            )
        else:
            provider_url = settings.provider_url
        provider = ProviderClient(
            provider_url,
            settings.provider_key,
            timeout_s=settings.provider_timeout_s,
            transport=metrics.instrumented_provider_transport(),
        )
        stack.push_async_callback(provider.aclose)
        runtime = Runtime(settings=settings, pool=pool, provider=provider)
        await initial_catalog_sync(runtime)
        yield runtime, simulator_app


class _AnnouncingServer(uvicorn.Server):
    """A uvicorn server that prints its announcements once it listens, so that whatever they
    tell a reader to try (the demo's curl line) works the moment they appear."""

    def __init__(self, config: uvicorn.Config, announcements: list[tuple[str, TextIO]]) -> None:
        super().__init__(config)
        self.announcements = announcements

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            for text, stream in self.announcements:
                print(text, file=stream, flush=True)


GC_YOUNG_THRESHOLD = 10_000
"""Tracked objects allocated, net of those freed, before the cyclic collector's youngest pass
(Python's default is 700). A request frees nearly everything it makes by reference counting,
but dozens of requests in flight hold theirs at once: at the default, that pushed a young pass
every couple of dozen checkouts, each walking every in-flight request's objects (4-6% of the
API's CPU at 32-64 clients, measured with ``gc.callbacks``). At this threshold a load of 5 s
ran one pass or none. Garbage in cycles still counts towards it, so it stays bounded."""


def settle_heap() -> None:
    """Once a process has loaded what it keeps until exit: move it out of the cyclic
    collector's sight (its full passes would otherwise walk it and stall requests), and let the
    young generation grow to ``GC_YOUNG_THRESHOLD``."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, oldest)


async def serve(
    settings: Settings,
    *,
    reuse_port: bool = False,
    announce_ready: bool = False,
    parent_pid: int | None = None,
) -> None:
    """The API in this process and (unless BOOST_WORKERS=0) the workers in a ``boost worker``
    child at a lower CPU priority. ``reuse_port``, ``announce_ready`` and ``parent_pid`` (stop
    gracefully once that process is no longer this one's parent, even killed) serve
    ``boost serve --processes`` (server_group.py)."""
    logs.configure(settings.log_level)
    sock = _listening_socket(settings.host, settings.port, reuse_port=reuse_port)
    async with running_runtime(settings) as (runtime, simulator_app):
        banner = await demo_banner_if_new(runtime, settings) if settings.demo_account else None
        app = build_app(runtime, start_workers=False, simulator=simulator_app)
        settle_heap()
        log.info(
            "serving",
            host=settings.host,
            port=settings.port,
            provider="simulator" if simulator_app is not None else "external",
        )
        announcements = [] if banner is None else [(banner, sys.stderr)]
        if announce_ready:
            announcements.append((server_group.READY_LINE.decode(), sys.stdout))
        server = _AnnouncingServer(_uvicorn_config(app, settings), announcements)
        async with (
            worker_child(runtime, stopping=lambda: server.should_exit),
            _stopped_with_parent(server, parent_pid),
        ):
            await server.serve(sockets=[sock])


@asynccontextmanager
async def _stopped_with_parent(
    server: uvicorn.Server, parent_pid: int | None
) -> AsyncIterator[None]:
    """While the block runs, ask ``server`` to shut down (gracefully) once ``parent_pid`` is
    gone: an API process of ``--processes`` must not go on taking orders with no parent."""
    if parent_pid is None:
        yield
        return

    async def watch() -> None:
        await _parent_gone(parent_pid)
        server.should_exit = True

    watcher = asyncio.create_task(watch(), name="parent-watch")
    try:
        yield
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


@asynccontextmanager
async def worker_child(runtime: Runtime, stopping: Callable[[], bool]) -> AsyncIterator[None]:
    """The workers in a ``boost worker`` child for as long as the block runs (none with
    BOOST_WORKERS=0), restarted after a pause should it exit, unless ``stopping()`` (a signal
    sent to the whole process group, as by a service manager, reached it too). Off the API's
    event loop, a submitter's batch never holds a request up (the built-in simulator, when it is
    the provider, still answers its calls from this process), and at BOOST_WORKER_NICE the
    kernel gives the API's requests the cores first, the workers catching up when the load
    eases."""
    provider = runtime.provider
    if not runtime.settings.workers_enabled or provider is None:
        yield
        return
    supervisor = asyncio.create_task(
        _supervise_worker(provider.url, stopping), name="worker-supervisor"
    )
    try:
        yield
    finally:
        supervisor.cancel()
        await asyncio.gather(supervisor, return_exceptions=True)


async def _supervise_worker(provider_url: str, stopping: Callable[[], bool]) -> None:
    """Run the worker child, and run it again after a pause whenever it exits or cannot even
    be started (no file descriptor or memory left, the interpreter moved): a supervisor that
    stopped on such an error would leave paid orders unsent, silently."""
    loop = asyncio.get_running_loop()
    backoff = Backoff(base_s=WORKER_RESTART_S, cap_s=WORKER_RESTART_CAP_S)
    while True:
        started = loop.time()
        code: int | None = None
        try:
            code = await _run_worker(provider_url)
        except Exception:
            log.exception("worker.start_failed")
        if stopping():
            return
        if code is not None:
            log.error("worker.exited", exit_status=code)
        metrics.WORKER_RESTARTS.inc()
        if loop.time() - started > WORKER_RESTART_CAP_S:
            backoff.succeeded()  # it ran a while: a new failure, not the same one again
        delay_s = backoff.failed()
        log.info("worker.restarting", delay_s=round(delay_s, 2))
        await asyncio.sleep(delay_s)


async def _run_worker(provider_url: str) -> int:
    """Start the worker child and wait until it exits; its exit status."""
    process = await server_group.spawn_worker(provider_url)
    metrics.WORKER_RUNNING.set(1)
    try:
        return await process.wait()
    finally:
        metrics.WORKER_RUNNING.set(0)
        await server_group.stop([process])


async def demo_banner_if_new(runtime: Runtime, settings: Settings) -> str | None:
    """Open the demo account on an empty database; the banner that shows its key, if opened."""
    opened = await demo.open_demo_account_if_empty(runtime.pool)
    if opened is None:
        return None
    base_url = f"http://{settings.host}:{settings.port}"
    return demo.demo_banner(opened[0], opened[1], base_url)


async def work(settings: Settings, parent_pid: int | None = None) -> None:
    """``boost worker``: the workers alone, without the HTTP API; with ``parent_pid``, only as
    long as that process is this one's parent."""
    assert settings.provider_url is not None, "boost worker refuses to start without it"
    logs.configure(settings.log_level)
    async with running_runtime(settings) as (runtime, _):
        lower_priority(settings)
        settle_heap()
        tasks = start_worker_tasks(runtime, beside_api=False)
        if parent_pid is not None:
            tasks.append(asyncio.create_task(_parent_gone(parent_pid), name="parent-watch"))
        log.info("working", workers=[task.get_name() for task in tasks])
        try:
            ended, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for task in ended:
            task.result()  # the workers run until cancelled: one that ended raises here


async def _parent_gone(parent_pid: int) -> None:
    """Return once ``parent_pid`` is no longer this process's parent (it exited, or was killed
    and this process was handed to another)."""
    while os.getppid() == parent_pid:  # noqa: ASYNC110 - the kernel offers no event
        await asyncio.sleep(PARENT_CHECK_S)
    log.warning("worker.parent_gone", parent_pid=parent_pid)
