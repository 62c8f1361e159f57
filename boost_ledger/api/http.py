"""Small helpers for JSON requests and responses with msgspec."""

from __future__ import annotations

import json
import re
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from boost_ledger.api.errors import (
    payload_too_large,
    unsupported_content_coding,
    unsupported_media_type,
    validation_failed,
)

MAX_BODY_BYTES = 64 * 1024
MAX_MEMBERS = 64
MAX_NAME_CHARS = 100
MAX_DEPTH = 16
_TOO_DEEP = f"The body is nested more than {MAX_DEPTH} levels deep."

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


def one_query_value(request: Request, name: str) -> str | None:
    """A query parameter's one value (None if absent), or 422: given twice it is ambiguous, as a
    duplicated member of a body is (Starlette's ``get`` keeps the last one, silently)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise validation_failed({name: [f"The {name} parameter appears more than once."]})
    return values[0] if values else None


async def read_body(request: Request, limit_bytes: int = MAX_BODY_BYTES) -> bytes:
    """The request body, refused with 413 as soon as it grows past ``limit_bytes``."""
    declared = request.headers.get("content-length")
    # ASCII digits only: ``str.isdigit`` takes "²", which ``int`` refuses (uvicorn's parser
    # refuses such a header first; a server in front that did not would have met a 500).
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit_bytes:
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
    """A JSON object, or 422 ``VALIDATION_FAILED`` naming the body (or the bad member).

    Beyond well-formed JSON, the object must have no duplicated member names (msgspec, like most
    parsers, silently keeps the last one, so ``{"quantity": 1, "quantity": 100}`` would mean what
    the client may not have meant), at most ``MAX_MEMBERS`` members with names of at most
    ``MAX_NAME_CHARS`` characters, nesting of at most ``MAX_DEPTH`` levels, and no NUL character
    in any string (PostgreSQL text cannot hold one).
    """
    if not body.strip():
        raise validation_failed({"body": ["A JSON object is required."]})
    try:
        value = msgspec.json.decode(body)
    except msgspec.DecodeError:
        raise validation_failed({"body": ["The body is not valid JSON."]}) from None
    except RecursionError:
        raise validation_failed({"body": [_TOO_DEEP]}) from None
    if not isinstance(value, dict):
        raise validation_failed({"body": ["The body must be a JSON object."]})
    _check_shape(value)
    duplicated = _duplicated_name(body)
    if duplicated is not None:
        field = duplicated if len(duplicated) <= MAX_NAME_CHARS else "body"
        raise validation_failed({field: ["The field appears more than once in the body."]})
    return value


def _check_shape(value: dict[str, Any]) -> None:
    if len(value) > MAX_MEMBERS:
        raise validation_failed({"body": [f"The body has more than {MAX_MEMBERS} fields."]})
    if any(len(name) > MAX_NAME_CHARS for name in value):
        raise validation_failed({"body": [f"A field name is longer than {MAX_NAME_CHARS}."]})
    errors: dict[str, list[str]] = {}
    for name, member in value.items():
        if "\x00" in name:
            errors["body"] = ["A field name must not contain a NUL character."]
            continue
        problem = _deep_problem(member, 1)
        if problem is not None:
            errors[name] = [problem]
    if errors:
        raise validation_failed(errors)


def _deep_problem(value: Any, depth: int) -> str | None:
    """Why a member's value is refused whatever the field (depth, NUL), or None."""
    if depth > MAX_DEPTH:
        return _TOO_DEEP
    if isinstance(value, str):
        return "The field must not contain a NUL character." if "\x00" in value else None
    children: Any = ()
    if isinstance(value, dict):
        if any("\x00" in name for name in value):
            return "A field name must not contain a NUL character."
        children = value.values()
    elif isinstance(value, list):
        children = value
    for child in children:
        problem = _deep_problem(child, depth + 1)
        if problem is not None:
            return problem
    return None


class _Duplicated(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1:
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Duplicated(name)
            seen.add(name)


def _duplicated_name(body: bytes) -> str | None:
    """The first member name repeated within one object of ``body`` (already valid JSON, so
    valid UTF-8: msgspec accepts nothing else)."""
    try:
        _pairs_decoder.decode(body.decode())
    except _Duplicated as duplicate:
        return duplicate.name
    except (ValueError, RecursionError):
        return None  # msgspec accepted it; shape checks already bounded it
    return None


def _ignore(text: str) -> None:
    return None


# Made once: ``json.loads`` with hooks builds a decoder on every call (half of this check's time).
_pairs_decoder = json.JSONDecoder(
    object_pairs_hook=_refuse_duplicates,
    parse_int=_ignore,
    parse_float=_ignore,
    parse_constant=_ignore,
)


# RFC 9110 §5.6.2, §5.6.4 and §8.3.1: a media type is type "/" subtype, then parameters, each
# ``;`` and (optionally, for an empty one) a token name "=" a token or a quoted string, with
# optional whitespace around the ``;``. Header values reach us decoded as latin-1.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # a token: names, and unquoted values
_QUOTED = r'"(?:[\t \x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t \x21-\x7e\x80-\xff])*"'
_MEDIA_TYPE = re.compile(rf"[ \t]*({_TCHARS})/({_TCHARS})[ \t]*")
# Whitespace around "=" is forgiven, though §5.6.6 allows none: it always was, and it is harmless.
_PARAMETER = re.compile(rf";[ \t]*(?:({_TCHARS})[ \t]*=[ \t]*({_TCHARS}|{_QUOTED}))?[ \t]*")
_QUOTED_PAIR = re.compile(r"\\(.)")


def parse_media_type(declared: str) -> tuple[str, list[tuple[str, str]]] | None:
    """``type/subtype`` and the (name, value) parameters of a Content-Type, or None if malformed.

    Type, subtype and parameter names are case-insensitive, so they come lowercased; a quoted
    value comes unquoted, its escapes resolved; values keep their case. Each parameter consumes
    at least its ``;``, so the loop is bounded by the header's length.
    """
    match = _MEDIA_TYPE.match(declared)
    if match is None:
        return None
    essence = f"{match[1]}/{match[2]}".lower()
    parameters: list[tuple[str, str]] = []
    position = match.end()
    while position < len(declared):
        parameter = _PARAMETER.match(declared, position)
        if parameter is None:
            return None
        position = parameter.end()
        name, value = parameter[1], parameter[2]
        if name is not None:
            if value.startswith('"'):
                value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
            parameters.append((name.lower(), value))
    return essence, parameters


def require_json_content_type(request: Request) -> None:
    """415 ``UNSUPPORTED_MEDIA_TYPE`` unless the body is declared ``application/json`` (UTF-8).

    application/json defines no parameters (RFC 8259 §11), so others are ignored, as RFC 9110
    §8.3.1 has a recipient do; but a ``charset`` (any case, quoted or not) must be UTF-8, and a
    header that does not parse, or a second Content-Type, is refused.
    """
    declared = request.headers.getlist("content-type")  # one field: two declare nothing
    parsed = parse_media_type(declared[0]) if len(declared) == 1 else None
    if parsed is None or parsed[0] != "application/json":
        raise unsupported_media_type()
    charsets = {value.lower() for name, value in parsed[1] if name == "charset"}
    if not charsets <= {"utf-8"}:
        raise unsupported_media_type()
    # No content coding is decoded here (RFC 9110 §8.4.1: 415 for one not supported).
    codings = ",".join(request.headers.getlist("content-encoding")).split(",")
    if any(coding.strip().lower() not in ("", "identity") for coding in codings):
        raise unsupported_content_coding()


async def read_json_object(request: Request) -> dict[str, Any]:
    return decode_object(await read_body(request))


async def read_json_body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST body: content type checked first, then size, then syntax."""
    require_json_content_type(request)
    return await read_json_object(request)
