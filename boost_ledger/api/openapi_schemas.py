"""The response shapes of the OpenAPI document (``components/schemas``), as JSON Schema 2020-12.

They mirror the msgspec structs that render the answers (api/wallet.py, api/catalog.py,
projections/views.py); tests/hardening check every real answer against them.
"""

from __future__ import annotations

from typing import Any

from boost_ledger.ledger.order_types import SERVICE_TYPES
from boost_ledger.ledger.statuses import ORDER_STATUSES

MONEY = {"type": "string", "pattern": "^-?[0-9]+\\.[0-9]{2}$", "description": "NGN, 2 decimals."}
CURRENCY = {"type": "string", "const": "NGN"}
_NULLABLE_INT = {"type": ["integer", "null"]}
_NULLABLE_STRING = {"type": ["string", "null"]}


def _object(properties: dict[str, Any], optional: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "type": "object",
        "required": [name for name in properties if name not in optional],
        "properties": properties,
        "additionalProperties": False,
    }


def _ok(data: dict[str, Any], **extra: dict[str, Any]) -> dict[str, Any]:
    return _object({"success": {"const": True}, **extra, "data": data})


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _order_head() -> dict[str, Any]:
    return {
        "order_id": {"type": "string", "pattern": "^[1-9][0-9]*$"},
        "status": {"type": "string", "enum": list(ORDER_STATUSES)},
        "service_id": {"type": "string"},
        "service_name": {"type": "string"},
        "category": {"type": "string"},
        "type": {"type": "string", "enum": list(SERVICE_TYPES)},
        "link": _NULLABLE_STRING,
        "quantity": _NULLABLE_INT,
        "price": MONEY,
        "currency": CURRENCY,
    }


def response_schemas() -> dict[str, Any]:
    service = _object({
        "service_id": {"type": "string"},
        "service_name": {"type": "string"},
        "category": {"type": "string"},
        "type": {"type": "string", "enum": list(SERVICE_TYPES)},
        "rate_per_1000": MONEY,
        "currency": CURRENCY,
        "min": {"type": "integer"},
        "max": {"type": "integer"},
        "refill": {"type": "boolean"},
        "cancel": {"type": "boolean"},
    })
    order = _object({
        **_order_head(),
        "start_count": _NULLABLE_INT,
        "remains": _NULLABLE_INT,
        "refunded": {"type": "boolean"},
        "cancel": {"type": "boolean", "description": "Whether a cancel may be tried now."},
        "created_at": {"type": "string", "format": "date-time"},
    })
    placed = _object({
        **_order_head(),
        "status": {"type": "string", "const": "pending"},
        "cancel": {"type": "boolean"},
        "balance_after": MONEY,
    })
    page = _object({name: {"type": "integer", "minimum": 0} for name in
                    ("current_page", "per_page", "total", "last_page")})
    return {
        "Wallet": _object({"balance": MONEY, "currency": CURRENCY}),
        "Category": _object({"name": {"type": "string"}}),
        "Service": service,
        "Order": order,
        "PlacedOrder": placed,
        "Page": page,
        "WalletEnvelope": _ok(_ref("Wallet")),
        "CategoriesEnvelope": _ok({"type": "array", "items": _ref("Category")}),
        "ServicesEnvelope": _ok({"type": "array", "items": _ref("Service")}),
        "ServiceEnvelope": _ok(_ref("Service")),
        "PlacedOrderEnvelope": _ok(_ref("PlacedOrder")),
        "OrderEnvelope": _ok(_ref("Order")),
        "OrderPageEnvelope": _ok(
            {"type": "array", "items": _ref("Order")}, meta=_ref("Page")
        ),
        "CancelEnvelope": _ok(_ref("Order"), message={"type": "string"}),
        "Status": _ok(_object({"status": {"type": "string", "enum": ["ok", "ready"]}})),
        "Error": _object(
            {
                "success": {"const": False},
                "status": {"type": "integer"},
                "message": {"type": "string"},
                "code": {"type": "string"},
                "errors": {
                    "type": "object",
                    "description": "For VALIDATION_FAILED: each bad field with its reasons.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            optional=("errors",),
        ),
    }
