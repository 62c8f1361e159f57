"""CPU and memory of the processes under test while a load runs: the server's RSS (peak, summed
over its processes), and the CPU seconds of the server, of PostgreSQL (postmaster and every
backend), of the provider (when it runs apart) and of the whole machine, and the share of the
machine's CPU time the hypervisor gave to other guests (steal)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

SAMPLE_INTERVAL_S = 0.25


def cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _tree_cpu_s(root: psutil.Process) -> dict[int, float]:
    processes = [root, *root.children(recursive=True)]
    return {process.pid: cpu_s(process) for process in processes}


class Sampler:
    """Use as ``async with Sampler(server, postmaster) as sampler`` around one load."""

    def __init__(
        self,
        server: psutil.Process | list[psutil.Process] | None,
        postmaster: psutil.Process,
        provider: psutil.Process | None = None,
    ) -> None:
        self.server = server
        self.postmaster = postmaster
        self.provider = provider
        self.rss_peak_bytes = 0
        self.result: dict[str, Any] = {}

    async def __aenter__(self) -> Sampler:
        self._wall = time.perf_counter()
        self._server_cpu = self._server_tree_cpu_s()
        self._pg_cpu = _tree_cpu_s(self.postmaster)
        self._provider_cpu = cpu_s(self.provider) if self.provider else 0.0
        self._pg_last = dict(self._pg_cpu)
        self._machine = psutil.cpu_times()
        self._task = asyncio.create_task(self._sample())
        return self

    async def _sample(self) -> None:
        # Backends that come and go during the load (pgbench's) are seen by the periodic samples.
        while True:
            self._pg_last.update(_tree_cpu_s(self.postmaster))
            self.rss_peak_bytes = max(self.rss_peak_bytes, self._server_tree_rss())
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    def _server_tree(self) -> list[psutil.Process]:
        if self.server is None:
            return []
        servers = self.server if isinstance(self.server, list) else [self.server]
        tree = []
        for server in servers:
            try:
                tree += [server, *server.children(recursive=True)]
            except psutil.Error:
                continue
        return tree

    def _server_tree_cpu_s(self) -> float:
        return sum(cpu_s(process) for process in self._server_tree())

    def _server_tree_rss(self) -> int:
        total = 0
        for process in self._server_tree():
            try:
                total += process.memory_info().rss
            except psutil.Error:
                continue
        return total

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        wall_s = time.perf_counter() - self._wall
        self._pg_last.update(_tree_cpu_s(self.postmaster))
        pg_s = sum(cpu - self._pg_cpu.get(pid, 0.0) for pid, cpu in self._pg_last.items())
        machine = psutil.cpu_times()
        busy = (machine.user + machine.system + machine.nice + machine.softirq + machine.irq) - (
            self._machine.user
            + self._machine.system
            + self._machine.nice
            + self._machine.softirq
            + self._machine.irq
        )
        server_s = self._server_tree_cpu_s() - self._server_cpu
        # On a virtual machine the hypervisor may run other guests on our cores: time they took
        # ("steal") is neither busy nor idle here, and a level run while it is high is slower.
        stolen_s = getattr(machine, "steal", 0.0) - getattr(self._machine, "steal", 0.0)
        self.result = {
            "wall_s": wall_s,
            "server_cpu_s": server_s,
            "postgres_cpu_s": pg_s,
            "provider_cpu_s": cpu_s(self.provider) - self._provider_cpu if self.provider else 0.0,
            "machine_busy_fraction": busy / (wall_s * psutil.cpu_count()),
            "machine_steal_fraction": stolen_s / (wall_s * psutil.cpu_count()),
            "server_rss_peak_mb": self.rss_peak_bytes / 2**20,
        }
