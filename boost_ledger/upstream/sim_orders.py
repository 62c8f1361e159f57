"""Checking an ``add`` request against its service type, the way a panel does.

Pure functions: a request either becomes an ``OrderPlan`` (total quantity, runs, charge, the
fields kept) or raises ``AddRefused`` with the text the panel would send back.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from boost_ledger.upstream.sim_catalog import CatalogService

_REQUIRED_FIELDS: dict[str, tuple[str, ...]] = {
    "Default": ("link", "quantity"),
    "Package": ("link",),
    "Custom Comments": ("link", "comments"),
    "Mentions with Hashtags": ("link", "quantity", "usernames", "hashtags"),
    "Mentions Custom List": ("link", "usernames"),
    "Mentions Hashtag": ("link", "quantity", "hashtag"),
    "Mentions User Followers": ("link", "quantity", "username"),
    "Mentions Media Likers": ("link", "quantity", "media"),
    "Subscriptions": ("username", "min", "max", "delay"),
    "Comment Likes": ("link", "quantity", "username"),
    "Poll": ("link", "quantity", "answer_number"),
    "Comment Replies": ("link", "username", "comments"),
    "Invites from Groups": ("link", "quantity", "groups"),
}
_OPTIONAL_FIELDS: dict[str, tuple[str, ...]] = {
    "Default": ("runs", "interval"),
    "Subscriptions": ("posts", "old_posts", "expiry"),
}
# For these types the quantity is the number of non-empty lines of one field.
_COUNTED_LINES = {
    "Custom Comments": "comments",
    "Mentions Custom List": "usernames",
    "Comment Replies": "comments",
}
_SUBSCRIPTION_DELAYS_MIN = frozenset({0, 5, 10, 15, 30, 60, 90})
_MONEY_STEP = Decimal("0.00001")
_MAX_RUNS = 1000


class AddRefused(Exception):
    """The request is invalid; ``str(error)`` is the panel's error text."""


@dataclass(frozen=True)
class OrderPlan:
    quantity: int
    runs: int
    charge: Decimal
    fields: dict[str, str]


def plan_order(service: CatalogService, form: dict[str, str]) -> OrderPlan:
    fields = _kept_fields(service.type, form)
    if service.type == "Package":
        return OrderPlan(1, 1, _money(Decimal(service.rate)), fields)
    if service.type == "Subscriptions":
        return _plan_subscription(service, fields)
    runs = _runs(service, fields)
    if service.type in _COUNTED_LINES:
        field_name = _COUNTED_LINES[service.type]
        quantity = len(lines(fields[field_name], commas=field_name == "usernames"))
    else:
        quantity = _positive_int(fields, "quantity") * runs
    _check_range(service, quantity, runs)
    if service.type == "Poll":
        _positive_int(fields, "answer_number")
    return OrderPlan(quantity, runs, _money(Decimal(service.rate) * quantity / 1000), fields)


def lines(text: str, *, commas: bool) -> list[str]:
    """The non-empty lines of ``text``.

    Some clients send usernames and hashtags as comma lists instead of one per line, and panels
    accept both; comments may contain commas, so they are split on line breaks only.
    """
    if commas:
        text = text.replace(",", "\n")
    return [item.strip() for item in text.splitlines() if item.strip()]


def _kept_fields(service_type: str, form: dict[str, str]) -> dict[str, str]:
    required = _REQUIRED_FIELDS[service_type]
    for name in required:
        if not form.get(name, "").strip():
            raise AddRefused(f"Missing or empty field: {name}")
    names = required + _OPTIONAL_FIELDS.get(service_type, ())
    return {name: form[name].strip() for name in names if form.get(name, "").strip()}


def _runs(service: CatalogService, fields: dict[str, str]) -> int:
    if "runs" not in fields and "interval" not in fields:
        return 1
    if service.dripfeed is not True:
        raise AddRefused("Drip-feed is not available for this service")
    runs = _positive_int(fields, "runs")
    _positive_int(fields, "interval")
    if not 2 <= runs <= _MAX_RUNS:
        raise AddRefused(f"Runs must be between 2 and {_MAX_RUNS}")
    return runs


def _check_range(service: CatalogService, quantity: int, runs: int) -> None:
    # With drip-feed the minimum holds for each run and the maximum for the total.
    if quantity // runs < service.min:
        raise AddRefused(f"Quantity less than minimal {service.min}")
    if quantity > service.max:
        raise AddRefused(f"Quantity more than maximal {service.max}")


def _plan_subscription(service: CatalogService, fields: dict[str, str]) -> OrderPlan:
    minimum = _positive_int(fields, "min")
    maximum = _positive_int(fields, "max")
    if minimum > maximum or minimum < service.min or maximum > service.max:
        raise AddRefused(f"Min and max must satisfy {service.min} <= min <= max <= {service.max}")
    if _whole_number(fields, "delay") not in _SUBSCRIPTION_DELAYS_MIN:
        raise AddRefused("Incorrect delay")
    if "old_posts" in fields:
        _whole_number(fields, "old_posts")
    if "expiry" in fields:
        _check_expiry(fields["expiry"])
    # Without a post count the simulator plans for one post, so the charge stays bounded.
    posts = _positive_int(fields, "posts") if "posts" in fields else 1
    charge = _money(Decimal(service.rate) * maximum * posts / 1000)
    return OrderPlan(posts, 1, charge, fields)


def _check_expiry(text: str) -> None:
    try:
        datetime.strptime(text, "%d/%m/%Y")
    except ValueError as error:
        raise AddRefused("Incorrect expiry date") from error


def _whole_number(fields: dict[str, str], name: str) -> int:
    text = fields.get(name, "")
    if not (text.isascii() and text.isdigit()) or len(text) > 12:
        raise AddRefused(f"Incorrect {name}")
    return int(text)


def _positive_int(fields: dict[str, str], name: str) -> int:
    number = _whole_number(fields, name)
    if number < 1:
        raise AddRefused(f"Incorrect {name}")
    return number


def _money(amount: Decimal) -> Decimal:
    return amount.quantize(_MONEY_STEP, rounding=ROUND_HALF_UP)
