"""`add` for each of the 13 service types: valid fields, missing fields, quantities and charges."""

from decimal import Decimal

import httpx
import pytest
from upstream_helpers import control_orders

from boost_ledger.upstream import ProviderClient, ProviderRefused

LINK = "https://instagram.com/p/abc"
# service id, valid fields, expected total quantity, expected charge (rate x quantity / 1000).
VALID_ORDERS: dict[str, tuple[str, dict[str, str], int, str]] = {
    "Default": ("1", {"link": LINK, "quantity": "1000"}, 1000, "0.90000"),
    "Package": ("4", {"link": LINK}, 1, "4.50000"),
    "Custom Comments": (
        "5", {"link": LINK, "comments": "Nice!\nLove it, really\n\nWow\nGreat\nCool"},
        5, "0.06000",
    ),
    "Mentions with Hashtags": (
        "6", {"link": LINK, "quantity": "100", "usernames": "a\nb", "hashtags": "#x,#y"},
        100, "0.32000",
    ),
    "Mentions Custom List": (
        "7", {"link": LINK, "usernames": "u1,u2\n" + "\n".join(f"u{n}" for n in range(3, 11))},
        10, "0.05000",
    ),
    "Mentions Hashtag": ("8", {"link": LINK, "quantity": "200", "hashtag": "#fun"}, 200, "0.55000"),
    "Mentions User Followers": (
        "9", {"link": LINK, "quantity": "100", "username": "someone"}, 100, "0.29000"
    ),
    "Mentions Media Likers": (
        "10", {"link": LINK, "quantity": "100", "media": "https://instagram.com/p/xyz"},
        100, "0.31000",
    ),
    "Subscriptions": (
        "11", {"username": "someone", "min": "50", "max": "100", "delay": "30", "posts": "4",
               "old_posts": "2", "expiry": "31/12/2030"},
        4, "0.24000",
    ),
    "Comment Likes": ("12", {"link": LINK, "quantity": "20", "username": "owner"}, 20, "0.02469"),
    "Poll": ("13", {"link": LINK, "quantity": "100", "answer_number": "2"}, 100, "0.08000"),
    "Comment Replies": ("14", {"link": LINK, "username": "owner", "comments": "hi\nthere"},
                        2, "0.03000"),
    "Invites from Groups": (
        "15", {"link": "https://t.me/group", "quantity": "100", "groups": "g1\ng2"},
        100, "0.75000",
    ),
}  # fmt: skip


@pytest.mark.parametrize("service_type", sorted(VALID_ORDERS))
async def test_valid_order_of_each_type_is_accepted(
    provider: ProviderClient, control: httpx.AsyncClient, service_type: str
) -> None:
    """Each type's fields place an order with the quantity and charge the trade's rules give."""
    service_id, fields, quantity, charge = VALID_ORDERS[service_type]
    order_id = await provider.add(service_id, fields)
    [order] = await control_orders(control)
    assert str(order["order"]) == order_id
    assert (order["service"], order["quantity"], order["charge"]) == (service_id, quantity, charge)
    assert order["fields"] == {name: value.strip() for name, value in fields.items()}
    assert (await provider.status(order_id)).charge == Decimal(charge)


MISSING_FIELD_CASES = [
    (service_type, field)
    for service_type, (_, fields, _, _) in sorted(VALID_ORDERS.items())
    for field in fields
    if field not in {"posts", "old_posts", "expiry"}
]


@pytest.mark.parametrize(("service_type", "field"), MISSING_FIELD_CASES)
async def test_missing_required_field_is_refused(
    provider: ProviderClient, control: httpx.AsyncClient, service_type: str, field: str
) -> None:
    """Leaving out any required field of a type is a definite refusal and creates no order."""
    service_id, fields, _, _ = VALID_ORDERS[service_type]
    incomplete = {name: value for name, value in fields.items() if name != field}
    with pytest.raises(ProviderRefused, match=field):
        await provider.add(service_id, incomplete)
    assert await control_orders(control) == []


@pytest.mark.parametrize(
    ("service_id", "fields", "error"),
    [
        ("999", {"link": LINK, "quantity": "100"}, "Incorrect service ID"),
        ("1", {"link": LINK, "quantity": "9"}, "Quantity less than minimal 10"),
        ("1", {"link": LINK, "quantity": "100001"}, "Quantity more than maximal 100000"),
        ("1", {"link": LINK, "quantity": "ten"}, "Incorrect quantity"),
        ("1", {"link": LINK, "quantity": "-5"}, "Incorrect quantity"),
        ("1", {"link": "  ", "quantity": "100"}, "link"),
        ("1", {"link": LINK, "quantity": "100", "runs": "1", "interval": "5"}, "Runs"),
        ("1", {"link": LINK, "quantity": "100", "runs": "3"}, "interval"),
        ("1", {"link": LINK, "quantity": "5", "runs": "3", "interval": "5"}, "minimal"),
        ("1", {"link": LINK, "quantity": "40000", "runs": "3", "interval": "5"}, "maximal"),
        ("2", {"link": LINK, "quantity": "100", "runs": "3", "interval": "5"}, "Drip-feed"),
        ("5", {"link": LINK, "comments": "only\nfour\nlines\nhere"}, "minimal 5"),
        ("11", {"username": "u", "min": "100", "max": "50", "delay": "0"}, "min"),
        ("11", {"username": "u", "min": "50", "max": "100", "delay": "7"}, "delay"),
        ("11", {"username": "u", "min": "50", "max": "100", "delay": "0", "expiry": "2030-12-31"},
         "expiry"),
        ("13", {"link": LINK, "quantity": "100", "answer_number": "0"}, "answer_number"),
    ],
)  # fmt: skip
async def test_invalid_values_are_refused(
    provider: ProviderClient, service_id: str, fields: dict[str, str], error: str
) -> None:
    """Bad ids, quantities out of range and bad drip-feed or subscription values are refused."""
    with pytest.raises(ProviderRefused, match=error):
        await provider.add(service_id, fields)


async def test_drip_feed_multiplies_quantity_by_runs(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """A drip-feed order's total is quantity x runs, and it is charged on that total."""
    await provider.add("1", {"link": LINK, "quantity": "100", "runs": "3", "interval": "10"})
    [order] = await control_orders(control)
    assert (order["quantity"], order["runs"], order["charge"]) == (300, 3, "0.27000")


async def test_not_enough_funds_is_refused(
    provider: ProviderClient, control: httpx.AsyncClient
) -> None:
    """An order dearer than the remaining provider balance is refused, as panels do."""
    biggest = {"link": LINK, "quantity": "1000000"}  # 1750 USD each from 10000 USD
    for _ in range(5):
        await provider.add("18", biggest)
    with pytest.raises(ProviderRefused, match="Not enough funds"):
        await provider.add("18", biggest)
    assert len(await control_orders(control)) == 5


async def test_add_rejects_fields_that_would_override_the_protocol(
    provider: ProviderClient,
) -> None:
    """The caller cannot smuggle key, action or service through the fields."""
    with pytest.raises(ValueError):
        await provider.add("1", {"link": LINK, "quantity": "100", "action": "balance"})
