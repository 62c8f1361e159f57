"""Unit tests of boost_ledger.ledger.money: parsing, formatting, rates, charges and refunds."""

from decimal import Decimal

import pytest

from boost_ledger.ledger.money import (
    charge_kobo,
    format_kobo,
    ngn_rate_per_1000_kobo,
    parse_naira,
    partial_refund_kobo,
)


@pytest.mark.parametrize(
    ("text", "kobo"),
    [
        ("2500", 250_000),
        ("2500.5", 250_050),
        ("2500.00", 250_000),
        ("0.01", 1),
        ("0", 0),
        ("-0.50", -50),
        ("-0", 0),
        ("007.10", 710),
        ("9999999999999999.99", 999_999_999_999_999_999),
    ],
)
def test_parse_naira_accepts_plain_decimals(text: str, kobo: int) -> None:
    """Digits with up to two decimals and an optional leading '-' parse to exact kobo."""
    assert parse_naira(text) == kobo
    assert type(parse_naira(text)) is int


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",
        "2500.001",
        "1e3",
        "1E3",
        "+5",
        "--5",
        " 5",
        "5 ",
        "5\n",
        "NaN",
        "Infinity",
        "-Infinity",
        "5.",
        ".5",
        "1,000",
        "١٢",  # Arabic-Indic digits are digits to Python, not to us
        "10000000000000000",  # 17 digits of naira would overflow a bigint of kobo
    ],
)
def test_parse_naira_refuses_malformed_text(text: str) -> None:
    """Anything but plain ASCII digits with at most two decimals raises ValueError."""
    with pytest.raises(ValueError, match="Invalid naira amount"):
        parse_naira(text)


@pytest.mark.parametrize(
    ("kobo", "text"),
    [(150_000, "1500.00"), (-50, "-0.50"), (0, "0.00"), (1, "0.01"), (-123_456, "-1234.56")],
)
def test_format_kobo_writes_two_decimals(kobo: int, text: str) -> None:
    """Kobo format as naira with exactly two decimals and a leading '-' when negative."""
    assert format_kobo(kobo) == text


@pytest.mark.parametrize(
    ("provider_rate", "fx_rate", "markup_percent", "kobo"),
    [
        ("0.90", "1500", "20", 162_000),  # 0.9 * 1500 * 1.2 = 1620.00 NGN
        ("0.005", "1", "0", 1),  # 0.5 kobo rounds half up, not to even
        ("0.025", "1", "0", 3),  # 2.5 kobo -> 3 (banker's rounding would give 2)
        ("0.00001", "1", "0", 0),  # 0.001 kobo -> 0
        ("0.00004", "1550.25", "12.5", 7),  # 0.00004 * 1550.25 * 112.5 = 6.976125 kobo
        ("0", "1500", "30", 0),
    ],
)
def test_ngn_rate_per_1000_rounds_half_up_to_the_kobo(
    provider_rate: str, fx_rate: str, markup_percent: str, kobo: int
) -> None:
    """The rate is provider rate * FX * (1 + markup/100) in kobo, rounded half up."""
    rate = ngn_rate_per_1000_kobo(Decimal(provider_rate), Decimal(fx_rate), Decimal(markup_percent))
    assert rate == kobo
    assert type(rate) is int


@pytest.mark.parametrize(
    ("provider_rate", "fx_rate", "markup_percent"),
    [
        ("-0.01", "1500", "0"),
        ("1", "-1", "0"),
        ("1", "1500", "-5"),
        ("NaN", "1", "0"),
        ("1", "Infinity", "0"),
        ("1", "1", "sNaN"),
    ],
)
def test_ngn_rate_refuses_negative_or_non_finite_inputs(
    provider_rate: str, fx_rate: str, markup_percent: str
) -> None:
    """Negative, NaN and infinite inputs raise ValueError rather than a price."""
    with pytest.raises(ValueError, match="must"):
        ngn_rate_per_1000_kobo(Decimal(provider_rate), Decimal(fx_rate), Decimal(markup_percent))


def test_ngn_rate_refuses_a_product_it_cannot_compute_exactly() -> None:
    """A product needing more than the exact context's digits raises instead of rounding."""
    long_rate = Decimal("1." + "1" * 70)
    with pytest.raises(ValueError, match="exactly"):
        ngn_rate_per_1000_kobo(long_rate, Decimal("1"), Decimal("0"))


@pytest.mark.parametrize(
    ("rate_kobo", "quantity", "flat", "charge"),
    [
        (150_000, 1000, False, 150_000),
        (150_000, 100, False, 15_000),
        (1234, 1, False, 2),  # 1.234 kobo rounds up
        (1000, 3, False, 3),  # exact: no rounding up
        (1001, 1000, False, 1001),
        (0, 5000, False, 0),
        (750_000, 1, True, 750_000),  # Package: the rate once
    ],
)
def test_charge_rounds_up_to_the_kobo(
    rate_kobo: int, quantity: int, flat: bool, charge: int
) -> None:
    """Charge is ceil(rate * quantity / 1000), or the rate itself for a flat (Package) service."""
    assert charge_kobo(rate_kobo, quantity, flat=flat) == charge


@pytest.mark.parametrize(
    ("charge", "remains", "quantity", "refund"),
    [
        (1000, 157, 1000, 157),
        (100, 1, 3, 33),  # 33.33 rounds down
        (100, 2, 3, 66),
        (1000, 0, 1000, 0),
        (1000, -5, 1000, 0),  # over-delivery owes nothing back
        (1000, 2000, 1000, 1000),  # remains above the quantity is capped
        (1000, 1000, 1000, 1000),
    ],
)
def test_partial_refund_rounds_down_and_clamps(
    charge: int, remains: int, quantity: int, refund: int
) -> None:
    """Partial refund is floor(charge * clamp(remains) / quantity), between 0 and the charge."""
    assert partial_refund_kobo(charge, remains, quantity) == refund
