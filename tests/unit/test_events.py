"""Events: deterministic ids, stream names, and a lossless round trip of every event type."""

from __future__ import annotations

import itertools
import uuid
from typing import Any

import msgspec
import pytest

from boost_ledger.ledger.events import (
    EVENT_TYPES,
    Event,
    account_stream,
    credit_event_id,
    debit_event_id,
    decode_event,
    order_stream,
    refund_event_id,
    service_stream,
    wallet_stream,
)

# ---- deterministic ids ---------------------------------------------------------------------


def test_deterministic_ids_never_change_across_releases():
    """The ids are part of the stored log: a new namespace or format would allow a second debit."""
    assert debit_event_id(1) == uuid.UUID("25089290-12d2-5df6-8324-bbd6d212017a")
    assert refund_event_id(1) == uuid.UUID("54c6a768-2a51-5eb7-935c-d27504781eec")
    assert credit_event_id(1001, "topup-1") == uuid.UUID("947c139d-e718-5ea4-af18-ecbbee2e9395")


def test_deterministic_ids_are_stable_within_a_run_and_are_name_based():
    """The same fact gives the same id every time, as a version 5 (name-based) UUID."""
    for make in (lambda: debit_event_id(42), lambda: refund_event_id(42),
                 lambda: credit_event_id(42, "ref")):
        assert make() == make()
        assert make().version == 5


def test_deterministic_ids_of_different_facts_are_distinct():
    """Debit and refund of one order, orders, accounts and references never share an id."""
    ids = [debit_event_id(order) for order in range(1, 200)]
    ids += [refund_event_id(order) for order in range(1, 200)]
    ids += [
        credit_event_id(account, reference)
        for account, reference in itertools.product(
            (1, 11, 12, 1001), ("x", "1:x", "2:x", ":x", "X", "x ", "")
        )
    ]
    assert len(set(ids)) == len(ids)


def test_stream_names_follow_the_design():
    """Streams are ``account-<id>``, ``wallet-<account id>``, ``order-<id>``, ``service-<id>``."""
    assert account_stream(1001) == "account-1001"
    assert wallet_stream(1001) == "wallet-1001"
    assert order_stream(7) == "order-7"
    assert service_stream("101") == "service-101"


# ---- round trip of every event type --------------------------------------------------------

_counter = itertools.count(1)


def _sample(info: msgspec.inspect.Type, *, none: bool) -> Any:
    """A value of the given type; ``none`` picks None for every optional value."""
    if isinstance(info, msgspec.inspect.IntType):
        return next(_counter) * 1_000_003  # large enough to catch a float on the way
    if isinstance(info, msgspec.inspect.StrType):
        return f"text-{next(_counter)} ünïcode \"quoted\" \\ slash"
    if isinstance(info, msgspec.inspect.BoolType):
        return True
    if isinstance(info, msgspec.inspect.ListType):
        return [_sample(info.item_type, none=none) for _ in range(2)]
    if isinstance(info, msgspec.inspect.DictType):
        return {"quantity": 5, "comments": "a\nb", "nested": {"list": [1, "two", None]}}
    if isinstance(info, msgspec.inspect.AnyType):
        return {"any": [1, 2.5, "x"]}
    if isinstance(info, msgspec.inspect.UnionType):
        if none and any(isinstance(t, msgspec.inspect.NoneType) for t in info.types):
            return None
        usable = [t for t in info.types if not isinstance(t, msgspec.inspect.NoneType)]
        return _sample(usable[0], none=none)
    raise AssertionError(f"teach this test to build a {info!r}")


def _build(cls: type[Event], *, none: bool) -> Event:
    fields = msgspec.inspect.type_info(cls).fields  # type: ignore[union-attr]
    return cls(**{field.name: _sample(field.type, none=none) for field in fields})


def test_every_event_type_is_registered_under_its_class_name():
    """The ``type`` column is the class name, so the registry must agree with it."""
    assert EVENT_TYPES, "no event types"
    for name, cls in EVENT_TYPES.items():
        assert cls.__name__ == name
        assert issubclass(cls, Event)
        assert cls.__struct_config__.frozen


@pytest.mark.parametrize("none", [False, True], ids=["values", "nulls"])
@pytest.mark.parametrize("type_name", sorted(EVENT_TYPES))
def test_every_event_type_survives_the_round_trip_through_stored_json(type_name, none):
    """Encoding as the store does and decoding by type name gives back an equal event."""
    event = _build(EVENT_TYPES[type_name], none=none)
    stored = msgspec.json.decode(msgspec.json.encode(msgspec.to_builtins(event)))
    decoded = decode_event(type_name, stored)
    assert decoded == event
    assert type(decoded) is type(event)


def test_fields_left_at_their_defaults_are_restored_on_decoding():
    """An event stored before a field with a default existed still decodes."""
    for type_name, cls in EVENT_TYPES.items():
        event = _build(cls, none=False)
        stored = msgspec.to_builtins(event)
        for field in msgspec.inspect.type_info(cls).fields:  # type: ignore[union-attr]
            if not field.required:
                stored.pop(field.name)
                restored = decode_event(type_name, stored)
                assert getattr(restored, field.name) == field.default


def test_an_unknown_type_or_malformed_data_is_refused():
    """Decoding never guesses: unknown names and wrong shapes raise."""
    with pytest.raises(KeyError):
        decode_event("NoSuchEvent", {})
    with pytest.raises(msgspec.ValidationError):
        decode_event("WalletCredited", {"account_id": "1001", "amount_kobo": 5})
