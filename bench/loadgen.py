"""The HTTP load generator: keep-alive HTTP/1.1 connections on raw asyncio streams (uvloop).

It runs as its own process (``python -m bench.loadgen`` reading a JSON spec on stdin and writing
a JSON result on stdout) so that its CPU is not the server's and can be measured: the result
carries the generator's own CPU seconds, and the run warns when it came near a full core.
Each connection sends one request at a time; connection ``i`` uses API key ``i mod len(keys)``.
Only requests that complete inside the measured window (after the warm-up) are counted.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
import time
import uuid
from typing import Any

import msgspec

from bench.stats import summarize_ms, tail_in_time

ORDER_IDS_KEPT_PER_CONNECTION = 50


class Spec(msgspec.Struct, frozen=True, kw_only=True):
    host: str
    port: int
    extra_ports: list[int] = []
    """Further server processes: connection ``i`` goes to port ``i mod (1 + len(extra_ports))``."""
    mode: str  # "checkout", "get_order" or "wallet"
    concurrency: int
    warmup_s: float
    duration_s: float
    keys: list[str]
    order_ids: list[list[str]] = []  # per key, for "get_order"
    service_id: str = "1"
    quantity: int = 10
    link: str = "https://instagram.com/p/bench"
    rate_per_s: float = 0.0
    """Open loop when set: requests are scheduled at this total rate, and a request's latency
    counts from when it was due, so a stalled server is not hidden (no coordinated omission)."""


class _Window:
    def __init__(self, spec: Spec) -> None:
        self.start = time.perf_counter() + spec.warmup_s
        self.end = self.start + spec.duration_s
        self.latencies: list[float] = []
        self.finished: list[float] = []  # each latency's request finished this long into the window
        self.statuses: dict[int, int] = {}
        self.error_sample = ""
        self.order_ids: dict[int, list[str]] = {}


def _request(spec: Spec, key: str, serial: itertools.count[int], ids: list[str]) -> bytes:
    head = f"Host: {spec.host}:{spec.port}\r\nAuthorization: Bearer {key}\r\n"
    if spec.mode == "checkout":
        body = msgspec.json.encode(
            {
                "service_id": spec.service_id,
                "link": spec.link,
                "quantity": spec.quantity,
                "idempotency_key": f"bench-{uuid.uuid4().hex}",
            }
        )
        return (
            f"POST /api/v1/boost/orders HTTP/1.1\r\n{head}Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    if spec.mode == "get_order":
        order_id = ids[next(serial) % len(ids)]
        return f"GET /api/v1/boost/orders/{order_id} HTTP/1.1\r\n{head}\r\n".encode()
    return f"GET /api/v1/wallet HTTP/1.1\r\n{head}\r\n".encode()


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def _connection(spec: Spec, index: int, window: _Window) -> None:
    key = spec.keys[index % len(spec.keys)]
    ids = spec.order_ids[index % len(spec.order_ids)] if spec.order_ids else []
    serial = itertools.count(index)
    ports = [spec.port, *spec.extra_ports]
    reader, writer = await asyncio.open_connection(spec.host, ports[index % len(ports)])
    kept = window.order_ids.setdefault(index % len(spec.keys), [])
    interval_s = spec.concurrency / spec.rate_per_s if spec.rate_per_s else 0.0
    due = time.perf_counter() + (index / spec.rate_per_s if spec.rate_per_s else 0.0)
    try:
        while time.perf_counter() < window.end:
            request = _request(spec, key, serial, ids)
            if interval_s:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                sent, due = due, due + interval_s
            else:
                sent = time.perf_counter()
            writer.write(request)
            status, body = await _read_response(reader)
            done = time.perf_counter()
            if window.start <= done < window.end:
                window.latencies.append(done - sent)
                window.finished.append(done - window.start)
                window.statuses[status] = window.statuses.get(status, 0) + 1
            if status >= 300 and not window.error_sample:
                window.error_sample = body[:300].decode(errors="replace")
            if status == 201 and len(kept) < ORDER_IDS_KEPT_PER_CONNECTION:
                kept.append(msgspec.json.decode(body)["data"]["order_id"])
    finally:
        writer.close()


async def run(spec: Spec) -> dict[str, Any]:
    window = _Window(spec)
    cpu_started, wall_started = time.process_time(), time.perf_counter()
    tasks = [asyncio.create_task(_connection(spec, i, window)) for i in range(spec.concurrency)]
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(result) for result in results if isinstance(result, BaseException)]
    wall_s = time.perf_counter() - wall_started
    ok = sum(count for status, count in window.statuses.items() if status < 300)
    return {
        "mode": spec.mode,
        "concurrency": spec.concurrency,
        "processes": 1 + len(spec.extra_ports),
        "rate_per_s": spec.rate_per_s,
        "requests": len(window.latencies),
        "ok": ok,
        "per_s": ok / spec.duration_s,
        "statuses": {str(status): count for status, count in window.statuses.items()},
        "error_sample": window.error_sample,
        "connection_failures": failures[:3],
        **summarize_ms(window.latencies),
        "tail_in_time": tail_in_time(window.finished, window.latencies, spec.duration_s),
        "generator_cpu_fraction": (time.process_time() - cpu_started) / wall_s,
        "order_ids": [window.order_ids.get(i, []) for i in range(len(spec.keys))],
    }


def main() -> None:
    spec = msgspec.json.decode(sys.stdin.buffer.read(), type=Spec)
    try:
        import uvloop

        result = uvloop.run(run(spec))
    except ImportError:
        result = asyncio.run(run(spec))
    sys.stdout.buffer.write(msgspec.json.encode(result))


if __name__ == "__main__":
    main()
