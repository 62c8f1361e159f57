"""Render /docs in headless Chromium with every host but this one unreachable, and save a
screenshot: the proof, by eye, that the page works offline.

    .venv/bin/python -m bench.docs_screenshot [out.png]

Needs a Chromium binary (Debian: ``apt-get install chromium``), which ``make test`` does not
install; the test suite checks the same property without a browser
(tests/hardening/test_openapi_and_docs.py). Only the docs and the OpenAPI routes are served, so
no database is needed. Exits non-zero when the page did not render.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from starlette.applications import Starlette
from starlette.routing import Mount

from boost_ledger.api import docs, openapi
from tests.support import http_server

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


def _browser() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit(f"no Chromium found (tried {', '.join(BROWSERS)})")


def _chromium(browser: str, url: str, *arguments: str) -> str:
    with tempfile.TemporaryDirectory() as profile:
        command = [
            browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            f"--user-data-dir={profile}",
            # No network: every name but the loopback address fails to resolve.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=5000", "--window-size=1280,1800", *arguments, url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise SystemExit(f"chromium failed: {done.stderr[-2000:]}")
    return done.stdout


async def main(output: Path) -> None:
    app = Starlette(routes=[*docs.ROUTES, Mount("/api/v1", routes=openapi.ROUTES)])
    browser = _browser()
    async with http_server(app) as base_url:
        url = f"{base_url}/docs#post/api/v1/boost/orders"
        dom = await asyncio.to_thread(_chromium, browser, url, "--dump-dom")
        await asyncio.to_thread(_chromium, browser, url, f"--screenshot={output}")
    rendered = 'data-rendered="true"' in dom and "Purchase Boost" in dom
    size = (await asyncio.to_thread(output.stat)).st_size
    print(f"screenshot: {output} ({size} bytes); rendered: {rendered}")
    if not rendered:
        raise SystemExit("the page did not render the document")


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "docs-screenshot.png").resolve()
    asyncio.run(main(target))
