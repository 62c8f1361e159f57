"""The protocol's actions against the simulator's state; each returns the JSON value to send.

Replies mirror real panels: numbers as strings where they send strings, per-item error objects in
multi-item calls, and the error texts panels use.
"""

from collections.abc import Callable
from typing import Any

from boost_ledger.upstream.sim_catalog import CATALOG, SERVICES_BY_ID
from boost_ledger.upstream.sim_orders import AddRefused, plan_order
from boost_ledger.upstream.sim_progression import TERMINAL_STATUSES, choose_partial_remains
from boost_ledger.upstream.sim_state import (
    CURRENCY,
    SimulatedOrder,
    SimulatorState,
    numeric_id,
)

MAX_IDS_PER_CALL = 100
_INCORRECT_ORDER = {"error": "Incorrect order ID"}

Action = Callable[[SimulatorState, dict[str, str]], Any]


def services(state: SimulatorState, form: dict[str, str]) -> Any:
    return [entry.to_wire() for entry in CATALOG]


def add(state: SimulatorState, form: dict[str, str]) -> Any:
    service = SERVICES_BY_ID.get(form.get("service", "").strip())
    if service is None:
        return {"error": "Incorrect service ID"}
    try:
        plan = plan_order(service, form)
    except AddRefused as refusal:
        return {"error": str(refusal)}
    if plan.charge > state.balance:
        return {"error": "Not enough funds on balance"}
    if len(state.orders) >= state.max_orders:
        return {"error": "Too many orders, please reset the simulator"}
    order = SimulatedOrder(
        order_id=state.next_order_id,
        service=service,
        fields=plan.fields,
        quantity=plan.quantity,
        charge=plan.charge,
        runs=plan.runs,
        partial_remains=choose_partial_remains(
            plan.quantity, state.progress_random, state.partial_share
        ),
    )
    state.add_order(order)
    return {"order": order.order_id}


def status(state: SimulatorState, form: dict[str, str]) -> Any:
    if "orders" in form:
        ids = _id_list(form["orders"])
        if ids is None:
            return {"error": f"At most {MAX_IDS_PER_CALL} orders per request"}
        return {order_id: _status_of(state, order_id) for order_id in ids}
    return _status_of(state, form.get("order", ""))


def cancel(state: SimulatorState, form: dict[str, str]) -> Any:
    # Only ``orders``: unlike status and refill, cancel has no one-order form to fall back on.
    ids = _id_list(form.get("orders", ""))
    if ids is None:
        return {"error": f"At most {MAX_IDS_PER_CALL} orders per request"}
    return [
        {"order": _wire_id(order_id), "cancel": _cancel_one(state, order_id)} for order_id in ids
    ]


def refill(state: SimulatorState, form: dict[str, str]) -> Any:
    if "orders" not in form:
        outcome = _refill_one(state, form.get("order", ""))
        return {"refill": str(outcome)} if isinstance(outcome, int) else outcome
    ids = _id_list(form["orders"])
    if ids is None:
        return {"error": f"At most {MAX_IDS_PER_CALL} orders per request"}
    return [
        {"order": _wire_id(order_id), "refill": _refill_one(state, order_id)} for order_id in ids
    ]


def refill_status(state: SimulatorState, form: dict[str, str]) -> Any:
    if "refills" not in form:
        return _refill_status_of(state, form.get("refill", ""))
    ids = _id_list(form["refills"])
    if ids is None:
        return {"error": f"At most {MAX_IDS_PER_CALL} refills per request"}
    replies = []
    for refill_id in ids:
        reply = _refill_status_of(state, refill_id)
        replies.append({"refill": _wire_id(refill_id), "status": reply.get("status", reply)})
    return replies


def balance(state: SimulatorState, form: dict[str, str]) -> Any:
    return {"balance": str(state.balance), "currency": CURRENCY}


ACTIONS: dict[str, Action] = {
    "services": services,
    "add": add,
    "status": status,
    "cancel": cancel,
    "refill": refill,
    "refill_status": refill_status,
    "balance": balance,
}


def _status_of(state: SimulatorState, order_id: str) -> dict[str, str]:
    order = state.order_by_text(order_id)
    if order is None:
        return dict(_INCORRECT_ORDER)
    return {
        "charge": str(order.charge),
        "start_count": str(order.start_count),
        "status": order.status,
        "remains": str(order.remains),
        "currency": CURRENCY,
    }


def _cancel_one(state: SimulatorState, order_id: str) -> Any:
    order = state.order_by_text(order_id)
    if order is None:
        return dict(_INCORRECT_ORDER)
    if not order.service.cancel:
        return {"error": "Cancel is not available for this service"}
    if order.status in TERMINAL_STATUSES:
        return {"error": "Order can not be canceled in its current status"}
    # Accepting is all a panel promises; the order turns Canceled or Partial on a later step.
    order.cancel_requested = True
    return 1


def _refill_one(state: SimulatorState, order_id: str) -> int | dict[str, str]:
    """The new refill's id, or the error object for this order."""
    order = state.order_by_text(order_id)
    if order is None:
        return dict(_INCORRECT_ORDER)
    if not order.service.refill:
        return {"error": "Refill is not available for this service"}
    if order.status not in ("Completed", "Partial"):
        return {"error": "Refill is available for completed orders only"}
    return state.add_refill(order.order_id).refill_id


def _refill_status_of(state: SimulatorState, refill_id: str) -> dict[str, str]:
    number = numeric_id(refill_id)
    found = None if number is None else state.refills.get(number)
    if found is None:
        return {"error": "Refill not found"}
    return {"status": found.status}


def _id_list(text: str) -> list[str] | None:
    """The comma-separated ids of a request, or None when there are too many."""
    ids = [item.strip() for item in text.split(",") if item.strip()]
    return ids if len(ids) <= MAX_IDS_PER_CALL else None


def _wire_id(text: str) -> Any:
    # Panels echo ids as numbers; an id that is not a number is echoed as sent.
    number = numeric_id(text)
    return text if number is None else number
