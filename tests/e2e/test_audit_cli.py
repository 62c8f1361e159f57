"""The auditor's and operator's commands, run as real processes: ``boost audit replay``,
``export``, ``seal`` and ``boost projections status``.

One account with a hand-made history (service "1" at the test catalog's terms, 0.90 USD x 1500
x 1.20 = 1620 NGN per 1000, so 100 units cost 162.00 NGN):

1. credit 1000.00 (reference "first")      balance 1000.00
2. order A, 100 units: debit 162.00        balance  838.00
3. order B, 200 units: debit 324.00        balance  514.00
4. B canceled before submission: refund    balance  838.00
5. credit 50.00 (reference "second")       balance  888.00
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from support import open_funded_account, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.ledger import checkout, fulfilment, wallet
from boost_ledger.ledger.connection import Lent
from boost_ledger.projections import jobs, rebuild

BOOST = str(Path(sys.executable).parent / "boost")
CLI_TIMEOUT_S = 60


@dataclass(frozen=True)
class History:
    account_id: int
    order_a: int
    order_b: int
    positions: list[int]  # of the five wallet events, in order
    recorded_at: list[Any]


async def _run(dsn: str, *arguments: str) -> tuple[int, str, str]:
    """``boost <arguments>`` against ``dsn``: its exit status, stdout and stderr."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BOOST_") and name != "DATABASE_URL"}
    process = await asyncio.create_subprocess_exec(
        BOOST, *arguments, env={**env, "DATABASE_URL": dsn},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _boost(dsn: str, *arguments: str) -> str:
    code, out, err = await _run(dsn, *arguments)
    assert code == 0, f"boost {' '.join(arguments)}: {err}"
    return out


async def _order(
    connection: asyncpg.Connection[Any], account_id: int, key: str, quantity: int
) -> int:
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": quantity,
            "idempotency_key": key}
    answer = await checkout.checkout(
        Lent(connection), account_id=account_id, idempotency_key=key, service_id="1", body=body,
        subscription_default_posts=10, metadata={"actor": "test"},
    )
    return answer.order_id


@pytest.fixture(scope="module")
async def history(pool: asyncpg.Pool[Any]) -> History:
    await seed_catalog(pool)
    account_id, _ = await open_funded_account(pool)
    async with pool.acquire() as connection:
        await wallet.credit(connection, account_id, 1000_00, "first")
        order_a = await _order(connection, account_id, "a", 100)
        order_b = await _order(connection, account_id, "b", 200)
        async with connection.transaction():
            locked = await fulfilment.lock_order(connection, order_b)
            await fulfilment.cancel_locally(connection, locked, "test")
        await wallet.credit(connection, account_id, 50_00, "second")
        rows = await connection.fetch(
            "select global_position, recorded_at, type from events where stream_id = $1"
            " order by version",
            f"wallet-{account_id}",
        )
    assert [row["type"] for row in rows] == [
        "WalletCredited", "FundsDebited", "FundsDebited", "Refunded", "WalletCredited"
    ]
    return History(
        account_id, order_a, order_b, [row["global_position"] for row in rows],
        [row["recorded_at"] for row in rows],
    )


async def _replay(dsn: str, history: History, *bound: str) -> dict[str, Any]:
    out = await _boost(dsn, "audit", "replay", "--account", str(history.account_id), *bound,
                       "--json")
    statement: dict[str, Any] = json.loads(out)
    return statement


def _lines(statement: dict[str, Any]) -> list[tuple[str, str, str, str | None]]:
    return [(line["kind"], line["amount"], line["balance_after"], line["order_id"])
            for line in statement["lines"]]


async def test_replay_as_of_a_position(dsn, history):
    """``--position N`` gives the balance and statement after exactly the events up to N."""
    statement = await _replay(dsn, history, "--position", str(history.positions[2]))
    assert statement["balance"] == "514.00"
    assert (statement["credits"], statement["debits"], statement["refunds"]) == (
        "1000.00", "486.00", "0.00"
    )
    assert _lines(statement) == [
        ("credit", "1000.00", "1000.00", None),
        ("debit", "162.00", "838.00", str(history.order_a)),
        ("debit", "324.00", "514.00", str(history.order_b)),
    ]
    assert [line["global_position"] for line in statement["lines"]] == history.positions[:3]
    assert statement["lines"][0]["reference"] == "first"

    everything = await _replay(dsn, history)
    assert everything["balance"] == "888.00"
    assert _lines(everything)[3:] == [
        ("refund", "324.00", "838.00", str(history.order_b)),
        ("credit", "50.00", "888.00", None),
    ]
    text = await _boost(dsn, "audit", "replay", "--account", str(history.account_id),
                        "--position", str(history.positions[0]))
    assert "balance 1000.00 NGN" in text and "reference first" in text, text


async def test_replay_until_a_moment(dsn, history):
    """``--until ISO`` gives the statement as of that moment: the refund is in at its own
    instant, the last credit not yet; before the first event there is nothing."""
    refund_at = history.recorded_at[3]
    statement = await _replay(dsn, history, "--until", refund_at.isoformat())
    assert statement["balance"] == "838.00"
    assert statement["refunds"] == "324.00"
    assert [line["kind"] for line in statement["lines"]] == ["credit", "debit", "debit", "refund"]

    before = (history.recorded_at[0] - timedelta(seconds=1)).isoformat()
    empty = await _replay(dsn, history, "--until", before)
    assert (empty["balance"], empty["lines"]) == ("0.00", [])


async def test_export_after_a_position_is_json_lines_in_order(dsn, history, pool):
    """``export --after N`` prints one JSON object per event after N, in position order, with
    the event's data and hash as the log holds them."""
    after = history.positions[1]
    out = await _boost(dsn, "audit", "export", "--after", str(after))
    exported = [json.loads(line) for line in out.splitlines()]
    rows = await pool.fetch(
        "select global_position, event_id::text as event_id, stream_id, version, type, hash"
        " from events where global_position > $1 order by global_position",
        after,
    )
    assert [event["global_position"] for event in exported] == [
        row["global_position"] for row in rows
    ]
    for event, row in zip(exported, rows, strict=True):
        assert (event["event_id"], event["stream_id"], event["version"], event["type"]) == (
            row["event_id"], row["stream_id"], row["version"], row["type"]
        )
        assert event["hash"] == row["hash"].hex()
        assert isinstance(event["data"], dict) and isinstance(event["metadata"], dict)
    refund = next(event for event in exported if event["type"] == "Refunded")
    assert refund["data"]["amount_kobo"] == 324_00
    assert refund["data"]["order_id"] == history.order_b


async def test_projections_status_lists_each_projection(dsn, history, pool):
    """``projections status`` names every projection with its position and lag."""
    head = await pool.fetchval("select max(global_position) from events")
    out = await _boost(dsn, "projections", "status")
    assert f"log head: position {head}" in out, out
    for module in projections.PROJECTIONS:
        line = next(line for line in out.splitlines() if line.startswith(module.NAME))
        assert f"position {head} lag 0" in line, out
        for table in module.TABLES:
            assert f"{table}=" in line, line


async def test_seal_json_prints_a_digest_that_verify_then_checks(dsn, history, pool):
    """``seal --json`` records and prints the digest of every event hash up to the head (the
    same sha256 an auditor computes by hand); ``seal --position N`` seals a prefix; verify
    counts both seals and passes."""
    sealed = json.loads(await _boost(dsn, "audit", "seal", "--json"))
    hashes = await pool.fetch(
        "select hash from events where global_position <= $1 order by global_position",
        sealed["position"],
    )
    assert sealed["events"] == len(hashes)
    assert sealed["digest"] == hashlib.sha256(b"".join(row["hash"] for row in hashes)).hexdigest()
    recorded = await pool.fetchval(
        "select data->>'digest' from events where stream_id = 'audit-seals' order by version"
        " desc limit 1"
    )
    assert recorded == sealed["digest"]

    prefix = json.loads(await _boost(
        dsn, "audit", "seal", "--position", str(history.positions[1]), "--json"
    ))
    assert prefix["position"] == history.positions[1]
    report = json.loads(await _boost(dsn, "audit", "verify", "--json"))
    assert report["ok"] is True and report["seals"] == 2, report


async def test_rebuild_all_shares_the_projections_between_processes(dsn, history, pool):
    """``projections rebuild --all --jobs 2`` rebuilds every projection (some in a child
    process), each from the events it folds; the rebuilt tables hold what they held before and
    verify still passes."""
    before = {table: await pool.fetch(f'select * from "{table}" order by 1, 2')
              for module in projections.PROJECTIONS for table in module.TABLES}
    await pool.execute("analyze events")  # shares of the log by type: a projection may be split
    out = await _boost(dsn, "projections", "rebuild", "--all", "--jobs", "2")
    lines = out.splitlines()
    for module in projections.PROJECTIONS:
        assert any(line.startswith(f"{module.NAME}: rebuilt from ") for line in lines), out
    for table, rows in before.items():
        assert await pool.fetch(f'select * from "{table}" order by 1, 2') == rows, table
    assert "OK: every check holds" in await _boost(dsn, "audit", "verify")


async def test_a_rebuild_while_another_runs_is_refused_and_changes_nothing(dsn, history, pool):
    """While a rebuild of wallets holds the projection's lock (as a running one does),
    ``projections rebuild wallets`` exits 1 saying so, and the table is as it was."""
    before = await pool.fetch("select * from wallets order by 1")
    holder = await postgres.owner_connection(dsn)
    try:
        assert await holder.fetchval(
            "select pg_try_advisory_lock(hashtext($1), hashtext('wallets'))", rebuild.LOCK_CLASS
        )
        code, _, err = await _run(dsn, "projections", "rebuild", "wallets")
    finally:
        await holder.close()

    assert code == 1
    assert "a rebuild of wallets is already running; wallets left as they were" in err
    assert await pool.fetch("select * from wallets order by 1") == before


async def test_a_refused_part_of_a_rebuild_in_two_processes_says_what_the_other_did(
    dsn, history, pool
):
    """With --jobs 2, the projections of this process refused (another rebuild holds one of
    their locks) leave those as they were, and the other process's rebuilds still report:
    exit 1, naming what was left, after the other's lines."""
    async with pool.acquire() as connection:
        groups = jobs.share_out(
            rebuild.chosen_modules([], True), await jobs.type_shares(connection), 2
        )
    assert len(groups) == 2
    holder = await postgres.owner_connection(dsn)
    try:
        for module in groups[0]:
            assert await holder.fetchval(
                "select pg_try_advisory_lock(hashtext($1), hashtext($2))",
                rebuild.LOCK_CLASS, module.NAME,
            )
        code, out, err = await _run(dsn, "projections", "rebuild", "--all", "--jobs", "2")
    finally:
        await holder.close()
    assert code == 1
    left = ", ".join(module.NAME for module in groups[0])
    assert "left as they were" in err and left in err, err
    for module in groups[1]:
        assert f"{module.NAME}: rebuilt from " in out, out


async def test_replay_of_an_account_never_opened_is_refused_not_shown_empty(dsn, history, pool):
    """A mistyped account id exits 1 naming it (README: exit 1 is no such account), instead
    of a statement of 0.00 NGN; an account opened but never credited does show 0.00."""
    code, out, err = await _run(dsn, "audit", "replay", "--account", "99999999")
    assert code == 1, (out, err)
    assert "no account 99999999" in err and "Traceback" not in err and out == ""

    opened, _ = await open_funded_account(pool)
    empty = json.loads(await _boost(dsn, "audit", "replay", "--account", str(opened), "--json"))
    assert (empty["balance"], empty["lines"]) == ("0.00", [])


async def test_replay_as_of_position_zero_says_position_zero_not_now(dsn, history):
    """``--position 0`` is the statement before any event, and says so: it is not "now"."""
    statement = await _replay(dsn, history, "--position", "0")
    assert (statement["as_of"], statement["balance"], statement["lines"]) == (
        "position 0", "0.00", []
    )


@pytest.mark.parametrize(
    "arguments",
    [
        ("seal", "--position", "-5"),
        ("seal", "--position", "0"),
        ("seal", "--position", "99999999999999999999"),
        ("export", "--after", "-1"),
        ("export", "--after", "99999999999999999999"),
        ("replay", "--account", "1", "--position", "99999999999999999999"),
    ],
)
async def test_a_position_the_log_cannot_hold_is_refused_as_input(dsn, history, pool, arguments):
    """A position is a bigint from 0 (a seal's from 1): a negative one would record a seal over
    'positions 1..-5', one past a bigint would reach the database as a stack trace. Refused
    before anything is read or recorded (exit 2, argparse's message)."""
    count_seals = "select count(*) from events where stream_id = 'audit-seals'"
    seals_before = await pool.fetchval(count_seals)
    code, out, err = await _run(dsn, "audit", *arguments)
    assert code == 2 and out == "", (code, out, err)
    assert "log position" in err and "Traceback" not in err, err
    assert await pool.fetchval(count_seals) == seals_before


async def test_export_into_a_closed_pipe_stops_quietly(dsn, history):
    """``boost audit export | head`` whose reader has gone: exit 141 (a shell's SIGPIPE
    status), no traceback on stderr. The pipe's read end is closed before the command starts,
    so its first write fails, whatever the size of the log."""
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BOOST_") and name != "DATABASE_URL"}
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        process = await asyncio.create_subprocess_exec(
            BOOST, "audit", "export", env={**env, "DATABASE_URL": dsn},
            stdout=write_end, stderr=asyncio.subprocess.PIPE,
        )
    finally:
        os.close(write_end)
    _, err = await asyncio.wait_for(process.communicate(), timeout=CLI_TIMEOUT_S)
    assert process.returncode == 141, err.decode()
    assert err.decode() == ""


@pytest.mark.parametrize("jobs", ["1", "2"])
async def test_a_projection_named_twice_is_rebuilt_once(dsn, history, pool, jobs):
    """``projections rebuild wallets wallets`` (a projection named twice) rebuilds it once:
    exit 0, its table as it was, verify still passing."""
    before = await pool.fetch("select * from wallets order by 1")
    code, out, err = await _run(dsn, "projections", "rebuild", "wallets", "wallets",
                                "--jobs", jobs)
    assert (code, err.count("Traceback")) == (0, 0), err
    assert out.count("wallets: rebuilt from ") == 1, out
    assert await pool.fetch("select * from wallets order by 1") == before
    assert "OK: every check holds" in await _boost(dsn, "audit", "verify")


async def _terminate_when_waiting(watcher: asyncpg.Connection[Any], holder_pid: int) -> int:
    """End the first backend found waiting for a lock the holder has (bounded): the command's."""
    for _ in range(CLI_TIMEOUT_S * 20):
        ended = await watcher.fetchval(
            "select count(pg_terminate_backend(pid)) from pg_stat_activity"
            " where wait_event_type = 'Lock' and $1 = any(pg_blocking_pids(pid))",
            holder_pid,
        )
        if ended:
            return int(ended)
        await asyncio.sleep(0.05)
    return 0


@pytest.mark.parametrize("command", [("projections", "status"), ("audit", "verify")])
async def test_a_connection_lost_midway_is_one_line_not_a_stack_trace(dsn, history, command):
    """The audit and projections commands run on a connection of their own (the schema's
    owner's), not the other commands' pool: PostgreSQL ending it midway (a restart, an
    operator's ``pg_terminate_backend``) is exit 1 and one line saying the connection was lost,
    as for every other command, not the driver's stack trace. (The command is held up by a
    lock on the orders table, which both read and the migrations run at their start do not.)"""
    holder = await postgres.owner_connection(dsn)
    watcher = await postgres.owner_connection(dsn)
    try:
        async with holder.transaction():
            await holder.execute("lock table orders in access exclusive mode")
            running = asyncio.ensure_future(_run(dsn, *command))
            # Not from the holder: its transaction would see pg_stat_activity as it first read it.
            ended = await _terminate_when_waiting(watcher, holder.get_server_pid())
    finally:
        await holder.close()
        await watcher.close()
    code, out, err = await running

    assert ended == 1, (code, out, err)
    assert code == 1, (out, err)
    assert err.startswith("boost: the connection to the database was lost ("), err
    assert "Traceback" not in err and err.count("\n") == 1, err
