"""Appending a checkout's two events, the same bytes, through three event stores: ours
(``boost_ledger.ledger.store.append`` on asyncpg), the ``eventsourcing`` library's PostgreSQL
application recorder and message-db's ``write_message`` (``peer_appenders``).

Runs as its own process (``python -m bench.appenders`` with a JSON spec on stdin, a JSON result
on stdout) so that the client's CPU is its own and can be reported.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections import deque
from typing import Any

import msgspec

from bench import shapes
from bench.append_spec import AppendSpec, Wallet, Window
from bench.peer_appenders import eventsourcing_run, messagedb_run
from bench.stats import summarize_ms

ID_BLOCK = 1000


async def _ours_worker(pool: Any, wallet: Wallet, window: Window) -> None:
    from boost_ledger.ledger import store
    from boost_ledger.ledger.events import debit_event_id, order_stream, wallet_stream

    order_ids: deque[int] = deque()
    async with pool.acquire() as connection:
        while not window.done():
            if len(order_ids) < window.spec.orders_per_append:
                rows = await connection.fetch(
                    "select nextval('order_id_seq') from generate_series(1, $1)", ID_BLOCK
                )
                order_ids.extend(row[0] for row in rows)
            batch = []
            for _ in range(window.spec.orders_per_append):
                order_id = order_ids.popleft()
                wallet.version += 1
                wallet.balance_kobo -= shapes.PRICE_KOBO
                batch.append(
                    store.NewEvent(
                        stream_id=order_stream(order_id),
                        version=1,
                        event=shapes.order_placed(order_id, wallet.account_id),
                    )
                )
                batch.append(
                    store.NewEvent(
                        stream_id=wallet_stream(wallet.account_id),
                        version=wallet.version,
                        event=shapes.funds_debited(
                            order_id, wallet.account_id, wallet.balance_kobo
                        ),
                        event_id=debit_event_id(order_id),
                    )
                )
            sent = time.perf_counter()
            async with connection.transaction():
                await store.append(connection, batch, shapes.metadata(wallet.account_id))
            window.record(sent, len(batch))


async def _ours(spec: AppendSpec, window: Window) -> dict[str, Any]:
    from boost_ledger import postgres

    pool = await postgres.create_pool(
        spec.dsn,
        min_size=spec.concurrency,
        max_size=spec.concurrency,
        statement_timeout_ms=60_000,
        application_name="bench-append",
    )
    try:
        wallets = spec.wallets[: spec.concurrency]
        assert len(wallets) == spec.concurrency, "one wallet per appending connection"
        await asyncio.gather(*(_ours_worker(pool, wallet, window) for wallet in wallets))
    finally:
        await pool.close()
    return {"wallets": msgspec.to_builtins(wallets)}


def run(spec: AppendSpec) -> dict[str, Any]:
    window = Window(spec)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    if spec.kind == "eventsourcing":
        extra = eventsourcing_run(spec, window)
    else:
        runner = _ours if spec.kind == "ours" else messagedb_run
        try:
            import uvloop

            extra = uvloop.run(runner(spec, window))
        except ImportError:
            extra = asyncio.run(runner(spec, window))
    wall_s = time.perf_counter() - wall_started
    elapsed_s = wall_s if spec.target_events else spec.duration_s
    return {
        "kind": spec.kind,
        "concurrency": spec.concurrency,
        "orders_per_append": spec.orders_per_append,
        "appends_per_s": len(window.latencies) / elapsed_s,
        "events_per_s": window.events / elapsed_s,
        "events": window.events,
        "elapsed_s": elapsed_s,
        **summarize_ms(window.latencies),
        "client_cpu_fraction": (time.process_time() - cpu_started) / wall_s,
        **extra,
    }


def main() -> None:
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=AppendSpec)
    sys.stdout.buffer.write(msgspec.json.encode(run(spec)))


if __name__ == "__main__":
    main()
