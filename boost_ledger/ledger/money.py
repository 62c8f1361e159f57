"""Money arithmetic in integer kobo (1/100 NGN), per DESIGN.md §5.

Every amount inside the ledger is an `int` of kobo whose name ends in `_kobo`; the wire carries
strings with exactly two decimals. Provider rates pass through `Decimal` exactly once, in
`ngn_rate_per_1000_kobo`, and floats never appear. Charges round up to the kobo (we never
undercharge), refunds round down (we never refund more than was charged).
"""

import decimal
import re
from decimal import Decimal

# 16 digits of naira (just under 10**18 kobo) keep every amount inside a Postgres bigint.
_NAIRA_PATTERN = re.compile(r"(-?)([0-9]{1,16})(?:\.([0-9]{1,2}))?")
_KOBO_PER_NAIRA = 100
_UNITS_PER_RATE = 1000
# Enough digits for a product of three provider-sized decimals; a product that would still need
# rounding raises instead of silently losing a digit.
_EXACT_PRECISION = 60
_ECHO_CHARS = 40


def parse_naira(text: str) -> int:
    """Return the kobo in a naira amount such as "2500", "2500.5" or "-0.50".

    Refuses (ValueError) anything but an optional leading '-', 1 to 16 ASCII digits, and an
    optional '.' followed by one or two digits: no whitespace, '+', exponent, NaN or Infinity.
    Zero and negative amounts parse; whether they are allowed is the caller's decision.
    """
    match = _NAIRA_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"Invalid naira amount {text[:_ECHO_CHARS]!r}: expected digits with at most two "
            "decimals, e.g. '2500.00'."
        )
    sign, naira_digits, kobo_digits = match.groups()
    kobo = int(naira_digits) * _KOBO_PER_NAIRA + int((kobo_digits or "0").ljust(2, "0"))
    return -kobo if sign == "-" else kobo


def format_kobo(kobo: int) -> str:
    """Return kobo as naira with exactly two decimals: 150000 -> "1500.00", -50 -> "-0.50"."""
    assert type(kobo) is int, f"kobo must be an int, got {type(kobo).__name__}"
    naira, remainder_kobo = divmod(abs(kobo), _KOBO_PER_NAIRA)
    sign = "-" if kobo < 0 else ""
    return f"{sign}{naira}.{remainder_kobo:02d}"


def ngn_rate_per_1000_kobo(
    provider_rate: Decimal, fx_rate: Decimal, markup_percent: Decimal
) -> int:
    """Return the NGN price of 1000 units in kobo, rounded half-up to the kobo.

    naira = provider_rate * fx_rate * (1 + markup_percent / 100), so
    kobo  = provider_rate * fx_rate * (100 + markup_percent), computed exactly in Decimal.
    Negative, NaN or infinite inputs raise ValueError, as does a product too long to be exact.
    """
    inputs = {"provider_rate": provider_rate, "fx_rate": fx_rate, "markup_percent": markup_percent}
    for name, value in inputs.items():
        assert isinstance(value, Decimal), f"{name} must be a Decimal, got {type(value).__name__}"
        if not value.is_finite():
            raise ValueError(f"{name} must be a finite number, got {value}.")
        if value < 0:
            raise ValueError(f"{name} must not be negative, got {value}.")
    context = decimal.Context(
        prec=_EXACT_PRECISION,
        rounding=decimal.ROUND_HALF_UP,
        traps=[decimal.Inexact, decimal.InvalidOperation, decimal.Overflow, decimal.Underflow],
    )
    try:
        with decimal.localcontext(context):
            exact_kobo = provider_rate * fx_rate * (Decimal(_KOBO_PER_NAIRA) + markup_percent)
            # to_integral_value rounds without signalling Inexact: the one intended rounding.
            rate_kobo = int(exact_kobo.to_integral_value(rounding=decimal.ROUND_HALF_UP))
    except decimal.DecimalException as error:
        raise ValueError(
            f"Rate {provider_rate} * {fx_rate} * (100 + {markup_percent}) cannot be computed "
            f"exactly: {type(error).__name__}."
        ) from error
    assert rate_kobo >= 0
    return rate_kobo


def charge_kobo(rate_per_1000_kobo: int, billable_quantity: int, *, flat: bool) -> int:
    """Return the charge: ceil(rate * quantity / 1000) kobo, or the rate once when flat."""
    assert type(rate_per_1000_kobo) is int and rate_per_1000_kobo >= 0, rate_per_1000_kobo
    assert type(billable_quantity) is int and billable_quantity >= 1, billable_quantity
    if flat:
        return rate_per_1000_kobo
    # Ceiling division in integers: -(-a // b) == ceil(a / b) for b > 0.
    charge = -(-(rate_per_1000_kobo * billable_quantity) // _UNITS_PER_RATE)
    assert charge * _UNITS_PER_RATE >= rate_per_1000_kobo * billable_quantity
    return charge


def partial_refund_kobo(charge_kobo: int, remains: int, billable_quantity: int) -> int:
    """Return floor(charge * remains / quantity), remains clamped to [0, quantity].

    Upstream `remains` can be negative (over-delivery) or exceed the quantity; neither may turn
    into a negative refund or one larger than the charge.
    """
    assert type(charge_kobo) is int and charge_kobo >= 0, charge_kobo
    assert type(remains) is int, remains
    assert type(billable_quantity) is int and billable_quantity >= 1, billable_quantity
    clamped_remains = min(max(remains, 0), billable_quantity)
    refund = charge_kobo * clamped_remains // billable_quantity
    assert 0 <= refund <= charge_kobo
    return refund
