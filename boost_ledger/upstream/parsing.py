"""Tolerant reading of provider replies: strings-as-numbers, missing fields, 0/1 booleans.

Every function here is pure and raises ``ProviderMalformed`` for a value of the wrong shape, so the
client never lets a ``KeyError`` or ``TypeError`` escape from a garbled reply. A services reply is
read entry by entry: an entry of the wrong shape is set aside (``ServicesReply.unreadable``).
"""

from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import msgspec

from boost_ledger.upstream.errors import ProviderMalformed, ProviderRefused
from boost_ledger.upstream.models import ProviderBalance, ProviderService, ProviderStatus


class UnreadableNumber:
    """A JSON number that no ``Decimal`` can hold (an exponent past its range, as in
    ``1e9999999999999999999``), kept as its text: the field it fills is unreadable, as a string
    that is no number is, rather than the whole reply. (``Decimal`` raised InvalidOperation from
    inside the decoder, an untyped error that failed the whole catalog sync, at every interval.)"""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text[:_NUMBER_ECHO_CHARS]


_NUMBER_ECHO_CHARS = 40


def _json_number(text: str) -> Decimal | UnreadableNumber:
    try:
        return Decimal(text)
    except InvalidOperation:
        return UnreadableNumber(text)


# JSON floats are decoded straight into Decimal from their text, so money never passes through a
# binary float on its way in.
_DECODER = msgspec.json.Decoder(float_hook=_json_number)

_TRUE_TEXTS = frozenset({"1", "true", "yes"})
_FALSE_TEXTS = frozenset({"0", "false", "no", ""})
_STATUS_SPELLINGS = {"Cancelled": "Canceled"}
_T = TypeVar("_T")


def decode_json(body: bytes) -> Any:
    """Decode a reply body into plain values; anything that is not JSON is malformed. A NUL
    (``\\u0000``, the only way JSON can carry one) becomes U+FFFD in every text: no PostgreSQL
    text or jsonb holds a NUL, so a name, status or reason carrying one could never be recorded
    (one such catalog entry failed the whole sync, every time)."""
    try:
        value = _DECODER.decode(body)
        return _without_nul(value) if b"\\u0000" in body else value
    except msgspec.DecodeError as error:
        raise ProviderMalformed(f"reply is not JSON: {body[:80]!r}") from error
    except RecursionError as error:  # msgspec's answer to arrays or objects nested too deep
        raise ProviderMalformed(f"reply nested too deep: {body[:80]!r}") from error


def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, list):
        return [_without_nul(item) for item in value]
    if isinstance(value, dict):
        return {_without_nul(key): _without_nul(item) for key, item in value.items()}
    return value


def error_text(value: Any, answer_field: str | None = None) -> str | None:
    """The text of an ``{"error": text}`` object, or None when ``value`` is not one. A null
    error beside the answer's own field (``answer_field``: ``{"status": "Completed", ...,
    "error": null}``, as some panel scripts send in every reply) is no error. (A NUL in the
    text, which no recorded reason could hold, ``decode_json`` has already replaced.)"""
    if isinstance(value, dict) and "error" in value:
        if value["error"] is None and answer_field is not None and answer_field in value:
            return None
        return str(value["error"])
    return None


def to_decimal(value: Any, field: str) -> Decimal:
    if isinstance(value, bool):
        raise ProviderMalformed(f"{field}: boolean where a number belongs")
    if isinstance(value, Decimal | int):
        return Decimal(value)
    if isinstance(value, float):
        return Decimal(str(value))
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation as error:
            raise ProviderMalformed(f"{field}: not a number: {value!r}") from error
        if number.is_finite():
            return number
    raise ProviderMalformed(f"{field}: not a number: {value!r}")


# Counts beyond this are not real counts, and would not fit the database's bigint columns.
MAX_PROVIDER_INTEGER = 10**15


def to_int(value: Any, field: str) -> int:
    number = to_decimal(value, field)
    # The range first, by an exact comparison: arithmetic on a number past the decimal
    # context's exponent range ("1e9999999999") raises decimal.Overflow, not a typed error.
    if number.copy_abs() > MAX_PROVIDER_INTEGER:
        raise ProviderMalformed(f"{field}: out of range: {value!r}")
    if number != number.to_integral_value():
        raise ProviderMalformed(f"{field}: not a whole number: {value!r}")
    return int(number)


def optional_decimal(value: Any, field: str) -> Decimal | None:
    # Panels send null, "" or nothing for values they do not know yet.
    return None if value is None or value == "" else to_decimal(value, field)


def optional_int(value: Any, field: str) -> int | None:
    return None if value is None or value == "" else to_int(value, field)


def to_bool(value: Any, field: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_TEXTS:
            return True
        if text in _FALSE_TEXTS:
            return False
    raise ProviderMalformed(f"{field}: not a boolean: {value!r}")


def optional_bool(value: Any, field: str) -> bool:
    return False if value is None else to_bool(value, field)


def to_text(value: Any, field: str) -> str:
    # Ids arrive as numbers on some panels and as strings on others; both mean the same id.
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ProviderMalformed(f"{field}: not text: {value!r}")


def optional_text(value: Any, field: str) -> str:
    # A null name or category is one the panel does not have, as when the field is missing.
    return "" if value is None else to_text(value, field)


def require_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProviderMalformed(f"{what}: expected an object, got {type(value).__name__}")
    return value


def require_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProviderMalformed(f"{what}: expected a list, got {type(value).__name__}")
    return value


def require_field(item: Mapping[str, Any], field: str) -> Any:
    if field not in item:
        raise ProviderMalformed(f"missing field {field!r}")
    return item[field]


def parse_service(value: Any) -> ProviderService:
    item = require_object(value, "service")
    return ProviderService(
        service=to_text(require_field(item, "service"), "service"),
        name=optional_text(item.get("name"), "name"),
        type=to_text(item.get("type") or "Default", "type"),
        category=optional_text(item.get("category"), "category"),
        rate=to_decimal(require_field(item, "rate"), "rate"),
        min=to_int(require_field(item, "min"), "min"),
        max=to_int(require_field(item, "max"), "max"),
        # A missing or null capability flag is read as "not offered", the safe side for a
        # reseller.
        refill=optional_bool(item.get("refill"), "refill"),
        cancel=optional_bool(item.get("cancel"), "cancel"),
        dripfeed=optional_bool(item.get("dripfeed"), "dripfeed"),
        desc=to_text(item.get("desc") or "", "desc"),
    )


class UnreadableService(msgspec.Struct, frozen=True, kw_only=True):
    """An entry of a services reply that could not be read: its place in the list, its id when
    at least that could be read, and why."""

    position: int
    service: str | None
    reason: str


class ServicesReply(msgspec.Struct, frozen=True, kw_only=True):
    """A services reply read entry by entry: the services read, and the entries that were not."""

    services: list[ProviderService]
    unreadable: list[UnreadableService]


_REASON_MAX_CHARS = 200

MAX_SERVICE_ENTRIES = 50_000
"""The most entries of a services reply that are read: ten times the most a sync processes
(``ledger.catalog.MAX_SERVICES``), so that the ids of those past that cap are still known."""


def parse_services(value: Any) -> ServicesReply:
    """Each entry on its own, so that one garbled entry cannot keep the others out of the
    catalog: an entry that cannot be read is set aside, with its reason. A reply that is not a
    list at all is malformed as a whole.

    Only the first ``MAX_SERVICE_ENTRIES`` entries are read; the rest count as one entry set
    aside whose id is unknown (so a sync delists no service missing from what was read). The
    reply's size alone bounded the list: 16 MB of one-byte entries took the worker ten seconds
    of its event loop and over a gigabyte, one exception and one record per entry."""
    services: list[ProviderService] = []
    unreadable: list[UnreadableService] = []
    entries = require_list(value, "services")
    for position, item in enumerate(entries[:MAX_SERVICE_ENTRIES]):
        try:
            services.append(parse_service(item))
        except ProviderMalformed as error:
            # The reason quotes the bad value; a bound keeps a huge one out of the logs.
            reason = str(error)[:_REASON_MAX_CHARS]
            unreadable.append(
                UnreadableService(position=position, service=_id_of(item), reason=reason)
            )
    if len(entries) > MAX_SERVICE_ENTRIES:
        reason = f"{len(entries) - MAX_SERVICE_ENTRIES} more entries not read"
        unreadable.append(
            UnreadableService(position=MAX_SERVICE_ENTRIES, service=None, reason=reason)
        )
    return ServicesReply(services=services, unreadable=unreadable)


def _id_of(item: Any) -> str | None:
    """The id of an entry that could not be read, or None when not even that can be read."""
    if not isinstance(item, dict):
        return None
    try:
        service = to_text(item.get("service"), "service")
    except ProviderMalformed:
        return None
    # No listed id is longer than 64 characters, so the shortened one still names none.
    return service if len(service) <= 64 else service[:64] + "…"


def parse_status(value: Any) -> ProviderStatus:
    item = require_object(value, "status")
    status = require_field(item, "status")
    if not isinstance(status, str):
        raise ProviderMalformed(f"status: not text: {status!r}")
    status = status.strip()
    currency = item.get("currency")
    remains = _unknown_if_unreadable(optional_int, item.get("remains"), "remains")
    return ProviderStatus(
        status=_STATUS_SPELLINGS.get(status, status),
        charge=_unknown_if_unreadable(optional_decimal, item.get("charge"), "charge"),
        start_count=_unknown_if_unreadable(optional_int, item.get("start_count"), "start_count"),
        remains=remains,
        remains_unreadable=remains is None and item.get("remains") not in (None, ""),
        currency=None if currency is None else to_text(currency, "currency"),
    )


def _unknown_if_unreadable(read: Callable[[Any, str], _T], value: Any, field: str) -> _T | None:
    """A field that cannot be read is unknown, None, rather than the whole status malformed: a
    Canceled order is refunded whatever its charge or remains say (an unreadable one held the
    status back, and the refund with it, at every poll). The status, which moves money, is read
    strictly; an unreadable remains is marked (``remains_unreadable``), so that a status whose
    refund depends on it (Partial, Expired) is held back by the ledger."""
    try:
        return read(value, field)
    except ProviderMalformed:
        return None


def parse_balance(value: Any) -> ProviderBalance:
    item = require_object(value, "balance")
    return ProviderBalance(
        balance=to_decimal(require_field(item, "balance"), "balance"),
        currency=to_text(item.get("currency") or "USD", "currency"),
    )


ORDER_ID_MAX_CHARS = 64


def usable_order_id(text: str) -> bool:
    """Whether ``text`` can name a provider order in every later call: 1 to 64 printable
    characters with no space or comma (``status``, ``cancel`` and ``refill`` take ids as a
    comma-separated list, so an id with a comma, or none at all, could never be asked about)."""
    # Every whitespace character but the space is unprintable, so these three checks suffice.
    return 0 < len(text) <= ORDER_ID_MAX_CHARS and text.isprintable() and not {" ", ","} & set(text)


def parse_order_id(value: Any) -> str:
    """The id in an ``add`` reply; one no later call could use is malformed (outcome unknown)."""
    item = require_object(value, "add")
    order_id = to_text(require_field(item, "order"), "order")
    if not usable_order_id(order_id):
        raise ProviderMalformed(f"order: not a usable order id: {order_id[:80]!r}")
    return order_id


def parse_multi_status(
    value: Any, order_ids: list[str]
) -> dict[str, ProviderStatus | ProviderRefused]:
    """Statuses keyed by the requested ids; an id the reply leaves out counts as refused."""
    reply = require_object(value, "multi-status")
    result: dict[str, ProviderStatus | ProviderRefused] = {}
    for order_id in order_ids:
        slot = reply.get(order_id)
        text = error_text(slot, "status")
        if slot is None:
            result[order_id] = ProviderRefused("Missing from provider reply")
        elif text is not None:
            result[order_id] = ProviderRefused(text)
        else:
            try:
                result[order_id] = parse_status(slot)
            except ProviderMalformed as error:  # one garbled slot must not sink the others
                result[order_id] = ProviderRefused(f"Malformed status: {error}")
    return result


def parse_per_item(value: Any, id_field: str, value_field: str) -> dict[str, Any]:
    """Read a per-item list such as ``[{"order": 2, "cancel": 1}]`` into ``{"2": 1}``.

    An item's value is either its payload or a ``ProviderRefused`` for an ``{"error": ...}``.
    """
    result: dict[str, Any] = {}
    for raw_item in require_list(value, value_field):
        item = require_object(raw_item, value_field)
        item_id = to_text(require_field(item, id_field), id_field)
        payload = require_field(item, value_field)
        text = error_text(payload)
        result[item_id] = ProviderRefused(text) if text is not None else payload
    return result
