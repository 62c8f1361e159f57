"""Outermost ASGI layer: request id, one log line per request, the bound on requests in flight,
the last-resort 500, and ``connection: close`` on an answer sent before a 100-continue body.

A client that goes away before its request is answered is recorded as 499, nginx's "client
closed request": not a server error, and nothing to answer. Past ``MAX_IN_FLIGHT`` requests
of the API being answered at once, another is answered 503 at once, in the envelope, with
Retry-After; the operations routes are neither counted nor refused (uvicorn's own bound, on
connections, is set above it: its plain-text 503 is a last resort).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import structlog
from starlette.requests import ClientDisconnect
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boost_ledger.api.errors import internal_error, service_unavailable
from boost_ledger.ledger.keys import KEY_PREFIX

log = structlog.get_logger("boost.http")

UNMATCHED_ROUTE = "<unmatched>"
CLIENT_CLOSED_REQUEST = 499
MAX_IN_FLIGHT = 2000
API_PREFIX = "/api/"

# Called once per answered request with (method, route template, status, duration in seconds).
RequestObserver = Callable[[str, str, int, float], None]


class RequestContext:
    """Gives each request an ``X-Request-Id`` and logs it once it is answered."""

    def __init__(
        self,
        app: ASGIApp,
        observe: RequestObserver | None = None,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        assert max_in_flight > 0
        self.app = app
        self.observe = observe
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False
        # A client that sent "Expect: 100-continue" sends its body only once told to (the
        # server does when the app first asks for the body). Answered before that, it keeps
        # its body, so the connection must close: left open, the server would wait for the
        # body and take the client's next request on the connection for it.
        body_unasked = _expects_continue(scope)
        if body_unasked:
            asked_receive = receive

            async def receive_asked() -> Message:
                nonlocal body_unasked
                body_unasked = False
                return await asked_receive()

            receive = receive_asked

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] != "http.response.start":
                await send(message)
                return
            headers = list(message.get("headers", []))
            headers.append((b"x-request-id", request_id.encode()))
            if body_unasked:
                headers.append((b"connection", b"close"))
            await send({**message, "headers": headers})
            # Once the server took the head (see api/deadlines.py): a send cancelled while it
            # waited for a client to read wrote nothing, and the status is the one sent after.
            response_started = True
            status = message["status"]

        # Only the API's requests count and are refused: the operations routes (health,
        # readiness, metrics) must answer an overloaded process too.
        counted = scope["path"].startswith(API_PREFIX)
        refused = counted and self.in_flight >= self.max_in_flight
        if counted and not refused:
            self.in_flight += 1
        try:
            if refused:
                busy = service_unavailable("The server is at capacity. Retry shortly.")
                await busy.response()(scope, receive, send_with_id)
            else:
                await self.app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Starlette raises it when the server hands the request its ``http.disconnect``: the
            # connection is gone, so there is no one to answer and no traceback worth keeping.
            # As for nginx, 499 even if a response had begun: the client never got all of it.
            status = CLIENT_CLOSED_REQUEST
        except Exception:
            log.exception("request.unhandled", request_id=request_id, path=scope["path"])
            if not response_started:
                error = internal_error()
                await error.response()(scope, receive, send_with_id)
        finally:
            if counted and not refused:
                self.in_flight -= 1
            route = route_template(scope)
            duration_s = time.perf_counter() - started
            _log_request(scope, request_id, route, status, duration_s)
            if self.observe is not None:
                self.observe(scope["method"], route, status, duration_s)


def _expects_continue(scope: Scope) -> bool:
    return any(
        name == b"expect" and value.lower() == b"100-continue"
        for name, value in scope.get("headers", [])
    )


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            # A client pasting its API key here must not get it logged and echoed back.
            looks_secret = KEY_PREFIX in text.lower()
            if 0 < len(text) <= 100 and text.isascii() and text.isprintable() and not looks_secret:
                return text
    return None


def route_template(scope: Scope) -> str:
    """The matched route's template (``/api/v1/boost/orders/{order_id}``), never the raw path.

    A matched route's path is relative to its mount ("/wallet" under "/api/v1"); the mount's
    prefix is in ``root_path``. An unmatched request, under a mount or not, gets one fixed name:
    its raw path could carry anything a client typed (even a key), and would give metrics
    unbounded label values.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if path is None or isinstance(route, Mount):  # a mount matched, none of its routes
        return UNMATCHED_ROUTE
    return f"{scope.get('root_path', '')}{path}"


def _log_request(
    scope: Scope, request_id: str, route: str, status: int, duration_s: float
) -> None:
    log.info(
        "request",
        request_id=request_id,
        account_id=scope.get("state", {}).get("account_id"),
        method=scope["method"],
        route=route,
        status=status,
        duration_ms=round(duration_s * 1000, 2),
    )
