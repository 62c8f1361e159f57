"""``boost serve`` killed with SIGKILL at random moments under checkout load loses nothing.

A real server process takes orders from several clients that retry like real ones (the same key
after a timeout, a dropped connection, a refusal to connect, ``IDEMPOTENCY_KEY_IN_PROGRESS``, a
429 or a 5xx), and is killed and restarted several times while its workers submit and poll.
Afterwards ``boost audit verify`` passes, every key that ever got a 201 has exactly one order
(and every replay of it is byte for byte the first 201), money is conserved in every wallet, and
no order reached the provider twice.

The provider is a simulator served by this test (``BOOST_PROVIDER_URL``) rather than the one
``boost serve`` builds in: a real provider outlives our crashes, and only a provider that keeps
its orders can witness that none was sent twice. Each order carries a link of its own, so the
provider's orders of one of ours are those with its link.

An order whose attempt a kill interrupted stays ``attempting`` until the sweeper gives it up as
unknown after ``submitter.ABANDONED_AFTER_S`` (two minutes); with the server stopped at the
end, this test calls the sweeper's function itself with no delay.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from support import bearer, free_port, http_server

from boost_ledger.ledger import fulfilment
from boost_ledger.upstream.simulator import create_simulator_app

BOOST = str(Path(sys.executable).parent / "boost")
KILLS = 5
CLIENTS = 6
CLI_TIMEOUT_S = 60
READY_TIMEOUT_S = 60
SETTLE_TIMEOUT_S = 60
REQUEST_TIMEOUT_S = 3.0
ORDERS = "/api/v1/boost/orders"


def _environment(**values: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("BOOST_") and name != "DATABASE_URL"}
    return {**env, **values}


async def _boost(env: dict[str, str], *arguments: str) -> str:
    process = await asyncio.create_subprocess_exec(
        BOOST, *arguments, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=CLI_TIMEOUT_S)
    assert process.returncode == 0, f"boost {' '.join(arguments)}: {out.decode()}{err.decode()}"
    return out.decode()


class Server:
    """``boost serve`` as a child process, its output kept in a file for the failure report."""

    def __init__(self, env: dict[str, str], base_url: str, key: str, log: Path) -> None:
        self.env, self.base_url, self.key, self.log = env, base_url, key, log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self) -> None:
        assert self.process is None
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"\n---- start {self.starts} ----\n".encode())
            log.flush()
            self.process = await asyncio.create_subprocess_exec(
                BOOST, "serve", env=self.env, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        async with asyncio.timeout(READY_TIMEOUT_S), httpx.AsyncClient(timeout=2.0) as http:
            while True:
                assert self.process.returncode is None, self.log.read_text()[-3000:]
                try:
                    ready = await http.get(
                        f"{self.base_url}/api/v1/wallet", headers=bearer(self.key)
                    )
                    if ready.status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.05)

    async def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        await self.process.wait()
        self.process = None

    async def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.process.wait(), timeout=20)
        except TimeoutError:
            self.process.kill()
            await self.process.wait()
        self.process = None


@dataclass
class Clients:
    """What the clients saw: the first 201 of each key, and every other answer's status."""

    stop: asyncio.Event = field(default_factory=asyncio.Event)
    first_answers: dict[str, bytes] = field(default_factory=dict)
    statuses: Counter[str] = field(default_factory=Counter)
    wrong: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)  # key -> the order's own link


def _code(response: httpx.Response) -> str | None:
    if response.status_code < 400:
        return None
    try:
        return str(response.json().get("code"))
    except ValueError:
        return "not JSON"


async def _client(base_url: str, key: str, name: str, seen: Clients) -> None:
    """Place orders one key after another; retry each key until it has a definite answer."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=base_url, timeout=REQUEST_TIMEOUT_S,
                                 limits=limits) as http:
        number = 0
        while not seen.stop.is_set():
            idempotency_key = f"{name}-{number}"
            number += 1
            link = f"https://instagram.com/p/{idempotency_key}"
            seen.links[idempotency_key] = link
            body = {"service_id": "1", "link": link, "quantity": 10 + number % 40,
                    "idempotency_key": idempotency_key}
            while True:
                try:
                    response = await http.post(ORDERS, json=body, headers=bearer(key))
                except httpx.TransportError as error:  # refused, dropped, timed out: same key
                    seen.statuses[type(error).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                code = _code(response)
                replayed = " replayed" if "idempotent-replayed" in response.headers else ""
                seen.statuses[f"{response.status_code}{replayed} {code or ''}".strip()] += 1
                if response.status_code >= 500 or code == "IDEMPOTENCY_KEY_IN_PROGRESS":
                    await asyncio.sleep(0.05)
                    continue
                if response.status_code == 429:  # rate limited: wait as told, same key
                    await asyncio.sleep(min(float(response.headers.get("retry-after", 1)), 1.0))
                    continue
                break
            if response.status_code == 201:
                first = seen.first_answers.setdefault(idempotency_key, response.content)
                if response.content != first:
                    seen.wrong.append(f"{idempotency_key}: replay differs: {response.text}")
            elif response.status_code != 402:
                seen.wrong.append(f"{idempotency_key}: {response.status_code} {response.text}")


@pytest.fixture
async def provider_url() -> AsyncIterator[str]:
    """A provider that outlives the server's crashes, its orders moving on their own."""
    async with http_server(create_simulator_app(autoprogress=True, tick_s=0.2)) as url:
        yield url


async def _settle(pool: asyncpg.Pool[Any]) -> None:
    """Wait until no order is queued and the attempts in flight have stopped changing."""
    previous: tuple[int, int] | None = None
    async with asyncio.timeout(SETTLE_TIMEOUT_S):
        while True:
            now = await pool.fetchrow(
                "select count(*) filter (where submission = 'queued') as queued,"
                " count(*) filter (where submission = 'attempting') as attempting from orders"
            )
            current = (now["queued"], now["attempting"])
            if current[0] == 0 and current == previous:
                return
            previous = current
            await asyncio.sleep(0.5)


async def test_sigkill_at_random_moments_loses_no_order_and_no_money(
    dsn, pool, provider_url, tmp_path
):
    """Under checkout load with client retries, SIGKILL the server at random moments and restart
    it; then verify passes, each 201 key has exactly one order, money is conserved, and no order
    reached the provider twice."""
    seed = random.randrange(2**32)
    chance = random.Random(seed)
    print(f"kill schedule seed {seed}")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = _environment(
        DATABASE_URL=dsn, BOOST_PORT=str(port), BOOST_DEMO="0", BOOST_POLL_INTERVAL_S="0.2",
        BOOST_SUBMIT_SWEEP_INTERVAL_S="0.2", BOOST_PROVIDER_URL=f"{provider_url}/api/v2",
        BOOST_PROVIDER_TIMEOUT_S="2", BOOST_LOG_LEVEL="warning",
        # One key for every client: lift the per-key rate limit, so that the load stays high.
        BOOST_RATE_LIMIT_PER_S="100000", BOOST_RATE_LIMIT_BURST="100000",
    )
    created = json.loads(await _boost(env, "accounts", "create", "--name", "Crash", "--json"))
    account_id, key = created["account_id"], created["api_key"]
    await _boost(env, "wallet", "credit", account_id, "1000000.00", "--reference", "initial")

    log = tmp_path / "serve.log"
    server = Server(env, base_url, key, log)
    seen = Clients()
    await server.start()
    clients = [
        asyncio.create_task(_client(base_url, key, f"client{index}", seen))
        for index in range(CLIENTS)
    ]
    started = time.monotonic()
    try:
        for _ in range(KILLS):
            await asyncio.sleep(chance.uniform(0.3, 2.0))
            await server.kill()
            await asyncio.sleep(chance.uniform(0.0, 0.5))
            await server.start()
        await asyncio.sleep(1.0)
        seen.stop.set()
        await asyncio.wait_for(asyncio.gather(*clients), timeout=60)
        await _settle(pool)
        await server.stop()
        abandoned = 0
        async with pool.acquire() as connection:
            for _ in range(KILLS * 10):  # a sweep settles at most 100 attempts
                swept = await fulfilment.mark_abandoned_attempts(connection, 0)
                abandoned += swept
                if swept == 0:
                    break
        print(f"{time.monotonic() - started:.1f} s, {len(seen.first_answers)} orders,"
              f" {abandoned} attempts cut short by a kill, answers {dict(seen.statuses)}")
    finally:
        seen.stop.set()
        for task in clients:
            task.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
        await server.stop()

    assert seen.wrong == [], seen.wrong[:5]
    assert seen.first_answers, "no order was placed"
    assert seen.statuses["ConnectError"] > 0, "the kills never hit a request"

    verified = await asyncio.create_subprocess_exec(
        BOOST, "audit", "verify", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(verified.communicate(), timeout=CLI_TIMEOUT_S)
    assert verified.returncode == 0, out.decode() + log.read_text()[-3000:]

    await _every_201_key_has_one_order(pool, int(account_id), seen)
    await _money_is_conserved(pool)
    await _no_order_reached_the_provider_twice(pool, provider_url, seen)


async def _every_201_key_has_one_order(
    pool: asyncpg.Pool[Any], account_id: int, seen: Clients
) -> None:
    """Each key answered 201 has one order, whose stored answer is that 201; and no order exists
    for a key that never got one."""
    rows = await pool.fetch(
        "select data->>'idempotency_key' as key, count(*) as orders from events"
        " where type = 'OrderPlaced' and (data->>'account_id')::bigint = $1 group by 1",
        account_id,
    )
    assert all(row["orders"] == 1 for row in rows), [dict(row) for row in rows if row["orders"] > 1]
    assert {row["key"] for row in rows} == set(seen.first_answers)
    stored = {
        row["idempotency_key"]: bytes(row["response"])
        for row in await pool.fetch(
            "select idempotency_key, response from idempotency_keys where account_id = $1",
            account_id,
        )
    }
    assert stored == seen.first_answers


async def _money_is_conserved(pool: asyncpg.Pool[Any]) -> None:
    """Every wallet holds Σ credits - Σ debits + Σ refunds of its events, never below zero."""
    rows = await pool.fetch(
        """
        select w.account_id, w.balance_kobo,
               coalesce(sum(case e.type when 'WalletCredited' then 1 when 'Refunded' then 1
                                        else -1 end * (e.data->>'amount_kobo')::bigint), 0) as sum
          from wallets w
          left join events e on e.stream_id = 'wallet-' || w.account_id
               and e.type in ('WalletCredited', 'FundsDebited', 'Refunded')
         group by w.account_id, w.balance_kobo
        """
    )
    assert rows
    for row in rows:
        assert row["balance_kobo"] == row["sum"] >= 0, dict(row)


async def _no_order_reached_the_provider_twice(
    pool: asyncpg.Pool[Any], provider_url: str, seen: Clients
) -> None:
    """The provider holds each of our orders at most once, and every order we recorded as
    submitted is the provider's order with its link."""
    async with httpx.AsyncClient(base_url=f"{provider_url}/control", timeout=10.0) as control:
        held = (await control.get("/orders")).json()
    by_link = Counter(order["link"] for order in held)
    assert max(by_link.values(), default=0) <= 1, by_link.most_common(3)
    link_of = {str(order["order"]): order["link"] for order in held}
    submitted = await pool.fetch(
        "select idempotency_key, provider_order_id, submission from orders"
        " where provider_order_id is not null"
    )
    for row in submitted:
        link = seen.links[row["idempotency_key"]]
        assert link_of.get(row["provider_order_id"]) == link, dict(row)
    unknown = await pool.fetchval("select count(*) from orders where submission = 'attempting'")
    assert unknown == 0, "every attempt cut short by a kill is now unknown, for an operator"
