"""What the client hands back: provider replies parsed into exact, frozen values."""

from decimal import Decimal

import msgspec


class ProviderService(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of the provider's catalog; ``rate`` is per 1000 units, in the provider's money."""

    service: str
    name: str
    type: str
    category: str
    rate: Decimal
    min: int
    max: int
    refill: bool
    cancel: bool
    dripfeed: bool = False
    desc: str = ""


class ProviderStatus(msgspec.Struct, frozen=True, kw_only=True):
    """An order's state as the provider reports it (``Cancelled`` is spelled ``Canceled``)."""

    status: str
    charge: Decimal | None = None
    start_count: int | None = None
    remains: int | None = None
    remains_unreadable: bool = False
    """``remains`` was sent but is no number we can read ("1,250", "-", "12.5"): unknown, which
    is not the same as absent (an Expired without remains owes nothing)."""
    currency: str | None = None


class ProviderBalance(msgspec.Struct, frozen=True, kw_only=True):
    """The reseller's funds at the provider."""

    balance: Decimal
    currency: str
