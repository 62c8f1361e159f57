"""Fixtures for the upstream tests: the simulator served over real HTTP by uvicorn."""

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from upstream_helpers import API_KEY, running_server

from boost_ledger.upstream import ProviderClient, create_simulator_app
from boost_ledger.upstream.transport import ProviderTransport


@pytest.fixture(scope="session")
async def simulator_url() -> AsyncIterator[str]:
    # Progression is off so that orders stay where the tests put them; tests tick by hand.
    app = create_simulator_app(api_key=API_KEY, autoprogress=False, tick_s=0.05, seed=7)
    async with running_server(app) as base_url:
        yield base_url


@pytest.fixture(scope="session")
async def control_session(simulator_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{simulator_url}/control", timeout=5.0) as client:
        yield client


@pytest.fixture
async def control(control_session: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client of the control API, on a freshly reset simulator."""
    (await control_session.post("/reset")).raise_for_status()
    return control_session


@pytest.fixture
async def make_provider(
    simulator_url: str, control: httpx.AsyncClient
) -> AsyncIterator[Callable[..., ProviderClient]]:
    """Build provider clients against the simulator (closed at teardown); fast retries."""
    clients: list[ProviderClient] = []

    def build(**overrides: Any) -> ProviderClient:
        settings: dict[str, Any] = {"timeout_s": 3.0, "read_retries": 2, "backoff_s": 0.001}
        settings.update(overrides)
        key = settings.pop("key", API_KEY)
        client = ProviderClient(f"{simulator_url}/api/v2", key, **settings)
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


@pytest.fixture
def provider(make_provider: Callable[..., ProviderClient]) -> ProviderClient:
    return make_provider()


@pytest.fixture
async def transport() -> AsyncIterator[ProviderTransport]:
    """A provider transport of four connections, for the scripted servers' tests."""
    transport = ProviderTransport(max_connections=4)
    yield transport
    await transport.aclose()
