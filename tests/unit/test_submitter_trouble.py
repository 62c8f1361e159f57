"""When a batch's outcomes stop the submitter (``submitter.in_trouble``): pure, no I/O."""

from __future__ import annotations

import pytest

from boost_ledger.workers.submitter import in_trouble

SENT, UNKNOWN, DEFERRED, REFUSED = "provider_order_id", "unknown", "deferred", "refused"


@pytest.mark.parametrize(
    ("batch", "trouble"),
    [
        ([], False),
        ([SENT] * 20, False),
        ([REFUSED] * 20, False),  # the provider answered: it is up
        ([SENT] * 19 + [DEFERRED], False),  # one order not reached: re-queued, no pause
        ([SENT] * 19 + [UNKNOWN], False),
        ([SENT] * 10 + [UNKNOWN] * 5 + [DEFERRED] * 5, True),
        ([UNKNOWN] * 20, True),
        ([DEFERRED], True),  # a lone order not reached: the provider cannot be reached
        ([UNKNOWN], True),
    ],
)
def test_half_a_batch_or_more_unknown_or_not_reached_is_trouble(
    batch: list[str], trouble: bool
) -> None:
    assert in_trouble(batch) is trouble
