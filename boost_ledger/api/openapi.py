"""``GET /api/v1/openapi.json``: the OpenAPI 3.1 document of everything this server answers.

Every operation lists each status it can answer and, for each error status, the exact ``code``
values of the envelope (``code`` is an ``enum`` per status), so a client can switch on codes and
schemathesis can hold the server to them (tests/hardening/test_schemathesis.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.errors import BEARER_CHALLENGE
from boost_ledger.api.openapi_bodies import checkout_body_schema, request_branches
from boost_ledger.api.openapi_schemas import response_schemas
from boost_ledger.ledger.statuses import ORDER_STATUSES

# What each error code means, once (the spec's table plus this server's own codes).
ERROR_CODES: dict[str, tuple[int, str]] = {
    "BAD_REQUEST": (400, "Not a well-formed HTTP/1.1 request (an unknown method, a malformed "
                    "header or body framing); the connection is closed."),
    "UNAUTHENTICATED": (401, "The bearer token is missing, invalid, or revoked."),
    "INSUFFICIENT_BALANCE": (402, "The wallet balance cannot cover the calculated price."),
    "USER_DISABLED": (403, "The account is disabled."),
    "USER_BANNED": (403, "The account is banned."),
    "FORBIDDEN": (403, "The API key lacks the ability this route needs."),
    "NOT_FOUND": (404, "No such route."),
    "BOOST_SERVICE_NOT_FOUND": (404, "The service ID does not exist in the boosting catalog."),
    "BOOST_ORDER_NOT_FOUND": (404, "The order ID does not belong to the authenticated account "
                              "(also for another account's order: never 403)."),
    "METHOD_NOT_ALLOWED": (405, "The route exists, not with this method (see Allow)."),
    "REQUEST_TIMEOUT": (408, "The request body did not arrive within BOOST_BODY_TIMEOUT_S (or "
                        "its line and headers within 10 s, and the connection is closed)."),
    "IDEMPOTENCY_KEY_REUSED": (409, "The key was used for a different request body."),
    "IDEMPOTENCY_KEY_IN_PROGRESS": (409, "The same key is still processing. Retry shortly."),
    "BOOST_CANCEL_REJECTED": (409, "The order cannot be cancelled at the moment."),
    "PAYLOAD_TOO_LARGE": (413, "The body is over 64 KiB."),
    "REQUEST_HEADERS_TOO_LARGE": (431, "The request line and headers are over 64 KiB; the "
                                  "connection is closed."),
    "UNSUPPORTED_MEDIA_TYPE": (415, "The body is not declared Content-Type: application/json "
                               "(UTF-8), or is declared compressed (Content-Encoding)."),
    "VALIDATION_FAILED": (422, "One or more request fields are missing or invalid (malformed "
                          "JSON, duplicate keys, wrong types...); `errors` names each."),
    "BOOST_QUANTITY_REQUIRED": (422, "The selected service type requires a billable quantity."),
    "BOOST_QUANTITY_OUT_OF_RANGE": (422, "The quantity is outside the service min/max range."),
    "BOOST_LINK_REQUIRED": (422, "The selected service type requires a target link."),
    "BOOST_CANCEL_UNAVAILABLE": (422, "The order is not eligible for cancellation."),
    "RATE_LIMITED": (429, "Too many requests for this key; wait Retry-After seconds."),
    "INTERNAL_ERROR": (500, "Anything unexpected (details are logged, never sent)."),
    "SERVICE_UNAVAILABLE": (503, "The database is unreachable, the request ran out of time, "
                            "the server is at capacity, or a checkout's service kept changing "
                            "while it was priced; retry after Retry-After (a checkout with the "
                            "same key)."),
    "PROVIDER_UNAVAILABLE": (503, "The upstream provider cannot be reached; retry later."),
}
_STATUS_TEXT = {
    401: "Unauthenticated", 402: "Payment required", 403: "Forbidden", 404: "Not found",
    405: "Method not allowed", 408: "Request timeout", 409: "Conflict",
    413: "Payload too large", 415: "Unsupported media type", 422: "Unprocessable",
    429: "Too many requests", 500: "Internal error", 503: "Unavailable",
}
_AUTHED = ("UNAUTHENTICATED", "USER_DISABLED", "USER_BANNED", "FORBIDDEN", "RATE_LIMITED",
           "INTERNAL_ERROR", "SERVICE_UNAVAILABLE")
# The codes whose answers carry Retry-After (errors.py, orders.py, order_actions.py).
_RETRY_AFTER_CODES = frozenset(
    {"IDEMPOTENCY_KEY_IN_PROGRESS", "RATE_LIMITED", "SERVICE_UNAVAILABLE", "PROVIDER_UNAVAILABLE"}
)
_REQUEST_ID = {"description": "The request's id (the caller's own X-Request-Id if sane).",
               "schema": {"type": "string"}}
_CHALLENGE = {"description": "The bearer challenge HTTP requires of a 401.",
              "schema": {"type": "string", "const": BEARER_CHALLENGE}}
_RETRY_AFTER = {"description": "Seconds to wait before retrying (sent with "
                + ", ".join(f"`{code}`" for code in sorted(_RETRY_AFTER_CODES)) + ").",
                "schema": {"type": "string", "pattern": "^[0-9]+$"}}


def _json(schema_name: str, description: str, **headers: dict[str, Any]) -> dict[str, Any]:
    return {
        "description": description,
        "headers": {"X-Request-Id": _REQUEST_ID, **headers},
        "content": {
            "application/json": {"schema": {"$ref": f"#/components/schemas/{schema_name}"}}
        },
    }


def _errors(codes: tuple[str, ...]) -> dict[str, Any]:
    by_status: dict[int, list[str]] = {}
    for code in codes:
        by_status.setdefault(ERROR_CODES[code][0], []).append(code)
    responses: dict[str, Any] = {}
    for status, names in sorted(by_status.items()):
        schema = {"allOf": [{"$ref": "#/components/schemas/Error"}, {"properties": {
            "status": {"const": status}, "code": {"enum": names}}}]}
        headers: dict[str, Any] = {"X-Request-Id": _REQUEST_ID}
        if any(name in _RETRY_AFTER_CODES for name in names):
            headers["Retry-After"] = _RETRY_AFTER
        if status == 401:
            headers["WWW-Authenticate"] = _CHALLENGE
        lines = "; ".join(f"`{name}`: {ERROR_CODES[name][1]}" for name in names)
        responses[str(status)] = {
            "description": f"{_STATUS_TEXT[status]}. {lines}",
            "headers": headers,
            "content": {"application/json": {"schema": schema}},
        }
    return responses


def _operation(summary: str, ability: str | None, ok: tuple[str, str, str],
               codes: tuple[str, ...], **extra: Any) -> dict[str, Any]:
    status, schema_name, description = ok
    operation: dict[str, Any] = {
        "summary": summary,
        "responses": {status: _json(schema_name, description), **_errors(codes)},
        **extra,
    }
    if ability is not None:
        operation["description"] = f"Needs the `{ability}` ability. " + operation.get(
            "description", "")
    else:
        operation["security"] = []
    return operation


def _path_parameter(name: str, pattern: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": {"type": "string", "pattern": pattern, "minLength": 1, "maxLength": 64}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema}


_ORDER_ID = _path_parameter("order_id", "^[0-9]+$", "The order ID returned by checkout.")
_SERVICE_ID = _path_parameter("service_id", "^[0-9A-Za-z_-]+$", "The service ID.")
_ORDER_CODES = (*_AUTHED, "BOOST_ORDER_NOT_FOUND", "NOT_FOUND")
_CHECKOUT_CODES = (
    *_AUTHED, "INSUFFICIENT_BALANCE", "BOOST_SERVICE_NOT_FOUND", "REQUEST_TIMEOUT",
    "IDEMPOTENCY_KEY_REUSED", "IDEMPOTENCY_KEY_IN_PROGRESS", "PAYLOAD_TOO_LARGE",
    "UNSUPPORTED_MEDIA_TYPE", "VALIDATION_FAILED", "BOOST_QUANTITY_REQUIRED",
    "BOOST_QUANTITY_OUT_OF_RANGE", "BOOST_LINK_REQUIRED",
)


def _api_paths() -> dict[str, Any]:
    placed = _operation(
        "Purchase Boost", "boosting:buy", ("201", "PlacedOrderEnvelope", "The order, placed."),
        _CHECKOUT_CODES,
        description="Debits the wallet and places the order (status `pending`); it is sent "
        "upstream after the answer. The same `idempotency_key` and body replay the first "
        "answer byte for byte with `Idempotent-Replayed: true`.",
        requestBody={"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/CheckoutBody"}}}},
    )
    placed["responses"]["201"]["headers"]["Idempotent-Replayed"] = {
        "description": "`true` when this is the stored answer of an earlier request.",
        "schema": {"type": "string", "const": "true"}}
    listing = _operation(
        "List Boost Orders", "orders:read", ("200", "OrderPageEnvelope", "A page of orders."),
        (*_AUTHED, "VALIDATION_FAILED"),
        parameters=[
            _query("per_page", {"type": "integer", "minimum": 1, "maximum": 100}, "Default 25."),
            _query("page", {"type": "integer", "minimum": 1, "maximum": 1_000_000}, "From 1."),
            _query("status", {"type": "string", "enum": list(ORDER_STATUSES)}, "Only these."),
        ],
    )
    return {
        "/api/v1/wallet": {"get": _operation(
            "Wallet Balance", "wallet:read", ("200", "WalletEnvelope", "The balance."), _AUTHED)},
        "/api/v1/boost/categories": {"get": _operation(
            "List Boost Categories", "boosting:read",
            ("200", "CategoriesEnvelope", "The categories."), _AUTHED)},
        "/api/v1/boost/services": {"get": _operation(
            "List Boost Services", "boosting:read", ("200", "ServicesEnvelope", "The services."),
            (*_AUTHED, "VALIDATION_FAILED"),
            parameters=[_query("category", {"type": "string"}, "Exact category name.")])},
        "/api/v1/boost/services/{service_id}": {"get": _operation(
            "Get Service Details", "boosting:read", ("200", "ServiceEnvelope", "The service."),
            (*_AUTHED, "BOOST_SERVICE_NOT_FOUND", "NOT_FOUND"), parameters=[_SERVICE_ID])},
        "/api/v1/boost/orders": {"post": placed, "get": listing},
        "/api/v1/boost/orders/{order_id}": {"get": _operation(
            "Get Boost Order", "orders:read", ("200", "OrderEnvelope", "The stored order."),
            _ORDER_CODES, parameters=[_ORDER_ID])},
        "/api/v1/boost/orders/{order_id}/check": {"post": _operation(
            "Check Boost Status", "orders:read", ("200", "OrderEnvelope", "The refreshed order."),
            (*_ORDER_CODES, "PROVIDER_UNAVAILABLE"), parameters=[_ORDER_ID],
            description="Asks the provider for the order's status, records it (paying any "
            "refund it owes, once) and returns the order.")},
        "/api/v1/boost/orders/{order_id}/cancel": {"post": _operation(
            "Cancel Boost Order", "boosting:buy", ("200", "CancelEnvelope", "Cancel accepted."),
            (*_ORDER_CODES, "BOOST_CANCEL_UNAVAILABLE", "BOOST_CANCEL_REJECTED",
             "PROVIDER_UNAVAILABLE"), parameters=[_ORDER_ID],
            description="Before submission the order is canceled and refunded at once; after, "
            "the provider is asked and the refund waits for the status that confirms it.")},
    }


def _operations_paths() -> dict[str, Any]:
    text = {"description": "Prometheus text format.",
            "content": {"text/plain": {"schema": {"type": "string"}}}}
    html = {"description": "The API reference (self-hosted, works offline).",
            "content": {"text/html": {"schema": {"type": "string"}}}}
    document = {"description": "This document.",
                "content": {"application/json": {"schema": {"type": "object"}}}}
    public = {"security": [], "tags": ["operations"]}
    return {
        "/healthz": {"get": {**public, "summary": "The process is alive", "responses": {
            "200": _json("Status", "Alive.")}}},
        "/readyz": {"get": {**public, "summary": "Database reachable, migrations applied",
                            "responses": {"200": _json("Status", "Ready."),
                                          **_errors(("SERVICE_UNAVAILABLE",))}}},
        "/metrics": {"get": {**public, "summary": "Prometheus metrics",
                             "responses": {"200": text}}},
        "/api/v1/openapi.json": {"get": {**public, "summary": "This document",
                                         "responses": {"200": document}}},
        "/docs": {"get": {**public, "summary": "API reference page", "responses": {"200": html}}},
    }


@cache
def document() -> dict[str, Any]:
    branches = request_branches()
    schemas = {**response_schemas(), **branches,
               "CheckoutBody": checkout_body_schema(list(branches))}
    return {
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Boosting API",
            "version": "1.0.0",
            "description": "List boosting services, place orders paid from an NGN wallet, and "
            "track them. Every failure is one envelope `{success: false, status, message, "
            "code}`; the codes of each status are listed per operation. Money is a string "
            "with two decimals. Per-key rate limit: 429 `RATE_LIMITED` with Retry-After.",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearerAuth": []}],
        "paths": {**_api_paths(), **_operations_paths()},
        "components": {
            "securitySchemes": {"bearerAuth": {"type": "http", "scheme": "bearer",
                                               "description": "blk_<key id>_<secret>"}},
            "schemas": schemas,
        },
    }


@cache
def _document_bytes() -> bytes:
    return msgspec.json.encode(document())


async def openapi_json(request: Request) -> Response:
    return Response(_document_bytes(), media_type="application/json")


ROUTES = [Route("/openapi.json", openapi_json, methods=["GET"])]
