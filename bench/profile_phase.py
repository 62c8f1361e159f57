"""Part 5: where a checkout's time goes. py-spy samples the server (native frames too) under
checkout load; the samples are grouped by layer, by activity and by function (see
``profile_stacks``) and turned into CPU ms per request."""

from __future__ import annotations

import asyncio
import gzip
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from bench.cluster import Cluster
from bench.config import BenchConfig
from bench.http_phase import run_load
from bench.loadgen import Spec
from bench.profile_stacks import summarize
from bench.server import Server

SAMPLE_RATE_HZ = 100
PY_SPY = str(Path(sys.executable).with_name("py-spy"))
HAVE_PY_SPY = os.path.exists(PY_SPY)


async def profile(
    config: BenchConfig, cluster: Cluster, server: Server, keys: list[str], stacks_path: Path
) -> dict[str, Any]:
    """Sample the server for ``profile_s`` s of checkout; keep the stacks at ``stacks_path``."""
    if not HAVE_PY_SPY:
        return {"skipped": "py-spy is not installed (pip install -e '.[bench]')"}
    raw_path = cluster.root / "profile.txt"
    spec = Spec(
        host="127.0.0.1",
        port=server.port,
        mode="checkout",
        concurrency=config.profile_concurrency,
        warmup_s=config.warmup_s,
        duration_s=config.profile_s + 1,
        keys=keys,
        quantity=config.quantity,
    )
    load = asyncio.create_task(run_load(spec, [server], cluster))
    await asyncio.sleep(config.warmup_s + 0.5)
    spy = await asyncio.create_subprocess_exec(
        PY_SPY,
        "record",
        "--native",
        "--subprocesses",  # the worker child too
        "-r",
        str(SAMPLE_RATE_HZ),
        "-d",
        str(round(config.profile_s)),
        "-f",
        "raw",
        "-o",
        str(raw_path),
        "-p",
        str(server.process.pid),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, spy_errors = await spy.communicate()
    loaded = await load
    if spy.returncode != 0 or not raw_path.exists():
        return {"skipped": f"py-spy failed: {spy_errors.decode()[-400:]}", "load": loaded}
    summary = summarize(raw_path.read_text(), loaded["server_cpu_ms_per_request"])
    summary["load"] = {k: loaded[k] for k in ("concurrency", "per_s", "p50_ms", "p99_ms")}
    summary["server_cpu_ms_per_request"] = loaded["server_cpu_ms_per_request"]
    summary["postgres_cpu_ms_per_request"] = loaded["postgres_cpu_ms_per_request"]
    summary["machine_busy_fraction"] = loaded["machine_busy_fraction"]
    with raw_path.open("rb") as raw, gzip.open(stacks_path, "wb") as packed:
        shutil.copyfileobj(raw, packed)
    summary["stacks_file"] = stacks_path.name
    return summary
