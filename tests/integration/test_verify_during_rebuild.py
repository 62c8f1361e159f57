"""``audit verify`` and a rebuild at the same time: the rebuild's swap waits for the
verification, which never compares its replay with a table swapped in after its snapshot."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from boost_ledger.audit import verify

BOOST = str(Path(sys.executable).parent / "boost")


async def test_a_rebuild_during_a_verify_swaps_after_it(ledger, owner, monkeypatch):
    """The verification's snapshot is taken, then a rebuild of accounts runs to its swap
    meanwhile: the swap waits for the verification (no finding on a valid log, where a table
    swapped in after the snapshot would look empty to it), then goes through."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BOOST_") and name != "DATABASE_URL"}
    real_pass = verify._pass
    rebuilding: list[Any] = []

    async def rebuild_meanwhile(connection: Any, *arguments: Any) -> list[str]:
        await connection.fetchval("select count(*) from events")  # the snapshot is taken
        process = await asyncio.create_subprocess_exec(
            BOOST, "projections", "rebuild", "accounts", env={**env, "DATABASE_URL": ledger.dsn},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        rebuilding.append(process)
        with pytest.raises(TimeoutError):  # its swap waits for this verification
            await asyncio.wait_for(asyncio.shield(process.wait()), 4.0)
        return await real_pass(connection, *arguments)

    monkeypatch.setattr(verify, "_pass", rebuild_meanwhile)
    report = await verify.verify(owner)
    assert report.findings == [], report.findings
    [process] = rebuilding
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert b"accounts: rebuilt from" in out
