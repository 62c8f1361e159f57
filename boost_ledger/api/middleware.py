"""Outermost ASGI layer: request id, one log line per request, and the last-resort 500."""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from boost_ledger.api.errors import internal_error

log = structlog.get_logger("boost.http")


class RequestContext:
    """Gives each request an ``X-Request-Id`` and logs it once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("request.unhandled", request_id=request_id, path=scope["path"])
            if not response_started:
                error = internal_error()
                await error.response()(scope, receive, send_with_id)
        finally:
            _log_request(scope, request_id, status, started)


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = str(value.decode("latin-1"))
            if 0 < len(text) <= 100 and text.isascii() and text.isprintable():
                return text
    return None


def _log_request(scope: Scope, request_id: str, status: int, started: float) -> None:
    # A matched route's path is relative to its mount ("/wallet" under "/api/v1"); the mount's
    # prefix is in ``root_path``. An unmatched request logs its raw path instead.
    route = scope.get("route")
    path = getattr(route, "path", None)
    log.info(
        "request",
        request_id=request_id,
        account_id=scope.get("state", {}).get("account_id"),
        method=scope["method"],
        route=scope["path"] if path is None else f"{scope.get('root_path', '')}{path}",
        status=status,
        duration_ms=round((time.perf_counter() - started) * 1000, 2),
    )
