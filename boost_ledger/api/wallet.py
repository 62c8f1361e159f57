"""``GET /api/v1/wallet``: the caller's balance."""

from __future__ import annotations

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.auth import authenticate
from boost_ledger.api.http import json_response
from boost_ledger.api.runtime import runtime_of
from boost_ledger.ledger.money import format_kobo


class WalletView(msgspec.Struct, frozen=True):
    balance: str
    currency: str


async def get_wallet(request: Request) -> Response:
    runtime = runtime_of(request)
    principal = await authenticate(request, runtime.pool, "wallet:read")
    balance_kobo = await runtime.pool.fetchval(
        "select balance_kobo from wallets where account_id = $1", principal.account_id
    )
    assert balance_kobo is not None, "every account has a wallet"
    return json_response(WalletView(format_kobo(balance_kobo), "NGN"))


ROUTES = [Route("/wallet", get_wallet, methods=["GET"])]
