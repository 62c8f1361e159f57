"""Injected provider faults: each mode imitates a failure seen in real panels.

Which modes perform the action matters to a reseller, because only a performed ``add`` leaves an
order upstream:

- ``latency``: waits ``latency_ms``, then performs the action and replies normally.
- ``http_500``, ``html``, ``error``: reply at once with a 500 page, a 200 HTML page (a proxy's
  error page) or ``{"error": "Simulated provider error"}``; nothing is performed.
- ``timeout``: hangs for ``latency_ms`` (30 s by default) or until the client gives up, whichever
  comes first, then answers 504; nothing is performed.
- ``malformed_json``: performs the action and sends its reply cut short.
- ``reply_lost``: performs the action, starts the reply and drops the connection halfway.
"""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse

from boost_ledger.upstream.sim_state import FaultRule

DEFAULT_TIMEOUT_MS = 30_000
MAX_LATENCY_MS = 120_000
SIMULATED_ERROR = "Simulated provider error"

_HTML_500 = "<html><body><h1>500 Internal Server Error</h1></body></html>"
_HTML_GATEWAY = (
    "<!DOCTYPE html><html><head><title>Just a moment...</title></head>"
    "<body><h1>Checking your browser before accessing the panel.</h1></body></html>"
)
_HTML_504 = "<html><body><h1>504 Gateway Time-out</h1></body></html>"


class SimulatedReplyLost(Exception):
    """Raised mid-body on purpose: the server then closes the connection, reply unfinished."""


def json_response(value: Any, status_code: int = 200) -> Response:
    return Response(msgspec.json.encode(value), status_code, media_type="application/json")


async def faulty_response(
    request: Request, rule: FaultRule, perform: Callable[[], Any]
) -> Response:
    """The response for a request hit by ``rule``; ``perform`` runs the action itself."""
    if rule.mode == "latency":
        await asyncio.sleep(rule.latency_ms / 1000)
        return json_response(perform())
    if rule.mode == "http_500":
        return HTMLResponse(_HTML_500, status_code=500)
    if rule.mode == "html":
        return HTMLResponse(_HTML_GATEWAY)
    if rule.mode == "error":
        return json_response({"error": SIMULATED_ERROR})
    if rule.mode == "timeout":
        await _wait_for_disconnect(request, rule.latency_ms / 1000)
        return HTMLResponse(_HTML_504, status_code=504)
    if rule.mode == "malformed_json":
        # Dropping the last byte of an object or a list never leaves valid JSON.
        return Response(msgspec.json.encode(perform())[:-1], media_type="application/json")
    assert rule.mode == "reply_lost", rule.mode
    perform()
    return StreamingResponse(_cut_off_body(), media_type="application/json")


async def _cut_off_body() -> AsyncIterator[bytes]:
    yield b'{"order": '
    raise SimulatedReplyLost("the simulator drops this reply on purpose")


async def _wait_for_disconnect(request: Request, limit_s: float) -> None:
    """Sleep up to ``limit_s``, ending early when the client hangs up.

    The early end matters on shutdown: the server waits for open requests, and a hung request
    whose client has long gone would otherwise hold it for the whole delay.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(limit_s):
            # The body has been read already, so the next message is the disconnect.
            while (await request.receive())["type"] != "http.disconnect":
                pass
