"""The OpenAPI 3.1 document and the /docs page.

- The document describes every route the app serves and every error code the code can send.
- The checkout body is a documented union of the 13 types: a valid body of each type matches
  exactly one branch, the one naming its type, under the JSON Schema validator schemathesis
  uses (jsonschema_rs, draft 2020-12), and the server places it (201).
- /docs renders offline: every asset it references is a path of this server that answers 200
  with the right content type, nothing refers to another host, and the Content-Security-Policy
  forbids loading anything from elsewhere. (A real headless-browser screenshot is
  bench/docs_screenshot.py: it needs Chromium, which `make test` does not install.)
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import jsonschema_rs
import pytest
from starlette.routing import Mount, Route
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.api import app as app_module
from boost_ledger.api.openapi import ERROR_CODES, document
from boost_ledger.ledger.order_types import SERVICE_TYPES

LINK = "https://instagram.com/p/example"
# One valid body per type (service ids of the simulator's catalog; quantities within range).
BODIES: dict[str, tuple[str, dict[str, Any]]] = {
    "Default": ("1", {"link": LINK, "quantity": 1000, "runs": 2, "interval": 5}),
    "Package": ("4", {"link": LINK}),
    "Custom Comments": ("5", {"link": LINK, "comments": "nice\ngreat\nwow\ncool\nyes"}),
    "Mentions with Hashtags": ("6", {"link": LINK, "quantity": 100, "usernames": "a,b",
                                     "hashtags": "#x\n#y"}),
    "Mentions Custom List": ("7", {"link": LINK, "usernames": "\n".join(f"u{i}"
                                                                       for i in range(10))}),
    "Mentions Hashtag": ("8", {"link": LINK, "quantity": 100, "hashtag": "#summer"}),
    "Mentions User Followers": ("9", {"link": LINK, "quantity": 100, "username": "bob"}),
    "Mentions Media Likers": ("10", {"link": LINK, "quantity": 100,
                                     "media": "https://instagram.com/p/media"}),
    "Subscriptions": ("11", {"username": "bob", "min": 50, "max": 100, "delay": 30,
                             "posts": 3, "expiry": "31/12/2030"}),
    "Comment Likes": ("12", {"link": LINK, "quantity": 20, "username": "bob"}),
    "Poll": ("13", {"link": LINK, "quantity": 100, "answer_number": 2}),
    "Comment Replies": ("14", {"link": LINK, "username": "bob", "comments": "yes\nno"}),
    "Invites from Groups": (
        "15", {"link": LINK, "quantity": 100, "groups": "https://t.me/a\nhttps://t.me/b"}
    ),
}


def _validator(schema_name: str) -> Any:
    """A draft 2020-12 validator of one component, with the document's components beside it."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": document()["components"]}
    return jsonschema_rs.Draft202012Validator(root)


def test_the_document_is_openapi_3_1_and_covers_every_route():
    """Every route the app serves (but the simulator, mounted only by `boost serve`) is a
    documented path, and every documented path is served."""
    served = {f"/api/v1{route.path}" for route in app_module.api_routes()
              if isinstance(route, Route)}
    served |= {route.path for route in app_module.operations_routes()
               if isinstance(route, Route) and not route.path.startswith("/docs/assets")}
    assert not any(isinstance(route, Mount) for route in app_module.api_routes())
    spec = document()
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == served


def test_every_error_code_the_code_can_send_is_documented_with_its_status():
    """Each ``ApiError(status, "CODE", ...)`` in the API package appears in the document with
    that status, under each operation that can send it."""
    package = Path(app_module.__file__).parent
    sent: set[tuple[int, str]] = set()
    pattern = re.compile(r"ApiError\(\s*(\d{3}),\s*\"([A-Z_]+)\"")
    for source in package.glob("*.py"):
        sent |= {(int(status), code) for status, code in pattern.findall(source.read_text())}
    sent |= {(503, "SERVICE_UNAVAILABLE"), (422, "BOOST_QUANTITY_REQUIRED"),
             (422, "BOOST_QUANTITY_OUT_OF_RANGE"), (422, "BOOST_LINK_REQUIRED")}
    sent.discard((0, "HTTP_ERROR"))
    documented = {(status, code) for code, (status, _) in ERROR_CODES.items()}
    assert {item for item in sent if item[1] != "HTTP_ERROR"} <= documented
    listed: set[str] = set()
    for item in document()["paths"].values():
        for operation in item.values():
            for status, response in operation["responses"].items():
                schema = response["content"].get("application/json", {}).get("schema", {})
                for part in schema.get("allOf", []):
                    codes = part.get("properties", {}).get("code", {}).get("enum", [])
                    assert all(ERROR_CODES[code][0] == int(status) for code in codes)
                    listed |= set(codes)
    # 405 answers a method an operation does not have, and 400 and 431 (http_protocol.py)
    # bytes that are no request at all, or a head too long to read, so they belong to no
    # operation.
    assert listed == set(ERROR_CODES) - {
        "METHOD_NOT_ALLOWED", "BAD_REQUEST", "REQUEST_HEADERS_TOO_LARGE"}


def test_every_error_sent_with_retry_after_is_documented_with_it():
    """Each ``ApiError(status, "CODE", ..., headers={"Retry-After": ...})`` in the API package
    (or a 503 through ``service_unavailable``) is documented, under every operation that can
    send it, by a response that declares Retry-After; no other response declares it."""
    package = Path(app_module.__file__).parent
    pattern = re.compile(r"ApiError\(\s*(\d{3}),\s*\"([A-Z_]+)\"[^()]*(?:\([^()]*\)[^()]*)*\)")
    with_retry: set[str] = {"SERVICE_UNAVAILABLE"}  # service_unavailable()'s default code
    for source in package.glob("*.py"):
        for call in pattern.finditer(source.read_text()):
            if "Retry-After" in call.group(0):
                with_retry.add(call.group(2))
    assert {"IDEMPOTENCY_KEY_IN_PROGRESS", "RATE_LIMITED", "PROVIDER_UNAVAILABLE"} <= with_retry
    for item in document()["paths"].values():
        for operation in item.values():
            for response in operation["responses"].values():
                schema = response["content"].get("application/json", {}).get("schema", {})
                codes = {code for part in schema.get("allOf", [])
                         for code in part.get("properties", {}).get("code", {}).get("enum", [])}
                declared = "Retry-After" in response.get("headers", {})
                assert declared == bool(codes & with_retry), (codes, declared)


def test_each_type_has_one_documented_branch():
    """The union covers all 13 types, each in exactly one branch."""
    branches = [document()["components"]["schemas"][ref["$ref"].rsplit("/", 1)[1]]
                for ref in document()["components"]["schemas"]["CheckoutBody"]["oneOf"]]
    named = [service_type for branch in branches for service_type in branch["x-service-types"]]
    assert sorted(named) == sorted(SERVICE_TYPES)
    assert set(BODIES) == set(SERVICE_TYPES)


@pytest.mark.parametrize("service_type", SERVICE_TYPES)
def test_a_valid_body_of_each_type_matches_exactly_its_branch(service_type):
    """Validated by jsonschema_rs: the body is a CheckoutBody and fits only its type's branch;
    with a price or an unknown field it is refused, and without a required field it no longer
    fits its branch."""
    service_id, fields = BODIES[service_type]
    body = {"service_id": service_id, "idempotency_key": f"doc-{service_id}", **fields}
    assert _validator("CheckoutBody").is_valid(body)
    schemas = document()["components"]["schemas"]
    matching = [name for name, schema in schemas.items()
                if "x-service-types" in schema and _validator(name).is_valid(body)]
    assert len(matching) == 1, matching
    assert service_type in schemas[matching[0]]["x-service-types"]
    assert not _validator("CheckoutBody").is_valid({**body, "price": "1.00"})
    assert not _validator("CheckoutBody").is_valid({**body, "surprise": 1})
    required = schemas[matching[0]]["required"]
    assert not _validator(matching[0]).is_valid(
        {name: value for name, value in body.items() if name != required[-1]})


async def test_the_server_places_each_documented_example(pool: asyncpg.Pool[Any], client):
    """The document's promise holds: each type's valid example is a 201 whose body conforms."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 10**12)
    placed = _validator("PlacedOrderEnvelope")
    for service_type, (service_id, fields) in BODIES.items():
        body = {"service_id": service_id, "idempotency_key": f"example-{service_id}", **fields}
        response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
        assert response.status_code == 201, (service_type, response.text)
        placed.validate(response.json())
        assert response.json()["data"]["type"] == service_type


async def test_every_documented_401_declares_the_challenge_the_server_sends(client):
    """Each operation's 401 declares the WWW-Authenticate header, with the value a 401 of the
    server carries."""
    challenges = {
        operation["responses"]["401"]["headers"]["WWW-Authenticate"]["schema"]["const"]
        for path in document()["paths"].values()
        for operation in path.values()
        if "401" in operation["responses"]
    }
    response = await client.get("/api/v1/wallet")
    assert response.status_code == 401
    assert challenges == {response.headers["www-authenticate"]}


async def test_the_document_is_served_as_json(client: httpx.AsyncClient):
    response = await client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == document()


class _Assets(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []
        self.data_spec: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name) and tag in ("script", "link", "img", "iframe", "source"):
                self.references.append(str(values[name]))
        if values.get("data-spec"):
            self.data_spec = values["data-spec"]


_EXTERNAL = re.compile(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", re.IGNORECASE)


async def test_docs_render_from_local_assets_only(client: httpx.AsyncClient):
    """/docs and everything it loads come from this server; nothing names another host."""
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    parser = _Assets()
    parser.feed(page.text)
    assert parser.data_spec == "/api/v1/openapi.json"
    assert sorted(parser.references) == ["/docs/assets/docs.css", "/docs/assets/docs.js"]
    expected_types = {"css": "text/css", "js": "text/javascript"}
    for reference in [*parser.references, parser.data_spec]:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        asset = await client.get(reference)
        assert asset.status_code == 200, reference
        extension = reference.rsplit(".", 1)[1]
        if extension in expected_types:
            assert asset.headers["content-type"].startswith(expected_types[extension])
            assert not _EXTERNAL.search(asset.text), f"{reference} names another host"
    assert not _EXTERNAL.search(page.text)
    missing = await client.get("/docs/assets/../../settings.py")
    assert missing.status_code == 404
