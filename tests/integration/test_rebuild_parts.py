"""A projection filled by several processes at once (``rebuild.fill_part``): each part folds the
events of its own rows, and together they rebuild exactly what one pass does."""

from __future__ import annotations

from collections import Counter

import pytest
from support import open_funded_account, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.ledger import checkout, store
from boost_ledger.ledger.connection import Lent
from boost_ledger.projections import rebuild
from boost_ledger.projections.replay import compare_with_replay


async def test_parts_fill_a_projection_that_then_equals_a_replay(pool, dsn):
    """Orders and wallets rebuilt from three disjoint parts (filled one after the other, as
    three processes would at once) hold every event's effect once: the rebuilt tables equal a
    replay, and each projection counts every event it folds exactly once."""
    await seed_catalog(pool)
    accounts = [(await open_funded_account(pool, 50_000_00))[0] for _ in range(3)]
    async with pool.acquire() as connection:
        for index in range(12):
            body = {"service_id": "1", "link": "https://instagram.com/p/x",
                    "quantity": 100 + index, "idempotency_key": f"p{index}"}
            answer = await checkout.checkout(
                Lent(connection), account_id=accounts[index % 3], idempotency_key=f"p{index}",
                service_id="1", body=body, subscription_default_posts=10,
                metadata={"actor": "test"},
            )
            assert answer.status_code == 201
    owner = await postgres.owner_connection(dsn)
    try:
        # An operator's storage parameters, which the swapped-in table must keep.
        await owner.execute(
            "alter table wallets set (autovacuum_enabled = false,"
            " autovacuum_vacuum_scale_factor = 0.05)"
        )
        names_before = {table: await _index_names(owner, table) for table in ("orders", "wallets")}
        for module in (projections.by_name("orders"), projections.by_name("wallets")):
            field = rebuild.partition_field(module)

            async def fill(up_to: int, module=module, field=field) -> Counter[str]:
                folded = Counter[str]()
                for index in range(3):
                    part = store.Part(field=field, count=3, index=index)
                    folded.update(await rebuild.fill_part(owner, None, module, up_to, part))
                return folded

            (report,) = await rebuild.rebuild_all(owner, [module], fill=fill)
            expected = await owner.fetchval(
                "select count(*) from events where type = any($1::text[])",
                list(module.EVENT_TYPES),
            )
            assert report.events_applied == expected, (module.NAME, report)
        assert await compare_with_replay(owner, list(projections.PROJECTIONS)) == []
        # The swapped-in tables keep the live ones' storage parameters and index names (``like``
        # drops the first and names indexes itself), and autovacuum as it was.
        options = {
            row["relname"]: sorted(row["reloptions"] or [])
            for row in await owner.fetch(
                "select relname, reloptions from pg_class"
                " where oid in ('public.orders'::regclass, 'public.wallets'::regclass)"
            )
        }
        assert options == {
            "orders": ["fillfactor=70"],
            "wallets": ["autovacuum_enabled=false", "autovacuum_vacuum_scale_factor=0.05"],
        }
        names_after = {table: await _index_names(owner, table) for table in ("orders", "wallets")}
        assert names_after == names_before
        assert "orders_attempting_idx" in names_after["orders"]
    finally:
        await owner.close()


async def _index_names(connection, table: str) -> list[str]:
    rows = await connection.fetch(
        "select indexrelid::regclass::text as name from pg_index"
        " where indrelid = $1::regclass order by 1",
        f"public.{table}",
    )
    return [row["name"] for row in rows]


async def test_a_second_rebuild_of_a_projection_is_refused_while_the_first_runs(pool, dsn):
    """Two rebuilds of one projection would share its copies: the second, started while the
    first fills them, is refused and changes nothing; the first then swaps in a whole table,
    and once it is done the projection can be rebuilt again."""
    await seed_catalog(pool)
    for _ in range(3):
        await open_funded_account(pool, 10_000_00)
    wallets = projections.by_name("wallets")
    live = await pool.fetchval("select count(*) from wallets")
    first, second = await postgres.owner_connection(dsn), await postgres.owner_connection(dsn)
    try:
        refusals: list[str] = []

        async def fill_with_a_rival(up_to: int) -> Counter[str]:
            part = store.Part(field=rebuild.partition_field(wallets), count=1, index=0)
            folded = await rebuild.fill_part(first, None, wallets, up_to, part)
            try:
                await rebuild.rebuild(second, wallets)
            except rebuild.RebuildRunning as running:
                refusals.append(running.name)
            return folded

        (report,) = await rebuild.rebuild_all(first, [wallets], fill=fill_with_a_rival)

        assert refusals == ["wallets"]
        assert report.events_applied > 0
        assert await pool.fetchval("select count(*) from wallets") == live >= 3
        assert await compare_with_replay(first, [wallets]) == []
        (again,) = await rebuild.rebuild_all(second, [wallets])
        assert again.events_applied == report.events_applied
    finally:
        await first.close()
        await second.close()


async def test_a_rebuild_that_cannot_swap_one_projection_reports_the_others(
    pool, dsn, monkeypatch
):
    """A long reader holds wallets through every swap attempt: accounts is swapped in and
    reported, wallets is named as left as it was, its table untouched."""
    await open_funded_account(pool, 10_000)
    monkeypatch.setattr(rebuild, "MAX_SWAP_ATTEMPTS", 2)
    accounts, wallets = projections.by_name("accounts"), projections.by_name("wallets")
    reader = await postgres.owner_connection(dsn)
    connection = await postgres.owner_connection(dsn)
    try:
        async with reader.transaction():
            await reader.execute("lock table wallets in access share mode")
            before = await reader.fetch("select * from wallets order by 1")
            with pytest.raises(rebuild.SwapNotLocked) as refused:
                await rebuild.rebuild_all(connection, [accounts, wallets])
            assert refused.value.pending == ["wallets"]
            assert [report.name for report in refused.value.reports] == ["accounts"]
            assert "could not lock wallets" in str(refused.value)
        assert await pool.fetch("select * from wallets order by 1") == before
    finally:
        await connection.close()
        await reader.close()


async def test_a_log_that_outgrows_every_catch_up_round_ends_the_rebuild(pool, dsn, monkeypatch):
    """A writer appends events between every two catch-up rounds, more than the small tail
    each time: after MAX_CATCH_UP_ROUNDS the rebuild ends with LogOutpaced, naming the
    projection, instead of chasing the head for as long as the writer keeps up; the live
    table is not swapped (it still equals a replay), its copies are dropped and its lock is
    released (a second rebuild goes on)."""
    await open_funded_account(pool, 10_000)
    monkeypatch.setattr(rebuild, "SMALL_TAIL", 0)
    monkeypatch.setattr(rebuild, "MAX_CATCH_UP_ROUNDS", 3)
    real_stable_head, heads = rebuild.stable_head, []

    async def head_after_a_write(connection):
        await open_funded_account(pool, 100)
        heads.append(await real_stable_head(connection))
        return heads[-1]

    monkeypatch.setattr(rebuild, "stable_head", head_after_a_write)
    wallets = projections.by_name("wallets")
    live = "select 'public.wallets'::regclass::oid"
    before = await pool.fetchval(live)
    connection = await postgres.owner_connection(dsn)
    try:
        with pytest.raises(rebuild.LogOutpaced) as outpaced:
            await rebuild.rebuild_all(connection, [wallets])
        assert outpaced.value.pending == ["wallets"]
        assert "3 catch-up rounds" in str(outpaced.value)
        assert len(heads) == 3 and heads == sorted(set(heads))
        assert await pool.fetchval(live) == before  # not swapped
        assert await compare_with_replay(connection, [wallets]) == []
        assert not await connection.fetchval(
            "select exists (select from pg_namespace where nspname = 'rebuild_wallets')"
        )
        monkeypatch.setattr(rebuild, "stable_head", real_stable_head)
        (report,) = await rebuild.rebuild_all(connection, [wallets])
        assert report.name == "wallets"
    finally:
        await connection.close()
