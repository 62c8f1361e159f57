"""The simulator's control API, its configuration, mounting inside a host app, and shutdown."""

import contextlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount
from upstream_helpers import (
    API_KEY,
    control_orders,
    running_server,
    set_fault,
    wait_until_terminal,
)

from boost_ledger.upstream import (
    ProviderClient,
    ProviderUnavailable,
    create_simulator_app,
    simulator_lifespan,
)
from boost_ledger.upstream.sim_catalog import CATALOG

FOLLOWERS = {"link": "https://instagram.com/someone", "quantity": "100"}


async def test_forcing_an_order_and_reading_it_back(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """POST /control/orders/{id} forces status, remains and start_count; the protocol sees them."""
    order_id = await provider.add("1", FOLLOWERS)
    forced = {"status": "Partial", "remains": 157, "start_count": 3572}
    reply = await control.post(f"/orders/{order_id}", json=forced)
    assert reply.status_code == 200
    assert {name: reply.json()[name] for name in forced} == forced
    status = await provider.status(order_id)
    assert (status.status, status.remains, status.start_count) == ("Partial", 157, 3572)
    assert (await control.get(f"/orders/{order_id}")).json()["status"] == "Partial"
    [listed] = await control_orders(control)
    assert set(listed) >= {"order", "service", "link", "quantity", "status", "remains",
                           "start_count", "charge", "fields"}  # fmt: skip


async def test_a_finished_order_forced_back_in_flight_moves_on_again(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A tick no longer looks at a finished order, but forcing its status brings it back."""
    order_id = await provider.add("1", FOLLOWERS)
    await control.post(f"/orders/{order_id}", json={"status": "Completed", "remains": 0})
    await control.post("/tick")
    await control.post(f"/orders/{order_id}", json={"status": "In progress", "remains": 40})
    await control.post("/tick", json={"steps": 3})
    status = await provider.status(order_id)
    assert status.status in ("Completed", "Partial")
    assert (status.status == "Completed") == (status.remains == 0)
    assert status.remains < 40 or status.status == "Partial"


async def test_control_rejects_unknown_orders_and_bad_bodies(control: httpx.AsyncClient) -> None:
    """Unknown orders are 404; malformed control bodies are 400 with a JSON error."""
    assert (await control.post("/orders/99999", json={"status": "Completed"})).status_code == 404
    assert (await control.get("/orders/99999")).status_code == 404
    bad_faults = [
        {"action": "add", "mode": "explode"},
        {"action": "launch", "mode": "error"},
        {"action": "add", "mode": "error", "rate": 2},
        {"action": "add", "mode": "timeout", "latency_ms": 10**9},
        {"mode": "error"},
    ]
    for body in bad_faults:
        reply = await control.post("/faults", json=body)
        assert reply.status_code == 400 and "error" in reply.json()
    assert (await control.post("/tick", json={"steps": 0})).status_code == 400
    assert (await control.post("/progression", content=b"{not json")).status_code == 400


async def test_control_answers_404_for_an_order_id_of_thousands_of_digits(
    control: httpx.AsyncClient,
) -> None:
    """An order id too long for a number names no order: 404 with a JSON error, where the
    route's int conversion raised (past 4300 digits) and the control API answered 500."""
    huge = "7" * 5000
    for reply in (
        await control.get(f"/orders/{huge}"),
        await control.post(f"/orders/{huge}", json={"status": "Completed"}),
    ):
        assert (reply.status_code, reply.json()) == (404, {"error": "Unknown order"})


async def test_reset_forgets_orders_faults_and_counters(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """Reset brings the simulator back to its first state, order ids included."""
    await provider.add("1", FOLLOWERS)
    await set_fault(control, "balance", "error")
    stats = (await control.get("/stats")).json()
    assert stats["requests"] == {"add": 1} and stats["orders"] == 1
    await control.post("/reset")
    assert await control_orders(control) == []
    assert (await control.get("/faults")).json() == {}
    assert (await control.get("/stats")).json()["total"] == 0
    assert await provider.add("1", FOLLOWERS) == "23501"
    assert (await provider.balance()).balance > 0


@pytest.mark.parametrize(
    ("value", "expected"), [(None, True), ("1", True), ("0", False), ("false", False)]
)
def test_autoprogress_defaults_to_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
) -> None:
    """autoprogress=None reads BOOST_SIMULATOR_AUTOPROGRESS, a switch like BOOST_WORKERS (it
    was on for any value but "0", "false" too)."""
    if value is None:
        monkeypatch.delenv("BOOST_SIMULATOR_AUTOPROGRESS", raising=False)
    else:
        monkeypatch.setenv("BOOST_SIMULATOR_AUTOPROGRESS", value)
    assert create_simulator_app().state.simulator.autoprogress is expected
    assert create_simulator_app(autoprogress=not expected).state.simulator.autoprogress is not (
        expected
    )


def test_catalog_is_well_formed() -> None:
    """Ids are unique integer strings and rates are decimal strings with at most 5 places."""
    ids = [entry.service_id for entry in CATALOG]
    assert len(set(ids)) == len(ids) and all(service_id.isdigit() for service_id in ids)
    for entry in CATALOG:
        whole, _, fraction = entry.rate.partition(".")
        assert whole.isdigit() and fraction.isdigit() and len(fraction) <= 5
        assert 1 <= entry.min <= entry.max


@contextlib.asynccontextmanager
async def _host_lifespan(app: Starlette) -> AsyncIterator[None]:
    async with simulator_lifespan(app.state.mounted_simulator):
        yield


async def test_mounted_under_a_host_app_with_its_lifespan() -> None:
    """Mounted at /simulator, the protocol and control routes move under it and orders progress."""
    simulator = create_simulator_app(api_key=API_KEY, autoprogress=True, tick_s=0.02, seed=1)
    host = Starlette(routes=[Mount("/simulator", app=simulator)], lifespan=_host_lifespan)
    host.state.mounted_simulator = simulator
    async with running_server(host) as base_url:
        client = ProviderClient(f"{base_url}/simulator/api/v2", API_KEY, timeout_s=2.0)
        try:
            order_id = await client.add("1", FOLLOWERS)
            async with httpx.AsyncClient(timeout=2.0) as http:
                orders = (await http.get(f"{base_url}/simulator/control/orders")).json()
            assert [order["order"] for order in orders] == [int(order_id)]
            assert await wait_until_terminal(client, [order_id])
        finally:
            await client.aclose()


async def test_shutdown_does_not_wait_for_a_hung_request() -> None:
    """A "timeout" fault whose client gave up does not hold the server's shutdown for 30 s."""
    app = create_simulator_app(api_key=API_KEY, autoprogress=False)
    started = time.monotonic()
    async with running_server(app, graceful_shutdown_s=None) as base_url:
        async with httpx.AsyncClient(base_url=f"{base_url}/control") as control:
            await set_fault(control, "*", "timeout")
        client = ProviderClient(f"{base_url}/api/v2", API_KEY, timeout_s=0.2, read_retries=0)
        try:
            with pytest.raises(ProviderUnavailable, match="no reply within"):
                await client.balance()
        finally:
            await client.aclose()
    assert time.monotonic() - started < 5
