"""Bearer authentication and abilities, checked on every ``/api/v1`` route."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
from starlette.requests import Request

from boost_ledger.api.errors import ApiError, rate_limited, unauthenticated
from boost_ledger.api.rate_limit import RateLimiter
from boost_ledger.ledger.keys import hash_key, looks_like_key, same_hash


class Principal(msgspec.Struct, frozen=True):
    account_id: int
    key_id: str
    abilities: frozenset[str]


_LOOKUP = """
select k.key_id, k.account_id, k.abilities, k.key_hash, a.status
  from api_keys k join accounts a on a.account_id = k.account_id
 where k.key_hash = $1 and not k.revoked
"""


def _bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not looks_like_key(token):
        raise unauthenticated()
    return token


async def authenticate(request: Request, pool: asyncpg.Pool[Any], ability: str) -> Principal:
    """Who is calling, or 401/403. The key is looked up by its hash and never logged."""
    presented = hash_key(_bearer_token(request))
    row = await pool.fetchrow(_LOOKUP, presented)
    if row is None or not same_hash(row["key_hash"], presented):
        raise unauthenticated()
    if row["status"] == "disabled":
        raise ApiError(403, "USER_DISABLED", "This account is disabled.")
    if row["status"] == "banned":
        raise ApiError(403, "USER_BANNED", "This account is banned.")
    principal = Principal(row["account_id"], row["key_id"], frozenset(row["abilities"]))
    request.scope.setdefault("state", {})["account_id"] = principal.account_id
    _take_token(request, principal.key_id)
    if ability not in principal.abilities:
        raise ApiError(403, "FORBIDDEN", f"This API key lacks the '{ability}' ability.")
    return principal


def _take_token(request: Request, key_id: str) -> None:
    """429 ``RATE_LIMITED`` when this key's bucket is empty (api/rate_limit.py)."""
    limiter: RateLimiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is None:
        return
    wait_s = limiter.retry_after_s(key_id)
    if wait_s is not None:
        raise rate_limited(wait_s)
