"""The outermost ASGI layer (api/middleware.py), driven with ASGI messages in memory: no I/O."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from structlog.testing import capture_logs

from boost_ledger.api import metrics, middleware
from boost_ledger.api.errors import ApiError
from boost_ledger.api.http import json_response, read_json_body
from boost_ledger.api.middleware import RequestContext

Message = dict[str, Any]


async def _echo(request: Request) -> Response:
    body = await read_json_body(request)
    return json_response({"fields": sorted(body)})


async def _explode(request: Request) -> Response:
    raise RuntimeError("boom")


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


def _app() -> Starlette:
    """The real body helpers and middleware (with the real metrics observer) behind two routes."""
    return Starlette(
        routes=[Route("/echo", _echo, methods=["POST"]), Route("/explode", _explode)],
        exception_handlers={ApiError: _api_error},
        middleware=[Middleware(RequestContext, observe=metrics.observe_request)],
    )


def _scope(method: str, path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "",
        "query_string": b"", "headers": headers, "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def _call(scope: dict[str, Any], incoming: list[Message]) -> list[Message]:
    """Run the app on ``scope``, receiving ``incoming`` in turn; the messages it sent."""
    messages = iter(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        return next(messages)

    async def send(message: Message) -> None:
        sent.append(message)

    await _app()(scope, receive, send)
    return sent


def _answered(method: str, route: str, status: int) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "boost_http_requests_total", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """The middleware's log entries, as structlog would have rendered them."""
    saved = structlog.get_config()
    structlog.configure(cache_logger_on_first_use=False)
    try:
        with capture_logs() as entries:
            # Not a logger cached by earlier tests, which would bypass the capture.
            monkeypatch.setattr(middleware, "log", structlog.get_logger("boost.http"))
            yield entries
    finally:
        structlog.configure(**saved)


async def test_a_client_gone_mid_body_is_499_without_a_traceback(logged):
    """A client that disconnects while its body is read (Starlette's ClientDisconnect) is no
    server error: nothing is sent, no ``request.unhandled`` nor traceback is logged, and both the
    request's log line and ``boost_http_requests_total`` say 499 (client closed request)."""
    before = {status: _answered("POST", "/echo", status) for status in (499, 500)}
    headers = [(b"content-type", b"application/json"), (b"content-length", b"100")]
    sent = await _call(
        _scope("POST", "/echo", headers),
        [{"type": "http.request", "body": b'{"a": ', "more_body": True},
         {"type": "http.disconnect"}],
    )
    assert sent == []
    assert [entry["event"] for entry in logged] == ["request"]
    assert logged[0]["status"] == 499 and logged[0]["route"] == "/echo"
    assert not any("exc_info" in entry or "exception" in entry for entry in logged)
    assert _answered("POST", "/echo", 499) == before[499] + 1
    assert _answered("POST", "/echo", 500) == before[500]


async def test_a_crash_is_still_a_logged_500(logged):
    """The contrast: an unexpected exception stays a 500 with its traceback logged."""
    before = _answered("GET", "/explode", 500)
    sent = await _call(_scope("GET", "/explode", []), [{"type": "http.request", "body": b""}])
    assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 500
    assert [entry["event"] for entry in logged] == ["request.unhandled", "request"]
    assert logged[0]["exc_info"] is True
    assert logged[1]["status"] == 500
    assert _answered("GET", "/explode", 500) == before + 1


async def test_past_the_bound_on_requests_in_flight_the_answer_is_a_503_envelope(logged):
    """With ``max_in_flight`` requests being answered, the next one is answered at once: 503
    SERVICE_UNAVAILABLE in the envelope, with Retry-After and its request id (where uvicorn's
    own bound would write a plain-text 503); once one ends, requests are served again."""
    release = asyncio.Event()

    async def _slow(request: Request) -> Response:
        await release.wait()
        return json_response({"slow": True})

    async def _health(request: Request) -> Response:
        return json_response({"alive": True})

    routes = [Route("/api/slow", _slow), Route("/healthz", _health)]
    app = RequestContext(Starlette(routes=routes), max_in_flight=1)

    async def call(path: str = "/api/slow") -> list[Message]:
        sent: list[Message] = []

        async def receive() -> Message:
            return {"type": "http.request", "body": b""}

        async def send(message: Message) -> None:
            sent.append(message)

        await app(_scope("GET", path, []), receive, send)
        return sent

    first = asyncio.ensure_future(call())
    while app.in_flight == 0:  # noqa: ASYNC110 - the first request reaching its endpoint
        await asyncio.sleep(0)
    refused = await call()
    assert (await call("/healthz"))[0]["status"] == 200  # operations routes always answer
    assert app.in_flight == 1  # neither the refused request nor the health check counted
    release.set()
    served = await first

    start, body = refused[0], refused[1]
    assert start["status"] == 503
    headers = dict(start["headers"])
    assert headers[b"retry-after"] == b"2" and b"x-request-id" in headers
    answer = json.loads(body["body"])
    assert (answer["success"], answer["status"], answer["code"]) == (
        False, 503, "SERVICE_UNAVAILABLE"
    )
    assert served[0]["status"] == 200 and app.in_flight == 0
    assert (await call())[0]["status"] == 200
