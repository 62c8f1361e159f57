"""The refund a settling status owes, by what the provider's ``remains`` counts."""

from __future__ import annotations

from typing import Any

import pytest

from boost_ledger.ledger.order_rules import OrderState, decide_observation


def _submitted(**facts: Any) -> OrderState:
    base: dict[str, Any] = {
        "order_id": 100000001, "account_id": 1001, "status": "in_progress",
        "submission": "submitted", "provider_order_id": "23501", "upstream_status": "Active",
        "start_count": None, "remains": None, "refunded": False, "cancel_supported": True,
        "version": 3,
    }
    return OrderState(**{**base, **facts})


@pytest.mark.parametrize(("remains", "refund"), [(4, 6_000), (0, 0), (10, 15_000), (25, 15_000)])
def test_a_partial_subscription_refunds_its_unused_posts(remains: int, refund: int) -> None:
    """A subscription of 10 posts at max 100 is billed 1,000 units; the provider's remains
    counts posts, so 4 left of 10 owe back 4/10 of the charge (not 4/1,000 of it)."""
    order = _submitted(
        price_kobo=15_000, type="Subscriptions", quantity=100, billable_quantity=1_000
    )

    observation = decide_observation(order, "Partial", None, remains)

    assert observation.refund_kobo == refund
    assert observation.event is not None and observation.event.status == "partial"


def test_a_partial_order_of_any_other_type_refunds_its_unused_units() -> None:
    """For every other type remains counts the billed units: 350 of 1,000 owe 35%."""
    order = _submitted(price_kobo=15_000, type="Default", quantity=1_000, billable_quantity=1_000)

    assert decide_observation(order, "Partial", None, 350).refund_kobo == 5_250


@pytest.mark.parametrize(("remains", "refund"), [(4, 6_000), (None, 0), (0, 0), (-3, 0)])
def test_an_expired_subscription_refunds_the_posts_it_left_unused(
    remains: int | None, refund: int
) -> None:
    """Expired ends a subscription: the posts left unused are owed back (4 of 10: 4/10 of the
    charge); without remains, or with none left, nothing is, and the order is completed."""
    order = _submitted(
        price_kobo=15_000, type="Subscriptions", quantity=100, billable_quantity=1_000
    )

    observation = decide_observation(order, "Expired", None, remains)

    assert observation.refund_kobo == refund
    assert observation.event is not None and observation.event.status == "completed"


@pytest.mark.parametrize(
    ("upstream_status", "remains", "nothing"),
    [("Active", None, True), ("In progress", None, False), ("Active", 40, False),
     ("Completed", 0, False), ("Canceled", None, False)],
)
def test_only_an_answer_that_repeats_the_known_status_changes_nothing(
    upstream_status: str, remains: int | None, nothing: bool
) -> None:
    """The poller's quiet path takes an answer that neither records nor refunds anything (the
    known status again), whatever reason the observation gives."""
    order = _submitted(price_kobo=15_000, type="Default", quantity=1_000, billable_quantity=1_000)

    assert decide_observation(order, upstream_status, None, remains).changes_nothing is nothing


@pytest.mark.parametrize(
    ("upstream_status", "status", "refund"),
    [("Canceled", "canceled", 15_000), ("Fail", "failed", 15_000), ("Completed", "completed", 0),
     ("In progress", "in_progress", 0), ("Partial", None, 0), ("Expired", None, 0)],
)
def test_an_unreadable_remains_holds_back_only_a_status_whose_refund_depends_on_it(
    upstream_status: str, status: str | None, refund: int
) -> None:
    """A remains the provider sent but we could not read: a status owing the whole charge, or
    nothing, is recorded (without remains) and refunded as it owes; a Partial or an Expired,
    which owe the share left undelivered, is not recorded (an Expired read as without remains
    would owe nothing)."""
    order = _submitted(
        price_kobo=15_000, type="Subscriptions", quantity=100, billable_quantity=1_000
    )

    observation = decide_observation(
        order, upstream_status, None, None, None, remains_unreadable=True
    )

    assert observation.refund_kobo == refund
    if status is None:
        assert observation.changes_nothing
    else:
        assert observation.event is not None and observation.event.status == status
        assert observation.event.remains is None
