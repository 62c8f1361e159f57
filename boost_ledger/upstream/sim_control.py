"""The simulator's control API for tests and demos (JSON, under ``/control``).

- ``GET  /control/orders``            every order, oldest first
- ``GET  /control/orders/{id}``       one order
- ``POST /control/orders/{id}``       force any of ``status``, ``remains``, ``start_count``
- ``GET  /control/faults``            the faults in force
- ``POST /control/faults``            ``{"action", "mode", "rate"?, "latency_ms"?}``
- ``POST /control/progression``       ``{"auto": bool}``
- ``POST /control/tick``              advance every order one step (``{"steps": n}``, default 1)
- ``POST /control/reset``             forget orders, refills, faults and counters
- ``GET  /control/stats``             requests received per action, and the balance
"""

from collections.abc import Awaitable, Callable
from typing import Literal, TypeVar

import msgspec
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from boost_ledger.upstream.sim_faults import DEFAULT_TIMEOUT_MS, MAX_LATENCY_MS, json_response
from boost_ledger.upstream.sim_progression import tick
from boost_ledger.upstream.sim_state import (
    FAULT_ACTIONS,
    FaultRule,
    SimulatedOrder,
    SimulatorState,
)

_MAX_BODY_BYTES = 64 * 1024
_MAX_STEPS = 1000

FaultMode = Literal[
    "none", "latency", "http_500", "html", "malformed_json", "error", "timeout", "reply_lost"
]


class ForcedOrder(msgspec.Struct, forbid_unknown_fields=True):
    status: str | None = None
    remains: int | None = None
    start_count: int | None = None


class FaultRequest(msgspec.Struct, forbid_unknown_fields=True):
    action: str
    mode: FaultMode
    rate: float = 1.0
    latency_ms: int | None = None


class ProgressionRequest(msgspec.Struct, forbid_unknown_fields=True):
    auto: bool


class TickRequest(msgspec.Struct, forbid_unknown_fields=True):
    steps: int = 1


_Body = TypeVar("_Body", bound=msgspec.Struct)


class _BadRequest(Exception):
    pass


def _handles_bad_requests(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def wrapped(request: Request) -> Response:
        try:
            return await endpoint(request)
        except _BadRequest as error:
            return json_response({"error": str(error)}, status_code=400)

    return wrapped


async def _decode(request: Request, body_type: type[_Body]) -> _Body:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_BODY_BYTES:
            raise _BadRequest("body too large")
    try:
        return msgspec.json.decode(bytes(body) or b"{}", type=body_type)
    except msgspec.DecodeError as error:
        raise _BadRequest(str(error)) from error


def _state(request: Request) -> SimulatorState:
    state: SimulatorState = request.app.state.simulator
    return state


def _order(request: Request) -> SimulatedOrder | None:
    # The id is taken as text and read here: a route's int conversion raises past 4300 digits.
    order_id: str = request.path_params["order_id"]
    return _state(request).order_by_text(order_id)


async def list_orders(request: Request) -> Response:
    orders = _state(request).orders.values()
    return json_response([order.to_control() for order in orders])


async def show_order(request: Request) -> Response:
    order = _order(request)
    if order is None:
        return json_response({"error": "Unknown order"}, status_code=404)
    return json_response(order.to_control())


async def force_order(request: Request) -> Response:
    order = _order(request)
    if order is None:
        return json_response({"error": "Unknown order"}, status_code=404)
    forced = await _decode(request, ForcedOrder)
    if forced.status is not None:
        order.status = forced.status
    if forced.remains is not None:
        order.remains = forced.remains
    if forced.start_count is not None:
        order.start_count = forced.start_count
    _state(request).keep_moving(order)
    return json_response(order.to_control())


async def list_faults(request: Request) -> Response:
    return json_response(_faults_view(_state(request)))


async def set_fault(request: Request) -> Response:
    fault = await _decode(request, FaultRequest)
    if fault.action not in FAULT_ACTIONS:
        raise _BadRequest(f"action must be one of {sorted(FAULT_ACTIONS)}")
    if not 0 <= fault.rate <= 1:
        raise _BadRequest("rate must be between 0 and 1")
    latency_ms = DEFAULT_TIMEOUT_MS if fault.latency_ms is None else fault.latency_ms
    if not 0 <= latency_ms <= MAX_LATENCY_MS:
        raise _BadRequest(f"latency_ms must be between 0 and {MAX_LATENCY_MS}")
    state = _state(request)
    state.set_fault(fault.action, FaultRule(fault.mode, fault.rate, latency_ms))
    return json_response(_faults_view(state))


async def set_progression(request: Request) -> Response:
    state = _state(request)
    state.autoprogress = (await _decode(request, ProgressionRequest)).auto
    return json_response({"auto": state.autoprogress})


async def advance(request: Request) -> Response:
    steps = (await _decode(request, TickRequest)).steps
    if not 1 <= steps <= _MAX_STEPS:
        raise _BadRequest(f"steps must be between 1 and {_MAX_STEPS}")
    for _ in range(steps):
        tick(_state(request))
    return json_response({"steps": steps})


async def reset(request: Request) -> Response:
    _state(request).reset()
    return json_response({"reset": True})


async def stats(request: Request) -> Response:
    state = _state(request)
    return json_response(
        {
            "requests": dict(state.request_counts),
            "total": state.request_counts.total(),
            "orders": len(state.orders),
            "balance": str(state.balance),
        }
    )


def _faults_view(state: SimulatorState) -> dict[str, object]:
    return {
        action: {"mode": rule.mode, "rate": rule.rate, "latency_ms": rule.latency_ms}
        for action, rule in state.faults.items()
    }


CONTROL_ROUTES = [
    Route("/orders", list_orders, methods=["GET"]),
    Route("/orders/{order_id}", show_order, methods=["GET"]),
    Route("/orders/{order_id}", _handles_bad_requests(force_order), methods=["POST"]),
    Route("/faults", list_faults, methods=["GET"]),
    Route("/faults", _handles_bad_requests(set_fault), methods=["POST"]),
    Route("/progression", _handles_bad_requests(set_progression), methods=["POST"]),
    Route("/tick", _handles_bad_requests(advance), methods=["POST"]),
    Route("/reset", reset, methods=["POST"]),
    Route("/stats", stats, methods=["GET"]),
]
