"""What an observed status owes back (DESIGN.md §5 and §6), checked against an oracle written out
here independently of ``statuses`` and ``order_rules``: the upstream vocabulary as a table, the
share in exact Fraction arithmetic, and a subscription's unit (its posts) from how it is billed."""

from __future__ import annotations

import math
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from boost_ledger.ledger.order_rules import OrderState, decide_observation
from boost_ledger.ledger.order_types import SERVICE_TYPES

# The upstream strings and what each owes back: the whole charge, the share of what is left
# ("share": Partial, only with remains; "unused": an Expired subscription), or nothing.
_OWES = {
    "Pending": "nothing", "Processing": "nothing", "In progress": "nothing",
    "Active": "nothing", "Paused": "nothing", "Completed": "nothing",
    "Partial": "share", "Expired": "unused",
    "Canceled": "all", "Cancelled": "all", "Refunded": "all",
    "Fail": "all", "Failed": "all", "Error": "all",
    "Something new": "nothing",  # an unknown string changes nothing
}
# Half of them the statuses that owe a share, whose arithmetic depends on the units.
STATUSES = st.one_of(st.sampled_from(["Partial", "Expired"]), st.sampled_from(sorted(_OWES)))


@st.composite
def unsettled_orders(draw: st.DrawFn) -> tuple[OrderState, int]:
    """An order not yet settled, and the units its provider's ``remains`` counts: for a
    subscription its posts (it is billed ``max`` units for each post, ``quantity`` being
    ``max``), for any other type its billed quantity (``quantity`` times the drip feed's runs)."""
    # Half of them subscriptions: the one type whose remains counts something else.
    service_type = draw(st.one_of(st.just("Subscriptions"), st.sampled_from(SERVICE_TYPES)))
    quantity = draw(st.integers(1, 10_000))
    repeats = draw(st.integers(1, 50))  # a subscription's posts, or a drip feed's runs
    units = repeats if service_type == "Subscriptions" else quantity * repeats
    order = OrderState(
        order_id=1, account_id=1001,
        status=draw(st.sampled_from(["pending", "processing", "in_progress", "canceling"])),
        submission="submitted", provider_order_id="p-1", upstream_status=None,
        start_count=None, remains=None,
        price_kobo=draw(st.integers(1, 10**12)), type=service_type, quantity=quantity,
        billable_quantity=quantity * repeats, refunded=False,
        cancel_supported=True, version=3,
    )
    return order, units


@given(unsettled_orders(), STATUSES, st.one_of(st.none(), st.integers(-100, 10**6)))
def test_a_status_refunds_exactly_what_it_owes(
    drawn: tuple[OrderState, int], upstream_status: str, remains: int | None
) -> None:
    """An unsettled order told Canceled, Refunded or Fail is owed its whole charge; told Partial
    with remains, or Expired, floor(charge * remains / units) with remains clamped to 0..units,
    where units are what remains counts (a subscription's posts, else the billed quantity);
    told anything else, nothing. A Partial without remains is not recorded at all."""
    order, units = drawn
    observation = decide_observation(order, upstream_status, None, remains)
    owes = _OWES[upstream_status]
    left = min(max(remains or 0, 0), units)
    expected = {
        "nothing": 0,
        "all": order.price_kobo,
        "share": math.floor(Fraction(order.price_kobo * left, units)),
        "unused": math.floor(Fraction(order.price_kobo * left, units)),
    }[owes]
    if owes == "share" and remains is None:
        assert observation.event is None and observation.refund_kobo == 0, observation
        return
    assert observation.refund_kobo == expected, (order, upstream_status, remains, units)
    assert 0 <= observation.refund_kobo <= order.price_kobo


@given(unsettled_orders(), STATUSES, st.integers(-100, 10**6),
       st.sampled_from(["completed", "partial", "canceled", "failed"]), st.booleans())
def test_a_settled_order_is_owed_nothing_more(
    drawn: tuple[OrderState, int], upstream_status: str, remains: int, settled: str,
    refunded: bool,
) -> None:
    """Once an order has settled, no status (a late one, a repeated one, one that contradicts
    it) records anything or pays anything."""
    order = OrderState(**{**{name: getattr(drawn[0], name) for name in
                             OrderState.__struct_fields__}, "status": settled,
                          "refunded": refunded})
    observation = decide_observation(order, upstream_status, None, remains)
    assert observation.event is None and observation.refund_kobo == 0, observation


@given(maximum=st.integers(2, 10_000), posts=st.integers(1, 100), data=st.data(),
       upstream_status=st.sampled_from(["Partial", "Expired"]),
       price_kobo=st.integers(1, 10**12))
def test_a_subscription_is_refunded_its_share_of_posts_left(
    maximum: int, posts: int, data: st.DataObject, upstream_status: str, price_kobo: int
) -> None:
    """A subscription is billed ``max`` units for each of its posts and its ``remains``
    counts posts: ended Partial, or Expired, with r of its p posts left, it is refunded
    floor(charge * r / p), all of it when every post is left, and nothing when none is."""
    remains = data.draw(st.integers(0, posts), label="posts left")
    order = OrderState(
        order_id=1, account_id=1001, status="in_progress", submission="submitted",
        provider_order_id="p-1", upstream_status="Active", start_count=None, remains=None,
        price_kobo=price_kobo, type="Subscriptions", quantity=maximum,
        billable_quantity=maximum * posts, refunded=False, cancel_supported=False, version=3,
    )
    observation = decide_observation(order, upstream_status, None, remains)
    assert observation.refund_kobo == price_kobo * remains // posts, (maximum, posts, remains)
