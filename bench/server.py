"""``boost serve`` as a subprocess of the run, its provider, and the accounts its load pays from.

The server runs as in production: submission and polling on, info logs (to a file), and the
provider a service of its own: ``boost simulator`` in a separate process (on the same cores), so
that the provider's work, memory and garbage collections are not counted as the server's.
Accounts are opened and funded through the operator CLI, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Self

import psutil

from bench.cluster import Cluster

BOOST = str(Path(sys.executable).with_name("boost"))
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0
CLI_PARALLEL = 4
CREDIT_NGN = "1000000.00"
# The one departure from a production configuration: the per-key rate limit is off, because
# the load sends far more than a reseller's share per key on purpose (and a 429 costs the
# database nothing, so it would inflate the figures). Everything else is left at its default.
SERVER_ENV = {"BOOST_RATE_LIMIT_PER_S": "0"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Process:
    """A ``boost`` command on a free loopback port, logging to the run's directory."""

    def __init__(self, cluster: Cluster, name: str, command: list[str], env: dict[str, str]):
        self.port = free_port()
        self.log_path = cluster.root / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [BOOST, *command, "--port", str(self.port)],
            env={**cluster.env(), **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=cluster.root,
        )
        self.psutil = psutil.Process(self.process.pid)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"boost exited: {self.log_path.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    if sock.recv(12).startswith(b"HTTP/1.1"):
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.log_path.stem} did not answer in time")

    def __enter__(self) -> Self:
        """Started and answering; stopped again on the way out, even when it never answered."""
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class Provider(_Process):
    """``boost simulator``: the provider every server of the run calls, in a process of its own."""

    def __init__(self, cluster: Cluster) -> None:
        # A server phase now places a few hundred thousand orders; at about 600 bytes an order
        # this bound is some 600 MB, where the default (100,000) would refuse the later loads'.
        env = {"BOOST_SIMULATOR_MAX_ORDERS": "1000000"}
        super().__init__(cluster, "provider", ["simulator", "--host", "127.0.0.1"], env)
        self.url = f"http://127.0.0.1:{self.port}/api/v2"


class Server(_Process):
    """One ``boost serve`` process calling ``provider`` (the built-in simulator without one)."""

    def __init__(
        self,
        cluster: Cluster,
        name: str = "server",
        *,
        provider: Provider | None = None,
        env: dict[str, str] | None = None,
        arguments: tuple[str, ...] = (),
    ) -> None:
        environment = {"BOOST_HOST": "127.0.0.1", **SERVER_ENV, **(env or {})}
        if provider is not None:
            environment["BOOST_PROVIDER_URL"] = provider.url
        super().__init__(cluster, name, ["serve", *arguments], environment)
        self.provider = provider

    def demo_key(self) -> str | None:
        found = re.search(r"blk_[A-Za-z0-9_\-]+", self.log_path.read_text(errors="replace"))
        return found.group(0) if found else None


async def _cli(cluster: Cluster, *arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        BOOST,
        *arguments,
        env=cluster.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"boost {' '.join(arguments)} failed: {err.decode()[-500:]}")
    return out.decode()


async def open_funded_account(cluster: Cluster, name: str) -> tuple[int, str]:
    """``boost accounts create`` then ``boost wallet credit``: (account id, API key)."""
    created = json.loads(await _cli(cluster, "accounts", "create", "--name", name, "--json"))
    account_id = int(created["account_id"])
    await _cli(
        cluster, "wallet", "credit", str(account_id), CREDIT_NGN, "--reference", f"{name}-funds"
    )
    return account_id, str(created["api_key"])


async def open_accounts(cluster: Cluster, count: int, prefix: str) -> list[tuple[int, str]]:
    limit = asyncio.Semaphore(CLI_PARALLEL)

    async def one(index: int) -> tuple[int, str]:
        async with limit:
            return await open_funded_account(cluster, f"{prefix}-{index}")

    return list(await asyncio.gather(*(one(index) for index in range(count))))


def serve_supports(option: str) -> bool:
    """Whether this checkout's ``boost serve`` has ``option`` (e.g. ``--workers``)."""
    shown = subprocess.run([BOOST, "serve", "--help"], capture_output=True, text=True, check=False)
    return option in shown.stdout
