"""Schemathesis against the served OpenAPI document, over real HTTP, with a funded account.

For every operation of /api/v1/openapi.json it generates requests from the document (valid
ones, and for a few examples invalid ones) and holds the server to it: never a 5xx, every status
documented for the operation, every body and header as the document says (the error ``code``
included, which the document pins per status). To reach past "service not found", most
generated checkouts name a real service of the branch's type, and most order ids are a real
order, either the caller's or another account's (which must be 404 BOOST_ORDER_NOT_FOUND).

Schemathesis calls are synchronous (``requests``), so they run in a worker thread while the
server keeps serving on the test's event loop. Examples are few and derandomized: the run is
the same on every machine and takes well under a minute.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from support import bearer, open_funded_account, seed_catalog

from boost_ledger.api.openapi import document
from boost_ledger.api.openapi_bodies import request_branches
from boost_ledger.settings import Settings
from boost_ledger.upstream.sim_catalog import CATALOG

POSITIVE_EXAMPLES = 40
NEGATIVE_EXAMPLES = 10
_CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
           response_headers_conformance, response_schema_conformance]
_NEGATIVE_CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def settings(dsn: str) -> Settings:
    """As conftest's, without the per-key rate limit (one key sends every generated request)."""
    return Settings(database_url=dsn, workers_enabled=False, demo_account=False,
                    rate_limit_per_s=0)


class Target:
    """What the generated requests are aimed at: the server, a key, real ids to substitute."""

    def __init__(self, base_url: str, key: str, own_order: str, foreign_order: str) -> None:
        self.base_url = base_url
        self.headers = bearer(key)
        self.own_order = own_order
        self.foreign_order = foreign_order
        types_of = {name: branch["x-service-types"] for name, branch in request_branches().items()}
        self.services_by_branch_keys: list[tuple[frozenset[str], set[str], list[str]]] = []
        for name, branch in request_branches().items():
            services = [entry.service_id for entry in CATALOG if entry.type in types_of[name]]
            self.services_by_branch_keys.append(
                (frozenset(branch["required"]), set(branch["properties"]), services))

    def services_for(self, body: dict[str, Any]) -> list[str]:
        """The catalog services whose type's branch this generated body belongs to."""
        keys = set(body)
        for required, allowed, services in self.services_by_branch_keys:
            if required <= keys <= allowed:
                return services
        return []


def _exercise(target: Target, operation: Any, mode: GenerationMode, examples: int) -> None:
    checks = _CHECKS if mode is GenerationMode.POSITIVE else _NEGATIVE_CHECKS
    path = operation.path

    @given(case=operation.as_strategy(generation_mode=mode), data=st.data())
    @hypothesis_settings(
        max_examples=examples, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink],
    )
    def run(case: Any, data: st.DataObject) -> None:
        foreign = False
        if mode is GenerationMode.POSITIVE and "{order_id}" in path:
            choice = data.draw(st.sampled_from(["generated", "own", "foreign"]))
            if choice != "generated":
                foreign = choice == "foreign"
                case.path_parameters["order_id"] = (
                    target.foreign_order if foreign else target.own_order)
        if mode is GenerationMode.POSITIVE and isinstance(case.body, dict):
            services = target.services_for(case.body)
            if services and data.draw(st.booleans()):
                case.body["service_id"] = data.draw(st.sampled_from(services))
        response = case.call(base_url=target.base_url, headers=target.headers, timeout=30)
        case.validate_response(response, checks=checks, headers=target.headers)
        if foreign:
            assert response.status_code == 404, response.text
            assert response.json()["code"] == "BOOST_ORDER_NOT_FOUND"

    run()


def _run_all(target: Target) -> list[str]:
    schema = schemathesis.openapi.from_url(f"{target.base_url}/api/v1/openapi.json")
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()
        _exercise(target, operation, GenerationMode.POSITIVE, POSITIVE_EXAMPLES)
        try:
            _exercise(target, operation, GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES)
        except Unsatisfiable:
            # Nothing to make invalid: the operation takes no parameter and no body.
            assert not operation.definition.raw.get("parameters"), operation.path
            assert "requestBody" not in operation.definition.raw, operation.path
        exercised.append(f"{operation.method.upper()} {operation.path}")
    return exercised


async def _place(base_url: str, key: str) -> str:
    body = {"service_id": "1", "link": "https://instagram.com/p/st", "quantity": 1000,
            "idempotency_key": "schemathesis-seed"}
    async with httpx.AsyncClient(base_url=base_url) as client:
        response = await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
    assert response.status_code == 201, response.text
    order_id: str = response.json()["data"]["order_id"]
    return order_id


async def test_the_server_conforms_to_its_openapi_document(
    pool: asyncpg.Pool[Any], base_url: str
) -> None:
    """Generated requests for every documented operation: no 5xx, every response conforms."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 10**12)
    _, other_key = await open_funded_account(pool, 10**9)
    target = Target(base_url, key, await _place(base_url, key), await _place(base_url, other_key))
    exercised = await asyncio.to_thread(_run_all, target)
    # Schemathesis leaves out the operation that serves the document it was loaded from.
    documented = [f"{method.upper()} {path}" for path, item in document()["paths"].items()
                  for method in item if path != "/api/v1/openapi.json"]
    assert sorted(exercised) == sorted(documented)
    placed = await pool.fetchval(
        "select count(*) from orders o join api_keys k using (account_id)"
        " where k.key_id = split_part($1, '_', 2)", key)
    assert placed > 1, "no generated checkout reached the ledger"
