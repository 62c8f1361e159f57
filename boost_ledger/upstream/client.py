"""An async client for the SMM Panel API v2 (see shared/spec/smm-panel-api-v2.md).

Every reply is translated here, once, into values or the typed errors of ``errors.py``. Reads are
retried with bounded exponential backoff; calls that change state upstream (``add``, ``cancel``,
``refill``) are sent exactly once, because the protocol has no idempotency key and a retry after a
lost reply could place the same order twice.
"""

import asyncio
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

from boost_ledger.upstream import parsing
from boost_ledger.upstream.errors import (
    ProviderMalformed,
    ProviderRefused,
    ProviderUnavailable,
)
from boost_ledger.upstream.models import ProviderBalance, ProviderStatus
from boost_ledger.upstream.transport import (
    MAX_CONNECTIONS,
    SENT_EXTENSION,
    ProviderTransport,
    ReplyTooLarge,
    whole_reads,
)

MAX_IDS_PER_CALL = 100
ACTION_EXTENSION = "boost_provider_action"
"""The request extension naming the protocol action of a provider call."""
# A catalog of a few thousand services is a few megabytes; anything far larger is not a reply.
_MAX_REPLY_BYTES = 16 * 1024 * 1024
_RESERVED_FIELDS = frozenset({"key", "action", "service"})
_HEADERS = {
    "accept": "application/json",
    "user-agent": "boost-ledger",
    "content-type": "application/x-www-form-urlencoded",
}

_Result = TypeVar("_Result")


class ProviderClient:
    """One provider, one connection pool. Close it with ``aclose``."""

    @property
    def url(self) -> str:
        """The provider's API address."""
        return self._url

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout_s: float = 10.0,
        read_retries: int = 3,
        backoff_s: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = MAX_CONNECTIONS,
    ) -> None:
        if timeout_s <= 0 or read_retries < 0 or backoff_s < 0 or max_connections < 1:
            raise ValueError("timeout_s, read_retries, backoff_s or max_connections out of range")
        self._url = url
        self._target = httpx.URL(url)  # parsed once: a third of building each request
        self._key = key
        self._timeout_s = timeout_s
        self._read_retries = read_retries
        self._backoff_s = backoff_s
        # Requests go to the transport directly: a provider call needs none of what
        # ``httpx.AsyncClient`` adds (cookies, redirects, auth, proxies from the environment,
        # documented with BOOST_PROVIDER_URL), and ``ProviderTransport`` spends a quarter of
        # httpx's own transport's CPU per call (see transport.py).
        self._transport = transport or ProviderTransport(max_connections=max_connections)
        self._read_whole = whole_reads(self._transport)
        self._extensions = {"timeout": httpx.Timeout(timeout_s).as_dict()}
        self._form_heads: dict[str, str] = {}

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def services(self) -> parsing.ServicesReply:
        """The catalog, and the entries of it that could not be read (see ``parse_services``)."""
        reply = await self._read("services", {})
        return parsing.parse_services(reply)

    async def add(self, service: str, fields: Mapping[str, str]) -> str:
        """Place an order; returns the provider's order id. Never retried (see ``errors``)."""
        clashing = _RESERVED_FIELDS.intersection(fields)
        if clashing:
            raise ValueError(f"fields may not set {sorted(clashing)}")
        reply = await self._call("add", {"service": service, **fields})
        return parsing.parse_order_id(reply)

    async def status(self, order_id: str) -> ProviderStatus:
        reply = await self._read("status", {"order": order_id})
        return parsing.parse_status(reply)

    async def multi_status(
        self, order_ids: Sequence[str]
    ) -> dict[str, ProviderStatus | ProviderRefused]:
        """Statuses of up to 100 orders; a bad id's value is a ``ProviderRefused``."""
        ids = _checked_ids(order_ids)
        if not ids:
            return {}
        reply = await self._read("status", {"orders": ",".join(ids)})
        return parsing.parse_multi_status(reply, ids)

    async def cancel(self, order_ids: Sequence[str]) -> dict[str, bool | ProviderRefused]:
        """Ask to cancel up to 100 orders. ``True`` only means the request was accepted."""
        ids = _checked_ids(order_ids)
        if not ids:
            return {}
        reply = await self._call("cancel", {"orders": ",".join(ids)})
        items = parsing.parse_per_item(reply, "order", "cancel")
        return {
            order_id: value
            if isinstance(value, ProviderRefused)
            else parsing.to_bool(value, "cancel")
            for order_id, value in items.items()
        }

    async def refill(self, order_ids: Sequence[str]) -> dict[str, str | ProviderRefused]:
        """Ask to refill up to 100 orders; each accepted order maps to its refill id."""
        ids = _checked_ids(order_ids)
        if not ids:
            return {}
        reply = await self._call("refill", {"orders": ",".join(ids)})
        return _texts(parsing.parse_per_item(reply, "order", "refill"), "refill")

    async def refill_status(self, refill_ids: Sequence[str]) -> dict[str, str | ProviderRefused]:
        ids = _checked_ids(refill_ids)
        if not ids:
            return {}
        reply = await self._read("refill_status", {"refills": ",".join(ids)})
        return _texts(parsing.parse_per_item(reply, "refill", "status"), "status")

    async def balance(self) -> ProviderBalance:
        reply = await self._read("balance", {})
        return parsing.parse_balance(reply)

    async def _read(self, action: str, fields: Mapping[str, str]) -> Any:
        return await _with_retries(
            lambda: self._call(action, fields), self._read_retries, self._backoff_s
        )

    async def _call(self, action: str, fields: Mapping[str, str]) -> Any:
        """One POST, translated: a JSON value, or a typed error."""
        # The form as httpx would encode it, the key and action quoted once per action.
        form = self._form_heads.get(action) or self._form_head(action)
        if fields:
            form += "&" + urllib.parse.urlencode(fields)
        # The action rides along for a transport that labels its metrics by it.
        extensions = {**self._extensions, ACTION_EXTENSION: action}
        request = httpx.Request(
            "POST", self._target, content=form.encode(), headers=_HEADERS, extensions=extensions
        )
        try:
            # httpx's timeout bounds each network step; this one bounds the call as a whole, so
            # a provider trickling bytes cannot hold a worker forever.
            async with asyncio.timeout(self._timeout_s):
                status_code, body = await self._read_whole(request, _MAX_REPLY_BYTES)
        except (TimeoutError, httpx.TimeoutException) as error:
            sent = _sent(request, error)
            waited_for = "reply" if sent else "connection"
            message = f"{action}: no {waited_for} within {self._timeout_s} s"
            raise ProviderUnavailable(message, sent=sent) from error
        except httpx.DecodingError as error:
            raise ProviderMalformed(f"{action}: undecodable body: {error}") from error
        except ReplyTooLarge as error:
            raise ProviderMalformed(f"{action}: {error}") from error
        except httpx.TransportError as error:
            message = f"{action}: {type(error).__name__}: {error}"
            raise ProviderUnavailable(message, sent=_sent(request, error)) from error
        return _interpret(action, status_code, body)

    def _form_head(self, action: str) -> str:
        head = self._form_heads[action] = urllib.parse.urlencode(
            {"key": self._key, "action": action}
        )
        return head


def _sent(request: httpx.Request, error: Exception) -> bool:
    """Whether any byte of the request may have gone out. ``ProviderTransport`` says so in
    ``SENT_EXTENSION`` even when the call's own deadline cut it short; with another transport,
    only a failure to connect is a sure "no"."""
    sent = request.extensions.get(SENT_EXTENSION)
    if sent is None:
        return not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
    return bool(sent)


_ANSWER_FIELDS = {"add": "order", "status": "status", "balance": "balance"}
"""The field that carries the answer of a one-object reply: beside it, ``"error": null`` is
no error (a multi-status reply is keyed by ids; its slots are read in ``parse_multi_status``)."""


def _interpret(action: str, status_code: int, body: bytes) -> Any:
    if status_code >= 500 or status_code == 429:
        raise ProviderUnavailable(f"{action}: HTTP {status_code}")
    reply = parsing.decode_json(body)
    answer_field = _ANSWER_FIELDS.get(action)
    text = parsing.error_text(reply, answer_field)
    if text is not None and action == "add" and "order" in reply:
        # An order id beside an error (a warning): the order may exist upstream, so this is
        # no definite refusal, and refunding it could pay for it twice.
        raise ProviderMalformed(f"add: an order id and an error in one reply: {text[:80]!r}")
    if text is not None:
        raise ProviderRefused(text)
    if status_code >= 300:
        raise ProviderMalformed(f"{action}: HTTP {status_code} without an error object")
    return reply


async def _with_retries(
    attempt: Callable[[], Awaitable[_Result]], retries: int, backoff_s: float
) -> _Result:
    """Run ``attempt``, retrying only failures that may pass (never a refusal)."""
    for attempt_number in range(retries + 1):
        try:
            return await attempt()
        except (ProviderUnavailable, ProviderMalformed):
            if attempt_number == retries:
                raise
        await asyncio.sleep(backoff_s * 2**attempt_number)
    raise AssertionError("unreachable: the last attempt returns or raises")


def _checked_ids(ids: Sequence[str]) -> list[str]:
    if isinstance(ids, str):
        raise TypeError("pass a sequence of ids, not a single string")
    if len(ids) > MAX_IDS_PER_CALL:
        raise ValueError(f"at most {MAX_IDS_PER_CALL} ids per call, got {len(ids)}")
    if not all(parsing.usable_order_id(item) for item in ids):
        raise ValueError("ids must be 1 to 64 printable characters, with no space or comma")
    return list(ids)


def _texts(items: dict[str, Any], field: str) -> dict[str, str | ProviderRefused]:
    return {
        item_id: value if isinstance(value, ProviderRefused) else parsing.to_text(value, field)
        for item_id, value in items.items()
    }
