"""Security: ownership, key rotation across processes, keys kept out of logs and errors, per-key
rate limits, and deadlines so that a slow client or a slow query cannot hold the server."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from processes import ServeProcess
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support import bearer, http_server, open_funded_account, production_server, seed_catalog

from boost_ledger.api.app import create_app
from boost_ledger.api.rate_limit import RateLimiter
from boost_ledger.api.runtime import Runtime
from boost_ledger.ledger import accounts
from boost_ledger.ledger.keys import ABILITIES
from boost_ledger.settings import Settings

ORDERS = "/api/v1/boost/orders"
NOT_YOURS = {"success": False, "status": 404, "code": "BOOST_ORDER_NOT_FOUND",
             "message": "The order ID does not belong to the authenticated account."}


@pytest.fixture(scope="module", autouse=True)
async def _catalog(pool: asyncpg.Pool[Any]) -> None:
    await seed_catalog(pool)


async def _place(client: httpx.AsyncClient, key: str, idempotency_key: str) -> dict[str, Any]:
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 1000,
            "idempotency_key": idempotency_key}
    response = await client.post(ORDERS, json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# --- ownership --------------------------------------------------------------------------------


async def test_another_accounts_order_is_404_for_get_check_and_cancel(pool, client):
    """B cannot see, check or cancel A's order: the same 404 as for an order that does not
    exist (never 403, which would confirm it exists), and A's order and money are untouched."""
    owner_id, owner_key = await open_funded_account(pool, 10_000_000)
    _, intruder_key = await open_funded_account(pool, 10_000_000)
    order = await _place(client, owner_key, "mine")
    events = await pool.fetchval("select count(*) from events")
    for method, suffix in (("GET", ""), ("POST", "/check"), ("POST", "/cancel")):
        for order_id in (order["order_id"], "999999999"):
            response = await client.request(method, f"{ORDERS}/{order_id}{suffix}",
                                            headers=bearer(intruder_key))
            assert (response.status_code, response.json()) == (404, NOT_YOURS)
    listing = await client.get(ORDERS, headers=bearer(intruder_key))
    assert listing.json()["data"] == []
    assert await pool.fetchval("select count(*) from events") == events
    mine = await client.get(f"{ORDERS}/{order['order_id']}", headers=bearer(owner_key))
    assert mine.json()["data"]["status"] == "pending"
    wallet = await client.get("/api/v1/wallet", headers=bearer(owner_key))
    assert wallet.json()["data"]["balance"] == order["balance_after"]
    assert await pool.fetchval("select count(*) from orders where account_id = $1",
                               owner_id) == 1


# --- rotation across processes, and what the logs hold ------------------------------------------


@pytest.fixture(scope="module")
async def two_servers(
    dsn: str, simulator_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[ServeProcess, ServeProcess]]:
    """Two real `boost serve` processes, each with its own pool, over the same database."""
    folder = tmp_path_factory.mktemp("serve")
    provider = f"{simulator_url}/api/v2"
    first = ServeProcess(dsn, provider, folder / "first.log")
    second = ServeProcess(dsn, provider, folder / "second.log")
    async with first, second:
        yield first, second


async def test_a_rotated_key_stops_at_once_on_every_process(pool, two_servers):
    """After `keys rotate` commits, the old key is refused by both processes on the very next
    request, reads and checkouts alike: a process that remembers the key from an earlier
    checkout has the checkout statement confirm it. The new key works on both."""
    account_id, old_key = await open_funded_account(pool, 10_000_000)
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 100}
    async with httpx.AsyncClient(timeout=10.0) as http:
        for number, server in enumerate(two_servers):
            response = await http.get(f"{server.url}/api/v1/wallet", headers=bearer(old_key))
            assert response.status_code == 200
            placed = await http.post(f"{server.url}{ORDERS}", headers=bearer(old_key),
                                     json={**body, "idempotency_key": f"before-{number}"})
            assert placed.status_code == 201
        async with pool.acquire() as connection:
            new_key, _ = await accounts.rotate_key(connection, account_id, list(ABILITIES))
        events = await pool.fetchval("select count(*) from events")
        for number, server in enumerate(two_servers):
            old = await http.get(f"{server.url}/api/v1/wallet", headers=bearer(old_key))
            assert (old.status_code, old.json()["code"]) == (401, "UNAUTHENTICATED")
            for idempotency_key in (f"after-{number}", f"before-{number}"):  # new, and a replay
                refused = await http.post(f"{server.url}{ORDERS}", headers=bearer(old_key),
                                          json={**body, "idempotency_key": idempotency_key})
                assert (refused.status_code, refused.json()["code"]) == (401, "UNAUTHENTICATED")
            invalid = await http.post(f"{server.url}{ORDERS}", headers=bearer(old_key),
                                      json={"service_id": "1", "idempotency_key": "x"})
            assert invalid.status_code == 401  # the dead key before the body's 422
        assert await pool.fetchval("select count(*) from events") == events
        for number, server in enumerate(two_servers):
            new = await http.get(f"{server.url}/api/v1/wallet", headers=bearer(new_key.secret))
            assert new.status_code == 200
            placed = await http.post(f"{server.url}{ORDERS}", headers=bearer(new_key.secret),
                                     json={**body, "idempotency_key": f"new-{number}"})
            assert placed.status_code == 201


async def test_a_disabled_account_stops_buying_at_once(pool, client):
    """A key the server remembers from a checkout: once its account is disabled, the next
    checkout is 403 USER_DISABLED and appends nothing; reinstated, it buys again."""
    account_id, key = await open_funded_account(pool, 10_000_000)
    await _place(client, key, "standing-1")
    async with pool.acquire() as connection:
        assert await accounts.change_standing(connection, account_id, "disable")
    events = await pool.fetchval("select count(*) from events")
    body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 1000,
            "idempotency_key": "standing-2"}
    refused = await client.post(ORDERS, json=body, headers=bearer(key))
    assert (refused.status_code, refused.json()["code"]) == (403, "USER_DISABLED")
    assert await pool.fetchval("select count(*) from events") == events
    async with pool.acquire() as connection:
        assert await accounts.change_standing(connection, account_id, "reinstate")
    assert (await _place(client, key, "standing-2"))["status"] == "pending"


async def test_keys_never_appear_in_logs_or_error_bodies(pool, two_servers):
    """A key sent in every place a client might put it (the header, a wrong scheme, the path, the
    query, X-Request-Id, a body value; valid, revoked and forged) shows up in no answer and in
    no line that either process logged."""
    account_id, key = await open_funded_account(pool, 1_000_000)
    async with pool.acquire() as connection:
        revoked = key
        key = (await accounts.rotate_key(connection, account_id, list(ABILITIES)))[0].secret
    forged = key[:-8] + "AAAAAAAA"
    server = two_servers[0]
    secrets = (key, revoked, forged)
    async with httpx.AsyncClient(base_url=server.url, timeout=10.0) as http:
        answers = []
        for secret in secrets:
            answers += [
                await http.get("/api/v1/wallet", headers=bearer(secret)),
                await http.get("/api/v1/wallet", headers={"Authorization": f"Basic {secret}"}),
                await http.get(f"/api/v1/{secret}", headers=bearer(secret)),
                await http.get(f"/api/v1/boost/services/{secret}", headers=bearer(key)),
                await http.get(f"/api/v1/wallet?api_key={secret}", headers=bearer(secret)),
                await http.get("/api/v1/wallet", headers={**bearer(secret),
                                                         "X-Request-Id": secret}),
                await http.post(ORDERS, headers=bearer(secret), json={
                    "service_id": "1", "link": secret, "quantity": 1000,
                    "idempotency_key": "leak-check"}),
                await http.post(ORDERS, headers=bearer(secret), content=secret.encode()),
            ]
    assert {answer.status_code for answer in answers} >= {200, 401, 404, 415, 422}
    await asyncio.sleep(0.2)  # let the processes flush their last log lines
    logs = two_servers[0].log_text() + two_servers[1].log_text()
    assert '"event": "request"' in logs or '"event":"request"' in logs
    for secret in secrets:
        body = secret.split("_", 2)[2]  # the secret part, without the public prefix and key id
        assert body not in logs
        for answer in answers:
            assert body not in answer.text
            assert all(body not in value for value in answer.headers.values())


# --- rate limits --------------------------------------------------------------------------------


def test_the_token_bucket_allows_a_burst_then_the_rate():
    """Burst 3 at 2/s: three at once, then one per half second; Retry-After rounds up."""
    now = [1000.0]
    limiter = RateLimiter(2.0, 3, clock=lambda: now[0])
    assert [limiter.retry_after_s("k") for _ in range(3)] == [None, None, None]
    assert limiter.retry_after_s("k") == 1
    assert limiter.retry_after_s("other") is None, "each key has its own bucket"
    now[0] += 0.5
    assert limiter.retry_after_s("k") is None
    assert limiter.retry_after_s("k") == 1
    assert RateLimiter(0.0, 1).retry_after_s("k") is None, "rate 0 turns the limit off"


def test_the_limiter_forgets_least_recent_keys_beyond_its_bound():
    limiter = RateLimiter(1.0, 1, max_keys=2)
    for name in ("a", "b", "c"):
        limiter.retry_after_s(name)
    assert limiter.tracked_keys() == 2


def _app(runtime: Runtime, routes: list[Route] | None = None, **overrides: Any) -> Any:
    settings = Settings(database_url=runtime.settings.database_url, workers_enabled=False,
                        demo_account=False, **overrides)
    return create_app(Runtime(settings=settings, pool=runtime.pool), extra_routes=routes or [])


async def test_a_key_over_its_rate_gets_429_with_retry_after(pool, runtime):
    """BOOST_RATE_LIMIT_BURST=3, BOOST_RATE_LIMIT_PER_S=1: the 4th request at once is 429
    RATE_LIMITED with Retry-After; another key is unaffected; after the wait it passes."""
    _, key = await open_funded_account(pool)
    _, other = await open_funded_account(pool)
    async with http_server(_app(runtime, rate_limit_per_s=1.0, rate_limit_burst=3)) as url, \
            httpx.AsyncClient(base_url=url, timeout=10.0) as http:
        statuses = [(await http.get("/api/v1/wallet", headers=bearer(key))).status_code
                    for _ in range(3)]
        assert statuses == [200, 200, 200]
        limited = await http.get("/api/v1/wallet", headers=bearer(key))
        assert limited.status_code == 429
        assert limited.json()["code"] == "RATE_LIMITED"
        assert int(limited.headers["retry-after"]) >= 1
        assert (await http.get("/api/v1/wallet", headers=bearer(other))).status_code == 200
        await asyncio.sleep(int(limited.headers["retry-after"]))
        assert (await http.get("/api/v1/wallet", headers=bearer(key))).status_code == 200


# --- deadlines ----------------------------------------------------------------------------------


async def _slow(request: Request) -> Response:
    await asyncio.sleep(30)
    return Response("late")


async def _slow_query(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    await runtime.pool.execute("select pg_sleep(30)")
    return Response("late")


async def test_a_client_trickling_its_body_gets_408_and_holds_nothing(pool, runtime):
    """A body promised but not sent within BOOST_BODY_TIMEOUT_S: 408 REQUEST_TIMEOUT, while the
    server keeps answering others."""
    _, key = await open_funded_account(pool)
    async with http_server(_app(runtime, body_timeout_s=0.5)) as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        started = time.monotonic()
        head_lines = (f"POST {ORDERS} HTTP/1.1", "Host: x", f"Authorization: Bearer {key}",
                      "Content-Type: application/json", "Content-Length: 1000", "", '{"a')
        writer.write("\r\n".join(head_lines).encode())
        await writer.drain()
        async with httpx.AsyncClient(base_url=url) as http:
            assert (await http.get("/healthz")).status_code == 200
        head = await asyncio.wait_for(reader.read(4096), timeout=10)
        writer.close()
        assert head.startswith(b"HTTP/1.1 408"), head
        assert b'"code":"REQUEST_TIMEOUT"' in head
        assert time.monotonic() - started < 5


async def test_a_request_over_its_deadline_is_503_and_cancelled(runtime):
    """A handler still busy after BOOST_REQUEST_TIMEOUT_S: cancelled, 503 with Retry-After."""
    app = _app(runtime, [Route("/slow", _slow)], request_timeout_s=0.5)
    async with http_server(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
        started = time.monotonic()
        response = await http.get("/slow")
        assert time.monotonic() - started < 5
    assert response.status_code == 503
    assert response.json()["code"] == "SERVICE_UNAVAILABLE"
    assert response.headers["retry-after"]


async def test_a_statement_over_the_database_timeout_is_503(dsn, runtime):
    """Every pooled connection carries statement_timeout (BOOST_STATEMENT_TIMEOUT_MS): a slow
    statement is cancelled by PostgreSQL and the client gets 503 SERVICE_UNAVAILABLE."""
    from boost_ledger import postgres

    slow_pool = await postgres.create_pool(dsn, min_size=1, max_size=2, statement_timeout_ms=300)
    try:
        assert await slow_pool.fetchval("show statement_timeout") == "300ms"
        settings = Settings(database_url=dsn, workers_enabled=False, demo_account=False)
        app = create_app(Runtime(settings=settings, pool=slow_pool),
                         extra_routes=[Route("/slow-query", _slow_query)])
        async with http_server(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            response = await http.get("/slow-query")
        assert (response.status_code, response.json()["code"]) == (503, "SERVICE_UNAVAILABLE")
        assert response.headers["retry-after"]
    finally:
        await slow_pool.close()


async def _unread_pipeline(
    address: tuple[str, int], requests: int
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection that sends ``requests`` pipelined GETs of the OpenAPI document (about 60 KB
    each: far more than the sockets' buffers hold) and reads nothing yet."""
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    client.connect(address)
    client.setblocking(False)
    reader, writer = await asyncio.open_connection(sock=client)
    writer.write(b"GET /api/v1/openapi.json HTTP/1.1\r\nhost: x\r\n\r\n" * requests)
    return reader, writer


def _answered(status: int) -> float:
    from boost_ledger.api import metrics

    labels = {"method": "GET", "route": "/api/v1/openapi.json", "status": str(status)}
    return metrics.REGISTRY.get_sample_value("boost_http_requests_total", labels) or 0.0


async def test_a_deadline_passed_waiting_for_a_client_that_does_not_read_is_a_503(runtime):
    """A client pipelines requests and stops reading: its next answer waits (uvicorn's write
    flow control) until the request's deadline. That request is answered 503 in the envelope,
    once the client reads again, and counted (and logged) as the 503 it got; the next ones are
    answered as usual. (It was answered uvicorn's plain-text 500, the connection closed, yet
    logged and counted as a 200: the deadline took the head for sent once it was handed on.)"""
    app = _app(runtime, request_timeout_s=0.5)
    requests = 200
    async with production_server(app, runtime.settings) as address:
        before = {status: _answered(status) for status in (200, 500, 503)}
        reader, writer = await _unread_pipeline(address, requests)
        try:
            await asyncio.sleep(2.0)  # not reading, for four deadlines
            statuses = []
            while len(statuses) < requests:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
                except asyncio.IncompleteReadError:
                    break  # the server closed the connection
                length = int(head.split(b"content-length: ")[1].split(b"\r\n")[0])
                body = await asyncio.wait_for(reader.readexactly(length), 10)
                status = int(head.split(b" ")[1])
                statuses.append(status)
                if status != 200:
                    assert status == 503 and b"retry-after" in head, head
                    assert b'"code":"SERVICE_UNAVAILABLE"' in body, body
        finally:
            writer.close()
    assert len(statuses) == requests, f"the connection ended after {len(statuses)} answers"
    assert statuses.count(503) >= 1, "no request waited past its deadline"
    for status in (200, 500, 503):
        assert _answered(status) - before[status] == statuses.count(status), status


async def test_a_client_that_never_reads_holds_a_late_request_for_a_bounded_time(runtime):
    """The 503 of a request past its deadline waits for the client like any answer, but for
    ``body_timeout_s`` at most: a client that pipelines requests and never reads (nor closes)
    no longer holds that request, and its place under the in-flight limit, for as long as it
    keeps the connection open. The request ends (logged and counted as uvicorn's 500) while the
    client still holds the connection."""
    app = _app(runtime, request_timeout_s=0.3, body_timeout_s=0.5)
    async with production_server(app, runtime.settings) as address:
        before = _answered(500)
        _reader, writer = await _unread_pipeline(address, 200)
        try:
            for _ in range(100):  # 5 s: ten times the deadline and the bound together
                if _answered(500) > before:
                    break
                await asyncio.sleep(0.05)
            assert _answered(500) - before == 1, "the late request was still held"
            assert not writer.is_closing()
        finally:
            writer.close()
