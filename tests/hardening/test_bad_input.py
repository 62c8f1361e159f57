"""The bad-input catalogue: each malformed request gets its documented 4xx in the one envelope,
and nothing at all is appended to the event log (the count of events is the same before and
after). The documented outcomes are those of /api/v1/openapi.json and the README:

- not JSON, not an object, wrong types, floats for integers, control characters, NUL, over-long
  strings, duplicated keys, too deep, too many fields → 422 VALIDATION_FAILED naming the field;
- integers that are too big or negative → 422 BOOST_QUANTITY_OUT_OF_RANGE for a quantity (its
  bounds are the service's), VALIDATION_FAILED for any other integer field;
- a POST body not declared ``Content-Type: application/json`` (missing, other type, other
  charset) → 415 UNSUPPORTED_MEDIA_TYPE; a body over 64 KiB → 413 PAYLOAD_TOO_LARGE;
- a path id that is not the canonical decimal number of one's own order → 404
  BOOST_ORDER_NOT_FOUND (404 BOOST_SERVICE_NOT_FOUND for services).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, open_funded_account, seed_catalog

ORDERS = "/api/v1/boost/orders"
LINK = "https://instagram.com/p/example"
_keys = itertools.count(1)


@pytest.fixture(scope="module")
async def account(pool: asyncpg.Pool[Any]) -> tuple[int, str]:
    await seed_catalog(pool)
    return await open_funded_account(pool, 100_000_000)


@pytest.fixture
async def api(base_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0) as created:
        yield created


async def _events(pool: asyncpg.Pool[Any]) -> int:
    count: int = await pool.fetchval("select count(*) from events")
    return count


def _body(**overrides: Any) -> dict[str, Any]:
    body = {"service_id": "1", "link": LINK, "quantity": 1000,
            "idempotency_key": f"bad-{next(_keys)}"}
    body.update(overrides)
    return body


async def refused(
    api: httpx.AsyncClient,
    pool: asyncpg.Pool[Any],
    key: str,
    status: int,
    code: str,
    *,
    method: str = "POST",
    path: str = ORDERS,
    content: bytes | None = None,
    content_type: str | None = "application/json",
) -> dict[str, Any]:
    """Send one request; assert its envelope, and that the event log did not grow."""
    before = await _events(pool)
    headers = bearer(key)
    if content_type is not None:
        headers["Content-Type"] = content_type
    response = await api.request(method, path, content=content, headers=headers)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    envelope: dict[str, Any] = response.json()
    assert envelope["success"] is False
    assert (envelope["status"], envelope["code"]) == (status, code), envelope
    assert set(envelope) <= {"success", "status", "message", "code", "errors"}
    assert "Traceback" not in response.text
    assert await _events(pool) == before, "a refused request appended to the event log"
    return envelope


def _raw(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


# --- not JSON, not an object ------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b"", b"   ", b"{", b'{"service_id": "1",', b"{'service_id': '1'}", b"\xff\xfe{}",
     b'{"a": NaN}', b'{"a": Infinity}', b'{"a": 1e400}', b'{"a": "\\ud800"}', b"{}{}"],
    ids=["empty", "blank", "open", "truncated", "single-quotes", "not-utf8", "nan", "infinity",
         "float-overflow", "lone-surrogate", "two-objects"],
)
async def test_malformed_json_is_422(api, pool, account, content):
    """Not one well-formed JSON text: 422 VALIDATION_FAILED naming the body."""
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    assert set(error["errors"]) == {"body"}


@pytest.mark.parametrize("content", [b"[]", b'[{"service_id": "1"}]', b'"x"', b"42", b"null",
                                     b"true"])
async def test_json_that_is_not_an_object_is_422(api, pool, account, content):
    """Valid JSON of another kind than an object: 422 naming the body."""
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    assert error["errors"] == {"body": ["The body must be a JSON object."]}


# --- wrong types, numbers ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", "1000"), ("quantity", True), ("quantity", None), ("quantity", [1000]),
     ("quantity", {"value": 1000}), ("link", 42), ("link", ["https://a.example"]),
     ("service_id", True), ("service_id", {"id": "1"}), ("service_id", 1.5),
     ("idempotency_key", 5), ("idempotency_key", ["k"]), ("runs", "2")],
)
async def test_wrong_types_are_422_naming_the_field(api, pool, account, field, value):
    """A field of the wrong JSON type: 422 VALIDATION_FAILED whose errors name that field
    (a null quantity counts as missing: BOOST_QUANTITY_REQUIRED)."""
    content = _raw(_body(**{field: value}))
    if field == "quantity" and value is None:
        await refused(api, pool, account[1], 422, "BOOST_QUANTITY_REQUIRED", content=content)
        return
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    assert field in error["errors"], error


@pytest.mark.parametrize("quantity", [0, -1, -(10**30), 10**30, 2**63, 10**9 + 1])
async def test_huge_and_negative_quantities_are_out_of_range(api, pool, account, quantity):
    """A quantity outside the service's min..max, however large or negative: 422
    BOOST_QUANTITY_OUT_OF_RANGE (never an overflow, never a 500)."""
    await refused(api, pool, account[1], 422, "BOOST_QUANTITY_OUT_OF_RANGE",
                  content=_raw(_body(quantity=quantity)))


@pytest.mark.parametrize(
    ("field", "value"), [("runs", 10**20), ("runs", -2), ("interval", -(10**20)), ("runs", 0)]
)
async def test_huge_and_negative_other_integers_are_422(api, pool, account, field, value):
    """Drip-feed integers out of their own bounds: VALIDATION_FAILED naming the field."""
    body = _body(runs=2, interval=5)
    body[field] = value
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=_raw(body))
    assert field in error["errors"]


@pytest.mark.parametrize("literal", [b"1000.0", b"1e3", b"1000.5", b"1E+3", b"-0.0"])
async def test_floats_for_integers_are_422(api, pool, account, literal):
    """A JSON number with a fraction or exponent is not an integer, even when whole."""
    content = b'{"service_id": "1", "link": "%s", "idempotency_key": "f-%d", "quantity": %s}' % (
        LINK.encode(), next(_keys), literal)
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    assert error["errors"] == {"quantity": ["The quantity field must be an integer."]}


# --- strings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("link", LINK + "\u0007x", "VALIDATION_FAILED"),
        ("link", LINK + "\u0085x", "VALIDATION_FAILED"),
        ("link", LINK + "\u200bx", "VALIDATION_FAILED"),
        ("idempotency_key", "key\u001b[31m", "VALIDATION_FAILED"),
        ("idempotency_key", "key\u007f", "VALIDATION_FAILED"),
        ("idempotency_key", "\u0000", "VALIDATION_FAILED"),
        ("service_id", "1\u0000", "VALIDATION_FAILED"),
        ("service_id", "\u0000", "VALIDATION_FAILED"),
        ("service_id", "1\u0007", "BOOST_SERVICE_NOT_FOUND"),
    ],
    ids=["link-bel", "link-nel", "link-zero-width", "key-escape", "key-del", "key-nul",
         "service-nul", "service-only-nul", "service-bel"],
)
async def test_control_characters_are_refused(api, pool, account, field, value, code):
    """Control characters never reach the log: refused as invalid (NUL anywhere, by the body
    reader), or, in a service id, not found."""
    await refused(api, pool, account[1], 422 if code == "VALIDATION_FAILED" else 404, code,
                  content=_raw(_body(**{field: value})))


async def test_control_characters_in_text_fields_are_refused(api, pool, account):
    """A username with a terminal escape sequence: 422 naming the username."""
    body = {"service_id": "9", "link": LINK, "quantity": 100, "username": "bob\u001b[2J",
            "idempotency_key": f"cc-{next(_keys)}"}
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=_raw(body))
    assert set(error["errors"]) == {"username"}


@pytest.mark.parametrize(
    ("field", "length", "status", "code"),
    [("idempotency_key", 101, 422, "VALIDATION_FAILED"),
     ("idempotency_key", 60_000, 422, "VALIDATION_FAILED"),
     ("link", 2049, 422, "VALIDATION_FAILED"),
     ("link", 60_000, 422, "VALIDATION_FAILED"),
     ("service_id", 60_000, 404, "BOOST_SERVICE_NOT_FOUND")],
)
async def test_very_long_strings_are_refused(api, pool, account, field, length, status, code):
    """Strings past their bound (but inside the 64 KiB body): refused, never truncated."""
    value = LINK + "a" * (length - len(LINK)) if field == "link" else "k" * length
    await refused(api, pool, account[1], status, code, content=_raw(_body(**{field: value})))


async def test_very_long_unicode_is_counted_in_characters_and_refused(api, pool, account):
    """2049 emoji in a username (8 KiB of UTF-8): 422 naming the username."""
    body = {"service_id": "9", "link": LINK, "quantity": 100, "username": "\U0001f600" * 2049,
            "idempotency_key": f"u-{next(_keys)}"}
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=_raw(body))
    assert set(error["errors"]) == {"username"}


# --- duplicate keys, shape --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b'{"service_id": "1", "link": "%s", "quantity": 10, "quantity": 1000, '
        b'"idempotency_key": "dup-1"}' % LINK.encode(),
        b'{"service_id": "1", "link": "%s", "quantity": 1000, "quantity": 1000, '
        b'"idempotency_key": "dup-2"}' % LINK.encode(),
        b'{"service_id": "1", "service_id": "2", "link": "%s", "quantity": 1000, '
        b'"idempotency_key": "dup-3"}' % LINK.encode(),
    ],
    ids=["different-values", "same-values", "service-id"],
)
async def test_duplicate_keys_are_422_naming_the_key(api, pool, account, content):
    """A member name given twice is ambiguous (parsers silently keep one): refused, naming it."""
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    (field,) = error["errors"]
    assert field in ("quantity", "service_id")
    assert error["errors"][field] == ["The field appears more than once in the body."]


async def test_duplicate_keys_in_a_nested_object_are_refused(api, pool, account):
    """Duplicates are refused at any depth."""
    content = b'{"service_id": "1", "link": {"a": 1, "a": 2}, "quantity": 1000}'
    await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)


@pytest.mark.parametrize("depth", [17, 5_000, 30_000])
async def test_deeply_nested_bodies_are_422(api, pool, account, depth):
    """Nesting past 16 levels (up to what fits in 64 KiB): 422, never a recursion crash."""
    content = b'{"service_id": "1", "link": ' + b"[" * depth + b"]" * depth + b"}"
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=content)
    assert error["errors"] in ({"link": ["The body is nested more than 16 levels deep."]},
                               {"body": ["The body is nested more than 16 levels deep."]})


async def test_too_many_fields_and_long_field_names_are_422(api, pool, account):
    """More than 64 members, or a member name over 100 characters: 422 naming the body."""
    many = _body(**{f"extra_{index}": index for index in range(70)})
    await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=_raw(many))
    long_name = _body(**{"x" * 101: 1})
    error = await refused(api, pool, account[1], 422, "VALIDATION_FAILED", content=_raw(long_name))
    assert set(error["errors"]) == {"body"}


# --- content type, size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
     "application/json; charset=latin-1", "application/jsonp", "json", "",
     'application/json; charset="latin-1"', "application/json; charset=utf-8; charset=latin-1",
     'application/json; charset=""', "application/json; charset", "application/json, text/plain",
     'application/json; charset="utf-8', "text/json; charset=utf-8"],
)
async def test_a_body_not_declared_json_is_415(api, pool, account, content_type):
    """The checkout body must be declared application/json (UTF-8), in a Content-Type that
    parses: 415 otherwise, a quoted or repeated charset included."""
    await refused(api, pool, account[1], 415, "UNSUPPORTED_MEDIA_TYPE",
                  content=_raw(_body()), content_type=content_type)


@pytest.mark.parametrize("content_type", [
    "application/json; charset=utf-8",
    "Application/JSON; Charset=UTF-8",
    'application/json; charset="utf-8"',
    'application/json;CHARSET="UTF-8"',
    "application/json; charset = utf-8",
    "application/json; version=1",
    'application/json; profile="https://example.com/order; v=1"; charset=utf-8',
    "application/json;",
])
async def test_json_with_a_utf8_charset_is_accepted(api, account, content_type):
    """The declared charset may be UTF-8 in any case, quoted or not, and other parameters (which
    application/json does not define) are ignored: the order is placed."""
    response = await api.post(ORDERS, content=_raw(_body()),
                              headers={**bearer(account[1]), "Content-Type": content_type})
    assert response.status_code == 201, response.text



@pytest.mark.parametrize("second", ["application/json", "text/plain"])
async def test_two_content_types_are_415(api, pool, account, second):
    """Content-Type is one field: a body declared twice is not declared JSON, whatever the
    second says (the first one silently won, so JSON then text/plain was read as JSON)."""
    before = await _events(pool)
    headers = [*bearer(account[1]).items(), ("Content-Type", "application/json"),
               ("Content-Type", second)]
    response = await api.post(ORDERS, content=_raw(_body()), headers=headers)
    assert response.status_code == 415, response.text
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
    assert await _events(pool) == before


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "gzip, identity"])
async def test_a_compressed_body_is_415(api, pool, account, coding):
    """The server decodes no content coding (RFC 9110 §8.4.1 has it answer 415): a compressed
    body is refused as such, rather than read as it is (a gzip body was "not valid JSON", and
    a JSON body mislabelled gzip was placed)."""
    import gzip

    for content in (gzip.compress(_raw(_body())), _raw(_body())):
        before = await _events(pool)
        response = await api.post(ORDERS, content=content, headers={
            **bearer(account[1]), "Content-Type": "application/json",
            "Content-Encoding": coding})
        assert response.status_code == 415, response.text
        assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"
        assert await _events(pool) == before


async def test_an_identity_coding_is_no_coding(api, account):
    """``Content-Encoding: identity`` is the body as it is: placed."""
    response = await api.post(ORDERS, content=_raw(_body()), headers={
        **bearer(account[1]), "Content-Type": "application/json",
        "Content-Encoding": "identity"})
    assert response.status_code == 201, response.text

async def test_a_one_megabyte_body_is_413(api, pool, account):
    """1 MB, declared or streamed without a length: 413 PAYLOAD_TOO_LARGE."""
    big = _raw(_body(link=LINK + "a" * 1_000_000))
    await refused(api, pool, account[1], 413, "PAYLOAD_TOO_LARGE", content=big)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(big), 65_536):
            yield big[start : start + 65_536]

    before = await _events(pool)
    response = await api.post(ORDERS, content=chunks(), headers={
        **bearer(account[1]), "Content-Type": "application/json"})
    assert (response.status_code, response.json()["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert await _events(pool) == before


# --- path ids and query parameters ------------------------------------------------------------


_NOT_NUMBERS = ["abc", "-1", "1.5", "0x10", "1e3", "%20", "00123", "0", "%EF%BC%91%EF%BC%92",
                "99999999999999999999999", "9223372036854775808", "1%00", "%C2%B2", "null"]


@pytest.mark.parametrize("order_id", _NOT_NUMBERS)
async def test_order_ids_that_are_not_numbers_are_404(api, pool, account, order_id):
    """GET, check and cancel of an id that is not a canonical order number: 404
    BOOST_ORDER_NOT_FOUND, the same answer as for someone else's order."""
    for method, suffix in (("GET", ""), ("POST", "/check"), ("POST", "/cancel")):
        await refused(api, pool, account[1], 404, "BOOST_ORDER_NOT_FOUND", method=method,
                      path=f"{ORDERS}/{order_id}{suffix}", content_type=None)


@pytest.mark.parametrize(
    ("service_id", "code"),
    [("abc", "BOOST_SERVICE_NOT_FOUND"), ("-1", "BOOST_SERVICE_NOT_FOUND"),
     ("%00", "BOOST_SERVICE_NOT_FOUND"), ("x" * 500, "BOOST_SERVICE_NOT_FOUND"),
     ("%07", "BOOST_SERVICE_NOT_FOUND"), ("1%0A", "NOT_FOUND")],
)
async def test_service_ids_that_do_not_exist_are_404(api, pool, account, service_id, code):
    """Unknown, control characters (NUL included) or too long: 404 BOOST_SERVICE_NOT_FOUND;
    a line break does not even match a route: 404 NOT_FOUND."""
    await refused(api, pool, account[1], 404, code, method="GET",
                  path=f"/api/v1/boost/services/{service_id}", content_type=None)


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/v1/boost/orders/"), ("POST", "/api/v1/boost/orders/"),
     ("GET", "/api/v1/wallet/"), ("GET", "/healthz/")],
)
async def test_a_trailing_slash_is_a_json_404_not_a_redirect(api, pool, account, method, path):
    """A known path with a slash added is no route: 404 NOT_FOUND in the envelope, not a
    bodiless 307 to an http:// URL (wrong behind a TLS proxy, and never taken by a POST's
    body)."""
    await refused(api, pool, account[1], 404, "NOT_FOUND", method=method, path=path,
                  content_type=None)


@pytest.mark.parametrize("category", ["%00", "%07", "x" * 300])
async def test_odd_categories_list_nothing(api, account, category):
    """A category filter no category can match lists nothing (200, empty), never a 500."""
    response = await api.get(f"/api/v1/boost/services?category={category}",
                             headers=bearer(account[1]))
    assert (response.status_code, response.json()) == (200, {"success": True, "data": []})


@pytest.mark.parametrize(
    "query", ["per_page=abc", "per_page=-1", "per_page=0", "per_page=101", "per_page=1e2",
              "page=99999999999999999999", "page=%00", "status=lost", "per_page=%EF%BC%91"],
)
async def test_bad_list_parameters_are_422(api, pool, account, query):
    await refused(api, pool, account[1], 422, "VALIDATION_FAILED", method="GET",
                  path=f"{ORDERS}?{query}", content_type=None)


# --- requests the HTTP parser refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"BREW /api/v1/wallet HTTP/1.1\r\nHost: x\r\n\r\n",
        b"get /api/v1/wallet HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/wallet\xe9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\nNo colon here\r\n\r\n",
        b"POST /api/v1/boost/orders HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
        b"POST /api/v1/boost/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/v1/boost/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
    ids=["unknown-method", "lowercase-method", "non-ascii-path", "header-without-colon",
         "bad-content-length", "length-and-chunked", "bad-chunk-size"],
)
async def test_a_request_the_parser_refuses_is_a_400_envelope(runtime, request_bytes):
    """Bytes that are not one HTTP/1.1 request (an unknown method, a malformed header or body
    framing) are answered by the server's protocol before any route: 400 in the one envelope,
    as JSON, and the connection closed (uvicorn's own answer was text/plain)."""
    import asyncio

    from support import production_server

    from boost_ledger.api.app import create_app

    async with production_server(create_app(runtime), runtime.settings) as address:
        reader, writer = await asyncio.open_connection(*address)
        writer.write(request_bytes)
        answer = await asyncio.wait_for(reader.read(), 10)  # until the server closes
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 400 Bad Request", answer
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert int(headers["content-length"]) == len(body)
    envelope = json.loads(body)
    assert envelope == {"success": False, "status": 400, "code": "BAD_REQUEST",
                        "message": envelope["message"]}
    assert envelope["message"]


async def _exchange(address: tuple[str, int], head: bytes, then: bytes = b"") -> bytes:
    """Send ``head``, then ``then`` once the first answer came; all read until the server
    closes (or 10 s pass, which fails the test)."""
    import asyncio

    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(head)
        answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        if then:
            writer.write(then)
        answer += await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return answer


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ("Content-Type: application/json\r\nContent-Length: 40", 401),
        ("Authorization: Bearer {key}\r\nContent-Type: text/plain\r\nContent-Length: 40", 415),
        ("Authorization: Bearer {key}\r\nContent-Type: application/json\r\n"
         "Content-Length: 70000", 413),
    ],
    ids=["no-key", "not-json", "declared-too-large"],
)
async def test_a_refusal_before_a_100_continue_body_closes_the_connection(
    runtime, account, headers, status
):
    """A client that sent ``Expect: 100-continue`` and hears a final answer instead of 100 does
    not send its body; a server that keeps the connection open waits for that body, and takes
    the client's next request for it (it was answered 400, or not at all). So the refusal says
    ``connection: close`` and the server closes, and the next request goes on a new one."""
    from support import production_server

    from boost_ledger.api.app import create_app

    head = (f"POST {ORDERS} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"{headers.format(key=account[1])}\r\n\r\n").encode()
    following = (f"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\n"
                 f"Authorization: Bearer {account[1]}\r\n\r\n")
    async with production_server(create_app(runtime), runtime.settings) as address:
        answer = await _exchange(address, head, then=following.encode())
    head_text = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").lower()
    assert head_text.startswith(f"http/1.1 {status} "), answer
    assert "\r\nconnection: close" in head_text, answer
    assert answer.count(b"HTTP/1.1 ") == 1, answer  # the next request was not read as a body


async def test_a_100_continue_body_asked_for_keeps_the_connection(runtime, account):
    """A checkout that asks for its body (100 Continue) and is answered keeps the connection
    open for the next request, as any other does."""
    from support import production_server

    from boost_ledger.api.app import create_app

    body = _raw(_body())
    head = (f"POST {ORDERS} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            f"Authorization: Bearer {account[1]}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    following = (f"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account[1]}"
                 "\r\nConnection: close\r\n\r\n").encode()
    async with production_server(create_app(runtime), runtime.settings) as address:
        answer = await _exchange(address, head, then=body + following)
    assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 "), answer
    assert b"HTTP/1.1 200 OK" in answer, answer


async def _head_answer(address: tuple[str, int], data: bytes) -> bytes:
    """Send ``data`` (a head the server reads whole) and read until the server closes."""
    import asyncio

    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(data)
        return await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()


@pytest.mark.parametrize(
    "head",
    [b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000,
     b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 7_000,
     b"GET /api/v1/wallet?" + b"a" * 70_000,
     b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
     b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 7_000 + b"\r\n"],
    ids=["one-long-header", "many-headers", "long-url", "one-long-header-ended",
         "many-headers-ended"],
)
async def test_a_request_head_past_64_kib_is_431_and_closed(runtime, head):
    """The request line and headers are held in memory until they end, and nothing else
    bounded them (100 MB of one header were read and answered): past 64 KiB, before their end,
    431 in the envelope and the connection closed."""
    from support import production_server

    from boost_ledger.api.app import create_app

    async with production_server(create_app(runtime), runtime.settings) as address:
        answer = await _head_answer(address, head)
    head_part, _, body = answer.partition(b"\r\n\r\n")
    lines = head_part.decode("latin-1").split("\r\n")
    assert lines[0] == "HTTP/1.1 431 Request Header Fields Too Large", answer[:300]
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    assert (headers["content-type"], headers["connection"]) == ("application/json", "close")
    envelope = json.loads(body)
    assert (envelope["success"], envelope["status"], envelope["code"]) == (
        False, 431, "REQUEST_HEADERS_TOO_LARGE")


async def test_a_request_head_within_64_kib_is_served(runtime, account):
    """A head of 60 KiB (a long header among the usual ones) is read and answered."""
    from support import production_server

    from boost_ledger.api.app import create_app

    head = (f"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {account[1]}\r\n"
            f"X-Big: {'a' * 60_000}\r\nConnection: close\r\n\r\n").encode()
    async with production_server(create_app(runtime), runtime.settings) as address:
        answer = await _head_answer(address, head)
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]


@pytest.mark.parametrize(
    ("sent", "status"),
    [(b"", None), (b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\n", 408),
     (b"GET /api/v1/wallet HTTP/1.1\r\nHost: x\r\n\r\n", 408)],
    ids=["nothing", "a-head-never-ended", "a-second-head-never-ended"],
)
async def test_a_head_that_does_not_arrive_in_time_frees_the_connection(
    runtime, monkeypatch, sent, status
):
    """uvicorn waits for a request's head without a bound (its keep-alive timeout runs only
    between requests, and stops at the next one's first byte): a connection that sends nothing,
    or a head it never ends, held its place forever, and enough of them exhaust the server's
    connections. Past ``HEAD_TIMEOUT_S`` the connection is closed, after a 408 in the envelope
    if a head had begun."""
    from support import production_server

    from boost_ledger import http_protocol
    from boost_ledger.api.app import create_app

    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 0.3, raising=False)
    second = sent.endswith(b"\r\n\r\n")  # a whole request, then a head begun once answered
    async with production_server(create_app(runtime), runtime.settings) as address:
        if second:
            answer = await _exchange(address, sent, then=b"GET /api/v1/wallet HTT")
        else:
            answer = await _head_answer(address, sent)
    answers = answer.split(b"HTTP/1.1 ")[1:]
    if second:  # the first request was answered (401: no key)
        assert answers[0].startswith(b"401 "), answer
        answers = answers[1:]
    if status is None:
        assert answers == [], answer
        return
    (last,) = answers
    head, _, body = last.partition(b"\r\n\r\n")
    assert head.startswith(b"408 Request Timeout\r\n"), answer
    assert b"\r\ncontent-type: application/json\r\n" in head
    assert b"\r\nconnection: close" in head
    envelope = json.loads(body)
    assert (envelope["success"], envelope["status"], envelope["code"]) == (
        False, 408, "REQUEST_TIMEOUT")


@pytest.mark.parametrize(
    ("refused", "status"),
    [
        (b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000, b"431 "),
        (b"BREW /slow HTTP/1.1\r\nHost: x\r\n\r\n", b"400 "),
    ],
    ids=["a head past 64 KiB", "bytes the parser refuses"],
)
async def test_a_refusal_of_the_next_request_waits_for_the_answer_in_flight(
    runtime, refused: bytes, status: bytes
):
    """A client that sends its next request while the one before is being answered, and that
    request is refused (a head grown past 64 KiB, bytes the parser refuses): the answer in
    flight goes out whole first, then the refusal, then the connection closes (the refusal went
    out at once and the connection closed under the answer being made, which was lost)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from support import production_server

    begun = asyncio.Event()

    async def slow(request):
        begun.set()
        await asyncio.sleep(0.3)  # the refused request arrives meanwhile
        return PlainTextResponse("slow answer")

    app = Starlette(routes=[Route("/slow", slow)])
    async with production_server(app, runtime.settings) as address:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            await asyncio.wait_for(begun.wait(), 10)
            writer.write(refused)
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
    after = answer.partition(b"\r\n\r\nslow answer")[2]
    assert after.startswith(b"HTTP/1.1 " + status), answer[:600]  # the answer whole, then it
    assert b"\r\nconnection: close\r\n" in after, answer[:600]


async def test_a_head_past_64_kib_after_a_request_in_the_same_read_is_431(runtime):
    """A head past 64 KiB that arrives in the same read as the end of the request before it
    (as a pipelining client sends them) is refused as any other: the first answered, then 431
    and the connection closed (its bytes in that read were not counted, so a head of 200 KB
    was read whole and served)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from support import production_server

    async def short(request):
        return PlainTextResponse("short answer")

    app = Starlette(routes=[Route("/", short)])
    async with production_server(app, runtime.settings) as address:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET / HTTP/1.1\r\nHost: x\r\n"
                         b"Connection: close\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer[:300]
    after = answer.partition(b"\r\n\r\nshort answer")[2]
    assert after.startswith(b"HTTP/1.1 431 "), answer[:600]
    assert b"\r\nconnection: close\r\n" in after, answer[:600]
    assert b"short answer" not in after, answer[:600]


async def test_a_head_begun_behind_an_answer_in_flight_has_its_time_after_that_answer(
    runtime, monkeypatch
):
    """A head begun while the request before it was still being answered (pipelined) has its
    whole HEAD_TIMEOUT_S once that answer is sent, the wait for it not counted: a client that
    ends its head soon after the answer came is answered (the timer ran on from the head's
    first byte, so what was left of it when the answer came could be nothing: 408)."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from support import production_server

    from boost_ledger import http_protocol

    monkeypatch.setattr(http_protocol, "HEAD_TIMEOUT_S", 1.0)

    async def slow(request):
        await asyncio.sleep(1.5)  # past one HEAD_TIMEOUT_S of the head begun behind it
        return PlainTextResponse("slow answer")

    async def short(request):
        return PlainTextResponse("short answer")

    app = Starlette(routes=[Route("/slow", slow), Route("/", short)])
    async with production_server(app, runtime.settings) as address:
        reader, writer = await asyncio.open_connection(*address)
        try:
            writer.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
            first = await asyncio.wait_for(reader.readuntil(b"slow answer"), 10)
            await asyncio.sleep(0.7)  # well within HEAD_TIMEOUT_S of the answer
            writer.write(b"st: x\r\nConnection: close\r\n\r\n")
            rest = await asyncio.wait_for(reader.read(), 10)
        finally:
            writer.close()
    assert first.startswith(b"HTTP/1.1 200 OK\r\n"), first
    assert rest.startswith(b"HTTP/1.1 200 OK\r\n"), rest
    assert rest.endswith(b"short answer"), rest
