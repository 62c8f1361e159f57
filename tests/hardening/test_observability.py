"""/metrics (Prometheus text), /healthz and /readyz, against the real app over HTTP."""

from __future__ import annotations

import time

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import (
    bearer,
    http_server,
    make_pool,
    open_funded_account,
    production_server,
    seed_catalog,
)

from boost_ledger import postgres
from boost_ledger.api import metrics
from boost_ledger.api.app import create_app
from boost_ledger.api.runtime import Runtime
from boost_ledger.ledger import store
from boost_ledger.settings import Settings
from boost_ledger.upstream.client import ProviderClient

ORDERS = "/api/v1/boost/orders"


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _samples(text: str) -> Samples:
    """Every sample of a scrape by (name, sorted labels)."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


async def _scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return _samples(response.text)


async def test_healthz_answers_while_the_process_lives(client):
    response = await client.get("/healthz")
    assert (response.status_code, response.json()) == (
        200, {"success": True, "data": {"status": "ok"}})


async def test_readyz_is_ready_on_a_migrated_database(client):
    response = await client.get("/readyz")
    assert (response.status_code, response.json()["data"]) == (200, {"status": "ready"})


async def test_readyz_is_503_before_migrations_and_without_a_database(test_server, runtime):
    """An empty database (migrations pending) and a closed pool: 503 SERVICE_UNAVAILABLE."""
    admin = await asyncpg.connect(test_server.admin_uri)
    try:
        await admin.execute('drop database if exists "boost_unmigrated" with (force)')
        await admin.execute('create database "boost_unmigrated"')
    finally:
        await admin.close()
    empty = await make_pool(postgres.with_database(test_server.admin_uri, "boost_unmigrated"), 2)
    closed = await make_pool(postgres.with_database(test_server.admin_uri, "boost_unmigrated"), 2)
    await closed.close()
    try:
        for pool, reason in ((empty, "migrations are not applied"), (closed, "cannot be reached")):
            app = create_app(Runtime(settings=runtime.settings, pool=pool))
            async with http_server(app) as url, httpx.AsyncClient(base_url=url) as http:
                response = await http.get("/readyz")
                assert response.status_code == 503
                assert response.json()["code"] == "SERVICE_UNAVAILABLE"
                assert reason in response.json()["message"]
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.get("/metrics")).status_code == 200, "metrics even then"
    finally:
        await empty.close()


async def test_metrics_count_requests_by_route_template_and_status(pool, client):
    """Requests are counted by method, route template (never the raw path) and status, with a
    latency histogram; an unknown path counts as <unmatched>."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 10_000_000)
    before = await _scrape(client)
    await client.get(f"{ORDERS}/123456789", headers=bearer(key))
    await client.get(f"{ORDERS}/987654321", headers=bearer(key))
    await client.get("/no/such/path")
    await client.get("/api/v1/no/such/path", headers=bearer(key))
    after = await _scrape(client)
    labels = (("method", "GET"), ("route", "/api/v1/boost/orders/{order_id}"), ("status", "404"))
    name = "boost_http_requests_total"
    assert after[(name, labels)] - before.get((name, labels), 0) == 2
    unmatched = (("method", "GET"), ("route", "<unmatched>"), ("status", "404"))
    assert after[(name, unmatched)] - before.get((name, unmatched), 0) == 2
    assert not any("/api/v1/api/v1" in str(sample) for sample in after)
    count = ("boost_http_request_duration_seconds_count",
             (("method", "GET"), ("route", "/api/v1/boost/orders/{order_id}")))
    assert after[count] - before.get(count, 0) == 2
    assert not any("123456789" in str(sample) for sample in after)


async def test_metrics_read_orders_refunds_queue_poller_and_feed_from_the_database(pool, client):
    """The database figures equal what the tables say at the time of the scrape."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 10_000_000)
    body = {"service_id": "1", "link": "https://instagram.com/p/m", "quantity": 1000}
    first = await client.post(ORDERS, json={**body, "idempotency_key": "m-1"}, headers=bearer(key))
    await client.post(ORDERS, json={**body, "idempotency_key": "m-2"}, headers=bearer(key))
    canceled = await client.post(f"{ORDERS}/{first.json()['data']['order_id']}/cancel",
                                 headers=bearer(key))
    assert canceled.status_code == 200, canceled.text
    async with pool.acquire() as connection:
        await connection.execute(
            "insert into order_polls (order_id, next_check_at) values (1, now() - interval '90 s')"
            " on conflict do nothing")
        await store.save_checkpoint(connection, "metrics-test", store.FeedPosition(1, 1))
    samples = await _scrape(client)
    statuses = dict(await pool.fetch("select status, count(*) from orders group by status"))
    for status, count in statuses.items():
        assert samples[("boost_orders", (("status", status),))] == count
    assert samples[("boost_orders", (("status", "completed"),))] == statuses.get("completed", 0)
    refunded = await pool.fetchrow(
        "select count(*) filter (where refunded_kobo > 0) as n, sum(refunded_kobo) as kobo"
        " from orders")
    assert samples[("boost_refunded_orders", ())] == refunded["n"] >= 1
    assert samples[("boost_refunded_kobo", ())] == refunded["kobo"]
    queued = await pool.fetchval("select count(*) from orders where submission = 'queued'")
    assert samples[("boost_submission_queue_depth", ())] == queued >= 1
    assert samples[("boost_poller_due_orders", ())] >= 1
    assert samples[("boost_poller_lag_seconds", ())] >= 90
    head = await pool.fetchval("select max(global_position) from events")
    assert samples[("boost_feed_head_position", ())] == head
    assert samples[("boost_feed_reader_lag_events", (("reader", "metrics-test"),))] == head - 1
    assert ("boost_feed_invisible_events", ()) in samples
    assert ("boost_submissions_unknown", ()) in samples


async def test_provider_calls_are_timed_and_counted_by_outcome(simulator_url, simulator):
    """The instrumented transport counts each provider call by action and outcome."""
    provider = ProviderClient(f"{simulator_url}/api/v2", "sim-key", timeout_s=2.0, read_retries=0,
                              transport=metrics.instrumented_provider_transport())
    try:
        ok = metrics.PROVIDER_CALLS.labels("services", "ok")
        failed = metrics.PROVIDER_CALLS.labels("services", "http_5xx")
        ok_before, failed_before = ok._value.get(), failed._value.get()
        await provider.services()
        await simulator.post("/faults", json={"action": "services", "mode": "http_500"})
        with pytest.raises(Exception, match="HTTP 500"):
            await provider.services()
        assert ok._value.get() == ok_before + 1
        assert failed._value.get() == failed_before + 1
        text = (await _scrape_registry()).decode()
        assert 'boost_provider_call_duration_seconds_count{action="services"}' in text
    finally:
        await provider.aclose()


async def _scrape_registry() -> bytes:
    from prometheus_client import generate_latest

    return generate_latest(metrics.REGISTRY)


async def test_a_stalled_database_holds_a_scrape_no_longer_than_its_bound(dsn, pool):
    """Every table the scrape reads locked by another session: the scrape still answers, within
    BOOST_METRICS_QUERY_TIMEOUT_MS for all its queries together (not that bound once per query,
    which at the default 2 s added up past Prometheus's 10 s scrape timeout), and counts each
    query it left out."""
    bound_s = 0.5
    settings = Settings(database_url=dsn, workers_enabled=False, demo_account=False,
                        metrics_query_timeout_ms=int(bound_s * 1000))
    app = create_app(Runtime(settings=settings, pool=pool))
    locker = await postgres.owner_connection(dsn)
    try:
        async with http_server(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            before = await _scrape(http)
            async with locker.transaction():
                await locker.execute(
                    "lock table orders, events, order_polls, feed_checkpoints, feed_epoch"
                    " in access exclusive mode")
                started = time.monotonic()
                response = await http.get("/metrics")
                took_s = time.monotonic() - started
    finally:
        await locker.close()
    assert response.status_code == 200
    after = _samples(response.text)
    assert took_s < bound_s + 0.6, f"the scrape took {took_s:.2f} s"
    assert ("process_cpu_seconds_total", ()) in after, "the process's own figures, still"
    errors = "boost_metrics_query_errors_total"
    for name in ("queue", "unknown", "poller", "feed_head", "feed_invisible", "orders_by_status"):
        labels = (("query", name),)
        assert after[(errors, labels)] - before.get((errors, labels), 0) == 1, name


async def test_the_servers_own_warnings_are_json_lines_too(runtime):
    """What uvicorn logs through the standard library (here a malformed request, which any
    client can send) is one JSON line among the others, not bare text on stderr; so is a
    library's record at a level of its own (35 is logged as a warning: structlog knows only the
    standard levels, and such a record was a "Logging error" traceback)."""
    import asyncio
    import io
    import json
    import logging

    import structlog

    from boost_ledger import logs

    saved = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    buffer = io.StringIO()
    logs.configure("info", file=buffer)
    try:
        async with production_server(create_app(runtime), runtime.settings) as address:
            reader, writer = await asyncio.open_connection(*address)
            writer.write(b"NOT\x01HTTP\r\n\r\n")
            assert (await asyncio.wait_for(reader.read(), 10)).startswith(b"HTTP/1.1 400")
            writer.close()
        logging.getLogger("a.library").log(35, "a level of its own")
    finally:
        structlog.configure(**saved)
        logging.getLogger().handlers[:] = handlers
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    expected = {"logger": "uvicorn.error", "event": "Invalid HTTP request received.",
                "level": "warning"}
    assert any(expected.items() <= line.items() for line in lines), lines
    # A level between the standard ones (a library's own) is the standard one below it.
    custom = {"logger": "a.library", "event": "a level of its own", "level": "warning"}
    assert any(custom.items() <= line.items() for line in lines), lines
