"""Tampering with the log is caught: ``boost audit verify`` fails and names what was changed.

Each test gets a ledger of its own with real activity (credits, checkouts, submissions, statuses,
a partial refund and a local cancellation), then tampers with it as a superuser would, the
append-only trigger switched off: change an amount, delete an event, swap two events, or rewrite
the tail of a stream with freshly computed hashes (which only a seal can catch).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from pathlib import Path

from tampering import append_forged, forge_data, named, position_of, rechain, triggers_off

from boost_ledger.audit import seals, verify

BOOST = str(Path(sys.executable).parent / "boost")
CLI_TIMEOUT_S = 60


async def _boost(dsn: str, *arguments: str) -> tuple[int, str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BOOST_") and name != "DATABASE_URL"}
    process = await asyncio.create_subprocess_exec(
        BOOST, *arguments, env={**env, "DATABASE_URL": dsn},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=CLI_TIMEOUT_S)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_a_healthy_ledger_verifies_through_the_cli(ledger):
    """On an untouched ledger with activity, ``boost audit verify`` exits 0, and its --json
    output parses and says so."""
    code, out, err = await _boost(ledger.dsn, "audit", "verify")
    assert code == 0, out + err
    assert out.rstrip().endswith("OK: every check holds"), out
    code, out, err = await _boost(ledger.dsn, "audit", "verify", "--json")
    assert code == 0, out + err
    report = json.loads(out)
    assert report["ok"] is True and report["findings"] == []
    assert report["events"] > 30 and report["streams"] >= 10
    assert "projections equal a replay" in report["checks"]


async def test_changing_an_amount_is_named_by_check_and_position(ledger, owner):
    """A debit's amount changed in place breaks its stream's hash chain exactly there; verify
    (library and CLI) fails and names the check and the event's global position first."""
    target = await owner.fetchrow(
        "select global_position, stream_id from events where type = 'FundsDebited'"
        " and stream_id = $1 order by version limit 1",
        f"wallet-{ledger.spender}",
    )
    async with triggers_off(owner):
        await owner.execute(
            "update events set data = jsonb_set(data, '{amount_kobo}',"
            " to_jsonb((data->>'amount_kobo')::bigint - 100)) where global_position = $1",
            target["global_position"],
        )
    report = await verify.verify(owner)
    assert not report.ok
    first = report.findings[0]
    assert (first.check, first.global_position, first.stream_id) == (
        "hash-chain", target["global_position"], target["stream_id"]
    ), report.findings
    # The money no longer adds up either: the next balance_after is off, and so is the debit.
    assert {"hash-chain", "balance", "debit-matches-order"} <= {f.check for f in report.findings}

    code, out, _ = await _boost(ledger.dsn, "audit", "verify", "--skip-projections")
    assert code == 1
    assert (f"FAIL hash-chain at position {target['global_position']} ({target['stream_id']})"
            in out), out


async def test_deleting_an_event_names_the_stream_and_the_missing_version(ledger, owner):
    """An event deleted from the middle of a stream leaves a gap: verify names the stream and
    the missing version, and the chain breaks at the event after it."""
    stream = f"order-{ledger.submitted_order}"
    versions = await owner.fetch(
        "select version, global_position, type from events where stream_id = $1 order by version",
        stream,
    )
    assert [row["type"] for row in versions] == [
        "OrderPlaced", "SubmissionAttempted", "OrderSubmitted", "StatusObserved"
    ]
    async with triggers_off(owner):
        await owner.execute(
            "delete from events where stream_id = $1 and version = 2", stream
        )
    report = await verify.verify(owner)
    assert not report.ok
    gaps = [f for f in report.findings if f.check == "stream-versions"]
    assert len(gaps) == 1, report.findings
    assert gaps[0].stream_id == stream
    assert "expected version 2, found 3" in gaps[0].detail
    assert gaps[0].global_position == versions[2]["global_position"]
    assert named(report, "hash-chain", versions[2]["global_position"])


async def test_swapping_two_events_names_both(ledger, owner):
    """Two events of a stream swapped (their versions exchanged) each fail their hash, and
    verify names both positions."""
    stream = f"order-{ledger.submitted_order}"
    second, third = await owner.fetch(
        "select global_position from events where stream_id = $1 and version in (2, 3)"
        " order by version",
        stream,
    )
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set version = 1000000 where stream_id = $1 and version = 2", stream
        )
        await owner.execute(
            "update events set version = 2 where stream_id = $1 and version = 3", stream
        )
        await owner.execute(
            "update events set version = 3 where stream_id = $1 and version = 1000000", stream
        )
    report = await verify.verify(owner, projections_too=False)
    assert not report.ok
    assert named(report, "hash-chain", second["global_position"]), report.findings
    assert named(report, "hash-chain", third["global_position"]), report.findings
    assert all(f.stream_id == stream for f in report.findings), report.findings


async def test_a_seal_catches_a_tail_rewritten_with_valid_hashes(ledger, owner):
    """After a seal, a forger rewrites who paid the last refund of a wallet (its metadata's
    actor) and recomputes the hash chain: the money, the facts and the projections are as they
    were, so every other check passes, and only the seal names the change."""
    sealed = await seals.seal(owner)
    stream = f"wallet-{ledger.partial}"
    last = await owner.fetchrow(
        "select version, type, metadata->>'actor' as actor from events"
        " where stream_id = $1 order by version desc limit 1",
        stream,
    )
    assert last["type"] == "Refunded" and last["actor"] != "operator"
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set metadata = metadata || '{\"actor\": \"operator\"}'"
            " where stream_id = $1 and version = $2",
            stream, last["version"],
        )
        await rechain(owner, stream, last["version"])
    report = await verify.verify(owner)
    assert [f.check for f in report.findings] == ["seal"], report.findings
    assert report.findings[0].global_position == await owner.fetchval(
        "select global_position from events where stream_id = 'audit-seals'"
    )
    assert f"over positions 1..{sealed.position}" in report.findings[0].detail


async def test_a_debit_under_another_id_is_named_even_with_its_chain_recomputed(ledger, owner):
    """A debit given a random event id (its stream's hashes recomputed to match) passes the
    chain, but not the deterministic-id check, which names it by position and both ids."""
    stream = f"wallet-{ledger.spender}"
    debit = await owner.fetchrow(
        "select global_position, version, event_id from events"
        " where stream_id = $1 and type = 'FundsDebited' order by version limit 1",
        stream,
    )
    forged = uuid.uuid4()
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set event_id = $2 where global_position = $1",
            debit["global_position"], forged,
        )
        await rechain(owner, stream, debit["version"])
    report = await verify.verify(owner, projections_too=False)
    assert [(f.check, f.global_position) for f in report.findings] == [
        ("deterministic-id", debit["global_position"])
    ], report.findings
    assert f"has event id {forged}, expected {debit['event_id']}" in report.findings[0].detail


async def test_an_order_paid_from_another_accounts_wallet_is_named(ledger, owner):
    """An order made another account's (its chain recomputed), its debit left in the spender's
    wallet: the amounts still match, but debit-matches-order names the order paid from a
    wallet that is not its account's."""
    stream = await owner.fetchval(
        "select stream_id from events where type = 'OrderPlaced'"
        " and data->>'account_id' = $1::text order by global_position limit 1",
        str(ledger.spender),
    )
    other = ledger.spender + 1_000_000
    forged = await forge_data(owner, stream, 1, "account_id", str(other))
    report = await verify.verify(owner, projections_too=False)
    wrong = [f for f in report.findings if f.check == "debit-matches-order"]
    assert [f.global_position for f in wrong] == [forged], report.findings
    assert f"of account {other} debited from wallet-{ledger.spender}" in wrong[0].detail

async def test_a_projection_changed_behind_the_ledgers_back_is_named(ledger, owner):
    """An order row and an account row edited in place (no event says so) differ from the
    replay: verify (library, and the CLI, whose replay is shared with a child process) fails
    with projection findings that show the live rows and the replayed ones, and nothing else."""
    order_id = ledger.submitted_order
    await owner.execute("update orders set remains = 12345 where order_id = $1", order_id)
    await owner.execute("update accounts set name = 'forged' where account_id = $1", ledger.partial)
    report = await verify.verify(owner)
    assert {f.check for f in report.findings} == {"projection"}, report.findings
    details = [f.detail for f in report.findings]
    assert any(d.startswith("orders (live only): ") and '"remains":12345' in d for d in details)
    assert any(d.startswith("orders (replay only): ") and f'"order_id":{order_id}' in d
               for d in details), details
    assert any(d.startswith("accounts (live only): ") and '"forged"' in d for d in details)

    code, out, err = await _boost(ledger.dsn, "audit", "verify")
    assert code == 1, out + err
    failures = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert failures and all(line.startswith("FAIL projection: ") for line in failures), out
    assert any('"remains":12345' in line for line in failures), out
    assert any('"forged"' in line for line in failures), out


async def test_a_duplicated_version_is_named_once_the_unique_index_is_gone(ledger, owner):
    """With the log's unique index on (stream_id, version) dropped, a copy of an event under a
    new id (same stream, same version) is looked for and named as a stream-versions finding."""
    stream = f"order-{ledger.submitted_order}"
    async with triggers_off(owner):
        await owner.execute("alter table events drop constraint events_stream_id_version_key")
        assert (await verify.verify(owner, projections_too=False)).ok
        copied = await owner.fetchval(
            "insert into events (event_id, stream_id, version, type, data, metadata, hash)"
            " select gen_random_uuid(), stream_id, version, type, data, metadata, hash"
            " from events where stream_id = $1 and version = 2 returning global_position",
            stream,
        )
    report = await verify.verify(owner, projections_too=False)
    duplicates = [f for f in report.findings
                  if f.check == "stream-versions" and "more than once" in f.detail]
    assert [(f.stream_id, "version 2" in f.detail) for f in duplicates] == [(stream, True)]
    assert named(report, "hash-chain", copied) or named(report, "stream-versions", copied)


async def test_a_debit_whose_amount_is_no_number_is_reported_not_a_crash(ledger, owner):
    """A forged debit's amount set to a string (chain recomputed): the money check and the
    replay each name it; verify (library, and the CLI with its child process) reports, exits 1
    and does not fail on it."""
    stream = f"wallet-{ledger.spender}"
    version = await owner.fetchval(
        "select version from events where stream_id = $1 and type = 'FundsDebited'"
        " order by version limit 1",
        stream,
    )
    async with triggers_off(owner), owner.transaction():
        await owner.execute(
            "update events set data = jsonb_set(data, '{amount_kobo}', '\"abc\"')"
            " where stream_id = $1 and version = $2",
            stream, version,
        )
        await rechain(owner, stream, version)
    forged = await position_of(owner, stream, version)
    report = await verify.verify(owner)
    assert named(report, "amount", forged), report.findings
    replays = [f.detail for f in report.findings if f.check == "projection"]
    assert len(replays) == 1 and f"replaying event {forged} ({stream}" in replays[0], replays
    assert "ValidationError" in replays[0]
    code, out, err = await _boost(ledger.dsn, "audit", "verify")
    assert code == 1, (out, err)
    assert f"FAIL amount at position {forged} ({stream})" in out, out
    assert "Traceback" not in err, err


async def test_an_order_whose_fingerprint_is_no_hex_is_reported_not_a_crash(ledger, owner):
    """A forged OrderPlaced whose fingerprint is no hex (chain recomputed) decodes, but its
    fold cannot store it: the replay names the event, and verify (library and CLI) reports it
    and exits 1 without a traceback."""
    stream = await owner.fetchval(
        "select stream_id from events where type = 'OrderPlaced' order by global_position limit 1"
    )
    forged = await forge_data(owner, stream, 1, "fingerprint", '"zz"')
    report = await verify.verify(owner)
    replays = [f.detail for f in report.findings if f.check == "projection"]
    assert any(f"replaying event {forged} ({stream}" in detail for detail in replays), replays
    code, out, err = await _boost(ledger.dsn, "audit", "verify")
    assert code == 1, (out, err)
    assert "Traceback" not in err, err

async def test_an_event_of_no_known_type_is_named(ledger, owner):
    """An event of a type the ledger does not have, chained as the trigger would chain it:
    only the event-type check can see it (no projection folds it)."""
    forged = await append_forged(owner, "notes-1", "OrderTeleported", {"order_id": 999999})
    report = await verify.verify(owner)
    assert [(f.check, f.global_position) for f in report.findings] == [
        ("event-type", forged)
    ], report.findings
    assert "'OrderTeleported' is no event type of the ledger" in report.findings[0].detail


async def test_a_seal_that_is_no_seal_is_named(ledger, owner):
    """A forged event in the seals' stream whose data is not a seal's: named as a seal finding
    (it seals nothing), not a crash of the auditor."""
    forged = await append_forged(owner, "audit-seals", "LedgerSealed", {"position": "the end"})
    report = await verify.verify(owner, projections_too=False)
    assert [(f.check, f.global_position) for f in report.findings] == [("seal", forged)], (
        report.findings
    )
    assert "the seal's data is not a seal's" in report.findings[0].detail
