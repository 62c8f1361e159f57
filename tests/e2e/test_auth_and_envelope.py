"""Authentication and the one error envelope, over real HTTP against the real app."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import structlog
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from support import bearer, http_server, open_funded_account

from boost_ledger import logs
from boost_ledger.api import middleware
from boost_ledger.api.errors import ApiError
from boost_ledger.api.http import MAX_BODY_BYTES, json_response, read_json_object
from boost_ledger.api.middleware import RequestContext
from boost_ledger.ledger import accounts
from boost_ledger.ledger.keys import ABILITIES

UNAUTHENTICATED = {
    "success": False,
    "status": 401,
    "message": "Unauthenticated. Please provide a valid bearer token.",
    "code": "UNAUTHENTICATED",
}


def _unauthenticated(response: httpx.Response) -> None:
    """The spec's 401, with the bearer challenge RFC 9110 §15.5.2 requires of every 401."""
    assert response.status_code == 401, response.text
    assert response.json() == UNAUTHENTICATED
    assert response.headers["www-authenticate"] == 'Bearer realm="boosting-api"'


def _envelope(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is the error envelope with this status and code, and a request id."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body: dict[str, Any] = response.json()
    assert body["success"] is False
    assert body["status"] == status
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert set(body) <= {"success", "status", "message", "code", "errors"}
    return body


@pytest.fixture
async def api(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """The real app's client, failing any response that lacks an X-Request-Id."""

    async def has_request_id(response: httpx.Response) -> None:
        assert response.headers.get("x-request-id"), f"{response.request.url} has no request id"

    client.event_hooks["response"] = [has_request_id]
    return client


async def _wallet(api: httpx.AsyncClient, key: str) -> httpx.Response:
    return await api.get("/api/v1/wallet", headers=bearer(key))


# ---- 401 ------------------------------------------------------------------------------------


async def test_a_missing_bearer_is_401_with_the_specs_exact_body(api):
    """No Authorization header: 401 and, byte for byte in meaning, the spec's body."""
    response = await api.get("/api/v1/wallet", headers={"Accept": "application/json"})
    _unauthenticated(response)


@pytest.mark.parametrize(
    "header",
    [
        "",
        "Bearer",
        "Bearer: {key}",
        "Basic {key}",
        "Token {key}",
        "{key}",
        "Bearer blk_",
        "Bearer sk_live_0123456789abcdefghijklmnopqrstuvwxyz",
        "Bearer {key}x",
        "Bearer {key_upper}",
    ],
)
async def test_a_malformed_bearer_is_401(pool, api, header):
    """Wrong scheme, no token, a foreign or altered token: 401, the spec's body, no key echoed."""
    _, key = await open_funded_account(pool)
    value = header.format(key=key, key_upper=key.upper())
    response = await api.get("/api/v1/wallet", headers={"Authorization": value})
    _unauthenticated(response)
    assert key not in response.text


async def test_the_scheme_is_case_insensitive_and_spaces_are_forgiven(pool, api):
    """``bearer`` and surrounding spaces are accepted, as HTTP allows."""
    _, key = await open_funded_account(pool, 1_00)
    response = await api.get("/api/v1/wallet", headers={"Authorization": f"bearer   {key}"})
    assert response.status_code == 200



@pytest.mark.parametrize("second", ["Bearer {key}", "Bearer {other}", "Basic Zm9vOmJhcg=="])
@pytest.mark.parametrize("path", ["/api/v1/wallet", "/api/v1/boost/orders"])
async def test_two_authorization_headers_are_401(pool, api, second, path):
    """Authorization is one field, not a list (RFC 9110 §11.6.2): a request with two is
    malformed, and which one a proxy in front checked is unknowable (the first one silently
    won, so a live key followed by anything was let in): 401, whichever the second, on reads
    and on checkout alike (which remembers keys it has seen)."""
    _, key = await open_funded_account(pool, 1_000_00)
    _, other = await open_funded_account(pool, 1_000_00)
    headers = [("Authorization", f"Bearer {key}"),
               ("Authorization", second.format(key=key, other=other))]
    if path.endswith("orders"):  # no catalog here: a live key hears 404 for the service
        body = {"service_id": "1", "link": "https://instagram.com/p/x", "quantity": 100,
                "idempotency_key": f"two-auth-{other[-8:]}"}
        alone = await api.post(path, json=body, headers=bearer(key))  # the key is remembered
        assert alone.json()["code"] == "BOOST_SERVICE_NOT_FOUND", alone.text
        response = await api.post(path, json=body, headers=headers)
    else:
        assert (await api.get(path, headers=bearer(key))).status_code == 200
        response = await api.get(path, headers=headers)
    _unauthenticated(response)

async def test_an_unknown_well_formed_key_is_401(api):
    """A key of the right shape that was never issued: 401."""
    forged = accounts.new_key().secret
    response = await _wallet(api, forged)
    _unauthenticated(response)


async def test_a_rotated_key_stops_at_once_and_the_new_one_works(pool, api):
    """After rotation the previous key is 401 on the very next request; the new key is 200."""
    account_id, old_key = await open_funded_account(pool, 12_500_00)
    assert (await _wallet(api, old_key)).status_code == 200
    async with pool.acquire() as connection:
        new_key = (await accounts.rotate_key(connection, account_id, list(ABILITIES)))[0].secret
    revoked = await _wallet(api, old_key)
    _unauthenticated(revoked)
    fresh = await _wallet(api, new_key)
    assert fresh.status_code == 200
    assert fresh.json() == {"success": True, "data": {"balance": "12500.00", "currency": "NGN"}}


# ---- 403 ------------------------------------------------------------------------------------


async def test_disabled_banned_and_reinstated_accounts(pool, api):
    """Disabled → 403 USER_DISABLED; banned → 403 USER_BANNED; reinstated → the key works again."""
    account_id, key = await open_funded_account(pool, 5_00)
    async with pool.acquire() as connection:
        await accounts.change_standing(connection, account_id, "disable")
    body = _envelope(await _wallet(api, key), 403, "USER_DISABLED")
    assert body == {"success": False, "status": 403, "code": "USER_DISABLED",
                    "message": "This account is disabled."}

    async with pool.acquire() as connection:
        await accounts.change_standing(connection, account_id, "ban")
    body = _envelope(await _wallet(api, key), 403, "USER_BANNED")
    assert body["message"] == "This account is banned."

    async with pool.acquire() as connection:
        await accounts.change_standing(connection, account_id, "reinstate")
    response = await _wallet(api, key)
    assert response.status_code == 200
    assert response.json()["data"]["balance"] == "5.00"


async def test_a_key_without_the_routes_ability_is_403_forbidden(pool, api):
    """A key lacking ``wallet:read`` cannot read the wallet, whatever else it may do."""
    _, key = await open_funded_account(pool, abilities=["boosting:read", "boosting:buy"])
    response = await _wallet(api, key)
    body = _envelope(response, 403, "FORBIDDEN")
    assert "wallet:read" in body["message"]
    assert "www-authenticate" not in response.headers, "a 403 is no challenge"
    assert key not in json.dumps(body)


# ---- 404, 405 and the request id ------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/nope", "/api/v1/nope", "/api/v1/wallet/extra", "/api/v2/wallet"]
)
async def test_an_unknown_route_is_404_not_found(api, path):
    """Anything outside the routes: 404 NOT_FOUND in the envelope (no HTML, no detail)."""
    _envelope(await api.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
async def test_a_wrong_method_is_405_method_not_allowed(pool, api, method):
    """A known route with the wrong method: 405 in the envelope, naming what is allowed."""
    _, key = await open_funded_account(pool)
    response = await api.request(method, "/api/v1/wallet", headers=bearer(key))
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert "GET" in response.headers["allow"]


def _allowed(response: httpx.Response) -> set[str]:
    return {method.strip() for method in response.headers["allow"].split(",")}


@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_a_405_on_the_orders_collection_allows_all_its_methods(pool, api, method):
    """/boost/orders lists (GET, HEAD) and places (POST): a 405 there names all three."""
    _, key = await open_funded_account(pool)
    response = await api.request(method, "/api/v1/boost/orders", headers=bearer(key))
    _envelope(response, 405, "METHOD_NOT_ALLOWED")
    assert _allowed(response) == {"GET", "HEAD", "POST"}


async def test_the_orders_collection_still_lists_and_places_by_method(pool, api):
    """One route serves the path's methods: GET lists, HEAD answers without a body, and POST
    reaches the checkout (here refused for its body, a checkout's refusal, not a 405)."""
    _, key = await open_funded_account(pool)
    listed = await api.get("/api/v1/boost/orders", headers=bearer(key))
    assert listed.status_code == 200 and listed.json()["success"] is True
    head = await api.head("/api/v1/boost/orders", headers=bearer(key))
    assert head.status_code == 200 and head.content == b""
    placed = await api.post("/api/v1/boost/orders", json={}, headers=bearer(key))
    _envelope(placed, 422, "VALIDATION_FAILED")


async def test_the_request_id_is_fresh_per_request_or_the_callers_own(api):
    """Each response gets its own id; a sane incoming X-Request-Id is echoed, a bad one replaced."""
    first, second = await api.get("/nope"), await api.get("/nope")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await api.get("/nope", headers={"X-Request-Id": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"
    replaced = await api.get("/nope", headers={"X-Request-Id": "x" * 500})
    assert replaced.headers["x-request-id"] != "x" * 500


# ---- logs -----------------------------------------------------------------------------------


class _Lines(io.StringIO):
    """A buffer that counts the writes made to it."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@contextmanager
def _json_logs() -> Iterator[_Lines]:
    """The production log pipeline (logs.configure), written to a buffer for the test."""
    saved = structlog.get_config()
    buffer = _Lines()
    logs.configure("info", file=buffer)
    structlog.configure(cache_logger_on_first_use=False)
    previous_logger = middleware.log
    middleware.log = structlog.get_logger("boost.http")  # not a logger cached by earlier tests
    try:
        yield buffer
    finally:
        middleware.log = previous_logger
        structlog.configure(**saved)


async def test_one_json_line_per_request_and_never_a_key(pool, api):
    """Each request logs one JSON object (id, account, route, status, duration); keys never."""
    account_id, key = await open_funded_account(pool, 1_00)
    _, unknown = await open_funded_account(pool)
    async with pool.acquire() as connection:
        await accounts.rotate_key(connection, account_id, list(ABILITIES))
    with _json_logs() as buffer:
        responses = [
            await _wallet(api, key),  # revoked by the rotation above
            await _wallet(api, unknown + "x"),
            await api.get("/api/v1/wallet", headers={"Authorization": f"Basic {key}"}),
        ]
        _, live_key = await open_funded_account(pool, 1_00)
        responses.append(await _wallet(api, live_key))
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert buffer.writes == len(lines), "each line, its newline included, in one write"
    requests = [line for line in lines if line["event"] == "request"]
    assert len(requests) == len(responses) == 4
    assert [line["request_id"] for line in requests] == [
        response.headers["x-request-id"] for response in responses
    ]
    assert [line["status"] for line in requests] == [401, 401, 401, 200]
    assert requests[-1]["account_id"] is not None
    for line in requests:
        assert line["route"] == "/api/v1/wallet"
        assert line["method"] == "GET"
        assert isinstance(line["duration_ms"], float | int)
    text = buffer.getvalue()
    for secret in (key, unknown, live_key):
        assert secret not in text
        assert secret.split("_", 2)[2] not in text, "not even the secret part"
    assert all(key not in response.text for response in responses)


# ---- bodies and the last-resort 500, on a tiny app with the same error handling --------------


async def _echo(request: Request) -> Response:
    body = await read_json_object(request)
    return json_response({"fields": sorted(body)})


async def _explode(request: Request) -> Response:
    raise RuntimeError("database password is hunter2; see /srv/boost/secret.py line 3")


async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error.response()


@pytest.fixture(scope="module")
async def tiny_url() -> AsyncIterator[str]:
    """The real body helpers and middleware behind two routes, over real HTTP."""
    app = Starlette(
        routes=[Route("/echo", _echo, methods=["POST"]), Route("/explode", _explode)],
        exception_handlers={ApiError: _api_error},
        middleware=[Middleware(RequestContext)],
    )
    async with http_server(app) as url:
        yield url


@pytest.fixture
async def tiny(tiny_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tiny_url, timeout=10.0) as created:
        yield created


async def test_a_json_object_is_read(tiny):
    """A JSON object up to the limit is accepted."""
    padding = "x" * (MAX_BODY_BYTES - len('{"a":1,"pad":""}'))
    body = f'{{"a":1,"pad":"{padding}"}}'.encode()
    assert len(body) == MAX_BODY_BYTES
    response = await tiny.post("/echo", content=body)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "data": {"fields": ["a", "pad"]}}


async def test_a_body_over_64_kib_is_413_payload_too_large(tiny):
    """One byte over 64 KiB is refused, whether the length is declared or the body streamed."""
    body = b'{"pad":"' + b"x" * MAX_BODY_BYTES + b'"}'
    _envelope(await tiny.post("/echo", content=body), 413, "PAYLOAD_TOO_LARGE")

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 8192):
            yield body[start : start + 8192]

    streamed = await tiny.post("/echo", content=chunks())
    assert "content-length" not in streamed.request.headers
    _envelope(streamed, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    "content",
    [b"", b"   ", b"{not json", b'{"a":1', b"[1, 2]", b'"text"', b"42", b"null", b"\xff\xfe{}"],
    ids=["empty", "blank", "garbage", "truncated", "array", "string", "number", "null", "bytes"],
)
async def test_malformed_or_non_object_json_is_422_with_an_errors_object(tiny, content):
    """Anything but a JSON object: 422 VALIDATION_FAILED whose ``errors`` names the bad field."""
    response = await tiny.post("/echo", content=content)
    body = _envelope(response, 422, "VALIDATION_FAILED")
    assert isinstance(body["errors"], dict) and body["errors"]
    assert all(
        isinstance(messages, list) and all(isinstance(m, str) for m in messages)
        for messages in body["errors"].values()
    )
    assert "body" in body["errors"]


async def test_an_unexpected_error_is_500_internal_error_without_internals(tiny):
    """A crash in a handler: the envelope's 500 INTERNAL_ERROR, nothing of the crash in it."""
    with _json_logs() as buffer:
        response = await tiny.get("/explode")
    body = _envelope(response, 500, "INTERNAL_ERROR")
    for internal in ("hunter2", "RuntimeError", "Traceback", "secret.py", "password"):
        assert internal not in response.text
    assert body == {"success": False, "status": 500, "code": "INTERNAL_ERROR",
                    "message": body["message"]}
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["request.unhandled", "request"]
    assert "hunter2" in lines[0]["exception"], "the operator sees what the client does not"
    assert lines[1]["status"] == 500
    assert lines[0]["request_id"] == lines[1]["request_id"] == response.headers["x-request-id"]
