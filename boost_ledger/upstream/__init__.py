"""The upstream provider: an SMM Panel API v2 client and a simulator of such a provider."""

from boost_ledger.upstream.client import MAX_IDS_PER_CALL, ProviderClient
from boost_ledger.upstream.errors import (
    ProviderError,
    ProviderMalformed,
    ProviderRefused,
    ProviderUnavailable,
)
from boost_ledger.upstream.models import ProviderBalance, ProviderService, ProviderStatus
from boost_ledger.upstream.simulator import create_simulator_app, simulator_lifespan

__all__ = [
    "MAX_IDS_PER_CALL",
    "ProviderBalance",
    "ProviderClient",
    "ProviderError",
    "ProviderMalformed",
    "ProviderRefused",
    "ProviderService",
    "ProviderStatus",
    "ProviderUnavailable",
    "create_simulator_app",
    "simulator_lifespan",
]
