"""Injected provider faults reach the client as the right typed error, and retries stay bounded."""

import time
import urllib.parse
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from upstream_helpers import control_orders, request_count, running_server, set_fault

from boost_ledger.upstream import (
    ProviderClient,
    ProviderMalformed,
    ProviderRefused,
    ProviderUnavailable,
)

FOLLOWERS = {"link": "https://instagram.com/someone", "quantity": "100"}
MakeProvider = Callable[..., ProviderClient]


@pytest.mark.parametrize(
    ("mode", "error"),
    [
        ("http_500", ProviderUnavailable),
        ("html", ProviderMalformed),
        ("malformed_json", ProviderMalformed),
        ("error", ProviderRefused),
        ("reply_lost", ProviderUnavailable),
    ],
)
async def test_each_fault_on_a_read_is_its_typed_error(
    provider: ProviderClient, control: httpx.AsyncClient, mode: str, error: type[Exception]
) -> None:
    """services, status and balance each turn a fault into the error its mode stands for."""
    order_id = await provider.add("1", FOLLOWERS)
    await set_fault(control, "*", mode)
    with pytest.raises(error):
        await provider.services()
    with pytest.raises(error):
        await provider.status(order_id)
    with pytest.raises(error):
        await provider.balance()


async def test_timeout_is_unavailable_after_the_client_timeout(
    make_provider: MakeProvider, control: httpx.AsyncClient
) -> None:
    """A provider that hangs is ProviderUnavailable after the client's own timeout."""
    impatient = make_provider(timeout_s=0.2, read_retries=0)
    await set_fault(control, "status", "timeout")
    started = time.monotonic()
    with pytest.raises(ProviderUnavailable, match="no reply within"):
        await impatient.status("23501")
    assert time.monotonic() - started < 2.0


async def test_latency_only_slows_the_reply(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """Latency delays the reply by about latency_ms and the call still succeeds."""
    await set_fault(control, "add", "latency", latency_ms=150)
    started = time.monotonic()
    order_id = await provider.add("1", FOLLOWERS)
    assert time.monotonic() - started >= 0.15
    assert (await provider.status(order_id)).status == "Pending"


async def test_reply_lost_on_add_is_unavailable_but_the_order_exists(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A reply dropped mid-stream is Unavailable (outcome unknown) though the order was placed."""
    await set_fault(control, "add", "reply_lost")
    with pytest.raises(ProviderUnavailable):
        await provider.add("1", FOLLOWERS)
    [order] = await control_orders(control)
    assert (order["order"], order["link"], order["quantity"]) == (23501, FOLLOWERS["link"], 100)
    assert await request_count(control, "add") == 1


@pytest.mark.parametrize(
    ("mode", "error", "orders_left"),
    [
        ("malformed_json", ProviderMalformed, 1),
        ("html", ProviderMalformed, 0),
        ("http_500", ProviderUnavailable, 0),
        ("error", ProviderRefused, 0),
        ("timeout", ProviderUnavailable, 0),
    ],
)
async def test_add_is_never_retried(
    make_provider: MakeProvider,
    control: httpx.AsyncClient,
    mode: str,
    error: type[Exception],
    orders_left: int,
) -> None:
    """Whatever goes wrong, add reaches the provider exactly once; some faults leave an order."""
    provider = make_provider(timeout_s=0.3, read_retries=3)
    await set_fault(control, "add", mode)
    with pytest.raises(error):
        await provider.add("1", FOLLOWERS)
    assert await request_count(control, "add") == 1
    assert len(await control_orders(control)) == orders_left


async def test_cancel_and_refill_are_never_retried(
    make_provider: MakeProvider, control: httpx.AsyncClient
) -> None:
    """State-changing calls other than add are sent once as well."""
    provider = make_provider(read_retries=3)
    order_id = await provider.add("1", FOLLOWERS)
    await set_fault(control, "cancel", "http_500")
    await set_fault(control, "refill", "html")
    with pytest.raises(ProviderUnavailable):
        await provider.cancel([order_id])
    with pytest.raises(ProviderMalformed):
        await provider.refill([order_id])
    assert await request_count(control, "cancel") == 1
    assert await request_count(control, "refill") == 1


@pytest.mark.parametrize("mode", ["http_500", "html", "malformed_json", "reply_lost"])
async def test_reads_are_retried_a_bounded_number_of_times(
    make_provider: MakeProvider, control: httpx.AsyncClient, mode: str
) -> None:
    """A read that keeps failing is tried read_retries + 1 times, then the error surfaces."""
    provider = make_provider(read_retries=3)
    await set_fault(control, "status", mode)
    with pytest.raises((ProviderUnavailable, ProviderMalformed)):
        await provider.multi_status(["23501", "23502"])
    assert await request_count(control, "status") == 4


async def test_a_reply_nested_past_the_decoders_depth_is_malformed_and_retried() -> None:
    """A body of a thousand nested lists (2 kB of garbage, as a broken proxy could send) is a
    malformed reply like any other, retried as a read and unknown for an add: it raised
    RecursionError, which is no ProviderError, so the API's check and cancel answered 500,
    reads were not retried, and a balance answered so after trouble never counted as an
    answer (the submitter stayed stopped)."""
    calls: list[str] = []

    async def panel(request: Request) -> Response:
        calls.append(urllib.parse.parse_qs((await request.body()).decode())["action"][0])
        return Response(b"[" * 1000 + b"]" * 1000, media_type="application/json")

    app = Starlette(routes=[Route("/api/v2", panel, methods=["POST"])])
    async with running_server(app) as base_url:
        provider = ProviderClient(f"{base_url}/api/v2", "k", read_retries=1, backoff_s=0.001)
        try:
            for read in (provider.services, provider.balance, lambda: provider.status("1")):
                with pytest.raises(ProviderMalformed):
                    await read()
            with pytest.raises(ProviderMalformed):
                await provider.add("1", FOLLOWERS)
        finally:
            await provider.aclose()
    assert calls == ["services"] * 2 + ["balance"] * 2 + ["status"] * 2 + ["add"]


async def test_refused_reads_are_not_retried(
    make_provider: MakeProvider, control: httpx.AsyncClient
) -> None:
    """A refusal is an answer, so a read that gets one is not retried."""
    provider = make_provider(read_retries=3)
    await set_fault(control, "balance", "error")
    with pytest.raises(ProviderRefused, match="Simulated provider error"):
        await provider.balance()
    assert await request_count(control, "balance") == 1


async def test_faults_per_action_rate_and_clearing(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """Faults apply only to their action, rate 0 never fires, and "none" clears a fault."""
    await set_fault(control, "balance", "http_500")
    await set_fault(control, "services", "html", rate=0)
    await provider.services()
    with pytest.raises(ProviderUnavailable):
        await provider.balance()
    await set_fault(control, "balance", "none")
    await provider.balance()
    assert (await control.get("/faults")).json() == {
        "services": {"mode": "html", "rate": 0.0, "latency_ms": 30000}
    }
    await set_fault(control, "*", "none")
    assert (await control.get("/faults")).json() == {}


async def test_a_specific_fault_beats_the_wildcard(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """With "*" and a specific action both faulted, the specific one decides."""
    await set_fault(control, "*", "http_500")
    await set_fault(control, "balance", "error")
    with pytest.raises(ProviderRefused):
        await provider.balance()
    with pytest.raises(ProviderUnavailable):
        await provider.services()


async def test_partial_rate_faults_some_requests(
    make_provider: MakeProvider, control: httpx.AsyncClient
) -> None:
    """A fault with rate 0.5 hits some requests and spares others."""
    provider = make_provider(read_retries=0)
    await set_fault(control, "balance", "error", rate=0.5)
    outcomes = []
    for _ in range(40):
        try:
            await provider.balance()
            outcomes.append(True)
        except ProviderRefused:
            outcomes.append(False)
    assert 5 < sum(outcomes) < 35
