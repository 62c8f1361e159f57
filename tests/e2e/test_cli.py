"""The ``boost`` console script, run as real processes against real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from support import (
    bearer,
    free_port,
    http_server,
    open_funded_account,
    rewriting_panel,
    seed_catalog,
    wait_for,
)

from boost_ledger import postgres
from boost_ledger.cli.main import EXIT_STATUS
from boost_ledger.ledger.money import ngn_rate_per_1000_kobo

BOOST = str(Path(sys.executable).parent / "boost")
TIMEOUT_S = 30


@dataclass
class Ran:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, object]:
        value: dict[str, object] = json.loads(self.out)
        return value


def _environment(**overrides: str | None) -> dict[str, str]:
    """This process's environment without any BOOST_* or DATABASE_URL, plus ``overrides``."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("BOOST_") and name != "DATABASE_URL"
    }
    env.update({name: value for name, value in overrides.items() if value is not None})
    return env


async def _boost(*arguments: str, env: Mapping[str, str]) -> Ran:
    process = await asyncio.create_subprocess_exec(
        BOOST, *arguments, env=dict(env),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=TIMEOUT_S)
    assert process.returncode is not None
    return Ran(process.returncode, out.decode(), err.decode())


@pytest.fixture(scope="module")
def env(dsn: str) -> dict[str, str]:
    return _environment(DATABASE_URL=dsn)


async def _account(pool: asyncpg.Pool[Any]) -> tuple[str, str]:
    """An account opened in-process (the CLI's own ``accounts create`` is tested once)."""
    account_id, key = await open_funded_account(pool)
    return str(account_id), key


def test_the_console_script_is_installed():
    """``boost`` is the project's console script, next to this interpreter."""
    assert Path(BOOST).is_file() and os.access(BOOST, os.X_OK)


def _words(text: str) -> str:
    return " ".join(text.replace("`", "").split())


def test_the_exit_statuses_are_documented_as_the_command_states_them():
    """What each exit status means is stated once, in the code (``EXIT_STATUS``), and the
    README and the runbook say it in the same words, so the docs cannot go back to a partial
    list (1 was documented as 'no such account' alone, while the code exits 1 for much more)."""
    root = Path(__file__).resolve().parents[2]
    for document in ("README.md", "docs/runbook.md"):
        assert _words(EXIT_STATUS) in _words((root / document).read_text()), document


async def test_boost_help_ends_with_what_each_exit_status_means():
    """``boost --help`` states the exit statuses too, in the words the docs use."""
    ran = await _boost("--help", env=_environment())
    assert ran.code == 0, ran.err
    assert _words(EXIT_STATUS) in _words(ran.out), ran.out


async def test_accounts_create_prints_an_id_and_a_working_key(env, client):
    """``accounts create --json`` prints the account id and its first key, which works at once."""
    ran, plain = await asyncio.gather(
        _boost("accounts", "create", "--name", "Reseller Ltd", "--json", env=env),
        _boost("accounts", "create", "--name", "Plain", env=env),
    )
    assert ran.code == 0, ran.err
    created = ran.json()
    assert set(created) == {"account_id", "api_key"}
    account_id, key = str(created["account_id"]), str(created["api_key"])
    assert account_id.isdigit()
    assert key.startswith("blk_")
    response = await client.get("/api/v1/wallet", headers=bearer(key))
    assert response.status_code == 200
    assert response.json()["data"] == {"balance": "0.00", "currency": "NGN"}

    assert plain.code == 0
    assert re.search(r"account \d+ opened", plain.out)
    assert re.search(r"API key \(shown once\): blk_\S+", plain.out)


async def test_accounts_create_refuses_a_name_that_is_not_printable_text(pool, env):
    """A name with a control character (a newline, \\x01) is refused, exit 2 and one line, as
    is one whose bytes are not UTF-8 (``--name $'\\xff'``, which Python reads as a surrogate the
    database driver cannot encode: that was a stack trace and exit 1); no account is opened."""
    before = await pool.fetchval("select count(*) from accounts")
    names = ["two\nlines", "bell\x01", os.fsdecode(b"bad\xff")]
    refusals = await asyncio.gather(
        *(_boost("accounts", "create", "--name", name, env=env) for name in names)
    )
    for name, ran in zip(names, refusals, strict=True):
        assert ran.code == 2, (name, ran.out, ran.err)
        assert ran.err == "boost: an account name is 1 to 200 printable characters\n", ran.err
        assert ran.out == ""
    assert await pool.fetchval("select count(*) from accounts") == before


async def test_keys_rotate_revokes_the_old_key_at_once(pool, env, client):
    """``keys rotate --json``: the new key works, the old one is 401 on the next request."""
    account_id, old_key = await _account(pool)
    ran = await _boost("keys", "rotate", account_id, "--json", env=env)
    assert ran.code == 0, ran.err
    rotated = ran.json()
    assert rotated["account_id"] == account_id
    assert rotated["abilities"] == ["wallet:read", "boosting:read", "boosting:buy", "orders:read"]
    new_key = str(rotated["api_key"])
    assert new_key != old_key
    assert (await client.get("/api/v1/wallet", headers=bearer(old_key))).status_code == 401
    assert (await client.get("/api/v1/wallet", headers=bearer(new_key))).status_code == 200


async def test_keys_rotate_with_fewer_abilities_and_refusals(pool, env, client):
    """``--abilities`` narrows the new key; unknown abilities or accounts are refused."""
    account_id, _ = await _account(pool)
    ran, bad, missing = await asyncio.gather(
        _boost("keys", "rotate", account_id, "--abilities", "orders:read", "--json", env=env),
        _boost("keys", "rotate", account_id, "--abilities", "wallet:write", env=env),
        _boost("keys", "rotate", "99999999", env=env),
    )
    assert ran.code == 0, ran.err
    narrow = str(ran.json()["api_key"])
    response = await client.get("/api/v1/wallet", headers=bearer(narrow))
    assert response.status_code == 403 and response.json()["code"] == "FORBIDDEN"
    assert bad.code == 2 and "unknown abilities" in bad.err
    assert missing.code == 1 and "no account 99999999" in missing.err


async def test_keys_rotate_without_abilities_keeps_those_of_the_key_it_replaces(
    pool, env, client
):
    """Rotating a leaked read-only key gives a read-only key again, not one that can buy (it
    got all four abilities); ``--abilities`` still chooses them."""
    account_id, _ = await _account(pool)
    narrowed = await _boost(
        "keys", "rotate", account_id, "--abilities", "wallet:read,orders:read", env=env
    )
    assert narrowed.code == 0, narrowed.err
    again = await _boost("keys", "rotate", account_id, "--json", env=env)
    assert again.code == 0, again.err
    assert again.json()["abilities"] == ["wallet:read", "orders:read"]
    key = str(again.json()["api_key"])
    assert (await client.get("/api/v1/wallet", headers=bearer(key))).status_code == 200
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 100,
            "idempotency_key": f"rotate-{account_id}"}
    bought = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert bought.status_code == 403 and bought.json()["code"] == "FORBIDDEN"


async def test_keys_rotate_with_an_empty_abilities_list_is_refused(pool, env, client):
    """``keys rotate --abilities ""`` (a script whose variable came out empty) names no ability:
    it is refused (exit 2) and the key is not rotated. It used to issue a key with all four, so
    a leaked read-only key was replaced by one that can spend the wallet, though the README
    promises the previous key's abilities unless ``--abilities`` says otherwise."""
    account_id, _ = await _account(pool)
    narrowed = await _boost("keys", "rotate", account_id, "--abilities", "wallet:read", "--json",
                            env=env)
    assert narrowed.code == 0, narrowed.err
    read_only = str(narrowed.json()["api_key"])
    for empty in ("", " ", ","):
        ran = await _boost("keys", "rotate", account_id, "--abilities", empty, "--json", env=env)
        assert ran.code == 2, (empty, ran.out, ran.err)
        assert ran.err.startswith("boost: ") and ran.err.count("\n") == 1, ran.err
        assert ran.out == "" and "Traceback" not in ran.err
    assert (await client.get("/api/v1/wallet", headers=bearer(read_only))).status_code == 200
    abilities = await pool.fetchval(
        "select abilities from api_keys where account_id = $1 and not revoked", int(account_id)
    )
    assert list(abilities) == ["wallet:read"]


async def test_disable_ban_and_reinstate(pool, env, client):
    """The standing commands change what the key gets over HTTP, and say when nothing changed."""
    account_id, key = await _account(pool)

    async def wallet_code() -> str | None:
        response = await client.get("/api/v1/wallet", headers=bearer(key))
        return None if response.status_code == 200 else response.json()["code"]

    steps = [("disable", "USER_DISABLED"), ("ban", "USER_BANNED"), ("reinstate", None)]
    for action, expected in steps:
        ran = await _boost("accounts", action, account_id, env=env)
        assert ran.code == 0, ran.err
        assert f"account {account_id}" in ran.out
        assert await wallet_code() == expected
    again, missing = await asyncio.gather(
        _boost("accounts", "reinstate", account_id, env=env),
        _boost("accounts", "ban", "99999999", env=env),
    )
    assert again.code == 0 and "already" in again.out
    assert missing.code == 1 and "no account" in missing.err


async def test_a_disable_leaves_a_banned_account_banned_and_says_so(pool, env, client):
    """A ban lasts until a reinstate: ``accounts disable`` of a banned account records nothing
    (no AccountDisabled), says so like the other no-ops (exit 0), and the key stays banned."""
    account_id, key = await _account(pool)
    assert (await _boost("accounts", "ban", account_id, env=env)).code == 0
    ran = await _boost("accounts", "disable", account_id, env=env)
    assert ran.code == 0, ran.err
    assert ran.out.startswith(f"account {account_id} is banned") and "nothing changed" in ran.out
    response = await client.get("/api/v1/wallet", headers=bearer(key))
    assert response.status_code == 403 and response.json()["code"] == "USER_BANNED"
    types = await pool.fetch(
        "select type from events where stream_id = $1 order by version", f"account-{account_id}"
    )
    assert [row["type"] for row in types][-1] == "AccountBanned"
    assert "AccountDisabled" not in {row["type"] for row in types}


async def test_wallet_credit_twice_with_one_reference_credits_once_and_says_so(pool, env, client):
    """The second credit with the same reference changes nothing and says it was already done."""
    account_id, key = await _account(pool)
    first = await _boost("wallet", "credit", account_id, "2500.00", "--reference", "tx-1", env=env)
    assert first.code == 0, first.err
    assert "credited 2500.00 NGN" in first.out and "balance 2500.00 NGN" in first.out
    second = await _boost("wallet", "credit", account_id, "2500.00", "--reference", "tx-1", env=env)
    assert second.code == 0, second.err
    assert "already credited" in second.out and "nothing changed" in second.out
    as_json = await _boost(
        "wallet", "credit", account_id, "100", "--reference", "tx-1", "--json", env=env
    )
    assert as_json.json() == {"credited": False, "amount": "2500.00", "balance": "2500.00"}

    show, show_json = await asyncio.gather(
        _boost("wallet", "show", account_id, env=env),
        _boost("wallet", "show", account_id, "--json", env=env),
    )
    assert show.code == 0
    assert show.out.strip() == "balance=2500.00 credited=2500.00 debited=0.00 refunded=0.00 NGN"
    assert show_json.json() == {"account_id": account_id, "currency": "NGN", "balance": "2500.00",
                     "credited": "2500.00", "debited": "0.00", "refunded": "0.00"}
    response = await client.get("/api/v1/wallet", headers=bearer(key))
    assert response.json()["data"]["balance"] == "2500.00"


async def test_invalid_amounts_are_refused_with_a_non_zero_exit(pool, env):
    """Zero, negative, three decimals, non-numbers: exit 2, a one-line reason, no credit."""
    account_id, _ = await _account(pool)
    # The parsing itself is tested in depth in test_wallet_credit; these are the CLI's door.
    amounts = ["0.00", "-5", "1.001", "abc", ""]
    refusals = await asyncio.gather(*(
        _boost("wallet", "credit", account_id, amount, "--reference", f"r{n}", env=env)
        for n, amount in enumerate(amounts)
    ))
    for amount, ran in zip(amounts, refusals, strict=True):
        assert ran.code == 2, (amount, ran.out, ran.err)
        assert ran.err.startswith("boost: invalid amount"), (amount, ran.err)
        assert "Traceback" not in ran.err and ran.out == ""
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", int(account_id)
    )
    assert balance == 0


async def test_a_reference_with_spaces_around_it_is_refused_as_input(pool, env):
    """``wallet credit --reference " bank-tx-1"`` (a script that pads its reference) is exit 2
    with one line naming the reference, before the database is touched: it would otherwise be
    another reference than "bank-tx-1" and credit the same top-up twice."""
    account_id, _ = await _account(pool)
    first = await _boost("wallet", "credit", account_id, "10", "--reference", "bank-tx-1", env=env)
    assert first.code == 0, first.err
    padded = [" bank-tx-1", "bank-tx-1 "]
    refusals = await asyncio.gather(*(
        _boost("wallet", "credit", account_id, "10", "--reference", reference, env=env)
        for reference in padded
    ))
    for reference, ran in zip(padded, refusals, strict=True):
        assert ran.code == 2, (reference, ran.out, ran.err)
        assert ran.err == (
            f"boost: invalid reference {reference!r}: a reference has no leading or trailing"
            " spaces\n"
        ), ran.err
        assert ran.out == ""
    balance = await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", int(account_id)
    )
    assert balance == 10_00


async def test_wallet_commands_refuse_unknown_accounts_and_bad_ids(env):
    """An account that does not exist is exit 1; something that is not an id is a usage error."""
    credit, show, not_an_id = await asyncio.gather(
        _boost("wallet", "credit", "99999999", "1.00", "--reference", "r", env=env),
        _boost("wallet", "show", "99999999", env=env),
        _boost("wallet", "show", "abc", env=env),
    )
    assert credit.code == 1 and "no account 99999999" in credit.err
    assert show.code == 1 and "no account 99999999" in show.err
    assert not_an_id.code == 2 and "not an account id" in not_an_id.err


async def test_an_account_id_in_other_digits_than_ascii_is_refused_as_a_bad_id(pool, env):
    """An account id is ASCII digits, like every other id the command takes: "١٠٠٢" (Arabic-
    Indic digits, which ``str.isdigit`` accepts and ``int`` reads as 1002) is exit 2, not a
    credit, a ban or a new key for account 1002; "²" (a digit ``int`` cannot read) is the same
    refusal, not argparse's "invalid account_id_argument value"."""
    account_id, _ = await _account(pool)
    other_digits = "".join(chr(0x0660 + int(digit)) for digit in account_id)
    assert int(other_digits) == int(account_id)
    runs = await asyncio.gather(
        _boost("wallet", "credit", other_digits, "10", "--reference", "tx-u", env=env),
        _boost("wallet", "show", other_digits, env=env),
        _boost("accounts", "ban", other_digits, env=env),
        _boost("keys", "rotate", other_digits, env=env),
        _boost("wallet", "show", "\u00b2", env=env),
    )
    for ran in runs:
        assert ran.code == 2, (ran.out, ran.err)
        assert "not an account id" in ran.err and ran.out == "", ran.err
    row = await pool.fetchrow(
        "select w.balance_kobo, a.status from wallets w join accounts a using (account_id)"
        " where account_id = $1",
        int(account_id),
    )
    assert (row["balance_kobo"], row["status"]) == (0, "active")
    assert await pool.fetchval(
        "select count(*) from api_keys where account_id = $1", int(account_id)
    ) == 1


async def test_a_bad_setting_is_one_line_naming_it_for_catalog_sync_as_for_the_rest(env):
    """A bad BOOST_* value is refused with exit 2 and one line naming the variable, never a
    stack trace: by ``catalog sync``, which reads the provider's settings itself, as by
    ``wallet show``."""
    bad = {**env, "BOOST_FX_RATE": "lots", "BOOST_PROVIDER_URL": "http://127.0.0.1:9/api/v2"}
    sync, show = await asyncio.gather(
        _boost("catalog", "sync", env=bad), _boost("wallet", "show", "1", env=bad)
    )
    for ran in (sync, show):
        assert ran.code == 2, (ran.out, ran.err)
        assert ran.err.startswith("boost: ") and "BOOST_FX_RATE" in ran.err, ran.err
        assert "Traceback" not in ran.err and ran.out == ""


async def test_catalog_sync_says_which_fx_rate_and_markup_it_priced_with(pool, env, simulator_url):
    """``catalog sync`` prices with the BOOST_FX_RATE and BOOST_MARKUP_PERCENT of the shell it
    runs in, not the server's, so its summary names the two values, and they are the ones the
    synced rates were computed with."""
    shell = {**env, "BOOST_PROVIDER_URL": f"{simulator_url}/api/v2",
             "BOOST_FX_RATE": "1234.5", "BOOST_MARKUP_PERCENT": "7"}
    ran = await _boost("catalog", "sync", env=shell)
    assert ran.code == 0, ran.err
    (summary,) = ran.out.splitlines()  # its log lines go to stderr, not among its output
    assert " services listed, " in summary, ran.out
    assert '"event":"catalog.synced"' in ran.err, ran.err
    assert summary.endswith("; priced at BOOST_FX_RATE=1234.5 and BOOST_MARKUP_PERCENT=7"), summary
    rows = await pool.fetch("select provider_rate, rate_per_1000_kobo from services where listed")
    assert rows
    for row in rows:
        expected = ngn_rate_per_1000_kobo(Decimal(row["provider_rate"]), Decimal("1234.5"),
                                          Decimal("7"))
        assert row["rate_per_1000_kobo"] == expected, row


async def test_catalog_price_refuses_a_service_id_no_service_can_have(pool, env):
    """``catalog price`` of an id whose argv bytes are not UTF-8 (``$'3\\xff'``) was a stack
    trace from the database driver (exit 1); like an id with a "/" or a control character,
    which no synced service has (``catalog.usable_service_id``), it is now a bad id: exit 2,
    nothing pinned."""
    await seed_catalog(pool)
    count_pins = "select count(*) from events where type = 'ServiceRatePinned'"
    pins_before = await pool.fetchval(count_pins)
    ids = [os.fsdecode(b"3\xff"), "3\x01", "a/b"]
    refusals = await asyncio.gather(
        *(_boost("catalog", "price", service_id, "10.00", env=env) for service_id in ids)
    )
    for service_id, ran in zip(ids, refusals, strict=True):
        assert ran.code == 2, (service_id, ran.out, ran.err)
        assert "not a service id" in ran.err and "Traceback" not in ran.err, ran.err
        assert ran.out == ""
    assert await pool.fetchval(count_pins) == pins_before


async def test_catalog_sync_names_a_skipped_id_of_the_provider_without_its_control_characters(
    pool, env, simulator_url
):
    """The summary names the offers it skipped, and an id the provider sent with a newline or a
    terminal escape in it (which is why it was skipped) was printed as sent: the one-line
    summary became two, the second line the provider's words, and the escape reached the
    operator's terminal. Such an id is now shown escaped, as Python writes it."""
    odd_ids = ["77\nboost: every service priced", "78\x1b]0;owned\x07"]

    def add_odd_offers(reply: Any) -> None:
        if isinstance(reply, list) and reply and isinstance(reply[0], dict):
            reply.extend({**reply[0], "service": service_id} for service_id in odd_ids)

    async with http_server(rewriting_panel(simulator_url, add_odd_offers)) as panel_url:
        shell = {**env, "BOOST_PROVIDER_URL": f"{panel_url}/api/v2"}
        ran = await _boost("catalog", "sync", env=shell)
    assert ran.code == 0, ran.err
    (summary,) = ran.out.splitlines()
    assert "\x1b" not in ran.out and "\x07" not in ran.out, ran.out
    for service_id in odd_ids:
        assert repr(service_id) in summary, summary


async def test_catalog_list_shows_a_provider_name_with_control_characters_escaped(
    pool, env, simulator_url
):
    """``catalog list`` prints one line per service, and a name is the provider's text: one
    with a newline printed a second line that looked like another service, and a terminal
    escape in it reached the operator's terminal. Such a name (or type) is shown
    escaped; ``--json`` carries it as it is."""
    odd_name = "Likes\x1b]0;owned\x07\n    99          0.01 NGN  Default  Cheap"

    def rename_the_first(reply: Any) -> None:
        if isinstance(reply, list) and reply and isinstance(reply[0], dict):
            reply[0]["name"] = odd_name

    async with http_server(rewriting_panel(simulator_url, rename_the_first)) as panel_url:
        shell = {**env, "BOOST_PROVIDER_URL": f"{panel_url}/api/v2"}
        synced = await _boost("catalog", "sync", env=shell)
    assert synced.code == 0, synced.err
    listed, as_json = await asyncio.gather(
        _boost("catalog", "list", env=env), _boost("catalog", "list", "--json", env=env)
    )
    assert listed.code == 0 and as_json.code == 0, (listed.err, as_json.err)
    services = json.loads(as_json.out)
    assert odd_name in [service["name"] for service in services]
    assert len(listed.out.splitlines()) == len(services), listed.out
    assert "\x1b" not in listed.out and "\x07" not in listed.out, listed.out
    assert repr(odd_name)[1:-1] in listed.out, listed.out


async def test_a_provider_refusal_of_catalog_sync_is_one_line_whatever_its_text(env):
    """``catalog sync`` against a provider that refuses (``{"error": text}``) is exit 1 and
    one line; the text is the provider's, and one holding a newline and a terminal escape was
    printed as sent (a second line in the provider's words, an escape for the terminal). It is
    shown escaped now."""
    text = "Invalid API key\nboost: catalog synced\x1b[2J"

    async def refuse(request: Any) -> JSONResponse:
        return JSONResponse({"error": text})

    panel = Starlette(routes=[Route("/api/v2", refuse, methods=["POST"])])
    async with http_server(panel) as panel_url:
        shell = {**env, "BOOST_PROVIDER_URL": f"{panel_url}/api/v2"}
        ran = await _boost("catalog", "sync", env=shell)
    assert ran.code == 1, (ran.out, ran.err)
    assert ran.out == ""
    assert ran.err == f"boost: the provider failed: {repr(text)[1:-1]}\n", ran.err


async def test_a_database_that_cannot_be_used_is_one_line_not_a_stack_trace(dsn):
    """A DATABASE_URL whose server is down, or whose database does not exist, is exit 1 with
    one line saying the database cannot be reached and why, never the driver's stack trace."""
    closed = f"postgresql://boost@127.0.0.1:{free_port()}/boost"
    missing = postgres.with_database(dsn, "no_such_database")
    refused, absent = await asyncio.gather(
        _boost("wallet", "show", "1", env=_environment(DATABASE_URL=closed)),
        _boost("migrate", env=_environment(DATABASE_URL=missing)),
    )
    for ran in (refused, absent):
        assert ran.code == 1, (ran.out, ran.err)
        assert ran.err.startswith("boost: cannot connect to the database: "), ran.err
        assert "Traceback" not in ran.err and ran.out == "" and ran.err.count("\n") == 1
    assert "no_such_database" in absent.err


async def _insert_unknown_orders(connection: asyncpg.Connection[Any], ids: range) -> None:
    """Rows of the orders projection awaiting an operator, written directly: the listing reads
    nothing else, and placing a thousand orders through checkout would only cost time."""
    await connection.execute(
        "insert into orders (order_id, account_id, idempotency_key, fingerprint, service_id,"
        " provider_service_id, service_name, category, type, link, quantity, billable_quantity,"
        " fields, rate_per_1000_kobo, price_kobo, cancel_supported, status, submission, version,"
        " created_at, updated_at)"
        " select id, 1001, 'key-' || id, '\\x00'::bytea, '1', '1', 'Likes', 'Instagram',"
        " 'Default', 'https://example.com/p', 100, 100, '{}'::jsonb, 1620, 162, true, 'pending',"
        " 'unknown', 3, now(), now() from generate_series($1::bigint, $2::bigint) as id",
        ids.start, ids.stop - 1,
    )


async def test_a_command_the_database_refuses_is_one_line_and_changes_nothing(pool, env, client):
    """Against a busy server a row an operator's command needs can stay locked past the lock
    timeout (BOOST_STATEMENT_TIMEOUT_MS): ``wallet credit``, ``accounts ban``, ``keys rotate``
    and ``orders resolve`` then exit 1 with one line saying the database refused the command
    and nothing changed, as the exit statuses promise, never the driver's stack trace; and
    indeed nothing changed."""
    credited, _ = await _account(pool)
    banned, key = await _account(pool)
    order_id = 100_009_001
    async with pool.acquire() as holder:
        await _insert_unknown_orders(holder, range(order_id, order_id + 1))
        async with holder.transaction():
            await holder.execute(
                "select 1 from wallets where account_id = $1 for update", int(credited)
            )
            await holder.execute(
                "select 1 from accounts where account_id = $1 for update", int(banned)
            )
            await holder.execute("select 1 from orders where order_id = $1 for update", order_id)
            impatient = {**env, "BOOST_STATEMENT_TIMEOUT_MS": "300"}
            refused = await asyncio.gather(
                _boost("wallet", "credit", credited, "10", "--reference", "busy-1", env=impatient),
                _boost("accounts", "ban", banned, env=impatient),
                _boost("keys", "rotate", banned, env=impatient),
                _boost("orders", "resolve", str(order_id), "--refund", env=impatient),
            )
    for ran in refused:
        assert ran.code == 1, (ran.out, ran.err)
        assert ran.err.startswith("boost: the database refused the command ("), ran.err
        assert "nothing was changed" in ran.err and ran.err.count("\n") == 1, ran.err
        assert "Traceback" not in ran.err and ran.out == ""
    assert await pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", int(credited)
    ) == 0
    assert await pool.fetchval(
        "select status from accounts where account_id = $1", int(banned)
    ) == "active"
    assert (await client.get("/api/v1/wallet", headers=bearer(key))).status_code == 200
    assert await pool.fetchval(
        "select submission from orders where order_id = $1", order_id
    ) == "unknown"


async def _insert_services(connection: asyncpg.Connection[Any], ids: range) -> None:
    await connection.execute(
        "insert into services (service_id, provider_service_id, name, category, type,"
        " provider_rate, rate_per_1000_kobo, min_quantity, max_quantity, refill, cancel, listed,"
        " version, updated_at)"
        " select id::text, id::text, 'Likes ' || id, 'Instagram', 'Default', '1.08', 162000, 10,"
        " 10000, false, true, true, 1, now() from generate_series($1::int, $2::int) as id",
        ids.start, ids.stop - 1,
    )


async def test_a_listing_cut_at_its_bound_says_so_on_stderr(test_server):
    """``orders unknown`` lists 1,000 orders at most and ``catalog list`` 5,000 services: at the
    bound exactly nothing is said, past it stdout (text or JSON) keeps its format and one line on
    stderr says how many are shown and that more exist, so a cut list is not taken for whole."""
    dsn = await test_server.fresh_database()
    env = _environment(DATABASE_URL=dsn)
    connection = await asyncpg.connect(dsn)
    try:
        await _insert_unknown_orders(connection, range(100_000_001, 100_001_001))
        await _insert_services(connection, range(1, 5001))
        whole = await asyncio.gather(
            _boost("orders", "unknown", env=env), _boost("catalog", "list", env=env)
        )
        await _insert_unknown_orders(connection, range(100_001_001, 100_001_003))
        await _insert_services(connection, range(5001, 5003))
    finally:
        await connection.close()
    for ran in whole:
        assert (ran.code, ran.err) == (0, "")
    assert [len(ran.out.splitlines()) for ran in whole] == [1000, 5000]
    orders, orders_json, services, services_json = await asyncio.gather(
        _boost("orders", "unknown", env=env), _boost("orders", "unknown", "--json", env=env),
        _boost("catalog", "list", env=env), _boost("catalog", "list", "--json", env=env),
    )
    for ran in (orders, orders_json):
        assert ran.code == 0
        assert ran.err == "boost: showing the first 1000 orders awaiting an operator (oldest"\
            " first); more exist\n", ran.err
    for ran in (services, services_json):
        assert ran.code == 0
        assert ran.err == "boost: showing the first 5000 services (by id); more exist\n", ran.err
    assert orders.out == whole[0].out and services.out == whole[1].out
    listed_orders: list[dict[str, Any]] = json.loads(orders_json.out)
    assert [item["order_id"] for item in listed_orders] == [
        str(order_id) for order_id in range(100_000_001, 100_001_001)
    ]
    listed_services: list[dict[str, Any]] = json.loads(services_json.out)
    assert [item["service_id"] for item in listed_services] == [str(n) for n in range(1, 5001)]


# ---- the embedded PostgreSQL, shared by several boost processes -----------------------------


def _postmaster_pid(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    try:
        return int(pid_file.read_text().split()[0])
    except (OSError, IndexError, ValueError):
        return None


def _stop_leftover_server(pgdata: Path) -> None:
    """After a failed test: stop a server nobody stopped (SIGINT is PostgreSQL's fast shutdown)."""
    pid = _postmaster_pid(pgdata)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)


@pytest.fixture
async def data_dir() -> AsyncIterator[Path]:
    created = Path(tempfile.mkdtemp(prefix="boost-cli-"))
    try:
        yield created
    finally:
        _stop_leftover_server(created / "pgdata")
        await wait_for(lambda: _postmaster_pid(created / "pgdata") is None, 10)
        shutil.rmtree(created, ignore_errors=True)


async def _read_banner(stderr: asyncio.StreamReader) -> list[str]:
    """The serve process's stderr up to and including the demo's curl line."""
    lines: list[str] = []
    while not any("curl" in line for line in lines):
        line = await asyncio.wait_for(stderr.readline(), timeout=TIMEOUT_S)
        assert line, f"boost serve ended early:\n{''.join(lines)}"
        lines.append(line.decode())
    return lines


@pytest.mark.parametrize(
    ("arguments", "overrides", "named"),
    [
        ((), {"BOOST_POOL_MIN": "20", "BOOST_POOL_MAX": "5"}, "BOOST_POOL_MIN=20"),
        ((), {"BOOST_FX_RATE": "0"}, "BOOST_FX_RATE='0'"),
        ((), {"BOOST_LOG_LEVEL": "verbose"}, "BOOST_LOG_LEVEL='verbose'"),
        (("--port", "0"), {}, "--port: not a port (1 to 65535): '0'"),
        (("--port", "65536"), {}, "--port: not a port (1 to 65535): '65536'"),
        ((), {"BOOST_SIMULATOR_MAX_ORDERS": "abc"}, "BOOST_SIMULATOR_MAX_ORDERS='abc'"),
        ((), {"BOOST_SIMULATOR_PARTIAL_SHARE": "2"}, "BOOST_SIMULATOR_PARTIAL_SHARE='2'"),
    ],
)
async def test_serve_refuses_bad_settings_before_it_starts_anything(
    data_dir, arguments, overrides, named
):
    """``boost serve`` with settings that cannot work exits 2 at once with the one line that
    names them, before it starts PostgreSQL: a pool whose least exceeds its most failed in
    asyncpg after the start, a zero FX rate delisted every service at the next sync, an
    unknown log level was taken for info, ``--port 0`` was dropped for the default port, and a
    bad option of the built-in simulator was a stack trace once PostgreSQL had started.
    ``boost simulator`` refuses the simulator's own options the same way."""
    env = _environment(BOOST_DATA_DIR=str(data_dir), BOOST_WORKERS="0", **overrides)
    ran = await _boost("serve", *arguments, env=env)
    assert ran.code == 2, (ran.out, ran.err)
    assert named in ran.err and "Traceback" not in ran.err, ran.err
    assert ran.out == "" and not (data_dir / "pgdata").exists()
    if "BOOST_SIMULATOR" in named:
        alone = await _boost("simulator", "--port", str(free_port()), env=env)
        assert (alone.code, alone.out) == (2, ""), alone.err
        assert named in alone.err and "Traceback" not in alone.err, alone.err


async def test_worker_without_a_provider_url_refuses_to_start(data_dir):
    """``boost worker`` with no BOOST_PROVIDER_URL exits 2 with one line naming it, before it
    starts PostgreSQL: it used to start a simulator of its own and send the paid orders it
    claimed there, where no other process (nor the API's poller) could see them."""
    env = _environment(BOOST_DATA_DIR=str(data_dir))
    ran = await _boost("worker", env=env)
    assert (ran.code, ran.out) == (2, ""), ran.err
    assert "BOOST_PROVIDER_URL" in ran.err and "Traceback" not in ran.err, ran.err
    assert len(ran.err.strip().splitlines()) == 1, ran.err
    assert not (data_dir / "pgdata").exists()


async def test_with_no_database_url_boost_processes_share_one_embedded_server(data_dir):
    """migrate, serve and operator commands at once all use one embedded PostgreSQL, which
    prints the demo key with a working curl line and stops when the last process leaves."""
    env = _environment(BOOST_DATA_DIR=str(data_dir), BOOST_WORKERS="0")
    pgdata = data_dir / "pgdata"
    migrated = await _boost("migrate", env=env)
    assert migrated.code == 0, migrated.err
    assert "0001_event_log" in migrated.out and "0009_feed_epoch" in migrated.out
    assert await wait_for(lambda: _postmaster_pid(pgdata) is None, 10), "migrate left it running"

    port = free_port()
    server = await asyncio.create_subprocess_exec(
        BOOST, "serve", "--port", str(port), env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert server.stderr is not None
        banner = "".join(await _read_banner(server.stderr))
        drain = asyncio.create_task(server.stderr.read())  # keep the pipe from filling up
        demo_key = re.search(r"blk_\S+", banner)
        demo_account = re.search(r"Demo account (\d+) opened with 12500.00 NGN", banner)
        assert demo_key and demo_account, banner
        curl_line = next(line.strip() for line in banner.splitlines() if "curl" in line)
        assert f"http://127.0.0.1:{port}/api/v1/wallet" in curl_line
        assert f"Authorization: Bearer {demo_key[0]}" in curl_line
        postmaster = _postmaster_pid(pgdata)
        assert postmaster is not None

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            wallet = await http.get("/api/v1/wallet", headers=bearer(demo_key[0]))
            assert wallet.json() == {
                "success": True, "data": {"balance": "12500.00", "currency": "NGN"}
            }
            if shutil.which("curl"):
                curled = await asyncio.create_subprocess_exec(
                    "bash", "-c", curl_line, stdout=asyncio.subprocess.PIPE
                )
                out, _ = await asyncio.wait_for(curled.communicate(), timeout=TIMEOUT_S)
                assert json.loads(out)["data"]["balance"] == "12500.00"

            created, shown, rotated = await asyncio.gather(
                _boost("accounts", "create", "--name", "Second", "--json", env=env),
                _boost("wallet", "show", demo_account[1], env=env),
                _boost("keys", "rotate", demo_account[1], "--json", env=env),
            )
            assert (created.code, shown.code, rotated.code) == (0, 0, 0), (
                created.err, shown.err, rotated.err
            )
            assert shown.out.startswith("balance=12500.00")
            assert _postmaster_pid(pgdata) == postmaster, "one server, shared"
            old = await http.get("/api/v1/wallet", headers=bearer(demo_key[0]))
            assert old.status_code == 401
            new_key = str(rotated.json()["api_key"])
            assert (await http.get("/api/v1/wallet", headers=bearer(new_key))).status_code == 200
            second_key = str(created.json()["api_key"])
            second = await http.get("/api/v1/wallet", headers=bearer(second_key))
            assert second.json()["data"]["balance"] == "0.00"

        server.send_signal(signal.SIGTERM)
        await asyncio.wait_for(server.wait(), timeout=TIMEOUT_S)
        await drain
    finally:
        if server.returncode is None:
            server.kill()
            await server.wait()
    assert await wait_for(lambda: _postmaster_pid(pgdata) is None, 10), "the last one stops it"

    again = await _boost("wallet", "show", demo_account[1], "--json", env=env)
    assert again.code == 0, again.err
    assert again.json()["balance"] == "12500.00"
    assert await wait_for(lambda: _postmaster_pid(pgdata) is None, 10)


@pytest.mark.parametrize(("key", "shown"), [(None, "key sim-key;"), ("pk-live-42", "key BOOST_")])
async def test_the_simulator_names_its_key_but_never_prints_a_real_one(key, shown):
    """``boost simulator`` prints its address and its default key; a BOOST_PROVIDER_KEY of
    another value (perhaps a real provider's) is named, never printed."""
    process = await asyncio.create_subprocess_exec(
        BOOST, "simulator", "--port", str(free_port()),
        env=_environment(BOOST_PROVIDER_KEY=key), stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), TIMEOUT_S)).decode()
    finally:
        process.terminate()
        await process.wait()
    assert line.startswith("simulator: http://127.0.0.1:") and shown in line, line
    assert "pk-live-42" not in line
