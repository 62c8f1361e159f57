"""The 13 SMM service types: which fields an order of each type takes, and what it bills.

`parse_order_fields` turns an already JSON-decoded request body into the normalised fields sent
upstream (exactly the `add` fields of spec/smm-panel-api-v2.md for the type) and the billable
quantity (DESIGN.md §5). It is pure: no I/O, no clock.

Checks run in this order, so a client sees the most specific error that applies:
1. wrong JSON types, malformed values, values outside their own bounds, unknown fields and
   drip-feed on a service whose provider does not offer it -> FieldErrors (VALIDATION_FAILED),
   listing every bad field and every missing required one;
2. a required link missing or blank -> LinkRequired (BOOST_LINK_REQUIRED);
3. the quantity, or the billed lines, missing -> QuantityRequired (BOOST_QUANTITY_REQUIRED);
4. any other required field missing or blank -> FieldErrors;
5. the billed quantity outside the service's min..max -> QuantityOutOfRange.

JSON null and blank strings count as missing. `service_id` and `idempotency_key` belong to the
caller and are ignored here.
"""

import datetime
import re
import unicodedata
import urllib.parse
from collections.abc import Mapping
from typing import ClassVar, Final, Literal, NamedTuple

import msgspec

SERVICE_TYPES: Final[tuple[str, ...]] = (
    "Default",
    "Package",
    "Custom Comments",
    "Mentions with Hashtags",
    "Mentions Custom List",
    "Mentions Hashtag",
    "Mentions User Followers",
    "Mentions Media Likers",
    "Subscriptions",
    "Comment Likes",
    "Poll",
    "Comment Replies",
    "Invites from Groups",
)
MAX_QUANTITY: Final = 10**9
MAX_INTEGER: Final = 10**9
MAX_TEXT_CHARS: Final = 2048
MAX_LIST_CHARS: Final = 20_000
MAX_LIST_LINES: Final = 10_000
SUBSCRIPTION_DELAYS_MINUTES: Final = (0, 5, 10, 15, 30, 60, 90)
_IGNORED_KEYS: Final = frozenset({"service_id", "idempotency_key"})
_PRICE_KEYS: Final = frozenset({"price", "charge", "amount"})
_PRICE_MESSAGE: Final = "The server computes the price; do not send it."
_DRIP_FEED_FIELDS: Final[tuple[str, ...]] = ("runs", "interval")
_NO_DRIP_FEED_MESSAGE: Final = "Drip-feed (runs, interval) is not available for this service."
# Every line break a list may hold that is not a control character (those are refused): the
# line and paragraph separators, which panels split on like any newline, are line breaks too,
# so that the lines billed are the lines sent and counted upstream.
_LINE_BREAK = re.compile("\r\n|[\r\n\u2028\u2029]")
_LINE_OR_COMMA = re.compile("\r\n|[\r\n\u2028\u2029,]")
_DATE = re.compile(r"([0-9]{1,2})/([0-9]{1,2})/([0-9]{4})")


class OrderInvalid(Exception):
    """A request body the API refuses; `code` is the spec's error code."""

    code: ClassVar[str] = "VALIDATION_FAILED"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class FieldErrors(OrderInvalid):
    """VALIDATION_FAILED, with the messages for each bad field in `errors`."""

    code: ClassVar[str] = "VALIDATION_FAILED"

    def __init__(self, errors: dict[str, list[str]]) -> None:
        assert errors, "FieldErrors needs at least one field"
        super().__init__("One or more request fields are missing or invalid.")
        self.errors = errors


class LinkRequired(OrderInvalid):
    code: ClassVar[str] = "BOOST_LINK_REQUIRED"

    def __init__(self) -> None:
        super().__init__("The selected service type requires a target link.")


class QuantityRequired(OrderInvalid):
    code: ClassVar[str] = "BOOST_QUANTITY_REQUIRED"

    def __init__(self, field: str) -> None:
        if field == "quantity":
            message = "The selected service type requires a quantity."
        else:
            message = f"The selected service type bills the non-empty lines of {field}: send one."
        super().__init__(message)
        self.field = field


class QuantityOutOfRange(OrderInvalid):
    code: ClassVar[str] = "BOOST_QUANTITY_OUT_OF_RANGE"

    def __init__(self, subject: str, minimum: int, maximum: int) -> None:
        super().__init__(f"{subject} must be between {minimum} and {maximum}.")
        self.min = minimum
        self.max = maximum


class ServiceLimits(msgspec.Struct, frozen=True):
    """The catalog facts that validation needs: the service type, its min/max quantity, and
    whether the provider offers drip-feed (``runs``/``interval``) for it."""

    type: str
    min: int
    max: int
    dripfeed: bool = True


class OrderRequest(msgspec.Struct, frozen=True):
    """A validated order: upstream fields, display link and quantity, and what is billed."""

    fields: dict[str, str | int]
    link: str | None
    quantity: int
    billable_quantity: int


_Kind = Literal[
    "link", "url", "quantity", "text", "lines", "comma_lines", "integer", "delay", "date"
]


class _Field(NamedTuple):
    name: str
    kind: _Kind
    required: bool
    minimum: int = 1  # only for kind "integer"


_LINK: Final = _Field("link", "link", True)
_QUANTITY: Final = _Field("quantity", "quantity", True)
_USERNAME: Final = _Field("username", "text", True)
_COMMENTS: Final = _Field("comments", "lines", True)
_TYPE_FIELDS: Final[dict[str, tuple[_Field, ...]]] = {
    "Default": (
        _LINK,
        _QUANTITY,
        _Field("runs", "integer", False, 2),
        _Field("interval", "integer", False, 1),
    ),
    "Package": (_LINK,),
    "Custom Comments": (_LINK, _COMMENTS),
    "Mentions with Hashtags": (
        _LINK,
        _QUANTITY,
        _Field("usernames", "comma_lines", True),
        _Field("hashtags", "comma_lines", True),
    ),
    # A username holds no comma, and panels split a comma list of them as they split lines.
    "Mentions Custom List": (_LINK, _Field("usernames", "comma_lines", True)),
    "Mentions Hashtag": (_LINK, _QUANTITY, _Field("hashtag", "text", True)),
    "Mentions User Followers": (_LINK, _QUANTITY, _USERNAME),
    "Mentions Media Likers": (_LINK, _QUANTITY, _Field("media", "url", True)),
    "Subscriptions": (
        _USERNAME,
        _Field("min", "quantity", True),
        _Field("max", "quantity", True),
        _Field("delay", "delay", True),
        _Field("posts", "integer", False, 1),
        _Field("old_posts", "integer", False, 0),
        _Field("expiry", "date", False),
    ),
    "Comment Likes": (_LINK, _QUANTITY, _USERNAME),
    "Poll": (_LINK, _QUANTITY, _Field("answer_number", "integer", True, 1)),
    "Comment Replies": (_LINK, _USERNAME, _COMMENTS),
    # The client spec lists quantity and groups only; the provider's protocol needs the link
    # too, and an order sent without it is refused (charged, then refunded): asked for here.
    "Invites from Groups": (
        _LINK,
        _QUANTITY,
        _Field("groups", "lines", True),
    ),
}
# Types billed by their number of non-empty lines, and the field holding those lines.
_BILLED_LINES: Final[dict[str, str]] = {
    "Custom Comments": "comments",
    "Mentions Custom List": "usernames",
    "Comment Replies": "comments",
}
assert tuple(_TYPE_FIELDS) == SERVICE_TYPES


def is_flat(type: str) -> bool:
    """Return whether a service type is charged its rate once, whatever the quantity."""
    return type == "Package"


def parse_order_fields(
    limits: ServiceLimits, body: Mapping[str, object], *, subscription_default_posts: int
) -> OrderRequest:
    """Validate an order body for a service; return its upstream fields and billable quantity."""
    assert limits.type in _TYPE_FIELDS, f"unsupported service type {limits.type!r}"
    assert 1 <= subscription_default_posts <= MAX_INTEGER, subscription_default_posts
    specs = _TYPE_FIELDS[limits.type]
    errors = _unknown_field_errors(limits.type, specs, body)
    values: dict[str, str | int] = {}
    for spec in specs:
        value, error = _normalise(spec, body.get(spec.name))
        if error is not None:
            errors[spec.name] = [error]
        elif value is not None:
            values[spec.name] = value
    drip_feed = [name for name in _DRIP_FEED_FIELDS if name in values]
    if drip_feed and not limits.dripfeed:
        # The provider refuses drip-feed on such a service: never charge for a doomed order.
        for field_name in drip_feed:
            errors[field_name] = [_NO_DRIP_FEED_MESSAGE]
    else:
        for name, error in _cross_field_errors(values).items():
            errors.setdefault(name, [error])  # a field already refused keeps its own message
    missing = [
        s.name for s in specs if s.required and s.name not in values and s.name not in errors
    ]
    if errors:
        for name in missing:
            errors[name] = [f"The {name} field is required."]
        raise FieldErrors(errors)
    if "link" in missing:
        raise LinkRequired()
    quantity_field = _BILLED_LINES.get(limits.type, "quantity")
    if quantity_field in missing:
        raise QuantityRequired(quantity_field)
    if missing:
        raise FieldErrors({name: [f"The {name} field is required."] for name in missing})
    return _bill(limits, values, subscription_default_posts)


def _unknown_field_errors(
    service_type: str, specs: tuple[_Field, ...], body: Mapping[str, object]
) -> dict[str, list[str]]:
    known = {spec.name for spec in specs} | _IGNORED_KEYS
    errors: dict[str, list[str]] = {}
    for key in body:
        if key in _PRICE_KEYS:
            errors[key] = [_PRICE_MESSAGE]
        elif key not in known:
            errors[key] = [f"Unknown field for service type {service_type!r}."]
    return errors


def _normalise(spec: _Field, raw: object) -> tuple[str | int | None, str | None]:
    """Return (normalised value or None when absent, error message or None)."""
    if raw is None:
        return None, None
    if spec.kind in ("quantity", "integer", "delay"):
        return _normalise_integer(spec, raw)
    if not isinstance(raw, str):
        return None, f"The {spec.name} field must be a string."
    if spec.kind in ("lines", "comma_lines"):
        return _normalise_lines(spec, raw)
    text = raw.strip()
    if not text:
        return None, None
    if len(text) > MAX_TEXT_CHARS:
        return None, f"The {spec.name} field must be at most {MAX_TEXT_CHARS} characters."
    if spec.kind in ("link", "url"):
        return _normalise_url(spec.name, text)
    if spec.kind == "date":
        return _normalise_date(spec.name, text)
    if any(unicodedata.category(char) == "Cc" for char in text):
        return None, f"The {spec.name} field must be one line without control characters."
    return text, None


def _normalise_integer(spec: _Field, raw: object) -> tuple[int | None, str | None]:
    # bool is a subclass of int in Python, and JSON true is not a number: compare the type.
    if type(raw) is not int:
        return None, f"The {spec.name} field must be an integer."
    if spec.kind == "quantity":
        return raw, None  # its range is the service's, checked last (BOOST_QUANTITY_OUT_OF_RANGE)
    if spec.kind == "delay":
        if raw not in SUBSCRIPTION_DELAYS_MINUTES:
            allowed = ", ".join(str(delay) for delay in SUBSCRIPTION_DELAYS_MINUTES)
            return None, f"The delay field must be one of {allowed} (minutes)."
        return raw, None
    if not spec.minimum <= raw <= MAX_INTEGER:
        return None, f"The {spec.name} field must be between {spec.minimum} and {MAX_INTEGER}."
    return raw, None


def _normalise_lines(spec: _Field, raw: str) -> tuple[str | None, str | None]:
    if len(raw) > MAX_LIST_CHARS:
        return None, f"The {spec.name} field must be at most {MAX_LIST_CHARS} characters."
    if any(unicodedata.category(char) == "Cc" and char not in "\r\n" for char in raw):
        return None, f"The {spec.name} field must not contain control characters."
    separator = _LINE_OR_COMMA if spec.kind == "comma_lines" else _LINE_BREAK
    lines = [line.strip() for line in separator.split(raw)]
    kept = [line for line in lines if line]
    # Implied by MAX_LIST_CHARS: each kept line takes a character and a separator.
    assert len(kept) <= MAX_LIST_LINES, len(kept)
    return ("\n".join(kept) or None), None


def _normalise_url(name: str, text: str) -> tuple[str | None, str | None]:
    error = f"The {name} field must be an http or https URL with a host."
    if any(char.isspace() or unicodedata.category(char).startswith("C") for char in text):
        return None, error
    try:
        parts = urllib.parse.urlsplit(text)
        _ = parts.port  # raises ValueError for a port that is not a number in range
    except ValueError:
        return None, error
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None, error
    return text, None


def _normalise_date(name: str, text: str) -> tuple[str | None, str | None]:
    error = f"The {name} field must be a real date written d/m/Y, e.g. 31/12/2026."
    match = _DATE.fullmatch(text)
    if match is None:
        return None, error
    day, month, year = (int(part) for part in match.groups())
    try:
        date = datetime.date(year, month, day)
    except ValueError:
        return None, error
    # Not strftime: its %Y drops the leading zeros of a year before 1000 ("01/01/999"), which
    # no d/m/Y reader takes, the provider's included.
    return f"{date.day:02d}/{date.month:02d}/{date.year:04d}", None


def _cross_field_errors(values: Mapping[str, str | int]) -> dict[str, str]:
    """Errors between fields that are each valid alone (both-or-neither, min <= max)."""
    errors: dict[str, str] = {}
    for present, absent in (("runs", "interval"), ("interval", "runs")):
        if present in values and absent not in values:
            errors[absent] = f"The {absent} field is required when {present} is given."
    minimum, maximum = values.get("min"), values.get("max")
    if isinstance(minimum, int) and isinstance(maximum, int) and minimum > maximum:
        errors["min"] = "The min field must not exceed the max field."
    return errors


def _bill(
    limits: ServiceLimits, values: dict[str, str | int], subscription_default_posts: int
) -> OrderRequest:
    """Range-check the billed quantity and build the request (check 5 of the module docstring)."""
    # Catalog data comes from the provider: never let it allow a quantity below 1 or above ours.
    minimum, maximum = max(limits.min, 1), min(limits.max, MAX_QUANTITY)
    service_type = limits.type
    if service_type == "Package":
        display_quantity, billable_quantity = 1, 1
    elif service_type == "Subscriptions":
        display_quantity, billable_quantity = _bill_subscription(
            values, minimum, maximum, subscription_default_posts
        )
    elif service_type in _BILLED_LINES:
        line_field = _BILLED_LINES[service_type]
        count = len(_as_str(values[line_field]).split("\n"))
        if not minimum <= count <= maximum:
            subject = f"The number of non-empty lines in {line_field}"
            raise QuantityOutOfRange(subject, minimum, maximum)
        display_quantity, billable_quantity = count, count
    else:
        quantity, runs = _as_int(values["quantity"]), _as_int(values.get("runs", 1))
        if not minimum <= quantity <= maximum:
            raise QuantityOutOfRange("Quantity", minimum, maximum)
        if quantity * runs > maximum:
            raise QuantityOutOfRange("Quantity multiplied by runs", minimum, maximum)
        display_quantity, billable_quantity = quantity, quantity * runs
    assert 1 <= billable_quantity <= MAX_QUANTITY, billable_quantity
    link = values.get("link")
    specs = _TYPE_FIELDS[service_type]
    return OrderRequest(
        fields={spec.name: values[spec.name] for spec in specs if spec.name in values},
        link=link if isinstance(link, str) else None,
        quantity=display_quantity,
        billable_quantity=billable_quantity,
    )


def _bill_subscription(
    values: dict[str, str | int], minimum: int, maximum: int, default_posts: int
) -> tuple[int, int]:
    """Return (display, billable) for a subscription: max posts' worth of `max` units each."""
    if not all(minimum <= _as_int(values[name]) <= maximum for name in ("min", "max")):
        raise QuantityOutOfRange("Subscription min and max", minimum, maximum)
    # An omitted `posts` would let the provider deliver without end: bill and send our default.
    values.setdefault("posts", default_posts)
    subscription_max, posts = _as_int(values["max"]), _as_int(values["posts"])
    if subscription_max * posts > MAX_QUANTITY:
        raise FieldErrors({"posts": [f"max multiplied by posts must not exceed {MAX_QUANTITY}."]})
    return subscription_max, subscription_max * posts


def _as_int(value: str | int) -> int:
    assert isinstance(value, int), value
    return value


def _as_str(value: str | int) -> str:
    assert isinstance(value, str), value
    return value
