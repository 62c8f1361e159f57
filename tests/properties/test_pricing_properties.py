"""Properties of the money arithmetic (DESIGN.md §5), checked against exact Fraction arithmetic."""

import math
from decimal import Decimal
from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from boost_ledger.ledger.money import (
    charge_kobo,
    format_kobo,
    ngn_rate_per_1000_kobo,
    parse_naira,
    partial_refund_kobo,
)
from boost_ledger.ledger.order_types import ServiceLimits, is_flat, parse_order_fields

provider_rates = st.decimals(min_value=0, max_value=10_000, places=5)
fx_rates = st.decimals(min_value=0, max_value=5_000, places=4)
markups_percent = st.decimals(min_value=0, max_value=1_000, places=2)
rates_kobo = st.integers(min_value=0, max_value=10**12)
quantities = st.integers(min_value=1, max_value=10**9)
charges_kobo = st.integers(min_value=0, max_value=10**15)
kobo_amounts = st.integers(min_value=-(10**18) + 1, max_value=10**18 - 1)


def _half_up(value: Fraction) -> int:
    """Round a non-negative Fraction half up, independently of the decimal module."""
    assert value >= 0
    return math.floor(value + Fraction(1, 2))


@given(provider_rates, fx_rates, markups_percent)
def test_rate_is_half_up_of_the_exact_price(
    provider_rate: Decimal, fx_rate: Decimal, markup_percent: Decimal
) -> None:
    """The kobo rate is an int equal to the exact rational price in kobo rounded half up."""
    rate = ngn_rate_per_1000_kobo(provider_rate, fx_rate, markup_percent)
    exact_naira = Fraction(provider_rate) * Fraction(fx_rate) * (1 + Fraction(markup_percent) / 100)
    assert type(rate) is int
    assert rate == _half_up(exact_naira * 100)
    assert abs(Fraction(rate) - exact_naira * 100) <= Fraction(1, 2)


@given(rates_kobo, quantities)
def test_charge_is_the_smallest_kobo_amount_covering_the_exact_price(
    rate_per_1000_kobo: int, billable_quantity: int
) -> None:
    """The charge is an int at least the exact price, and one kobo less would fall short."""
    charge = charge_kobo(rate_per_1000_kobo, billable_quantity, flat=False)
    exact_price = Fraction(rate_per_1000_kobo * billable_quantity, 1000)
    assert type(charge) is int
    assert charge >= exact_price
    assert charge - 1 < exact_price


@given(rates_kobo, quantities)
def test_flat_charge_is_the_rate_whatever_the_quantity(
    rate_per_1000_kobo: int, billable_quantity: int
) -> None:
    """A flat (Package) charge is the rate once, independent of the billable quantity."""
    assert charge_kobo(rate_per_1000_kobo, billable_quantity, flat=True) == rate_per_1000_kobo


@given(charges_kobo, st.integers(min_value=-(10**9), max_value=2 * 10**9), quantities)
def test_partial_refund_never_exceeds_the_charge_and_rounds_down(
    charge: int, remains: int, billable_quantity: int
) -> None:
    """A partial refund is an int in [0, charge], floor of the exact share of clamped remains."""
    refund = partial_refund_kobo(charge, remains, billable_quantity)
    clamped = min(max(remains, 0), billable_quantity)
    assert type(refund) is int
    assert 0 <= refund <= charge
    assert refund == math.floor(Fraction(charge * clamped, billable_quantity))


@given(charges_kobo, quantities, st.data())
def test_partial_refund_is_monotone_in_remains(
    charge: int, billable_quantity: int, data: st.DataObject
) -> None:
    """More units left undelivered never means a smaller refund."""
    low = data.draw(st.integers(min_value=-10, max_value=billable_quantity + 10))
    high = data.draw(st.integers(min_value=low, max_value=billable_quantity + 10))
    assert partial_refund_kobo(charge, low, billable_quantity) <= partial_refund_kobo(
        charge, high, billable_quantity
    )


@given(charges_kobo, quantities, st.integers(min_value=1, max_value=10**12))
def test_remains_outside_the_quantity_are_clamped(
    charge: int, billable_quantity: int, excess: int
) -> None:
    """Negative remains refund nothing; remains above the quantity refund the whole charge."""
    assert partial_refund_kobo(charge, -excess, billable_quantity) == 0
    assert partial_refund_kobo(charge, billable_quantity + excess, billable_quantity) == charge
    assert partial_refund_kobo(charge, billable_quantity, billable_quantity) == charge


@given(kobo_amounts)
def test_format_then_parse_round_trips(kobo: int) -> None:
    """Formatting kobo and parsing the text back gives the same int."""
    text = format_kobo(kobo)
    parsed = parse_naira(text)
    assert type(parsed) is int
    assert parsed == kobo


fraction_texts = st.one_of(
    st.just(""), st.text("0123456789", min_size=1, max_size=2).map(lambda digits: "." + digits)
)


@given(st.booleans(), st.integers(min_value=0, max_value=10**16 - 1), fraction_texts)
def test_parse_matches_the_exact_value_of_the_text(
    negative: bool, naira: int, fraction_text: str
) -> None:
    """Parsing plain decimal text gives exactly its value in kobo, and formats canonically."""
    text = ("-" if negative else "") + str(naira) + fraction_text
    kobo = parse_naira(text)
    assert type(kobo) is int
    assert Fraction(kobo, 100) == Fraction(text)
    assert parse_naira(format_kobo(kobo)) == kobo


@given(
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=50),
    rates_kobo,
)
def test_default_drip_feed_price_covers_quantity_times_runs(
    quantity: int, runs: int, rate_per_1000_kobo: int
) -> None:
    """A valid Default order bills quantity x runs, and its charge covers that many units."""
    limits = ServiceLimits(type="Default", min=1, max=10**6)
    body = {"link": "https://example.com/p", "quantity": quantity, "runs": runs, "interval": 5}
    if runs == 1:
        body = {"link": "https://example.com/p", "quantity": quantity}
    request = parse_order_fields(limits, body, subscription_default_posts=1)
    assert request.billable_quantity == quantity * runs
    charge = charge_kobo(rate_per_1000_kobo, request.billable_quantity, flat=is_flat("Default"))
    assert charge * 1000 >= rate_per_1000_kobo * quantity * runs
