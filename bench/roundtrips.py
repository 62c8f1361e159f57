"""Counting the statements (each one a round trip) behind one checkout, from PostgreSQL's own
statement log: ``log_statement = 'all'`` is switched on for a few seconds of sequential
checkouts and off again (``ALTER SYSTEM`` + reload; nothing else is changed)."""

from __future__ import annotations

import asyncio
import re
from collections import Counter, defaultdict
from typing import Any

from bench.cluster import Cluster
from bench.http_phase import run_load
from bench.loadgen import Spec
from bench.server import Server

_ENTRY = re.compile(
    r"^\S+ \S+ \S+ \[(?P<pid>\d+)\] LOG:  (?:statement|execute [^:]*): (?P<sql>.*)$"
)
# How a unit is recognised: a checkout is one call of ``checkout_place`` (or, for checkouts that
# arrived together, ``checkout_place_batch``: counted as one). A checkout collapsed into
# something else is still counted in the totals (statements in the window per checkout served),
# just not itemised.
_CHECKOUT_MARKS = ("checkout_place(", "checkout_place_batch(")
_AUTH_MARK = "api_keys"
_RESET_MARKS = ("pg_advisory_unlock_all", "RESET ALL")


def _statements(log_text: str) -> list[tuple[str, str]]:
    statements: list[tuple[str, str]] = []
    for line in log_text.splitlines():
        match = _ENTRY.match(line)
        if match:
            statements.append((match["pid"], match["sql"]))
        elif line.startswith("\t") and statements:
            pid, sql = statements[-1]
            statements[-1] = (pid, f"{sql} {line.strip()}")
    return statements


def _units(statements: list[tuple[str, str]]) -> list[list[str]]:
    """Each backend's statements cut into transactions (BEGIN..COMMIT) and single statements."""
    per_backend: dict[str, list[list[str]]] = defaultdict(list)
    open_unit: dict[str, list[str]] = {}
    for pid, sql in statements:
        head = sql.strip().rstrip(";").upper()
        if pid in open_unit:
            open_unit[pid].append(sql)
            if head in ("COMMIT", "ROLLBACK"):
                per_backend[pid].append(open_unit.pop(pid))
        elif head.startswith("BEGIN"):
            open_unit[pid] = [sql]
        else:
            per_backend[pid].append([sql])
    return [unit for units in per_backend.values() for unit in _attach_resets(units)]


def _attach_resets(units: list[list[str]]) -> list[list[str]]:
    """A pool's reset on release belongs to whatever the connection did just before it."""
    merged: list[list[str]] = []
    for unit in units:
        if merged and any(mark in unit[0] for mark in _RESET_MARKS):
            merged[-1] = merged[-1] + unit
        else:
            merged.append(unit)
    return merged


def classify(log_text: str, served: int) -> dict[str, Any]:
    """Statements per checkout by kind; ``served`` is how many checkouts the window answered."""
    kinds: Counter[str] = Counter()
    statements: Counter[str] = Counter()
    checkout_statements: Counter[str] = Counter()
    background_statements: Counter[str] = Counter()
    for unit in _units(_statements(log_text)):
        text = " ".join(unit)
        if any(mark in text for mark in _CHECKOUT_MARKS):
            kind = "checkout"
        else:
            kind = "auth" if _AUTH_MARK in text else "background"
        kinds[kind] += 1
        statements[kind] += len(unit)
        listing = {"checkout": checkout_statements, "background": background_statements}.get(kind)
        if listing is not None:
            for sql in unit:
                listing[" ".join(sql.split())[:70]] += 1
    checkouts = max(kinds["checkout"], 1)
    return {
        "checkouts": kinds["checkout"],
        "served": served,
        "all_statements_per_served_checkout": sum(statements.values()) / max(served, 1),
        "round_trips_per_checkout": (statements["checkout"] + statements["auth"]) / checkouts,
        "checkout_transaction_statements": statements["checkout"] / checkouts,
        "auth_statements": statements["auth"] / checkouts,
        "background_statements_per_checkout": statements["background"] / checkouts,
        "background_units_per_checkout": kinds["background"] / checkouts,
        "checkout_statement_list": [
            {"sql": sql, "per_checkout": count / checkouts}
            for sql, count in checkout_statements.most_common(30)
        ],
        "background_statement_list": [
            {"sql": sql, "per_checkout": count / checkouts}
            for sql, count in background_statements.most_common(12)
        ],
    }


async def count(cluster: Cluster, server: Server, key: str, seconds: float) -> dict[str, Any]:
    """Sequential checkouts for ``seconds`` with every statement logged, then classified."""
    log_path = cluster.data_dir / "pgdata" / "log"
    offset = log_path.stat().st_size
    cluster.psql("postgres", "alter system set log_statement = 'all'; select pg_reload_conf();")
    try:
        await asyncio.sleep(1.0)
        spec = Spec(
            host="127.0.0.1",
            port=server.port,
            mode="checkout",
            concurrency=1,
            warmup_s=0.0,
            duration_s=seconds,
            keys=[key],
        )
        served = (await run_load(spec, [server], cluster))["ok"]
        await asyncio.sleep(1.0)
    finally:
        cluster.psql("postgres", "alter system reset log_statement; select pg_reload_conf();")
    with log_path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
    return classify(text, served)
