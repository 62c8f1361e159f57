"""API keys: generation, hashing and the abilities they grant (pure, no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac

KEY_PREFIX = "blk_"
SECRET_BYTES = 32
ABILITIES = ("wallet:read", "boosting:read", "boosting:buy", "orders:read")


class GeneratedKey:
    """A freshly generated key: the secret is shown once, only the hash is kept."""

    __slots__ = ("key_hash", "key_id", "secret")

    def __init__(self, key_id: str, secret: str) -> None:
        self.key_id = key_id
        self.secret = secret
        self.key_hash = hash_key(secret)


def generate_key(random_id: bytes, random_secret: bytes) -> GeneratedKey:
    """Build a key from caller-supplied randomness (``secrets.token_bytes``)."""
    assert len(random_id) == 6 and len(random_secret) >= SECRET_BYTES
    key_id = base64.b32encode(random_id).decode().rstrip("=").lower()
    body = base64.urlsafe_b64encode(random_secret).decode().rstrip("=")
    return GeneratedKey(key_id, f"{KEY_PREFIX}{key_id}_{body}")


def hash_key(secret: str) -> bytes:
    """The stored form of a key. The secret has 256 bits of entropy, so a plain hash suffices."""
    return hashlib.sha256(secret.encode()).digest()


def looks_like_key(text: str) -> bool:
    return text.startswith(KEY_PREFIX) and 20 < len(text) <= 200 and text.isascii()


def same_hash(stored: bytes, presented: bytes) -> bool:
    return hmac.compare_digest(stored, presented)


def parse_abilities(text: str | None) -> list[str]:
    """A comma-separated list of abilities; all of them when ``text`` is empty."""
    if not text:
        return list(ABILITIES)
    chosen = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [name for name in chosen if name not in ABILITIES]
    if unknown or not chosen:
        raise ValueError(
            f"unknown abilities {unknown or chosen}; choose from {', '.join(ABILITIES)}"
        )
    return sorted(set(chosen), key=ABILITIES.index)
