"""Unit tests of boost_ledger.ledger.statuses: upstream mapping, refunds due, cancel eligibility."""

import pytest

from boost_ledger.ledger.statuses import (
    ORDER_STATUSES,
    TERMINAL_STATUSES,
    UpstreamOutcome,
    cancel_eligible,
    map_upstream_status,
    refund_due_kobo,
)


@pytest.mark.parametrize(
    ("text", "status", "refund", "terminal", "kind"),
    [
        ("Pending", "pending", "none", False, "pending"),
        ("Processing", "processing", "none", False, "processing"),
        ("In progress", "in_progress", "none", False, "in_progress"),
        ("Completed", "completed", "none", True, "completed"),
        ("Partial", "partial", "partial", True, "partial"),
        ("Canceled", "canceled", "full", True, "canceled"),
        ("Cancelled", "canceled", "full", True, "canceled"),
        ("Refunded", "canceled", "full", True, "refunded"),
        ("Fail", "failed", "full", True, "failed"),
        ("Failed", "failed", "full", True, "failed"),
        ("Error", "failed", "full", True, "failed"),
        ("Active", "in_progress", "none", False, "active"),
        ("Paused", "processing", "none", False, "paused"),
        ("Expired", "completed", "unused", True, "expired"),
    ],
)
def test_each_upstream_status_maps_to_its_documented_outcome(
    text: str, status: str, refund: str, terminal: bool, kind: str
) -> None:
    """Every upstream string of the SMM v2 protocol maps to the row of the module's table."""
    outcome = map_upstream_status(text)
    assert isinstance(outcome, UpstreamOutcome)
    assert (outcome.status, outcome.refund, outcome.terminal, outcome.kind) == (
        status,
        refund,
        terminal,
        kind,
    )


@pytest.mark.parametrize("text", ["  in PROGRESS ", "IN_PROGRESS", "in\tprogress", "in  progress"])
def test_upstream_status_matching_ignores_case_and_spacing(text: str) -> None:
    """Case, surrounding whitespace, repeated spaces and underscores do not matter."""
    outcome = map_upstream_status(text)
    assert outcome is not None and outcome.status == "in_progress"


@pytest.mark.parametrize("text", ["", "Done", "Canceling", "pending!", "x" * 10_000])
def test_unknown_upstream_status_maps_to_none(text: str) -> None:
    """An unknown string gives None, so the caller leaves the order where it is."""
    assert map_upstream_status(text) is None


def test_terminal_statuses_are_the_settled_ones() -> None:
    """Only completed, partial, canceled and failed are terminal; all are order statuses."""
    assert set(TERMINAL_STATUSES) == {"completed", "partial", "canceled", "failed"}
    assert set(TERMINAL_STATUSES) <= set(ORDER_STATUSES)
    assert len(ORDER_STATUSES) == 8


@pytest.mark.parametrize(
    ("text", "refund"),
    [
        ("Completed", 0),
        ("In progress", 0),
        ("Canceled", 1500),
        ("Refunded", 1500),
        ("Fail", 1500),
        ("Partial", 525),  # floor(1500 * 350 / 1000)
    ],
)
def test_refund_due_follows_the_outcome(text: str, refund: int) -> None:
    """None owes 0, full owes the whole charge, partial owes floor(charge * remains / quantity)."""
    outcome = map_upstream_status(text)
    assert outcome is not None
    due = refund_due_kobo(outcome, charge_kobo=1500, remains=350, units=1000)
    assert due == refund


def test_partial_refund_due_clamps_remains() -> None:
    """Negative remains owe nothing back; remains above the quantity owe the whole charge."""
    outcome = map_upstream_status("Partial")
    assert outcome is not None
    assert refund_due_kobo(outcome, charge_kobo=1500, remains=-20, units=1000) == 0
    assert refund_due_kobo(outcome, charge_kobo=1500, remains=5000, units=1000) == 1500


@pytest.mark.parametrize(
    ("status", "service_cancel", "submitted", "eligible"),
    [
        ("pending", True, False, True),
        ("pending", True, True, True),
        ("processing", True, True, True),
        ("in_progress", True, True, True),
        ("pending", False, False, False),
        ("in_progress", False, True, False),
        ("completed", True, True, False),
        ("partial", True, True, False),
        ("canceled", True, False, False),
        ("canceled", True, True, False),
        ("failed", True, False, False),
        ("canceling", True, True, False),
    ],
)
def test_cancel_eligibility(
    status: str, service_cancel: bool, submitted: bool, eligible: bool
) -> None:
    """Cancel needs a cancellable service and an order neither settled nor already canceling."""
    # Submission changes the route a cancel takes (order_rules), never its eligibility.
    assert cancel_eligible(status, service_cancel) is eligible
