"""``boost serve --processes N``: the API served by N processes on one port.

One Python process serves a checkout on one core. With N processes, each API process binds the
port with ``SO_REUSEPORT`` (the kernel shares connections out between them) and serves requests
only. The workers run in N ``boost worker`` children (their submitters look for new orders
every BOOST_SUBMIT_POLL_INTERVAL_S), so that sending grows with N (claims skip the orders another
holds), each at a lower CPU priority (BOOST_WORKER_NICE): submission is the costliest work an
order brings (a provider call and two transactions), and on busy cores it now waits for the
API's requests instead of making them wait, catching up when the load eases. The parent opens
the database (and the embedded PostgreSQL), supervises the children and, unless
BOOST_PROVIDER_URL names a provider, serves the built-in simulator, all at its own priority.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import structlog

from boost_ledger import logs
from boost_ledger.settings import Settings

log = structlog.get_logger("boost.server")

MAX_PROCESSES = 32
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
READY_LINE = b"boost-api-process-ready"
"""What an API process prints on stdout once it listens (``--announce-ready``)."""


class StartFailed(Exception):
    """A process of the group could not start serving (its port taken, say): one line for the
    operator, not a stack trace."""


async def _spawn(
    provider_url: str, *arguments: str, stdout: int | None = None, **settings: str
) -> asyncio.subprocess.Process:
    """``boost <arguments>`` as a child that uses ``provider_url``, opens no demo account, and
    has ``settings`` on top of this process's environment."""
    environment = {
        **os.environ,
        "BOOST_DEMO": "0",
        "BOOST_PROVIDER_URL": provider_url,
        **settings,
    }
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "boost_ledger.cli.main", *arguments, env=environment, stdout=stdout
    )


async def _spawn_api(settings: Settings, provider_url: str) -> asyncio.subprocess.Process:
    return await _spawn(
        provider_url,
        "serve",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
        "--reuse-port",
        "--announce-ready",
        "--stop-with-parent",
        str(os.getpid()),
        stdout=asyncio.subprocess.PIPE,
        BOOST_WORKERS="0",
    )


async def _ready(process: asyncio.subprocess.Process) -> asyncio.Task[None]:
    """Once ``process`` listens: a task that passes on the rest of what it prints."""
    assert process.stdout is not None
    stdout = process.stdout
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            while line := await stdout.readline():
                if line.strip() == READY_LINE:
                    return asyncio.create_task(_pass_on(stdout))
                sys.stdout.buffer.write(line)
    except TimeoutError:
        raise StartFailed(
            f"API process {process.pid} did not listen within {READY_TIMEOUT_S:g} s"
        ) from None
    raise StartFailed(f"API process {process.pid} exited before it listened (its reason above)")


async def _pass_on(stream: asyncio.StreamReader) -> None:
    while chunk := await stream.read(65536):
        sys.stdout.buffer.write(chunk)
        sys.stdout.flush()


async def spawn_worker(provider_url: str) -> asyncio.subprocess.Process:
    """``boost worker`` as a child that stops once this process is gone (even killed)."""
    return await _spawn(provider_url, "worker", "--stop-with-parent", str(os.getpid()))


async def stop(processes: list[asyncio.subprocess.Process]) -> None:
    """SIGTERM to each that still runs, then wait for them all; those still running
    ``STOP_TIMEOUT_S`` after the signal are killed. One deadline for all: waited for in turn,
    each stuck child would add its own timeout (64 of them with ``--processes 32``)."""
    for process in processes:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
    waits = [asyncio.ensure_future(process.wait()) for process in processes]
    if not waits:
        return
    try:
        _, running = await asyncio.wait(waits, timeout=STOP_TIMEOUT_S)
        for process, wait in zip(processes, waits, strict=True):
            if wait in running:
                process.kill()
        await asyncio.gather(*waits)
    finally:  # cancelled itself: no wait is left pending
        for wait in waits:
            wait.cancel()


async def serve_processes(settings: Settings, count: int) -> None:
    """The parent of ``count`` API processes and ``count`` worker processes (none with
    BOOST_WORKERS=0), until a signal or until one of them exits."""
    from boost_ledger.server import demo_banner_if_new, running_runtime

    assert 1 <= count <= MAX_PROCESSES, f"between 1 and {MAX_PROCESSES} API processes"
    logs.configure(settings.log_level)
    async with running_runtime(settings) as (runtime, _):
        assert runtime.provider is not None
        banner = await demo_banner_if_new(runtime, settings) if settings.demo_account else None
        processes: list[asyncio.subprocess.Process] = []
        try:
            for _ in range(count):
                processes.append(await _spawn_api(settings, runtime.provider.url))
            relays = await asyncio.gather(*(_ready(process) for process in processes))
            if settings.workers_enabled:
                for _ in range(count):  # each lowers its own priority once it runs
                    processes.append(await spawn_worker(runtime.provider.url))
            log.info("serving", host=settings.host, port=settings.port, processes=count)
            if banner is not None:
                print(banner, file=sys.stderr, flush=True)
            asked = await _until_stopped(processes, relays)
        finally:
            await stop(processes)
    if not asked:
        raise SystemExit(1)  # a process or worker ended on its own: logged above


async def _until_stopped(
    processes: list[asyncio.subprocess.Process], relays: list[asyncio.Task[None]]
) -> bool:
    """Until SIGTERM or SIGINT (True), or until a child process or the relay of its output ends
    (False, logged with the children that have exited)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    waits = [asyncio.ensure_future(process.wait()) for process in processes]
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([stopped, *waits, *relays], return_when=asyncio.FIRST_COMPLETED)
        if not stop.is_set():
            exited = {p.pid: p.returncode for p in processes if p.returncode is not None}
            log.error("serve.process_exited", exited=exited, hint="stopping the other processes")
        return stop.is_set()
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)
        for task in [stopped, *waits, *relays]:
            task.cancel()
        await asyncio.gather(stopped, *waits, *relays, return_exceptions=True)
