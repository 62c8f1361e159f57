"""Bearer authentication and abilities, checked on every ``/api/v1`` route.

``authenticate`` looks the key up on every request, so a revoked key or a disabled account is
refused at once in every process. Checkout saves that round trip: it remembers who a key was
(``Principals``) and lets the checkout statement itself re-check the key in the transaction that
spends the money (sql/0011_checkout.sql), which is just as immediate.
"""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request

from boost_ledger.api.errors import ApiError, rate_limited, unauthenticated
from boost_ledger.api.rate_limit import RateLimiter
from boost_ledger.ledger.keys import hash_key, looks_like_key, same_hash

MAX_REMEMBERED_KEYS = 10_000


class Principal(msgspec.Struct, frozen=True):
    account_id: int
    key_id: str
    abilities: frozenset[str]
    key_hash: bytes = b""


_LOOKUP = """
select k.key_id, k.account_id, k.abilities, k.key_hash, a.status
  from api_keys k join accounts a on a.account_id = k.account_id
 where k.key_hash = $1 and not k.revoked
"""


def _presented_token(request: Request) -> str | None:
    # Authorization is one field, not a list: with two, which one a proxy in front checked is
    # unknowable, so neither is taken.
    fields = request.headers.getlist("authorization")
    if len(fields) != 1:
        return None
    scheme, _, token = fields[0].partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and looks_like_key(token) else None


def _bearer_token(request: Request) -> str:
    token = _presented_token(request)
    if token is None:
        raise unauthenticated()
    return token


async def lookup(request: Request, pool: asyncpg.Pool[Any]) -> Principal:
    """Who is calling, or 401/403. The key is looked up by its hash and never logged."""
    presented = hash_key(_bearer_token(request))
    row = await pool.fetchrow(_LOOKUP, presented)
    if row is None or not same_hash(row["key_hash"], presented):
        raise unauthenticated()
    if row["status"] == "disabled":
        raise ApiError(403, "USER_DISABLED", "This account is disabled.")
    if row["status"] == "banned":
        raise ApiError(403, "USER_BANNED", "This account is banned.")
    return Principal(row["account_id"], row["key_id"], frozenset(row["abilities"]), presented)


def admit(request: Request, principal: Principal, ability: str) -> None:
    """Let ``principal`` in for ``ability``: its rate limit (429), then the ability (403)."""
    request.scope.setdefault("state", {})["account_id"] = principal.account_id
    _take_token(request, principal.key_id)
    if ability not in principal.abilities:
        raise ApiError(403, "FORBIDDEN", f"This API key lacks the '{ability}' ability.")


async def authenticate(request: Request, pool: asyncpg.Pool[Any], ability: str) -> Principal:
    """Who is calling, admitted for ``ability``, or 401/403/429."""
    principal = await lookup(request, pool)
    admit(request, principal, ability)
    return principal


class Principals:
    """Who each recently seen key was. Never proof on its own: a user of an entry must have the
    database confirm the key in the same transaction as its decision, or call ``lookup``."""

    def __init__(self, capacity: int = MAX_REMEMBERED_KEYS) -> None:
        self._capacity = capacity
        self._by_hash: dict[bytes, Principal] = {}

    def recall(self, request: Request) -> Principal | None:
        token = _presented_token(request)
        return None if token is None else self._by_hash.get(hash_key(token))

    def remember(self, principal: Principal) -> None:
        if len(self._by_hash) >= self._capacity:
            self._by_hash.clear()
        self._by_hash[principal.key_hash] = principal

    def forget(self, principal: Principal) -> None:
        self._by_hash.pop(principal.key_hash, None)


def _take_token(request: Request, key_id: str) -> None:
    """429 ``RATE_LIMITED`` when this key's bucket is empty (api/rate_limit.py)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    wait_s = limiter.retry_after_s(key_id)
    if wait_s is not None:
        raise rate_limited(wait_s)
