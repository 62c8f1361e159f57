"""Unit tests of parsing.parse_services: each catalog entry is read on its own, so one garbled entry
never keeps the rest of the catalog out, and null fields read as missing ones (no I/O)."""

from decimal import Decimal
from typing import Any

import msgspec
import pytest

from boost_ledger.upstream import parsing
from boost_ledger.upstream.errors import ProviderMalformed
from boost_ledger.upstream.models import ProviderService
from boost_ledger.upstream.parsing import UnreadableService, decode_json, parse_services


def _entry(service: Any, **fields: Any) -> dict[str, Any]:
    return {"service": service, "name": "N", "type": "Default", "category": "C", "rate": "1.5",
            "min": 10, "max": 100, **fields}  # fmt: skip


@pytest.mark.parametrize("field", ["name", "category", "refill", "cancel", "dripfeed", "desc"])
def test_a_null_field_reads_as_a_missing_one(field: str) -> None:
    """A present null name or category reads as empty, and a null refill, cancel or dripfeed as
    not offered, exactly as when the field is missing."""
    missing = _entry(7, refill=True, cancel=True, dripfeed=True, desc="D")
    del missing[field]
    assert parse_services([{**missing, field: None}]) == parse_services([missing])
    assert parse_services([missing]).unreadable == []


def test_null_fields_all_at_once() -> None:
    """Every optional field null at once still reads as one service with the defaults."""
    nulls = _entry(7, name=None, category=None, refill=None, cancel=None, dripfeed=None, desc=None)
    reply = parse_services([nulls])
    assert reply.unreadable == []
    assert reply.services == [
        ProviderService(service="7", name="", type="Default", category="", rate=Decimal("1.5"),
                        min=10, max=100, refill=False, cancel=False, dripfeed=False),
    ]  # fmt: skip


def test_an_unreadable_entry_is_set_aside_and_the_others_are_read() -> None:
    """Entries of the wrong shape (a bad rate, a missing bound, a bad flag, no object at all, an
    id that is no id) are set aside with their place, their id when it can be read, and why;
    every other entry is read, in order."""
    reply = parse_services([
        _entry(1), _entry(2, rate="x"), _entry(3), {"service": 4, "rate": "1", "min": 1},
        _entry(5, cancel="maybe"), None, _entry({"id": 6}), _entry(7, name=["a"]),
    ])  # fmt: skip
    assert [service.service for service in reply.services] == ["1", "3"]
    assert reply.unreadable == [
        UnreadableService(position=1, service="2", reason="rate: not a number: 'x'"),
        UnreadableService(position=3, service="4", reason="missing field 'max'"),
        UnreadableService(position=4, service="5", reason="cancel: not a boolean: 'maybe'"),
        UnreadableService(
            position=5, service=None, reason="service: expected an object, got NoneType"
        ),
        UnreadableService(position=6, service=None, reason="service: not text: {'id': 6}"),
        UnreadableService(position=7, service="7", reason="name: not text: ['a']"),
    ]  # fmt: skip


@pytest.mark.parametrize("bound", ["min", "max"])
def test_a_bound_past_any_number_is_set_aside_like_any_unreadable_entry(bound: str) -> None:
    """A bound too large even to round ("1e9999999999", as text or as a JSON number) is an
    unreadable entry: it raised decimal.Overflow, which failed the whole catalog sync."""
    for value in ("1e9999999999", Decimal("1e9999999999")):
        reply = parse_services([_entry(1), _entry(2, **{bound: value})])
        assert [service.service for service in reply.services] == ["1"]
        assert reply.unreadable == [
            UnreadableService(position=1, service="2", reason=f"{bound}: out of range: {value!r}")
        ]


@pytest.mark.parametrize("field", ["rate", "min", "max", "service", "cancel"])
def test_a_json_number_past_any_decimal_is_set_aside_like_any_unreadable_entry(field: str) -> None:
    """A JSON number whose exponent no Decimal can hold (``1e9999999999999999999``) makes its
    entry unreadable, and the other entries are read: decoding it raised decimal.InvalidOperation
    out of decode_json, an untyped error that failed the whole reply (and the catalog sync)."""
    huge = "1e9999999999999999999"
    odd = {**_entry(2), field: "HUGE"}
    body = msgspec.json.encode([_entry(1), odd]).replace(b'"HUGE"', huge.encode())
    reply = parse_services(decode_json(body))
    assert [service.service for service in reply.services] == ["1"]
    [entry] = reply.unreadable
    assert (entry.position, entry.service) == (1, None if field == "service" else "2")
    assert huge in entry.reason


def test_a_long_id_of_an_unreadable_entry_is_shortened() -> None:
    """The id of an unreadable entry is reported and logged: a huge one is cut to 64 characters
    and a mark, which no listed id (64 characters at most) can equal."""
    reply = parse_services([_entry("7" * 10_000, rate=None)])
    assert [entry.service for entry in reply.unreadable] == ["7" * 64 + "…"]


def test_entries_past_the_bound_are_not_read_and_count_as_one_without_an_id() -> None:
    """A reply is read up to MAX_SERVICE_ENTRIES entries, and the rest is set aside as one entry
    whose id is unknown (so that a sync delists nothing it did not read): every entry of a
    reply was read, each a record, 16 MB of one-byte entries ten seconds and a gigabyte."""
    bound = parsing.MAX_SERVICE_ENTRIES
    reply = parse_services([_entry(1)] + [7] * (bound + 9) + [_entry(2)])

    assert [service.service for service in reply.services] == ["1"]
    assert len(reply.unreadable) == bound
    assert reply.unreadable[-1] == UnreadableService(
        position=bound, service=None, reason="11 more entries not read"
    )


def test_an_empty_catalog_is_read_as_empty() -> None:
    """An empty list is a catalog with nothing in it, not a malformed reply."""
    reply = parse_services([])
    assert (reply.services, reply.unreadable) == ([], [])


@pytest.mark.parametrize("value", [{"services": []}, "services", None, 7, {"error": "x"}])
def test_a_reply_that_is_not_a_list_is_malformed(value: Any) -> None:
    """Nothing of a reply that is not a list can be read: it is malformed as a whole."""
    with pytest.raises(ProviderMalformed):
        parse_services(value)
