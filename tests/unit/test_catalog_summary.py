"""``boost catalog sync``'s one-line summary: what it names and where it stops naming."""

from __future__ import annotations

from boost_ledger.cli.catalog import _summary
from boost_ledger.ledger.catalog import SyncReport


def test_the_summary_names_the_services_pinned_below_cost():
    """The services a pin sells at a loss are named after the counts; none, nothing said."""
    report = SyncReport(19, 1, 0, [], 0, ["17", "3"])
    assert _summary(report) == (
        "19 services listed, 1 changed, 0 delisted; pinned below the provider's cost: 17, 3"
    )
    assert "pinned" not in _summary(SyncReport(19, 0, 0, [], 0))


def test_the_summary_names_twenty_ids_at_most_and_counts_the_rest():
    """A reply may skip thousands: twenty ids are named, the rest counted, for either list."""
    ids = [str(number) for number in range(25)]
    text = _summary(SyncReport(0, 0, 0, ids, 0, ids))
    assert text.count(", ".join(ids[:20]) + " and 5 more") == 2
