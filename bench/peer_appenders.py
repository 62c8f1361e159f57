"""The peers' side of ``bench.appenders``: message-db's ``write_message`` (asyncpg, both writes
in one transaction, each with its expected version) and the ``eventsourcing`` library's
PostgreSQL application recorder (psycopg, one thread per client, as the library is used)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

import msgspec

from bench import shapes
from bench.append_spec import AppendSpec, Window


async def _messagedb_worker(pool: Any, worker: int, window: Window) -> None:
    wallet_stream = f"wallet-{uuid.uuid4().hex}"
    version = -1  # message-db's version of a stream that does not exist yet
    serial = worker * 10**9
    write = "select write_message($1, $2, $3, $4::jsonb, $5::jsonb, $6)"
    async with pool.acquire() as connection:
        while not window.done():
            serial += 1
            order = shapes.encoded(shapes.order_placed(serial, worker)).decode()
            debit = shapes.encoded(shapes.funds_debited(serial, worker, 10**12)).decode()
            meta = msgspec.json.encode(shapes.metadata(worker)).decode()
            sent = time.perf_counter()
            async with connection.transaction():
                await connection.execute(
                    write,
                    str(uuid.uuid4()),
                    f"order-{uuid.uuid4().hex}",
                    "OrderPlaced",
                    order,
                    meta,
                    -1,
                )
                await connection.execute(
                    write, str(uuid.uuid4()), wallet_stream, "FundsDebited", debit, meta, version
                )
            version += 1
            window.record(sent, 2)


async def messagedb_run(spec: AppendSpec, window: Window) -> dict[str, Any]:
    import asyncpg

    pool = await asyncpg.create_pool(
        spec.dsn,
        min_size=spec.concurrency,
        max_size=spec.concurrency,
        server_settings={"search_path": "message_store,public"},
    )
    try:
        await asyncio.gather(*(_messagedb_worker(pool, i, window) for i in range(spec.concurrency)))
    finally:
        await pool.close()
    return {}


def eventsourcing_run(spec: AppendSpec, window: Window) -> dict[str, Any]:
    from eventsourcing.persistence import StoredEvent
    from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

    datastore = PostgresDatastore(
        dbname=spec.database,
        host=spec.socket_dir,
        port=5432,
        user="postgres",
        password="",
        pool_size=spec.concurrency,
    )
    recorder = PostgresApplicationRecorder(datastore)
    recorder.create_table()

    def worker(index: int) -> None:
        wallet_id, version, serial = uuid.uuid4(), 0, index * 10**9
        while not window.done():
            serial += 1
            version += 1
            events = [
                StoredEvent(
                    uuid.uuid4(),
                    1,
                    "bench.shapes:OrderPlaced",
                    shapes.encoded(shapes.order_placed(serial, index)),
                ),
                StoredEvent(
                    wallet_id,
                    version,
                    "bench.shapes:FundsDebited",
                    shapes.encoded(shapes.funds_debited(serial, index, 10**12)),
                ),
            ]
            sent = time.perf_counter()
            recorder.insert_events(events)
            window.record(sent, 2)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(spec.concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    datastore.close()
    return {}
