"""The metrics the server exports are the ones its docs list."""

from __future__ import annotations

from pathlib import Path

from boost_ledger.api.metrics import REGISTRY

ROOT = Path(__file__).resolve().parents[2]


def _exported_names() -> set[str]:
    """Our own metric names as a scrape shows them (a counter with its ``_total``)."""
    names = set()
    for family in REGISTRY.collect():
        if family.name.startswith("boost_"):
            names.add(f"{family.name}_total" if family.type == "counter" else family.name)
    return names


def test_the_readme_and_the_runbook_name_every_metric():
    """Every ``boost_*`` metric of the registry is named in the README's /metrics row and in
    the runbook's section 8 (the README's list once lacked the checkpoint age and the scrape's
    query errors)."""
    names = _exported_names()
    assert "boost_metrics_query_errors_total" in names
    for document in ("README.md", "docs/runbook.md"):
        text = (ROOT / document).read_text()
        missing = sorted(name for name in names if f"`{name}" not in text)
        assert not missing, (document, missing)
