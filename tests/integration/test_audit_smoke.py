"""Audit verify and online rebuild on a ledger with real activity."""

from support import bearer, open_funded_account, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.audit import seals, verify
from boost_ledger.projections import rebuild
from boost_ledger.workers import poller, submitter


async def test_verify_rebuild_and_tamper(pool, dsn, client, provider, simulator):
    """A busy ledger verifies; rebuilding every projection keeps it verified; tampering fails."""
    await seed_catalog(pool)
    _, key = await open_funded_account(pool, 50_000_00)
    for index in range(6):
        body = {
            "service_id": "1",
            "link": "https://instagram.com/p/x",
            "quantity": 100 + index,
            "idempotency_key": f"a{index}",
        }
        assert (
            await client.post("/api/v1/boost/orders", json=body, headers=bearer(key))
        ).status_code == 201
    await submitter.drain(pool, provider)
    for order in (await simulator.get("/orders")).json()[:3]:
        await simulator.post(f"/orders/{order['order']}", json={"status": "Partial", "remains": 50})
    await poller.poll_once(pool, provider, 0.01)
    connection = await postgres.owner_connection(dsn)
    try:
        report = await verify.verify(connection)
        assert report.ok, report.findings
        sealed = await seals.seal(connection)
        for module in projections.PROJECTIONS:
            await rebuild.rebuild(connection, module)
        report = await verify.verify(connection)
        assert report.ok, report.findings
        assert report.seals == 1
        print(report.events, report.seconds)
        await connection.execute("alter table events disable trigger user")
        target = await connection.fetchval(
            "select global_position from events where type = 'FundsDebited' order by 1 limit 1"
        )
        await connection.execute(
            "update events set data = jsonb_set(data, '{amount_kobo}', '1')"
            " where global_position = $1",
            target,
        )
        await connection.execute("alter table events enable trigger user")
        report = await verify.verify(connection)
        assert not report.ok
        checks = {finding.check for finding in report.findings}
        print(report.findings[:5])
        assert "hash-chain" in checks
        assert sealed.position >= target
    finally:
        await connection.close()
