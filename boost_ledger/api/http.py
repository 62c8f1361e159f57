"""Small helpers for JSON requests and responses with msgspec."""

from __future__ import annotations

from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from boost_ledger.api.errors import payload_too_large, validation_failed

MAX_BODY_BYTES = 64 * 1024

_encoder = msgspec.json.Encoder()


class Envelope(msgspec.Struct, frozen=True):
    success: bool
    data: Any


class MessageEnvelope(msgspec.Struct, frozen=True):
    success: bool
    message: str
    data: Any


def json_response(data: Any, status: int = 200, message: str | None = None) -> Response:
    body = Envelope(True, data) if message is None else MessageEnvelope(True, message, data)
    return Response(_encoder.encode(body), status_code=status, media_type="application/json")


def raw_json_response(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json", headers=headers)


async def read_body(request: Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit_bytes:
        raise payload_too_large(limit_bytes)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise payload_too_large(limit_bytes)
        chunks.append(chunk)
    return b"".join(chunks)


def decode_object(body: bytes) -> dict[str, Any]:
    """A JSON object, or 422 ``VALIDATION_FAILED`` naming the body as the bad field."""
    if not body.strip():
        raise validation_failed({"body": ["A JSON object is required."]})
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise validation_failed({"body": ["The body is not valid JSON."]}) from None
    if not isinstance(value, dict):
        raise validation_failed({"body": ["The body must be a JSON object."]})
    return value


async def read_json_object(request: Request) -> dict[str, Any]:
    return decode_object(await read_body(request))
