"""Content-Type parsing (api/http.py): the grammar of RFC 9110 §8.3.1, no I/O."""

from __future__ import annotations

import pytest

from boost_ledger.api.http import parse_media_type


@pytest.mark.parametrize(
    ("declared", "parsed"),
    [
        ("application/json", ("application/json", [])),
        ("Application/JSON", ("application/json", [])),
        ('application/json; Charset="UTF-8"', ("application/json", [("charset", "UTF-8")])),
        ("application/json;charset=utf-8;q=x", ("application/json", [("charset", "utf-8"),
                                                                     ("q", "x")])),
        ('application/json; a="x;y\\"z"', ("application/json", [("a", 'x;y"z')])),
        ("application/json ; ; charset=utf-8 ", ("application/json", [("charset", "utf-8")])),
    ],
)
def test_a_well_formed_media_type_parses(declared, parsed):
    """Type, subtype and parameter names come lowercased; values keep their case, come unquoted
    with their escapes resolved; empty parameters and optional whitespace are allowed."""
    assert parse_media_type(declared) == parsed


@pytest.mark.parametrize(
    "declared",
    ["", "json", "application/", "/json", "application/json, text/plain", "application/json; a",
     'application/json; a="open', "application/json; a=b c", "application/json; =b",
     'application/json; a="\x00"', "application/json; a=\u00e9"],
)
def test_a_malformed_media_type_is_none(declared):
    """Anything outside the grammar does not parse (and so is refused with 415)."""
    assert parse_media_type(declared) is None
