"""The checkout request body of each of the 13 service types, as JSON Schema (OpenAPI 3.1).

Built from the field rules of ``ledger/order_types.py`` (the table the server validates with),
so the document cannot drift from the code. The body does not name its type: the type belongs to
the service (``GET /boost/services/{service_id}`` → ``type``). The union is still
discriminated, by the service: each branch says which types it serves (``x-service-types``).
Two types take the same fields (Mentions User Followers and Comment Likes), so they share one
branch; every branch forbids other fields, which keeps the branches disjoint (``oneOf``).
"""

from __future__ import annotations

from typing import Any

# The private tables are the single source of truth for what each type accepts; reading them
# here (rather than restating them) is what keeps this document honest.
from boost_ledger.ledger.catalog import MAX_SERVICE_ID_CHARS
from boost_ledger.ledger.order_types import (
    _BILLED_LINES,
    _TYPE_FIELDS,
    MAX_INTEGER,
    MAX_LIST_CHARS,
    MAX_QUANTITY,
    MAX_TEXT_CHARS,
    SERVICE_TYPES,
    SUBSCRIPTION_DELAYS_MINUTES,
    _Field,
)

MAX_IDEMPOTENCY_KEY_CHARS = 100

# Printable ASCII without leading space: a strict subset of what the server takes, enough for
# every client and for generated examples.
_KEY_PATTERN = "^[!-~][ -~]*$"
_URL_PATTERN = "^https?://[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(/[!-~]*)?$"
_ONE_LINE_PATTERN = "^[!-~]([ -~]*[!-~])?$"
_DATE_PATTERN = "^(0?[1-9]|[12][0-9]|3[01])/(0?[1-9]|1[0-2])/[0-9]{4}$"

_NOTES = {
    "Default": "Charged rate x quantity / 1000; with drip-feed (runs and interval, both or "
    "neither) quantity x runs is delivered and charged.",
    "Package": "Charged the service's rate once, whatever is delivered.",
    "Custom Comments": "One comment per line; the billable quantity is the number of non-empty "
    "lines.",
    "Mentions with Hashtags": "Usernames and hashtags separated by newlines or commas.",
    "Mentions Custom List": "Usernames separated by newlines or commas; the billable quantity "
    "is the number of usernames.",
    "Mentions Hashtag": "The hashtag whose posters are mentioned.",
    "Mentions User Followers": "Targets the followers of `username`.",
    "Mentions Media Likers": "Targets the likers of the media at `media` (a URL).",
    "Subscriptions": "Charged max x posts up front; `posts` defaults to the server's configured "
    "number when omitted. `delay` is in minutes; `expiry` is d/m/Y.",
    "Comment Likes": "Likes on the comments of `username` under `link`.",
    "Poll": "`answer_number` is the poll option to vote for.",
    "Comment Replies": "Replies to `username`'s comment, one per line; the billable quantity is "
    "the number of non-empty lines.",
    "Invites from Groups": "One group per line; `link` too, which the provider needs.",
}
assert set(_NOTES) == set(SERVICE_TYPES)


def _field_schema(spec: _Field) -> dict[str, Any]:
    if spec.kind == "quantity":
        return {"type": "integer", "minimum": 1, "maximum": MAX_QUANTITY,
                "description": "Within the service's min..max."}
    if spec.kind == "integer":
        return {"type": "integer", "minimum": spec.minimum, "maximum": MAX_INTEGER}
    if spec.kind == "delay":
        return {"type": "integer", "enum": list(SUBSCRIPTION_DELAYS_MINUTES),
                "description": "Minutes between posts."}
    if spec.kind in ("link", "url"):
        return {"type": "string", "format": "uri", "maxLength": MAX_TEXT_CHARS,
                "pattern": _URL_PATTERN, "description": "An http or https URL with a host."}
    if spec.kind == "date":
        return {"type": "string", "pattern": _DATE_PATTERN, "description": "A date, d/m/Y."}
    if spec.kind in ("lines", "comma_lines"):
        separators = "newlines or commas" if spec.kind == "comma_lines" else "newlines"
        return {"type": "string", "minLength": 1, "maxLength": MAX_LIST_CHARS,
                "pattern": "[!-~]", "description": f"Items separated by {separators}."}
    assert spec.kind == "text", spec.kind
    return {"type": "string", "minLength": 1, "maxLength": MAX_TEXT_CHARS,
            "pattern": _ONE_LINE_PATTERN, "description": "One line, no control characters."}


def common_properties() -> dict[str, Any]:
    return {
        "service_id": {
            "type": "string", "minLength": 1, "maxLength": MAX_SERVICE_ID_CHARS,
            "pattern": "^[0-9A-Za-z_-]+$",
            "description": "Service ID from /boost/services; its type decides the other fields.",
        },
        "idempotency_key": {
            "type": "string", "minLength": 1, "maxLength": MAX_IDEMPOTENCY_KEY_CHARS,
            "pattern": _KEY_PATTERN,
            "description": "Unique per checkout attempt; a retry with the same key and body "
            "gets the first answer again (Idempotent-Replayed: true).",
        },
    }


def _branch(types: list[str], specs: tuple[_Field, ...]) -> dict[str, Any]:
    properties = common_properties()
    properties.update({spec.name: _field_schema(spec) for spec in specs})
    required = ["service_id", "idempotency_key"]
    required += [spec.name for spec in specs if spec.required]
    branch: dict[str, Any] = {
        "title": " / ".join(types),
        "description": " ".join(f"{name}: {_NOTES[name]}" for name in types),
        "x-service-types": types,
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": False,
    }
    names = {spec.name for spec in specs}
    if {"runs", "interval"} <= names:
        branch["dependentRequired"] = {"runs": ["interval"], "interval": ["runs"]}
    billed = [_BILLED_LINES[name] for name in types if name in _BILLED_LINES]
    if billed:
        branch["x-billed-lines"] = billed[0]
    return branch


def request_branches() -> dict[str, dict[str, Any]]:
    """One schema per distinct field set, named after its type(s), in the spec's order."""
    grouped: dict[tuple[_Field, ...], list[str]] = {}
    for service_type in SERVICE_TYPES:
        grouped.setdefault(_TYPE_FIELDS[service_type], []).append(service_type)
    return {
        "Order" + "".join(word.capitalize() for word in types[0].split()): _branch(types, specs)
        for specs, types in grouped.items()
    }


def checkout_body_schema(branch_names: list[str]) -> dict[str, Any]:
    return {
        "description": "The fields depend on the type of the service named by `service_id` "
        "(the discriminator is the service's `type`, not a field of the body). Each branch "
        "lists its types in `x-service-types`. Never send a price: the server computes it. "
        "JSON null and blank strings count as missing.",
        "oneOf": [{"$ref": f"#/components/schemas/{name}"} for name in branch_names],
    }
