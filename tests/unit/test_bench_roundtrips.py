"""The round-trip count of the bench: units cut from PostgreSQL's statement log, classified."""

from __future__ import annotations

from bench.roundtrips import classify

_AT = "2026-12-02 08:00:00.001 UTC"
_LOG = "\n".join(
    [
        f"{_AT} [101] LOG:  execute <unnamed>: select outcome, status_code, response"
        " from checkout_place($1, $2, $3, $4, $5, $6, $7)",
        f"{_AT} [202] LOG:  statement: BEGIN;",
        f"{_AT} [202] LOG:  execute <unnamed>: insert into events (event_id, stream_id)",
        "\tselect * from unnest($1::uuid[])",
        f"{_AT} [202] LOG:  statement: COMMIT;",
        f"{_AT} [101] LOG:  execute <unnamed>: select item from checkout_place_batch($1, $2)",
        f"{_AT} [101] LOG:  execute <unnamed>: select key_hash from api_keys where key_hash = $1",
    ]
)


def test_a_checkout_is_one_call_of_the_checkout_function() -> None:
    counted = classify(_LOG, served=2)
    assert counted["checkouts"] == 2
    assert counted["checkout_transaction_statements"] == 1.0
    assert counted["auth_statements"] == 0.5
    assert counted["round_trips_per_checkout"] == 1.5
    # The workers' transaction: BEGIN, the insert (its continuation line joined), COMMIT.
    assert counted["background_statements_per_checkout"] == 1.5
    assert counted["background_units_per_checkout"] == 0.5
    listed = {row["sql"] for row in counted["checkout_statement_list"]}
    assert any("checkout_place_batch(" in sql for sql in listed)
