"""The simulator's answers to raw requests, as a panel of spec/smm-panel-api-v2.md gives them:
what it refuses, and that odd input gets an error object, never a 500."""

from typing import Any

import httpx
from upstream_helpers import API_KEY, control_orders

from boost_ledger.upstream import ProviderClient

# More digits than Python turns into an int (4300 by default): no panel's order or refill id.
HUGE_ID = "7" * 5000
FOLLOWERS = {"link": "https://instagram.com/someone", "quantity": "100"}


async def _post(simulator_url: str, fields: dict[str, str], **extra: Any) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5.0) as http:
        return await http.post(f"{simulator_url}/api/v2", data={"key": API_KEY, **fields}, **extra)


async def test_an_id_too_long_for_a_number_is_an_incorrect_id(
    simulator_url: str, control: httpx.AsyncClient
) -> None:
    """An order or refill id of thousands of digits is one the panel does not know: each action
    answers its own error object for it (status, cancel, refill and refill_status all turned it
    into an int and answered 500)."""
    incorrect = {"error": "Incorrect order ID"}
    not_found = {"error": "Refill not found"}
    expected = {
        ("status", "order"): incorrect,
        ("status", "orders"): {HUGE_ID: incorrect},
        ("cancel", "orders"): [{"order": HUGE_ID, "cancel": incorrect}],
        ("refill", "order"): incorrect,
        ("refill", "orders"): [{"order": HUGE_ID, "refill": incorrect}],
        ("refill_status", "refill"): not_found,
        ("refill_status", "refills"): [{"refill": HUGE_ID, "status": not_found}],
    }
    for (action, field), reply in expected.items():
        answer = await _post(simulator_url, {"action": action, field: HUGE_ID})
        assert (action, field, answer.status_code, answer.json()) == (action, field, 200, reply)


async def test_cancel_reads_its_ids_from_orders_only(
    simulator_url: str, provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """The spec's cancel takes ``orders`` (a comma list) and no ``order``: one sent as ``order``
    names nothing to cancel, as on a panel, where the simulator used to cancel it and so would
    pass a client that sent the wrong field."""
    order_id = await provider.add("1", FOLLOWERS)
    wrong = await _post(simulator_url, {"action": "cancel", "order": order_id})
    assert (wrong.status_code, wrong.json()) == (200, [])
    [order] = await control_orders(control)
    assert order["cancel_requested"] is False
    right = await _post(simulator_url, {"action": "cancel", "orders": order_id})
    assert right.json() == [{"order": int(order_id), "cancel": 1}]
    [order] = await control_orders(control)
    assert order["cancel_requested"] is True


async def test_only_a_form_body_is_read_as_the_request(simulator_url: str) -> None:
    """Calls are form posts (``application/x-www-form-urlencoded``): a panel reads no fields
    from a body of another type or of none, so the key is missing. The simulator read any body
    as a form, and would have passed a client that forgot its content type."""
    body = f"key={API_KEY}&action=balance"
    for headers in ({}, {"content-type": "application/json"}, {"content-type": "text/plain"}):
        async with httpx.AsyncClient(timeout=5.0) as http:
            answer = await http.post(f"{simulator_url}/api/v2", content=body, headers=headers)
        assert (headers, answer.status_code, answer.json()) == (
            headers, 200, {"error": "Invalid API key"}
        )  # fmt: skip
    for media_type in ("application/x-www-form-urlencoded", "Application/X-WWW-Form-Urlencoded"):
        async with httpx.AsyncClient(timeout=5.0) as http:
            headers = {"content-type": f"{media_type}; charset=UTF-8"}
            answer = await http.post(f"{simulator_url}/api/v2", content=body, headers=headers)
        assert set(answer.json()) == {"balance", "currency"}
