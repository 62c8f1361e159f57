"""``GET /docs``: the API reference, rendered in the browser from ``/api/v1/openapi.json``.

Every asset is a file of this package, served by this route, so the page works with no network;
the Content-Security-Policy says so to the browser too (nothing may load from elsewhere).
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.api.errors import not_found

STATIC = Path(__file__).parent / "static"
_ASSETS = {
    "docs.js": "text/javascript; charset=utf-8",
    "docs.css": "text/css; charset=utf-8",
}
_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


async def docs_page(request: Request) -> Response:
    return Response(_read("docs.html"), media_type="text/html; charset=utf-8", headers=_HEADERS)


async def docs_asset(request: Request) -> Response:
    name = request.path_params["name"]
    media_type = _ASSETS.get(name)
    if media_type is None:
        raise not_found()
    return Response(_read(name), headers={**_HEADERS, "Content-Type": media_type})


ROUTES = [
    Route("/docs", docs_page, methods=["GET"]),
    Route("/docs/assets/{name}", docs_asset, methods=["GET"]),
]
