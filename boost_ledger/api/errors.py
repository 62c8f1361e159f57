"""The one error envelope: ``{"success": false, "status", "message", "code"}``.

Every failure a client can see is an ``ApiError``; ``api/app.py`` maps framework errors and
anything unexpected onto it, so no stack trace or internal text ever reaches a client.
"""

from __future__ import annotations

import msgspec
from starlette.responses import Response

_encoder = msgspec.json.Encoder()


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    # ``success`` has no default on purpose: ``omit_defaults`` would drop a default ``False``
    # from the body, and the spec's envelope always carries it. Only ``errors`` may be omitted.
    success: bool
    status: int
    message: str
    code: str
    errors: dict[str, list[str]] | None = None


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        errors: dict[str, list[str]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.headers = headers or {}

    def body(self) -> bytes:
        return _encoder.encode(
            ErrorBody(
                success=False,
                status=self.status,
                message=self.message,
                code=self.code,
                errors=self.errors,
            )
        )

    def response(self) -> Response:
        return Response(
            self.body(),
            status_code=self.status,
            media_type="application/json",
            headers=self.headers,
        )


BEARER_CHALLENGE = 'Bearer realm="boosting-api"'
"""The challenge every 401 carries (RFC 9110 §15.5.2 requires one; RFC 6750 §3 gives its form)."""


def unauthenticated() -> ApiError:
    return ApiError(
        401,
        "UNAUTHENTICATED",
        "Unauthenticated. Please provide a valid bearer token.",
        headers={"WWW-Authenticate": BEARER_CHALLENGE},
    )


def validation_failed(errors: dict[str, list[str]], message: str | None = None) -> ApiError:
    return ApiError(
        422,
        "VALIDATION_FAILED",
        message or "One or more request fields are missing or invalid.",
        errors=errors,
    )


def bad_request() -> ApiError:
    return ApiError(400, "BAD_REQUEST", "The request is not a well-formed HTTP/1.1 request.")


def not_found() -> ApiError:
    return ApiError(404, "NOT_FOUND", "The requested resource was not found.")


def method_not_allowed() -> ApiError:
    return ApiError(405, "METHOD_NOT_ALLOWED", "The method is not allowed for this resource.")


def payload_too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        413, "PAYLOAD_TOO_LARGE", f"The request body is larger than {limit_bytes} bytes."
    )


def headers_too_large(limit_bytes: int) -> ApiError:
    return ApiError(
        431,
        "REQUEST_HEADERS_TOO_LARGE",
        f"The request line and headers are larger than {limit_bytes} bytes.",
    )


def unsupported_media_type() -> ApiError:
    return ApiError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "The request body must be JSON, sent with Content-Type: application/json.",
    )


def unsupported_content_coding() -> ApiError:
    return ApiError(
        415,
        "UNSUPPORTED_MEDIA_TYPE",
        "The request body must not be compressed: send it without a Content-Encoding.",
    )


def request_timeout() -> ApiError:
    return ApiError(408, "REQUEST_TIMEOUT", "The request body was not received in time.")


def head_timeout() -> ApiError:
    return ApiError(
        408, "REQUEST_TIMEOUT", "The request line and headers were not received in time."
    )


def rate_limited(retry_after_s: int) -> ApiError:
    return ApiError(
        429,
        "RATE_LIMITED",
        "Too many requests for this API key. Retry after the time in Retry-After.",
        headers={"Retry-After": str(retry_after_s)},
    )


def database_unavailable() -> ApiError:
    return service_unavailable("The service is temporarily unavailable. Retry shortly.")


def internal_error() -> ApiError:
    return ApiError(500, "INTERNAL_ERROR", "An unexpected error occurred. Please retry later.")


def service_unavailable(message: str, code: str = "SERVICE_UNAVAILABLE") -> ApiError:
    return ApiError(503, code, message, headers={"Retry-After": "2"})
