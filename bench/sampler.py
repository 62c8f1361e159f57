"""CPU and memory of the processes under test while a load runs: the server's RSS (peak), and
the CPU seconds of the server, of PostgreSQL (postmaster and every backend) and of the machine."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

SAMPLE_INTERVAL_S = 0.25


def _cpu_s(process: psutil.Process) -> float:
    try:
        times = process.cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


def _tree_cpu_s(root: psutil.Process) -> dict[int, float]:
    processes = [root, *root.children(recursive=True)]
    return {process.pid: _cpu_s(process) for process in processes}


class Sampler:
    """Use as ``async with Sampler(server, postmaster) as sampler`` around one load."""

    def __init__(self, server: psutil.Process | None, postmaster: psutil.Process) -> None:
        self.server = server
        self.postmaster = postmaster
        self.rss_peak_bytes = 0
        self.result: dict[str, Any] = {}

    async def __aenter__(self) -> Sampler:
        self._wall = time.perf_counter()
        self._server_cpu = _cpu_s(self.server) if self.server else 0.0
        self._pg_cpu = _tree_cpu_s(self.postmaster)
        self._machine = psutil.cpu_times()
        self._task = asyncio.create_task(self._sample_rss())
        return self

    async def _sample_rss(self) -> None:
        while self.server is not None:
            try:
                rss = self.server.memory_info().rss
            except psutil.Error:
                return
            self.rss_peak_bytes = max(self.rss_peak_bytes, rss)
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        wall_s = time.perf_counter() - self._wall
        pg_after = _tree_cpu_s(self.postmaster)
        pg_s = sum(cpu - self._pg_cpu.get(pid, 0.0) for pid, cpu in pg_after.items())
        machine = psutil.cpu_times()
        busy = (machine.user + machine.system + machine.nice + machine.softirq + machine.irq) - (
            self._machine.user + self._machine.system + self._machine.nice
            + self._machine.softirq + self._machine.irq
        )
        server_s = (_cpu_s(self.server) - self._server_cpu) if self.server else 0.0
        self.result = {
            "wall_s": wall_s,
            "server_cpu_s": server_s,
            "postgres_cpu_s": pg_s,
            "machine_busy_fraction": busy / (wall_s * psutil.cpu_count()),
            "server_rss_peak_mb": self.rss_peak_bytes / 2**20,
        }
