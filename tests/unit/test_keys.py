"""API keys: their shape, their randomness, their stored form and the abilities they grant."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from boost_ledger.ledger.accounts import new_key
from boost_ledger.ledger.keys import (
    ABILITIES,
    KEY_PREFIX,
    SECRET_BYTES,
    generate_key,
    hash_key,
    looks_like_key,
    parse_abilities,
    same_hash,
)

_KEY_SHAPE = re.compile(r"blk_(?P<key_id>[a-z2-7]{10})_(?P<body>[A-Za-z0-9_-]{43})")


def _secret_bytes(secret: str) -> bytes:
    # "blk", the key id (base32: no underscore), then the url-safe body (which may hold some).
    body = secret.split("_", 2)[2]
    return base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))


def test_a_key_has_the_prefix_its_id_and_a_url_safe_body():
    """A key reads ``blk_<key id>_<43 url-safe characters>`` and carries its own id."""
    key = generate_key(bytes(range(6)), bytes(range(32)))
    match = _KEY_SHAPE.fullmatch(key.secret)
    assert match is not None, key.secret
    assert key.secret.startswith(KEY_PREFIX)
    assert match["key_id"] == key.key_id
    assert looks_like_key(key.secret)


def test_the_secret_carries_every_random_byte_it_was_given():
    """The body decodes back to the caller's 32 random bytes: no entropy is lost."""
    randomness = bytes(range(100, 132))
    key = generate_key(b"\x00" * 6, randomness)
    assert _secret_bytes(key.secret) == randomness


def test_fresh_keys_have_at_least_32_random_bytes_and_never_repeat():
    """new_key draws at least 32 bytes from the OS: a hundred keys are a hundred secrets."""
    keys = [new_key() for _ in range(100)]
    assert SECRET_BYTES >= 32
    assert all(len(_secret_bytes(key.secret)) >= 32 for key in keys)
    assert len({key.secret for key in keys}) == 100
    assert len({key.key_id for key in keys}) == 100


def test_too_little_randomness_is_a_programming_error():
    """Building a key from fewer than 32 secret bytes is refused outright."""
    with pytest.raises(AssertionError):
        generate_key(b"\x00" * 6, b"\x01" * 31)


def test_only_the_sha256_of_the_key_is_kept():
    """The stored form is sha256 of the key text; comparison is by hash, in constant time."""
    key = generate_key(b"\x01" * 6, b"\x02" * 32)
    assert key.key_hash == hashlib.sha256(key.secret.encode()).digest() == hash_key(key.secret)
    assert key.secret.encode() not in key.key_hash
    assert same_hash(key.key_hash, hash_key(key.secret))
    assert not same_hash(key.key_hash, hash_key(key.secret + "x"))


@pytest.mark.parametrize(
    "text",
    ["", "Bearer", "blk_", "blk_short", "sk_" + "a" * 40, "blk_" + "é" * 30, "blk_" + "a" * 200],
)
def test_text_that_cannot_be_a_key_is_recognised_before_any_lookup(text):
    """Empty, foreign, too short, too long or non-ASCII text is not a key."""
    assert not looks_like_key(text)


def test_no_abilities_named_means_all_of_them_in_their_canonical_order():
    """An empty or missing list grants every ability."""
    assert parse_abilities(None) == list(ABILITIES)
    assert parse_abilities("") == list(ABILITIES)
    assert ABILITIES == ("wallet:read", "boosting:read", "boosting:buy", "orders:read")


def test_abilities_are_trimmed_deduplicated_and_ordered():
    """Spaces and repeats are forgiven; the result follows the canonical order."""
    assert parse_abilities(" orders:read , wallet:read,orders:read ") == [
        "wallet:read",
        "orders:read",
    ]


@pytest.mark.parametrize("text", ["wallet:write", "wallet:read,admin", " , ", "WALLET:READ"])
def test_unknown_or_empty_abilities_are_refused(text):
    """An unknown ability, or a list of nothing but commas, is a ValueError naming the choices."""
    with pytest.raises(ValueError, match="choose from wallet:read"):
        parse_abilities(text)
