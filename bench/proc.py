"""Running a bench module as its own process: a JSON spec on stdin, a JSON result on stdout."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import msgspec

REPO = Path(__file__).resolve().parent.parent


async def run_json_module(module: str, spec: msgspec.Struct) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(msgspec.json.encode(spec))
    if process.returncode != 0 or not out:
        raise RuntimeError(f"{module} failed ({process.returncode}): {err.decode()[-1500:]}")
    result: dict[str, Any] = msgspec.json.decode(out)
    return result
