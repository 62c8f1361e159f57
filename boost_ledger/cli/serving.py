"""``boost serve``, ``boost migrate``, ``boost worker`` and ``boost simulator``.

The server (Starlette, uvicorn, httpx, the workers) is imported by the commands that run it, so
that every other ``boost`` command starts without loading it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import msgspec

from boost_ledger import migrations, postgres, server_group
from boost_ledger.cli.common import CommandError, port_argument, settings_from_env
from boost_ledger.settings import SIMULATOR_KEY, Settings


def register(commands: Any) -> None:
    parser = commands.add_parser("serve", help="serve the API (and run the workers)")
    parser.add_argument("--host", help="address to bind (BOOST_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--port", type=port_argument, help="port to bind (BOOST_PORT, default 8000)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="serve the API from N processes on the port, and run the workers in N other"
        " processes at a lower CPU priority",
    )
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--announce-ready", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--stop-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_serve)

    parser = commands.add_parser("migrate", help="apply pending database migrations")
    parser.set_defaults(handler=_migrate)

    parser = commands.add_parser("worker", help="run the submitter, poller and catalog sync only")
    parser.add_argument("--stop-with-parent", type=int, metavar="PID", help=argparse.SUPPRESS)
    parser.set_defaults(handler=_worker)

    parser = commands.add_parser("simulator", help="serve the SMM v2 provider simulator alone")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=port_argument, default=8100)
    parser.set_defaults(handler=_simulator)


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


async def _serve(arguments: argparse.Namespace) -> int:
    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal to the handler that
    # was installed before it. Left at the default, that kills the process before the exit hooks
    # run, so the embedded PostgreSQL this process started would never be stopped. Turning the
    # signal into SystemExit (also during start-up) unwinds the pool and runs those hooks.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    settings = settings_from_env()
    overrides: dict[str, Any] = {}
    if arguments.host:
        overrides["host"] = arguments.host
    if arguments.port is not None:
        overrides["port"] = arguments.port
    settings = msgspec.structs.replace(settings, **overrides)
    if settings.provider_url is None:
        _check_simulator_options()  # refused here, before anything starts
    limit = server_group.MAX_PROCESSES
    if arguments.processes is not None and not 1 <= arguments.processes <= limit:
        raise CommandError(f"--processes must be between 1 and {limit}", 2)
    try:
        await _serve_with(settings, arguments)
    except server_group.StartFailed as error:
        raise CommandError(str(error), 1) from None
    return 0


async def _serve_with(settings: Settings, arguments: argparse.Namespace) -> None:
    if arguments.processes is not None:
        await server_group.serve_processes(settings, arguments.processes)
        return
    from boost_ledger.server import serve

    await serve(
        settings,
        reuse_port=arguments.reuse_port,
        announce_ready=arguments.announce_ready,
        parent_pid=arguments.stop_with_parent,
    )


async def _migrate(arguments: argparse.Namespace) -> int:
    settings = settings_from_env()
    dsn = await postgres.prepare_dsn(settings.database_url, settings.data_dir)
    applied = await migrations.migrate(dsn)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0


async def _worker(arguments: argparse.Namespace) -> int:
    settings = settings_from_env()
    if settings.provider_url is None:
        # The built-in simulator lives in the process that starts it: a worker of its own would
        # claim paid orders from the shared queue and send them to a provider no other process
        # sees (and whose ids the API's poller cannot look up), so the orders would seem sent.
        raise CommandError(
            "boost worker needs BOOST_PROVIDER_URL: the provider's endpoint, or that of a "
            "`boost simulator`; without it the orders it claims would reach no real provider"
        )
    if arguments.stop_with_parent is not None:
        # Ctrl-C in a terminal signals the whole process group: the parent stops its children
        # itself (SIGTERM), so that the worker does not exit first and look like a crash.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    from boost_ledger.server import work

    with _cancelled_by_sigterm():
        await work(settings, parent_pid=arguments.stop_with_parent)
    return 0


@contextlib.contextmanager
def _cancelled_by_sigterm() -> Iterator[None]:
    """SIGTERM cancels the running task at its next await (the workers stop, the pool closes)
    and the block then exits with status 143, as from SystemExit. A plain signal handler that
    raised SystemExit would raise it in whatever Python code ran at that moment: inside a
    transport's callback (a provider connection's end of stream, say), uvloop takes it for that
    protocol's error and logs it, and the signal is lost. A second SIGTERM is ignored while
    the first one's stop runs."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    received: list[bool] = []

    def terminate() -> None:
        if not received:
            received.append(True)
            task.cancel()

    loop.add_signal_handler(signal.SIGTERM, terminate)
    try:
        yield
    except asyncio.CancelledError:
        if received:
            raise SystemExit(128 + signal.SIGTERM) from None
        raise
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


async def _simulator(arguments: argparse.Namespace) -> int:
    import uvicorn

    from boost_ledger.upstream.sim_state import clock_first_order_id
    from boost_ledger.upstream.simulator import create_simulator_app

    settings = settings_from_env()
    _check_simulator_options()
    app = create_simulator_app(
        api_key=settings.provider_key, first_order_id=clock_first_order_id
    )
    config = uvicorn.Config(
        app,
        host=arguments.host,
        port=arguments.port,
        log_config=None,
        access_log=False,
        loop="none",
        lifespan="on",
    )
    # The default key is printed; another one may be a real provider's, so it is only named.
    shown = SIMULATOR_KEY if settings.provider_key == SIMULATOR_KEY else "BOOST_PROVIDER_KEY's"
    print(
        f"simulator: http://{arguments.host}:{arguments.port}/api/v2"
        f" (key {shown}; control API under /control/)",
        flush=True,
    )
    await uvicorn.Server(config).serve()
    return 0


def _check_simulator_options() -> None:
    """A one-line refusal naming a bad BOOST_SIMULATOR_* variable (the simulator, created
    later, would raise it as a stack trace, after PostgreSQL had started)."""
    from boost_ledger.upstream.simulator import SimulatorOptions

    try:
        SimulatorOptions.from_env()
    except ValueError as error:
        raise CommandError(str(error)) from None
