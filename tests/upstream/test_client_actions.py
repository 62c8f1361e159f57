"""Every protocol action, from ProviderClient to the simulator over real HTTP."""

from collections.abc import Callable
from decimal import Decimal

import httpx
import pytest
from upstream_helpers import API_KEY, control_orders, request_count

from boost_ledger.upstream import ProviderClient, ProviderRefused, ProviderStatus
from boost_ledger.upstream.sim_catalog import CATALOG

ALL_TYPES = {
    "Default", "Package", "Custom Comments", "Mentions with Hashtags", "Mentions Custom List",
    "Mentions Hashtag", "Mentions User Followers", "Mentions Media Likers", "Subscriptions",
    "Comment Likes", "Poll", "Comment Replies", "Invites from Groups",
}  # fmt: skip
FOLLOWERS = {"link": "https://instagram.com/someone", "quantity": "100"}


async def test_services_lists_the_catalog_with_exact_rates(provider: ProviderClient) -> None:
    """The catalog arrives whole, with every type, exact decimal rates and tolerant defaults."""
    reply = await provider.services()
    services = reply.services
    assert reply.unreadable == []
    by_id = {service.service: service for service in services}
    assert len(services) == len(CATALOG)
    assert {service.type for service in services} == ALL_TYPES
    first = by_id["1"]
    assert (first.type, first.category, first.rate) == (
        "Default",
        "Instagram Followers",
        Decimal("0.90"),
    )
    assert (first.min, first.max, first.cancel, first.dripfeed) == (10, 100000, True, True)
    assert by_id["2"].cancel is False and by_id["2"].type == "Default"
    # Service 2 leaves out dripfeed and desc; the client fills in the defaults.
    assert (by_id["2"].dripfeed, by_id["2"].desc) == (False, "")
    assert by_id["12"].rate == Decimal("1.23456")


async def test_add_then_status_reports_the_new_order(provider: ProviderClient) -> None:
    """An accepted order gets the next id and reads back as Pending with its exact charge."""
    first = await provider.add("1", FOLLOWERS)
    second = await provider.add("1", FOLLOWERS)
    assert (first, second) == ("23501", "23502")
    status = await provider.status(first)
    assert status == ProviderStatus(
        status="Pending", charge=Decimal("0.09000"), start_count=0, remains=100, currency="USD"
    )


async def test_status_of_an_unknown_order_is_refused(provider: ProviderClient) -> None:
    """A status for an id the provider never issued is a refusal, not a crash."""
    with pytest.raises(ProviderRefused) as caught:
        await provider.status("999999")
    assert caught.value.text == "Incorrect order ID"


async def test_multi_status_returns_statuses_and_per_item_refusals(
    provider: ProviderClient,
) -> None:
    """Multi-status keys every requested id; bad ids become ProviderRefused values."""
    order_id = await provider.add("1", FOLLOWERS)
    statuses = await provider.multi_status([order_id, "999999", "abc"])
    assert set(statuses) == {order_id, "999999", "abc"}
    good = statuses[order_id]
    assert isinstance(good, ProviderStatus) and good.status == "Pending"
    assert statuses["999999"] == ProviderRefused("Incorrect order ID")
    assert statuses["abc"] == ProviderRefused("Incorrect order ID")


async def test_multi_status_bounds_its_batch(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """More than 100 ids is a caller error; an empty batch sends nothing at all."""
    with pytest.raises(ValueError):
        await provider.multi_status([str(number) for number in range(101)])
    assert await provider.multi_status([]) == {}
    assert await request_count(control, "status") == 0
    statuses = await provider.multi_status([str(number) for number in range(1, 101)])
    assert len(statuses) == 100


async def test_cancel_accepts_cancelable_orders_and_refuses_the_rest(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """Cancel is accepted per order only where the service allows it and the order is live."""
    cancelable = await provider.add("1", FOLLOWERS)
    fixed = await provider.add("2", FOLLOWERS)
    finished = await provider.add("1", FOLLOWERS)
    await control.post(f"/orders/{finished}", json={"status": "Completed", "remains": 0})
    replies = await provider.cancel([cancelable, fixed, finished, "999999"])
    assert replies[cancelable] is True
    assert isinstance(replies[fixed], ProviderRefused)
    assert isinstance(replies[finished], ProviderRefused)
    assert replies["999999"] == ProviderRefused("Incorrect order ID")
    # Acceptance is only a promise: the order turns Canceled on the provider's next step.
    assert (await provider.status(cancelable)).status == "Pending"
    await control.post("/tick")
    assert (await provider.status(cancelable)).status == "Canceled"


async def test_cancel_after_partial_delivery_ends_partial(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A cancel that arrives after some units were delivered settles as Partial."""
    order_id = await provider.add("1", FOLLOWERS)
    await control.post(f"/orders/{order_id}", json={"status": "In progress", "remains": 40})
    assert await provider.cancel([order_id]) == {order_id: True}
    await control.post("/tick")
    status = await provider.status(order_id)
    assert (status.status, status.remains) == ("Partial", 40)


async def test_refill_and_refill_status(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A completed order on a refill service gets a refill id whose status then progresses."""
    refillable = await provider.add("1", FOLLOWERS)
    no_refill = await provider.add("2", FOLLOWERS)
    still_running = await provider.add("1", FOLLOWERS)
    for order_id in (refillable, no_refill):
        await control.post(f"/orders/{order_id}", json={"status": "Completed", "remains": 0})
    replies = await provider.refill([refillable, no_refill, still_running, "999999"])
    refill_id = replies[refillable]
    assert isinstance(refill_id, str) and refill_id.isdigit()
    for order_id in (no_refill, still_running, "999999"):
        assert isinstance(replies[order_id], ProviderRefused)
    assert await provider.refill_status([refill_id, "424242"]) == {
        refill_id: "Pending",
        "424242": ProviderRefused("Refill not found"),
    }
    await control.post("/tick", json={"steps": 2})
    assert await provider.refill_status([refill_id]) == {refill_id: "Completed"}


async def test_balance_falls_by_each_charge(provider: ProviderClient) -> None:
    """The balance is exact money in the provider's currency and pays for each order."""
    before = await provider.balance()
    await provider.add("1", FOLLOWERS)
    after = await provider.balance()
    assert before.currency == "USD"
    assert before.balance - after.balance == Decimal("0.09")


async def test_wrong_key_is_refused(make_provider: Callable[..., ProviderClient]) -> None:
    """A wrong API key is a refusal with the panel's text, on every action."""
    intruder = make_provider(key="wrong")
    with pytest.raises(ProviderRefused, match="Invalid API key"):
        await intruder.balance()
    with pytest.raises(ProviderRefused, match="Invalid API key"):
        await intruder.add("1", FOLLOWERS)


async def test_unknown_action_and_missing_key(simulator_url: str) -> None:
    """Raw requests: an unknown action is "Incorrect request", no key is "Invalid API key"."""
    async with httpx.AsyncClient(timeout=5.0) as http:
        unknown = await http.post(f"{simulator_url}/api/v2", data={"key": API_KEY, "action": "x"})
        keyless = await http.post(f"{simulator_url}/api/v2", data={"action": "balance"})
    assert (unknown.status_code, unknown.json()) == (200, {"error": "Incorrect request"})
    assert (keyless.status_code, keyless.json()) == (200, {"error": "Invalid API key"})


async def test_status_reply_carries_numbers_as_strings(
    simulator_url: str, provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """The simulator sends numbers as strings, as real panels do, and the client copes."""
    order_id = await provider.add("1", FOLLOWERS)
    await control.post(f"/orders/{order_id}", json={"start_count": 3572, "remains": 157})
    async with httpx.AsyncClient(timeout=5.0) as http:
        raw = await http.post(
            f"{simulator_url}/api/v2", data={"key": API_KEY, "action": "status", "order": order_id}
        )
    assert raw.json() == {
        "charge": "0.09000", "start_count": "3572", "status": "Pending", "remains": "157",
        "currency": "USD",
    }  # fmt: skip
    assert len(await control_orders(control)) == 1
