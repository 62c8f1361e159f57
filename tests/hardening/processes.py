"""A real ``boost serve`` process for tests: its own interpreter, pool and stderr log."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import httpx
from support import free_port

BOOST = Path(sys.executable).parent / "boost"
START_TIMEOUT_S = 60.0


class ServeProcess:
    """``boost serve`` on a free port against ``dsn``, workers off, provider ``provider_url``."""

    def __init__(
        self, dsn: str, provider_url: str, log_path: Path, env: dict[str, str] | None = None
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "BOOST_PROVIDER_URL": provider_url,
            "BOOST_WORKERS": "0",
            "BOOST_DEMO": "0",
            "BOOST_LOG_LEVEL": "info",
            "BOOST_POOL_MIN": "1",
            "BOOST_POOL_MAX": "4",
            **(env or {}),
        }
        self._process: subprocess.Popen[bytes] | None = None

    async def __aenter__(self) -> ServeProcess:
        self._process = await asyncio.to_thread(self._start)
        deadline = time.monotonic() + START_TIMEOUT_S
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self._process.poll() is not None:
                    raise RuntimeError(f"boost serve exited: {self.log_path.read_text()[-3000:]}")
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise TimeoutError(f"boost serve did not start: {self.log_path.read_text()[-3000:]}")

    def _start(self) -> subprocess.Popen[bytes]:
        with self.log_path.open("wb") as log:
            return subprocess.Popen(
                [str(BOOST), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=self._env, stdout=log, stderr=subprocess.STDOUT,
            )

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        assert self._process is not None
        self._process.terminate()
        try:
            await asyncio.to_thread(self._process.wait, 15)
        except subprocess.TimeoutExpired:
            self._process.kill()
            await asyncio.to_thread(self._process.wait, 5)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")
