"""Migrations applied to databases in the states a deployment may have left them in."""

from __future__ import annotations

import shutil
from pathlib import Path

import asyncpg

from boost_ledger import migrations

_ATTEMPTING = """
select c.relname::text as name, pg_get_indexdef(i.indexrelid) as definition
  from pg_index i join pg_class c on c.oid = i.indexrelid
 where i.indrelid = 'public.orders'::regclass
   and pg_get_expr(i.indpred, i.indrelid) like '%attempting%'
"""


async def test_the_attempting_index_moves_to_order_id_whatever_a_rebuild_named_it(
    test_server, tmp_path: Path
) -> None:
    """Migration 0013 replaces the sweeper's index on updated_at by one on order_id, found by its
    predicate: a projection rebuild before it (which let ``like`` name the copies' indexes) left
    it under another name. Afterwards only the new index is there, under the migration's name,
    and ``orders`` has its fillfactor."""
    earlier = tmp_path / "sql"
    earlier.mkdir()
    for migration in sorted(migrations.sql_directory().glob("*.sql")):
        if migration.name < "0013":
            shutil.copy(migration, earlier / migration.name)
    dsn = await test_server.fresh_database(migrated=False)
    await migrations.migrate(dsn, earlier)
    connection = await asyncpg.connect(dsn)
    try:
        # What a rebuild of orders did to the index's name before 0013.
        await connection.execute(
            "alter index orders_attempting_idx rename to orders_updated_at_idx"
        )
        assert [row["name"] for row in await connection.fetch(_ATTEMPTING)] == [
            "orders_updated_at_idx"
        ]

        assert "0013_orders_hot_updates" in await migrations.migrate(dsn)

        rows = await connection.fetch(_ATTEMPTING)
        assert [row["name"] for row in rows] == ["orders_attempting_idx"]
        assert "btree (order_id) WHERE" in rows[0]["definition"]
        options = await connection.fetchval(
            "select reloptions from pg_class where oid = 'public.orders'::regclass"
        )
        assert options == ["fillfactor=70"]
    finally:
        await connection.close()
