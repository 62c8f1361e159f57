"""Hypothesis profiles for the property tests.

- ``ci`` (loaded unless ``--hypothesis-profile`` names another): no deadline (the stateful test
  talks to PostgreSQL and HTTP servers, whose latency is not the code under test), the too-slow
  health check off, and the failing example's blob printed so that it can be replayed. The pure
  properties keep hypothesis' default budget (100 examples); the ledger state machine
  (test_ledger_state_machine.py) takes its own CI budget of 15 programs of up to 25 steps, about
  20 s on two cores (tests/properties as a whole about 35 s).
- ``deep`` (``--hypothesis-profile=deep``): 300 examples of every property and 300 programs of
  up to 50 steps of the state machine (about an hour), for long runs before a release or after
  touching the ledger::

      .venv/bin/pytest tests/properties --hypothesis-profile=deep   # or the whole suite

The profiles are registered by tests/conftest.py, so ``pytest --hypothesis-profile=deep`` works
from the repository root too.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

_COMMON = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
    "print_blob": True,
}

settings.register_profile("ci", **_COMMON)
settings.register_profile("deep", max_examples=300, stateful_step_count=50, **_COMMON)

# The hypothesis plugin loads a profile named with --hypothesis-profile after importing this file;
# load ``ci`` only when no other profile is in force, so as never to override a chosen one.
if settings.get_current_profile_name() == "default":
    settings.load_profile("ci")
