"""A ``boost serve`` stopped while it starts its embedded PostgreSQL for the first time.

SIGTERM to the server alone (``kill``, ``docker stop``) while ``initdb`` makes the cluster
must not leave a half-made data directory that no later start can use, and one while
``pg_ctl`` starts the server must not leave that server running with nobody attached to it:
the stop waits until the embedded server is started and registered, and then happens.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from support import free_port, wait_for
from test_serve_flow import BOOST, WAIT_S, without_settings


def _running_child(pid: int, program: str) -> bool:
    """Whether a child of ``pid`` runs ``program`` (the wheel runs initdb and pg_ctl so)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except FileNotFoundError:
        return False
    for child in children:
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")[0]
        except FileNotFoundError:
            continue
        if command.endswith(program.encode()):
            return True
    return False


def _postmaster_running(data_dir: Path) -> int | None:
    """The pid of a PostgreSQL still running on ``data_dir``'s cluster, if any."""
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().split()[0])
    except (FileNotFoundError, IndexError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


@pytest.mark.parametrize("program", ["initdb", "pg_ctl"])
async def test_a_sigterm_during_the_first_embedded_start_leaves_a_usable_stopped_cluster(
    tmp_path, program
):
    env = {**without_settings(), "BOOST_DATA_DIR": str(tmp_path), "BOOST_PORT": str(free_port())}
    process = await asyncio.create_subprocess_exec(
        BOOST, "serve", env=env, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        caught = await wait_for(lambda: _running_child(process.pid, program), WAIT_S)
        assert caught, f"boost serve never ran {program}"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), WAIT_S) == 128 + signal.SIGTERM
        stopped = await wait_for(lambda: _postmaster_running(tmp_path) is None, 10)
        assert stopped, "the embedded PostgreSQL outlived the server that started it"

        again = await asyncio.create_subprocess_exec(
            BOOST, "migrate", env=env, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(again.communicate(), WAIT_S)
        assert again.returncode == 0, err.decode()[-2000:]
        assert out.startswith(b"applied")
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        left = _postmaster_running(tmp_path)
        if left is not None:  # what a failed test (or boost migrate, on SIGKILL) left behind
            os.kill(left, signal.SIGINT)
            await wait_for(lambda: _postmaster_running(tmp_path) is None, 10)


def _broken_cluster(data_dir: Path) -> None:
    """What an initdb killed part way leaves: PG_VERSION, and nothing a server can start on."""
    (data_dir / "pgdata").mkdir()
    (data_dir / "pgdata" / "PG_VERSION").write_text("18\n")


def _a_file(data_dir: Path) -> None:
    (data_dir / "pgdata").write_text("not a directory")


@pytest.mark.parametrize("spoil", [_broken_cluster, _a_file])
async def test_an_embedded_server_that_cannot_start_is_one_line_not_a_trace(tmp_path, spoil):
    """A data directory the embedded PostgreSQL cannot start on is a database that cannot be
    used: exit 1 with one line saying where, not the wheel's stack trace."""
    spoil(tmp_path)
    env = {**without_settings(), "BOOST_DATA_DIR": str(tmp_path)}
    ran = await asyncio.create_subprocess_exec(
        BOOST, "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(ran.communicate(), WAIT_S)
    text = err.decode()
    assert ran.returncode == 1, text[-3000:]
    assert "Traceback" not in text and out == b"", text[-3000:]
    last = text.splitlines()[-1]
    assert last.startswith("boost: cannot start the embedded PostgreSQL"), text[-3000:]
    assert str(tmp_path) in last, last
