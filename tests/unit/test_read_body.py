"""read_body's bound on a declared length, without a server in front to vet the header."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from boost_ledger.api.errors import ApiError
from boost_ledger.api.http import read_body


def _request(content_length: str, body: bytes) -> Request:
    sent = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, object]:
        return sent.pop(0)

    scope = {
        "type": "http", "method": "POST", "path": "/", "query_string": b"",
        "headers": [(b"content-length", content_length.encode("latin-1"))],
    }
    return Request(scope, receive)


@pytest.mark.parametrize("declared", ["²", "1²", ""])
async def test_a_length_of_other_digits_is_no_length_and_the_body_is_read(declared: str) -> None:
    """"²" passes ``str.isdigit`` and fails ``int``: it is read as no declared length (it
    raised ValueError, a 500), and the body is bounded as it arrives."""
    assert await read_body(_request(declared, b"{}"), limit_bytes=10) == b"{}"


async def test_a_declared_length_past_the_bound_is_refused_before_the_body() -> None:
    with pytest.raises(ApiError) as refused:
        await read_body(_request("11", b"{}"), limit_bytes=10)
    assert refused.value.status == 413
