"""The ``POST /api/v2`` endpoint: form in, JSON out, with faults injected where asked."""

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from boost_ledger.upstream.sim_actions import ACTIONS
from boost_ledger.upstream.sim_faults import faulty_response, json_response
from boost_ledger.upstream.sim_state import SimulatorState

_MAX_BODY_BYTES = 1024 * 1024
_MAX_FIELDS = 100
_FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class _BodyTooLarge(Exception):
    pass


async def api_endpoint(request: Request) -> Response:
    state: SimulatorState = request.app.state.simulator
    try:
        form = await _read_form(request)
    except (_BodyTooLarge, ValueError):
        return json_response({"error": "Incorrect request"}, status_code=413)
    action = form.get("action", "")
    state.request_counts[action if action in ACTIONS else "unknown"] += 1
    if form.get("key") != state.api_key:
        return json_response({"error": "Invalid API key"})
    handler = ACTIONS.get(action)
    if handler is None:
        return json_response({"error": "Incorrect request"})
    rule = state.fault_for(action)
    if rule is None:
        return json_response(handler(state, form))
    return await faulty_response(request, rule, lambda: handler(state, form))


async def _read_form(request: Request) -> dict[str, str]:
    """The url-encoded form, read with a bound on its size (a repeated field keeps its last).

    A body of another content type, or of none, holds no fields, as on a panel (PHP fills
    ``$_POST`` from form bodies only): a client that forgets its content type is refused here
    as it would be there, its key missing."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise _BodyTooLarge
    media_type = request.headers.get("content-type", "").partition(";")[0]
    if media_type.strip().lower() != _FORM_MEDIA_TYPE:
        return {}
    text = body.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=_MAX_FIELDS))
