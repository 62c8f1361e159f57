"""``GET /metrics``: Prometheus text format.

Two kinds of figures:
- counted in this process as things happen: HTTP requests by method, route template and status,
  their latency, and calls to the provider by action and outcome with their latency (through an
  httpx transport given to the provider client, so ``upstream/`` needs no change);
- read from the database at scrape time, the same from every process: orders by status, refunds
  paid, the submission queue, unknown submissions, the poller's due orders and lag, and the
  feed's head, its not-yet-visible tail and each checkpointed reader's lag. Each query is cheap
  (an index probe or a bounded count) except the one scan of ``orders`` by status, and all of
  them together (the pooled connection too) get ``BOOST_METRICS_QUERY_TIMEOUT_MS``: a query
  still running when it is spent is cancelled, those after it are not run, and each is left out
  of that scrape and counted in ``boost_metrics_query_errors_total``. A stalled database never
  holds a scrape past that bound (one per query would add up to seven of them: at the default
  2 s, past Prometheus's default 10 s scrape timeout, which then loses the whole scrape).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx
import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.process_collector import ProcessCollector
from starlette.requests import Request
from starlette.responses import Response

from boost_ledger.api.runtime import runtime_of
from boost_ledger.ledger.statuses import ORDER_STATUSES
from boost_ledger.upstream.client import ACTION_EXTENSION
from boost_ledger.upstream.transport import (
    MAX_CONNECTIONS,
    ProviderTransport,
    whole_reads,
)

log = structlog.get_logger("boost.metrics")

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

_LATENCY_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
MAX_COUNTED_ROWS = 100_000
PROVIDER_ACTIONS = frozenset(
    {"services", "add", "status", "cancel", "refill", "refill_status", "balance"}
)

HTTP_REQUESTS = Counter(
    "boost_http_requests",
    "HTTP requests answered.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "boost_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["method", "route"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
PROVIDER_CALLS = Counter(
    "boost_provider_calls",
    "Calls to the provider by action and outcome (ok, http_5xx, "
    "timeout, transport_error, cancelled).",
    ["action", "outcome"],
    registry=REGISTRY,
)
PROVIDER_LATENCY = Histogram(
    "boost_provider_call_duration_seconds",
    "Time of a provider call, until its reply has been read whole (ProviderClient's calls) or"
    " its headers have arrived (a caller that streams the body).",
    ["action"],
    buckets=_LATENCY_BUCKETS_S,
    registry=REGISTRY,
)
WORKER_RUNNING = Gauge(
    "boost_worker_child_running",
    "1 while the boost worker child of this boost serve runs, else 0.",
    registry=REGISTRY,
)
WORKER_RESTARTS = Counter(
    "boost_worker_child_restarts",
    "Times the worker child of this boost serve exited or could not be started.",
    registry=REGISTRY,
)
ORDERS = Gauge("boost_orders", "Orders by status.", ["status"], registry=REGISTRY)
REFUNDED_ORDERS = Gauge("boost_refunded_orders", "Orders with a refund paid.", registry=REGISTRY)
REFUNDED_KOBO = Gauge("boost_refunded_kobo", "Sum of the refunds paid, in kobo.", registry=REGISTRY)
QUEUE_DEPTH = Gauge(
    "boost_submission_queue_depth", "Orders waiting to be submitted upstream.", registry=REGISTRY
)
UNKNOWN_SUBMISSIONS = Gauge(
    "boost_submissions_unknown",
    "Orders whose submission outcome needs an operator.",
    registry=REGISTRY,
)
POLLER_DUE = Gauge(
    "boost_poller_due_orders",
    f"Orders due for a status poll (counted up to {MAX_COUNTED_ROWS}).",
    registry=REGISTRY,
)
POLLER_LAG = Gauge(
    "boost_poller_lag_seconds", "How overdue the most overdue status poll is.", registry=REGISTRY
)
FEED_HEAD = Gauge(
    "boost_feed_head_position",
    "The highest global position in the event log.",
    registry=REGISTRY,
)
FEED_INVISIBLE = Gauge(
    "boost_feed_invisible_events",
    "Committed events not yet readable from the feed, held back by an older running "
    f"transaction (counted up to {MAX_COUNTED_ROWS}).",
    registry=REGISTRY,
)
FEED_READER_LAG = Gauge(
    "boost_feed_reader_lag_events",
    "Global positions between the log's head and a reader's checkpoint.",
    ["reader"],
    registry=REGISTRY,
)
FEED_READER_AGE = Gauge(
    "boost_feed_reader_checkpoint_age_seconds",
    "Time since a reader's checkpoint moved.",
    ["reader"],
    registry=REGISTRY,
)
QUERY_ERRORS = Counter(
    "boost_metrics_query_errors",
    "Scrape-time database queries that failed or timed out.",
    ["query"],
    registry=REGISTRY,
)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def observe_request(method: str, route: str, status: int, duration_s: float) -> None:
    """The RequestContext observer: one count and one latency sample per answered request.

    Labels are bounded: routes are templates (or ``<unmatched>``), and a method a client made up
    counts as ``OTHER``.
    """
    method = method if method in _METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_LATENCY.labels(method, route).observe(duration_s)


# --- the provider ---------------------------------------------------------------------------


class InstrumentedTransport(httpx.AsyncBaseTransport):
    """An httpx transport that times each provider call and counts its outcome; it reads whole
    replies (``send_and_read``) when the transport it wraps can."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner
        self._read_whole = whole_reads(inner)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        with _measured(request) as outcome:
            response = await self._inner.handle_async_request(request)
            outcome[0] = "http_5xx" if response.status_code >= 500 else "ok"
            return response

    async def send_and_read(self, request: httpx.Request, max_bytes: int) -> tuple[int, bytes]:
        with _measured(request) as outcome:
            status, body = await self._read_whole(request, max_bytes)
            outcome[0] = "http_5xx" if status >= 500 else "ok"
            return status, body

    async def aclose(self) -> None:
        await self._inner.aclose()


@contextlib.contextmanager
def _measured(request: httpx.Request) -> Iterator[list[str]]:
    """Time the call and count its outcome: the caller sets ``outcome[0]`` once it has a reply."""
    action = _action_of(request)
    started = time.perf_counter()
    outcome = ["transport_error"]
    try:
        yield outcome
    except httpx.TimeoutException:
        outcome[0] = "timeout"
        raise
    except asyncio.CancelledError:
        outcome[0] = "cancelled"  # the client's own deadline for the whole call
        raise
    finally:
        PROVIDER_CALLS.labels(action, outcome[0]).inc()
        PROVIDER_LATENCY.labels(action).observe(time.perf_counter() - started)


def _action_of(request: httpx.Request) -> str:
    named = request.extensions.get(ACTION_EXTENSION)
    if isinstance(named, str):
        return named if named in PROVIDER_ACTIONS else "other"
    try:
        form = urllib.parse.parse_qs(request.content.decode("ascii", "replace"))
    except (httpx.RequestNotRead, ValueError):
        return "other"
    action = (form.get("action") or ["other"])[0]
    return action if action in PROVIDER_ACTIONS else "other"


def instrumented_provider_transport(
    max_connections: int = MAX_CONNECTIONS,
) -> InstrumentedTransport:
    """The transport for ``ProviderClient(transport=...)`` (which then ignores its own
    ``max_connections``, so the connection limit is set here)."""
    return InstrumentedTransport(ProviderTransport(max_connections=max_connections))


# --- scrape-time database figures -----------------------------------------------------------

_QUEUE = "select count(*) from orders where submission = 'queued'"
_UNKNOWN = "select count(*) from orders where submission = 'unknown'"
_POLLER = f"""
select (select count(*) from (select 1 from order_polls where next_check_at <= now()
                               limit {MAX_COUNTED_ROWS}) due) as due,
       coalesce(extract(epoch from now() - (select min(next_check_at) from order_polls
                                            where next_check_at <= now())), 0) as lag_s
"""
_FEED_HEAD = "select coalesce(max(global_position), 0) from events"
_FEED_INVISIBLE = f"""
select count(*) from (
    select 1 from events
     where transaction_id >= (
         select (pg_snapshot_xmin(pg_current_snapshot())::text::bigint + xid_offset)::text::xid8
           from feed_epoch)
     limit {MAX_COUNTED_ROWS}) invisible
"""
_READERS = """
select reader, global_position, extract(epoch from now() - updated_at) as age_s
  from feed_checkpoints order by reader limit 100
"""
_BY_STATUS = """
select status, count(*) as orders, count(*) filter (where refunded_kobo > 0) as refunded,
       coalesce(sum(refunded_kobo), 0) as refunded_kobo
  from orders group by status
"""


async def refresh_database_gauges(pool: asyncpg.Pool[Any], timeout_s: float) -> None:
    """Set the database-derived gauges within ``timeout_s`` in all; a query that fails, or that
    the time left does not reach, leaves its gauges as they were."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    async with pool.acquire(timeout=timeout_s) as connection:

        async def query(name: str, sql: str) -> list[asyncpg.Record] | None:
            try:
                left_s = deadline - loop.time()
                if left_s <= 0:
                    raise TimeoutError
                return await connection.fetch(sql, timeout=left_s)
            except (TimeoutError, asyncpg.PostgresError) as error:
                QUERY_ERRORS.labels(name).inc()
                log.warning("metrics.query_failed", query=name, error=type(error).__name__)
                return None

        if (rows := await query("queue", _QUEUE)) is not None:
            QUEUE_DEPTH.set(rows[0][0])
        if (rows := await query("unknown", _UNKNOWN)) is not None:
            UNKNOWN_SUBMISSIONS.set(rows[0][0])
        if (rows := await query("poller", _POLLER)) is not None:
            POLLER_DUE.set(rows[0]["due"])
            POLLER_LAG.set(float(rows[0]["lag_s"]))
        head = await query("feed_head", _FEED_HEAD)
        if head is not None:
            FEED_HEAD.set(head[0][0])
        if (rows := await query("feed_invisible", _FEED_INVISIBLE)) is not None:
            FEED_INVISIBLE.set(rows[0][0])
        if head is not None and (rows := await query("feed_readers", _READERS)) is not None:
            FEED_READER_LAG.clear()
            FEED_READER_AGE.clear()
            for row in rows:
                FEED_READER_LAG.labels(row["reader"]).set(head[0][0] - row["global_position"])
                FEED_READER_AGE.labels(row["reader"]).set(float(row["age_s"]))
        if (rows := await query("orders_by_status", _BY_STATUS)) is not None:
            _set_by_status(rows)


def _set_by_status(rows: list[asyncpg.Record]) -> None:
    counts = {row["status"]: row["orders"] for row in rows}
    for status in sorted(set(ORDER_STATUSES) | set(counts)):
        ORDERS.labels(status).set(counts.get(status, 0))
    REFUNDED_ORDERS.set(sum(row["refunded"] for row in rows))
    REFUNDED_KOBO.set(sum(row["refunded_kobo"] for row in rows))


async def metrics_endpoint(request: Request) -> Response:
    runtime = runtime_of(request)
    timeout_s = runtime.settings.metrics_query_timeout_ms / 1000
    try:
        await refresh_database_gauges(runtime.pool, timeout_s)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
        # The database is down: still answer, with the process's own figures.
        QUERY_ERRORS.labels("connection").inc()
        log.warning("metrics.database_unavailable", error=type(error).__name__)
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)
