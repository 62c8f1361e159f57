"""The ledger as a state machine: random programs of client, provider and worker actions run
against the real HTTP app, a real PostgreSQL and the provider simulator over HTTP. After every
step these must hold (each is an ``@invariant`` below, stated again in its docstring):

- money is conserved: each wallet's balance is Σ credits - Σ debits + Σ refunds of its events,
  never below zero, and what the projection and ``GET /wallet`` say;
- each order is refunded at most once, never more than its charge, and exactly what its settled
  status owes;
- each (account, idempotency key) has at most one order, and every replay is byte for byte the
  first answer;
- rebuilding every projection from the log gives exactly the live tables;
- every stream's hash chain verifies (with the rest of ``boost audit verify``).

The rules: credit a wallet; place orders of every kind of service in the simulator's catalog,
with valid and invalid bodies (each answer checked against the price the catalog now states:
201 at that price when the wallet can pay it, else 402); retry with the same key, the body's
keys in any order; reuse a key with another body; fire bursts of concurrent duplicates; pin or
release a service's rate while the app's cache holds the old row; check out with a wallet
holding exactly the price, one kobo more or one kobo short; check; cancel; let the provider move
orders (force Completed, Partial with any remains, Canceled, Refunded ..., or let time pass);
end a subscription Partial or Expired with posts left; settle several orders of one wallet at
once for one poll; settle an order at the provider while its client hammers check and the
poller runs; deliver a late reply (a status or a cancel answer) to an order that has settled
meanwhile; run the poller and the submitter; inject provider faults into add, status and
cancel. Every program ends by letting everything settle (faults off, the queue drained, every
order at the provider completed and checked).

Profiles (registered in tests/properties/conftest.py):

- ``ci``, the default: 15 programs of up to 25 steps (one to two minutes on two cores)::

      .venv/bin/pytest tests/properties/test_ledger_state_machine.py

- ``deep``: 300 programs of up to 50 steps (about an hour), for long runs::

      .venv/bin/pytest tests/properties/test_ledger_state_machine.py --hypothesis-profile=deep

How it runs: hypothesis drives rules synchronously, so one event loop in a background thread
hosts, for the whole test, the app and the simulator (both over real HTTP), the provider client
and the pools; rules hand it coroutines. Each program gets its own database, cloned in a quarter
of a second from a template that already holds the catalog, so a failing program shrinks without
the leftovers of earlier ones and every invariant can be checked over the whole log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sys
import threading
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg
import httpx
import pytest
import support
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    rule,
    run_state_machine_as_test,
)
from support import bearer, http_server, make_pool, open_funded_account, seed_catalog

from boost_ledger import postgres, projections
from boost_ledger.api.auth import Principals
from boost_ledger.api.runtime import Runtime
from boost_ledger.audit import verify
from boost_ledger.ledger import catalog, fulfilment, wallet
from boost_ledger.ledger.checkout_state import CheckoutState
from boost_ledger.ledger.money import charge_kobo, parse_naira
from boost_ledger.ledger.order_types import ServiceLimits, is_flat, parse_order_fields
from boost_ledger.projections.replay import compare_with_replay
from boost_ledger.server import build_app
from boost_ledger.settings import Settings
from boost_ledger.upstream.client import ProviderClient
from boost_ledger.upstream.errors import ProviderError
from boost_ledger.upstream.simulator import create_simulator_app
from boost_ledger.workers import poller, submitter

STEP_TIMEOUT_S = 60.0
PROVIDER_TIMEOUT_S = 0.3
POLL_INTERVAL_S = 0.001
PROJECTIONS_EVERY_STEPS = 4
ORDERS = "/api/v1/boost/orders"
TERMINAL = frozenset({"completed", "partial", "canceled", "failed"})

_Result = TypeVar("_Result")


# ---- the harness: servers, clients and pools on one loop in a background thread -------------


class Harness:
    """Runs coroutines on an event loop of its own thread, which hosts for the whole test the
    simulator and the app over real HTTP, the provider client, and the current program's pool
    and owner connection."""

    def __init__(self, test_server: support.TestServer) -> None:
        self._test_server = test_server
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve_loop, name="ledger-machine", daemon=True)
        self._stack = AsyncExitStack()
        self._template = ""
        self._database = ""
        self._numbers = itertools.count(1)
        self.runtime: Runtime
        self.provider: ProviderClient
        self.api: httpx.AsyncClient
        self.control: httpx.AsyncClient
        self.owner: asyncpg.Connection[Any]

    def _serve_loop(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()
        self._loop.run_until_complete(self._loop.shutdown_asyncgens())
        self._loop.close()

    def run(
        self, coroutine: Coroutine[Any, Any, _Result], timeout_s: float = STEP_TIMEOUT_S
    ) -> _Result:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_s)
        except TimeoutError:
            future.cancel()
            raise

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    def stop(self) -> None:
        try:
            self.run(self._stack.aclose())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=30)

    async def _start(self) -> None:
        stack = self._stack
        simulator = create_simulator_app(autoprogress=False, seed=0)
        simulator_url = await stack.enter_async_context(http_server(simulator))
        self.control = await stack.enter_async_context(httpx.AsyncClient(
            base_url=f"{simulator_url}/control", timeout=10.0,
            limits=httpx.Limits(max_keepalive_connections=0),
        ))
        self.provider = ProviderClient(
            f"{simulator_url}/api/v2", "sim-key", timeout_s=PROVIDER_TIMEOUT_S, read_retries=1,
            backoff_s=0.01,
        )
        stack.push_async_callback(self.provider.aclose)
        self._template = await self._test_server.fresh_database()
        seeding = await make_pool(self._template, max_size=2)
        try:
            await seed_catalog(seeding)
        finally:
            await seeding.close()
        pool, self.owner = await self._open_program_database()
        # The machine's bursts are not what the API's per-key rate limit is about: lift it.
        unlimited = {name: 1_000_000 for name in ("rate_limit_per_s", "rate_limit_burst")
                     if name in Settings.__struct_fields__}
        settings = Settings(
            database_url=self._template, workers_enabled=False, demo_account=False, **unlimited
        )
        self.runtime = Runtime(settings=settings, pool=pool, provider=self.provider)
        base_url = await stack.enter_async_context(
            http_server(build_app(self.runtime, start_workers=False))
        )
        # No keep-alive: the server closes idle connections after 5 s, and a request sent on
        # one at that very moment fails with a ReadError that is no fault of the app.
        self.api = await stack.enter_async_context(httpx.AsyncClient(
            base_url=base_url, timeout=30.0, limits=httpx.Limits(max_keepalive_connections=0)
        ))
        stack.push_async_callback(self._close_program_database)

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(self._test_server.admin_uri)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def _open_program_database(self) -> tuple[asyncpg.Pool[Any], asyncpg.Connection[Any]]:
        template = self._template.partition("?")[0].rsplit("/", 1)[1]
        self._database = f"{template}_program_{next(self._numbers)}"
        await self._admin(f'create database "{self._database}" template "{template}"')
        dsn = postgres.with_database(self._template, self._database)
        return await make_pool(dsn), await postgres.owner_connection(dsn)

    async def _close_program_database(self) -> None:
        await self.runtime.pool.close()
        await self.owner.close()
        await self._admin(f'drop database if exists "{self._database}" with (force)')

    async def new_program(self) -> None:
        """A fresh database (the app switches to it) and a simulator reset to its seed."""
        await self._close_program_database()
        self.runtime.pool, self.owner = await self._open_program_database()
        # What the app keeps between requests belongs to a database: a process never switches.
        self.runtime.checkout = CheckoutState.for_server()
        self.runtime.principals = Principals()
        assert (await self.control.post("/reset")).status_code == 200


@pytest.fixture
def harness(test_server: support.TestServer) -> Any:
    started = Harness(test_server)
    try:
        started.start()
        yield started
    finally:
        started.stop()


# ---- order bodies ----------------------------------------------------------------------------

_LINKS = st.sampled_from(["https://instagram.com/p/abc", "http://example.com/x?y=1"])


def _lines(minimum: int, maximum: int) -> st.SearchStrategy[str]:
    return st.integers(minimum, maximum).map(lambda n: "\n".join(f"line {i}" for i in range(n)))


def _service(service_id: str, **fields: Any) -> st.SearchStrategy[dict[str, Any]]:
    # The service id travels as a string or as a number; both name the same service.
    return st.fixed_dictionaries(
        {"service_id": st.sampled_from([service_id, int(service_id)]), **fields}
    )


_DRIP_FEED = st.one_of(
    st.just({}), st.fixed_dictionaries({"runs": st.integers(2, 3), "interval": st.integers(1, 30)})
)

# One valid body per kind of service the simulator lists (see upstream/sim_catalog.py).
VALID_BODIES = st.one_of(
    st.tuples(_service("1", link=_LINKS, quantity=st.integers(10, 60)), _DRIP_FEED).map(
        lambda parts: {**parts[0], **parts[1]}
    ),
    _service("2", link=_LINKS, quantity=st.integers(10, 60)),
    _service("3", link=_LINKS, quantity=st.integers(20, 100)),
    _service("4", link=_LINKS),
    _service("5", link=_LINKS, comments=_lines(5, 7)),
    _service("8", link=_LINKS, quantity=st.integers(100, 150), hashtag=st.just("#boost")),
    st.tuples(
        _service("11", username=st.just("someone"), min=st.just(50), max=st.integers(50, 80),
                 delay=st.sampled_from([0, 5, 90])),
        st.one_of(st.just({}), st.fixed_dictionaries({"posts": st.integers(1, 3)})),
    ).map(lambda parts: {**parts[0], **parts[1]}),
    _service("13", link=_LINKS, quantity=st.integers(100, 150), answer_number=st.integers(1, 4)),
    _service("14", link=_LINKS, username=st.just("someone"), comments=_lines(1, 3)),
    _service("15", link=_LINKS, quantity=st.integers(100, 120), groups=_lines(1, 2)),
)


def _spoil(body: dict[str, Any], how: str) -> dict[str, Any]:
    """A body the API must refuse (404 or 422) and for which it must store nothing."""
    spoiled = dict(body)
    if how == "unknown service":
        spoiled["service_id"] = "999"
    elif how == "price sent":
        spoiled["price"] = "1.00"
    elif how == "no service":
        del spoiled["service_id"]
    elif how == "bad quantity" and "quantity" in spoiled:
        spoiled["quantity"] = 10**12 if spoiled["quantity"] % 2 else "ten"
    elif how == "no link" and "link" in spoiled and str(spoiled["service_id"]) != "15":
        del spoiled["link"]
    else:
        spoiled["colour"] = "red"  # a field no service type takes
    return spoiled


@dataclass(frozen=True)
class Request:
    body: dict[str, Any]  # without its idempotency key
    valid: bool


INVALID_BODIES = st.tuples(
    VALID_BODIES,
    st.sampled_from(["unknown service", "price sent", "no service", "bad quantity", "no link",
                     "unknown field"]),
).map(lambda parts: _spoil(*parts))
REQUESTS = st.one_of(
    VALID_BODIES.map(lambda body: Request(body, True)),
    INVALID_BODIES.map(lambda body: Request(body, False)),
)
# Enough for a few orders (the first account), or nothing until credited (the second, at times).
FUNDED = st.integers(20_000_00, 100_000_00)
WHO = st.sampled_from([0, 1])  # which of the program's two accounts
KEYS = st.sampled_from([f"key-{index}" for index in range(5)])
# Whatever a panel may say: over-delivery (negative), nothing said, or more than was ordered.
# (Not yet beyond a bigint: a remains of 2**63 or more makes recording the status fail, see the
# issue note; add st.integers(2**63, 10**20) here once upstream parsing bounds it.)
REMAINS = st.one_of(
    st.none(), st.integers(-1000, -1), st.integers(0, 200), st.integers(201, 10**9)
)
PROVIDER_STATUSES = st.sampled_from(
    ["Completed", "Partial", "Canceled", "Refunded", "Fail", "In progress", "Processing",
     "Pending", "Expired", "Something new"]
)
FAULT_MODES = st.sampled_from(
    ["latency", "http_500", "html", "error", "timeout", "malformed_json", "reply_lost"]
)


def _header_refused(body: dict[str, Any]) -> bool:
    """Refused before the key is even looked at (api/orders.py ``_checked_header_fields``)."""
    return "service_id" not in body or any(name in body for name in ("price", "charge", "amount"))


def _refund_owed(order: asyncpg.Record) -> int:
    """What an order's settled status owes back (DESIGN.md §5 and §6), computed independently."""
    price, status = order["price_kobo"], order["status"]
    if status in ("canceled", "failed"):
        return int(price)
    expired = status == "completed" and order["upstream_status"] == "Expired"
    if status == "partial" or expired:  # an expired subscription owes back its unused posts
        # remains counts a subscription's posts (it is billed max units a post), else units.
        units = order["billable_quantity"]
        if order["type"] == "Subscriptions":
            units //= order["quantity"]
        remains = min(max(order["remains"] or 0, 0), units)
        return int(price * remains // units)
    return 0


# ---- the model -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    account_id: int
    key: str = field(repr=False)


@dataclass(frozen=True)
class Placed:
    """An order as the client saw it placed: the key, the body and the first answer's bytes."""

    account: Account
    key: str
    body: dict[str, Any]
    order_id: int
    price_kobo: int
    answer: bytes = field(repr=False)


class LedgerMachine(RuleBasedStateMachine):
    orders = Bundle("orders")

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.harness = harness
        self.opened: list[Account] = []
        self.credits: dict[int, dict[str, int]] = {}
        self.first_answers: dict[tuple[int, str], Placed] = {}
        self.bursts = itertools.count(1)
        self.steps = 0
        harness.run(harness.new_program())

    # -- helpers --------------------------------------------------------------------------

    def run(self, coroutine: Coroutine[Any, Any, _Result]) -> _Result:
        return self.harness.run(coroutine)

    def post(self, path: str, account: Account, body: Any = None) -> httpx.Response:
        headers = bearer(account.key)
        response = self.run(self.harness.api.post(path, json=body, headers=headers))
        assert response.status_code < 500 or response.status_code == 503, response.text
        return response

    def balance_kobo(self, account: Account) -> int:
        balance: int = self.run(self.harness.owner.fetchval(
            "select balance_kobo from wallets where account_id = $1", account.account_id
        ))
        return balance

    def expect_checkout(
        self, account: Account, key: str, request: Request, response: httpx.Response, before: int
    ) -> Placed | None:
        """Check an answer to a checkout against the model; the new order, if one was placed."""
        body = {**request.body, "idempotency_key": key}
        first = self.first_answers.get((account.account_id, key))
        if first is not None:
            if body == first.body:
                self.expect_replay(first, response)
            elif _header_refused(body):
                assert response.status_code == 422, response.text
            else:
                assert response.status_code == 409, response.text
                assert response.json()["code"] == "IDEMPOTENCY_KEY_REUSED", response.text
            return None
        if not request.valid:
            assert response.status_code in (404, 422), response.text
            return None
        assert response.status_code in (201, 402), response.text
        price_kobo = self.run(self.price_now(request.body))
        if response.status_code == 402:
            assert response.json()["code"] == "INSUFFICIENT_BALANCE", response.text
            assert before < price_kobo, ("refused though the wallet can pay", before, price_kobo)
            return None
        assert "idempotent-replayed" not in response.headers
        data = response.json()["data"]
        assert parse_naira(data["price"]) == price_kobo, ("not the current price", data)
        assert before >= price_kobo, ("placed though the wallet cannot pay", before, data)
        assert parse_naira(data["balance_after"]) == before - price_kobo, (data, before)
        placed = Placed(account, key, body, int(data["order_id"]), price_kobo, response.content)
        self.first_answers[(account.account_id, key)] = placed
        return placed

    async def price_now(self, body: dict[str, Any]) -> int:
        """What a valid body costs at the catalog as it now stands in the services table (a
        pinned rate, else the synced one), whatever the app's checkout cache holds."""
        row = await self.harness.owner.fetchrow(
            "select type, min_quantity, max_quantity, dripfeed,"
            " coalesce(pinned_rate_kobo, rate_per_1000_kobo) as rate_kobo"
            " from services where service_id = $1 and listed",
            str(body["service_id"]),
        )
        assert row is not None, body
        limits = ServiceLimits(
            row["type"], row["min_quantity"], row["max_quantity"], row["dripfeed"]
        )
        fields = {name: value for name, value in body.items() if name != "service_id"}
        posts = self.harness.runtime.settings.subscription_default_posts
        order = parse_order_fields(limits, fields, subscription_default_posts=posts)
        return charge_kobo(row["rate_kobo"], order.billable_quantity, flat=is_flat(row["type"]))

    def open_account(self, balance_kobo: int) -> Account:
        """A new account holding ``balance_kobo`` (credited once, under a seed reference)."""
        account_id, key = self.run(open_funded_account(self.harness.runtime.pool, balance_kobo))
        account = Account(account_id, key)
        self.opened.append(account)
        self.credits[account_id] = {f"seed-{account_id}": balance_kobo} if balance_kobo else {}
        return account

    def stop_faults(self) -> None:
        fault = {"action": "*", "mode": "none"}
        assert self.run(self.harness.control.post("/faults", json=fault)).status_code == 200

    def force_at_provider(self, order_id: int, status: str, remains: int | None) -> None:
        """Have the provider say ``status`` (and ``remains``) of a submitted order."""
        provider_order_id = self.run(self.harness.owner.fetchval(
            "select provider_order_id from orders where order_id = $1", order_id
        ))
        assert provider_order_id is not None, order_id
        forced = {"status": status, "remains": remains}
        response = self.run(self.harness.control.post(
            f"/orders/{provider_order_id}",
            json={name: value for name, value in forced.items() if value is not None},
        ))
        assert response.status_code == 200, response.text

    @staticmethod
    def expect_replay(first: Placed, response: httpx.Response) -> None:
        assert response.status_code == 201, response.text
        assert response.headers.get("idempotent-replayed") == "true", response.headers
        assert response.content == first.answer, (response.content, first.answer)

    # -- rules: the client and the operator -----------------------------------------------

    @initialize(
        target=orders,
        balances=st.tuples(FUNDED, st.one_of(FUNDED, st.just(0))),
        first_orders=st.lists(VALID_BODIES, max_size=3),
    )
    def open_accounts(self, balances: tuple[int, int], first_orders: list[dict[str, Any]]) -> Any:
        """Two accounts (the second one at times unfunded); the first places a few orders."""
        for balance_kobo in balances:
            self.open_account(balance_kobo)
        placed = [self.place(0, f"first-{index}", Request(body, True))
                  for index, body in enumerate(first_orders)]
        return multiple(*[order for order in placed if isinstance(order, Placed)])

    @rule(
        who=WHO,
        amount_kobo=st.integers(1, 20_000_00),
        reference=st.sampled_from(["top-up-1", "top-up-2", "top-up-3"]),
    )
    def credit(self, who: int, amount_kobo: int, reference: str) -> None:
        self.credit_account(self.opened[who], amount_kobo, reference)

    def credit_account(self, account: Account, amount_kobo: int, reference: str) -> None:
        """Credit a wallet under an operator's reference (paid once per reference)."""

        async def credit() -> wallet.CreditResult:
            async with self.harness.runtime.pool.acquire() as connection:
                return await wallet.credit(connection, account.account_id, amount_kobo, reference)

        result = self.run(credit())
        earlier = self.credits[account.account_id].get(reference)
        if earlier is None:
            assert result.credited
            self.credits[account.account_id][reference] = amount_kobo
        else:
            assert not result.credited and result.amount_kobo == earlier

    @rule(target=orders, who=WHO, key=KEYS, request=REQUESTS)
    def place(self, who: int, key: str, request: Request) -> Any:
        account = self.opened[who]
        before = self.balance_kobo(account)
        response = self.post(ORDERS, account, {**request.body, "idempotency_key": key})
        placed = self.expect_checkout(account, key, request, response, before)
        return multiple() if placed is None else placed

    @rule(target=orders, who=WHO, key=KEYS, body=VALID_BODIES)
    def place_a_valid_order(self, who: int, key: str, body: dict[str, Any]) -> Any:
        return self.place(who, key, Request(body, True))

    @rule(placed=orders, data=st.data())
    def retry_with_the_same_key(self, placed: Placed, data: st.DataObject) -> None:
        """A retry is the same request whatever the order of its body's keys (JSON objects are
        unordered): it replays the first answer byte for byte, never a 409."""
        names = data.draw(st.permutations(list(placed.body)), label="key order")
        body = {name: placed.body[name] for name in names}
        self.expect_replay(placed, self.post(ORDERS, placed.account, body))

    @rule(placed=orders, request=REQUESTS)
    def reuse_the_key_with_another_body(self, placed: Placed, request: Request) -> None:
        before = self.balance_kobo(placed.account)
        body = {**request.body, "idempotency_key": placed.key}
        response = self.post(ORDERS, placed.account, body)
        assert self.expect_checkout(placed.account, placed.key, request, response, before) is None

    @rule(target=orders, who=WHO, body=VALID_BODIES, size=st.integers(5, 10))
    def burst_of_duplicates(self, who: int, body: dict[str, Any], size: int) -> Any:
        """Concurrent duplicates of one request (its body's keys in a different order in each:
        still the same request): one is placed or refused, the others replay it or are told
        the first is still running."""
        account = self.opened[who]
        key = f"burst-{next(self.bursts)}"
        before = self.balance_kobo(account)
        names = [*body, "idempotency_key"]
        request = {**body, "idempotency_key": key}
        duplicates = [{name: request[name] for name in names[turn:] + names[:turn]}
                      for turn in range(size)]
        headers = bearer(account.key)

        async def burst() -> list[httpx.Response]:
            return list(await asyncio.gather(*[
                self.harness.api.post(ORDERS, json=duplicate, headers=headers)
                for duplicate in duplicates
            ]))

        responses = self.run(burst())
        statuses = [(r.status_code, r.headers.get("idempotent-replayed")) for r in responses]
        placed_now = [r for r in responses if r.status_code == 201]
        first = [r for r in placed_now if "idempotent-replayed" not in r.headers]
        replays = [r for r in placed_now if r not in first]
        busy = [r for r in responses if r.status_code == 409]
        refused = [r for r in responses if r.status_code == 402]
        assert len(first) + len(replays) + len(busy) + len(refused) == size, statuses
        assert len(first) <= 1, statuses
        assert not (first and refused), statuses
        assert all(r.json()["code"] == "IDEMPOTENCY_KEY_IN_PROGRESS" for r in busy), statuses
        if not first:
            assert not replays, statuses
            if refused:
                assert before < self.run(self.price_now(body)), (before, statuses)
            return multiple()
        placed = self.expect_checkout(account, key, Request(body, True), first[0], before)
        assert placed is not None
        for replay in replays:
            self.expect_replay(placed, replay)
        return placed

    @rule(service_id=st.sampled_from(["1", "2", "3", "4", "5", "8", "11", "13", "14", "15"]),
          rate_kobo=st.one_of(st.none(), st.integers(1, 10**8)))
    def an_operator_pins_a_rate(self, service_id: str, rate_kobo: int | None) -> None:
        """An operator pins a service's rate (or releases the pin) while the app's checkout
        cache still holds the row it last priced the service with: every later checkout of the
        service pays the rate as it now stands (``expect_checkout`` prices each from the
        services table, and a 402 must be a wallet short of that price), and a retry of an
        order placed before still replays its first answer."""

        async def pin() -> None:
            async with self.harness.runtime.pool.acquire() as connection:
                await catalog.pin_rate(connection, service_id, rate_kobo)

        self.run(pin())

    @rule(target=orders, who=WHO, body=VALID_BODIES,
          rate_kobo=st.one_of(st.none(), st.integers(1, 10**6)))
    def an_operator_reprices_a_service_between_two_orders(
        self, who: int, body: dict[str, Any], rate_kobo: int | None
    ) -> Any:
        """A checkout leaves its service's row in the app's cache; an operator then pins the
        service's rate (or releases the pin), and the next checkout of the service, with a new
        key, pays the new rate, not the cached one (``expect_checkout`` checks both against
        the services table)."""
        turn = next(self.bursts)
        placed = [self.place(who, f"before-repricing-{turn}", Request(body, True))]
        self.an_operator_pins_a_rate(str(body["service_id"]), rate_kobo)
        placed.append(self.place(who, f"after-repricing-{turn}", Request(body, True)))
        return multiple(*[order for order in placed if isinstance(order, Placed)])

    @rule(target=orders, body=VALID_BODIES, surplus_kobo=st.sampled_from([-1, 0, 1]))
    def checkout_at_the_balance_boundary(self, body: dict[str, Any], surplus_kobo: int) -> Any:
        """A wallet holding exactly the price pays it and is left with 0 (one kobo more leaves
        1); one kobo short is refused with 402, records nothing and leaves the key free: once
        the kobo is credited, the same request with the same key is placed."""
        price_kobo = self.run(self.price_now(body))
        account = self.open_account(price_kobo + surplus_kobo)
        key = "at-the-boundary"
        response = self.post(ORDERS, account, {**body, "idempotency_key": key})
        placed = self.expect_checkout(
            account, key, Request(body, True), response, price_kobo + surplus_kobo
        )
        assert (placed is not None) == (surplus_kobo >= 0), (surplus_kobo, response.text)
        if placed is None:
            self.credit_account(account, 1, "the missing kobo")
            response = self.post(ORDERS, account, {**body, "idempotency_key": key})
            placed = self.expect_checkout(account, key, Request(body, True), response, price_kobo)
            assert placed is not None, response.text
        assert self.balance_kobo(account) == max(surplus_kobo, 0)
        return placed

    @rule(target=orders, maximum=st.integers(50, 80), posts=st.integers(2, 6),
          status=st.sampled_from(["Partial", "Expired"]), remains=st.integers(-1, 7))
    def a_subscription_ends_with_posts_left(
        self, maximum: int, posts: int, status: str, remains: int
    ) -> Any:
        """A subscription is billed ``max`` units for each of its posts, and the provider's
        ``remains`` counts its posts: one that ends Partial, or Expired, with posts left is
        refunded the charge's share of its posts left, floor(charge * remains / posts) with
        remains clamped to 0..posts (the invariants compute what is owed independently)."""
        body = {"service_id": "11", "username": "someone", "min": 50, "max": maximum,
                "delay": 0, "posts": posts}
        placed = self.place(0, f"subscription-{next(self.bursts)}", Request(body, True))
        if not isinstance(placed, Placed):
            return placed  # the wallet could not pay (a pinned rate, say)
        self.stop_faults()
        self.run_the_submitter()
        self.force_at_provider(placed.order_id, status, remains)
        self.check_until_answered(placed)
        order = self.run(self.harness.owner.fetchrow(
            "select status, refunded_kobo from orders where order_id = $1", placed.order_id
        ))
        assert order["status"] in TERMINAL, dict(order)
        owed_kobo = placed.price_kobo * min(max(remains, 0), posts) // posts
        assert order["refunded_kobo"] == owed_kobo, (dict(order), placed.price_kobo, posts)
        return placed

    @rule(who=WHO, bodies=st.lists(VALID_BODIES, min_size=2, max_size=3),
          settled=st.lists(st.tuples(st.sampled_from(["Canceled", "Refunded", "Fail", "Partial"]),
                                     st.integers(1, 200)), min_size=2, max_size=4))
    def the_provider_settles_several_orders_of_one_wallet(
        self, who: int, bodies: list[dict[str, Any]], settled: list[tuple[str, int]]
    ) -> None:
        """The provider settles several live orders of one wallet at once, each with a status
        that owes a refund, and one poll hears of them all: each is refunded what its status
        owes, once, the refunds following one another on the wallet (their versions and
        balances chained; the invariants say so after the step), all in the poll's one
        transaction. The wallet places a few orders first and the submitter sends them (with
        faults off, so that the poll is answered)."""
        account = self.opened[who]
        for body in bodies:
            self.place(who, f"settled-together-{next(self.bursts)}", Request(body, True))
        self.stop_faults()
        self.run_the_submitter()
        live = self.run(self.harness.owner.fetch(
            "select order_id from orders where account_id = $1 and submission = 'submitted'"
            " and status not in ('completed', 'partial', 'canceled', 'failed')"
            " order by order_id desc limit $2",
            account.account_id, len(settled),
        ))
        if len(live) < 2:
            return
        chosen = [row["order_id"] for row in live]
        for order_id, (status, remains) in zip(chosen, settled, strict=False):
            self.force_at_provider(order_id, status, remains)
        # Due now, as when a poll's lease (kept by a batch that failed) runs out.
        self.run(self.harness.owner.execute(
            "update order_polls set next_check_at = now() where order_id = any($1::bigint[])",
            chosen,
        ))
        self.run(self.poll())
        statuses = self.run(self.harness.owner.fetch(
            "select order_id, status from orders where order_id = any($1::bigint[])", chosen
        ))
        assert all(row["status"] in TERMINAL for row in statuses), [dict(r) for r in statuses]
        transactions = self.run(self.harness.owner.fetchval(
            "select count(distinct transaction_id) from events where type = 'Refunded'"
            " and (data->>'order_id')::bigint = any($1::bigint[])",
            chosen,
        ))
        assert transactions <= 1, f"the poll's refunds took {transactions} transactions"

    @rule(placed=orders)
    def check(self, placed: Placed) -> None:
        response = self.post(f"{ORDERS}/{placed.order_id}/check", placed.account)
        assert response.status_code in (200, 503), response.text
        if response.status_code == 200:
            assert response.json()["data"]["order_id"] == str(placed.order_id)

    @rule(data=st.data(), status=st.sampled_from(["Canceled", "Partial", "Refunded", "Fail"]),
          remains=REMAINS, size=st.integers(2, 6))
    def provider_settles_while_clients_check(
        self, data: st.DataObject, status: str, remains: int | None, size: int
    ) -> None:
        """The provider settles a live order with a status that owes a refund while its client
        hammers check and the poller runs: whichever records the status first pays the refund,
        and it is paid once (the invariants say so after the step)."""
        live = self.run(self.harness.owner.fetch(
            "select order_id, account_id, provider_order_id from orders"
            " where submission = 'submitted' and status not in"
            " ('completed', 'partial', 'canceled', 'failed') order by order_id"
        ))
        if not live:
            return
        order = data.draw(st.sampled_from(live))
        account = next(a for a in self.opened if a.account_id == order["account_id"])
        forced = {"status": status, "remains": remains}
        response = self.run(self.harness.control.post(
            f"/orders/{order['provider_order_id']}",
            json={name: value for name, value in forced.items() if value is not None},
        ))
        assert response.status_code == 200, response.text
        path = f"{ORDERS}/{order['order_id']}/check"
        headers = bearer(account.key)

        async def burst() -> list[Any]:
            return list(await asyncio.gather(
                *[self.harness.api.post(path, headers=headers) for _ in range(size)],
                self.poll(),
            ))

        for checked in self.run(burst())[:-1]:
            assert checked.status_code in (200, 503), checked.text

    @rule(placed=orders)
    def cancel(self, placed: Placed) -> None:
        order = self.run(self.harness.owner.fetchrow(
            "select status, submission, cancel_supported from orders where order_id = $1",
            placed.order_id,
        ))
        response = self.post(f"{ORDERS}/{placed.order_id}/cancel", placed.account)
        expected = {200: None, 409: "BOOST_CANCEL_REJECTED", 422: "BOOST_CANCEL_UNAVAILABLE",
                    503: "PROVIDER_UNAVAILABLE"}
        assert response.status_code in expected, response.text
        if response.status_code != 200:
            assert response.json()["code"] == expected[response.status_code], response.text
        never_sent = order["submission"] == "queued" and order["status"] not in TERMINAL
        if order["cancel_supported"] and never_sent:
            # Canceled before submission: canceled and refunded at once.
            assert response.status_code == 200, response.text
            data = response.json()["data"]
            assert data["status"] == "canceled" and data["refunded"] is True, data

    @rule(data=st.data(), how=st.sampled_from(["check", "poller", "cancel accepted",
                                                "cancel refused"]),
          settling=st.sampled_from(["Completed", "Partial", "Canceled", "Fail"]),
          settling_remains=st.integers(0, 200), status=PROVIDER_STATUSES, remains=REMAINS)
    def a_late_reply_reaches_a_settled_order(
        self, data: st.DataObject, how: str, settling: str, settling_remains: int,
        status: str, remains: int | None,
    ) -> None:
        """A reply fetched before the order settled and recorded after it (a check's or the
        poller's status, or the provider's answer to a cancel sent meanwhile) changes nothing:
        a settled order stays as it settled, and is never refunded again nor anew. The order is
        one already settled, or a submitted one that a check settles first."""
        candidates = self.run(self.harness.owner.fetch(
            "select order_id from orders where submission = 'submitted' order by order_id"
        ))
        if not candidates:
            return
        order_id = data.draw(st.sampled_from([row["order_id"] for row in candidates]))

        async def observe(upstream: str, left: int | None) -> None:
            async with self.harness.runtime.pool.acquire() as connection:
                await fulfilment.observe(connection, order_id, upstream, None, left, None, "check")

        before = self.run(self.settled_facts(order_id))
        if before is None:
            self.run(observe(settling, settling_remains))
            before = self.run(self.settled_facts(order_id))
            assert before is not None, (order_id, settling)

        async def late_reply() -> None:
            async with self.harness.runtime.pool.acquire() as connection:
                if how == "poller":
                    reply = (status, None, remains, None)
                    await fulfilment.observe_batch(connection, {order_id: reply}, "poller")
                elif how != "check":
                    await fulfilment.record_cancel_reply(
                        connection, order_id, how == "cancel accepted", "late", "api"
                    )
            if how == "check":
                await observe(status, remains)

        self.run(late_reply())
        assert self.run(self.settled_facts(order_id)) == before, (how, status, remains)

    async def settled_facts(self, order_id: int) -> tuple[Any, ...] | None:
        """A settled order's row, its wallet's row and its events; None if it is not settled."""
        owner = self.harness.owner
        order = await owner.fetchrow("select * from orders where order_id = $1", order_id)
        if order["status"] not in TERMINAL:
            return None
        wallet_row = await owner.fetchrow(
            "select * from wallets where account_id = $1", order["account_id"]
        )
        events = await owner.fetchval(
            "select count(*) from events where stream_id = $1 or (type = 'Refunded'"
            " and (data->>'order_id')::bigint = $2)",
            f"order-{order_id}", order_id,
        )
        return dict(order), dict(wallet_row), events

    # -- rules: the provider and the workers ----------------------------------------------

    @rule(data=st.data(), status=PROVIDER_STATUSES, remains=REMAINS,
          start_count=st.one_of(st.none(), st.integers(0, 10**6)))
    def provider_moves(
        self, data: st.DataObject, status: str, remains: int | None, start_count: int | None
    ) -> None:
        """The provider changes one of the orders it holds (including any whose reply was lost)."""
        held = self.run(self.harness.control.get("/orders")).json()
        if not held:
            return
        provider_order_id = data.draw(st.sampled_from([order["order"] for order in held]))
        forced = {"status": status, "remains": remains, "start_count": start_count}
        response = self.run(self.harness.control.post(
            f"/orders/{provider_order_id}",
            json={name: value for name, value in forced.items() if value is not None},
        ))
        assert response.status_code == 200, response.text

    @rule(steps=st.integers(1, 3))
    def provider_ticks(self, steps: int) -> None:
        response = self.run(self.harness.control.post("/tick", json={"steps": steps}))
        assert response.status_code == 200, response.text

    async def poll(self) -> None:
        with contextlib.suppress(ProviderError):  # a failed batch keeps its lease, as in the server
            await poller.poll_once(
                self.harness.runtime.pool, self.harness.provider, POLL_INTERVAL_S
            )

    @rule()
    def run_the_poller(self) -> None:
        self.run(self.poll())

    @rule()
    def run_the_submitter(self) -> None:
        self.run(submitter.drain(self.harness.runtime.pool, self.harness.provider))

    @rule()
    def let_the_workers_run(self) -> None:
        """Time passes: the provider moves every order one step (some stop short as Partial),
        and the submitter and the poller run, as the server's workers would."""
        self.provider_ticks(1)
        self.run_the_submitter()
        self.run_the_poller()

    @rule(action=st.sampled_from(["add", "status", "cancel"]), mode=FAULT_MODES,
          rate=st.sampled_from([1.0, 0.5]))
    def inject_a_fault(self, action: str, mode: str, rate: float) -> None:
        # A "timeout" outlasts the client's timeout; "latency" stays well within it.
        latency_ms = {"timeout": 1000, "latency": 50}.get(mode, 0)
        fault = {"action": action, "mode": mode, "rate": rate, "latency_ms": latency_ms}
        assert self.run(self.harness.control.post("/faults", json=fault)).status_code == 200

    @rule()
    def provider_recovers(self) -> None:
        fault = {"action": "*", "mode": "none"}
        assert self.run(self.harness.control.post("/faults", json=fault)).status_code == 200

    # -- invariants -----------------------------------------------------------------------

    @invariant()
    def money_is_conserved(self) -> None:
        """Each wallet's balance is Σ credits - Σ debits + Σ refunds of its own events, never
        below zero, and equal to the last event's balance_after, the wallets projection and
        GET /wallet. Its credits are the first credit of each reference (a repeated reference
        pays nothing), and its debits are the prices of exactly the orders answered 201."""
        rows = self.run(self.harness.owner.fetch(
            """
            select w.account_id, w.balance_kobo,
                   coalesce(sum((e.data->>'amount_kobo')::bigint)
                            filter (where e.type = 'WalletCredited'), 0) as credits,
                   coalesce(sum((e.data->>'amount_kobo')::bigint)
                            filter (where e.type = 'FundsDebited'), 0) as debits,
                   coalesce(sum((e.data->>'amount_kobo')::bigint)
                            filter (where e.type = 'Refunded'), 0) as refunds,
                   (array_agg((e.data->>'balance_after_kobo')::bigint
                              order by e.version desc))[1] as last_balance
              from wallets w
              left join events e on e.stream_id = 'wallet-' || w.account_id
                   and e.stream_id = any($1::text[])
             group by w.account_id, w.balance_kobo
            """,
            [f"wallet-{account.account_id}" for account in self.opened],
        ))
        by_id = {account.account_id: account for account in self.opened}
        assert {row["account_id"] for row in rows} == set(by_id)
        for row in rows:
            account = by_id[row["account_id"]]
            balance = row["credits"] - row["debits"] + row["refunds"]
            assert balance >= 0, dict(row)
            assert balance == row["balance_kobo"] == (row["last_balance"] or 0), dict(row)
            response = self.run(self.harness.api.get("/api/v1/wallet", headers=bearer(account.key)))
            assert parse_naira(response.json()["data"]["balance"]) == balance, response.text
            assert row["credits"] == sum(self.credits[account.account_id].values()), dict(row)
            charged = [p.price_kobo for (owner, _), p in self.first_answers.items()
                       if owner == account.account_id]
            assert row["debits"] == sum(charged), (dict(row), charged)

    @invariant()
    def refunded_at_most_once_and_never_more_than_charged(self) -> None:
        """Each order is refunded at most once (one Refunded event), never more than its charge,
        and exactly what its settled status owes: the whole charge when canceled or failed,
        floor(charge * remains / units) with remains clamped to 0..units when partial or
        completed as Expired (units: a subscription's posts, else the billed quantity),
        nothing when completed or not settled. The projection agrees with the events."""
        rows = self.run(self.harness.owner.fetch(
            """
            select o.order_id, o.price_kobo, o.type, o.quantity, o.billable_quantity, o.status,
                   o.upstream_status, o.remains,
                   o.refunded, o.refunded_kobo, count(r.global_position) as refunds,
                   coalesce(sum((r.data->>'amount_kobo')::bigint), 0) as refunded_events_kobo
              from orders o
              left join events r on r.type = 'Refunded'
                   and r.stream_id = 'wallet-' || o.account_id
                   and (r.data->>'order_id')::bigint = o.order_id
             group by o.order_id
            """
        ))
        for row in rows:
            order = dict(row)
            assert row["refunds"] <= 1, f"order refunded {row['refunds']} times: {order}"
            assert row["refunded_events_kobo"] <= row["price_kobo"], order
            assert row["refunded_events_kobo"] == _refund_owed(row), order
            assert row["refunded_kobo"] == row["refunded_events_kobo"], order
            assert row["refunded"] == (row["refunds"] == 1), order
        orphans = self.run(self.harness.owner.fetchval(
            "select count(*) from events r where r.type = 'Refunded' and not exists"
            " (select 1 from orders o where o.order_id = (r.data->>'order_id')::bigint)"
        ))
        assert orphans == 0, "a refund for an order that does not exist"

    @invariant()
    def one_order_per_key_and_replays_equal_the_first_answer(self) -> None:
        """Each (account, idempotency key) has at most one order; the keys with an order are
        exactly those the model saw answered 201, and the stored answer every replay returns is
        byte for byte that first answer."""
        rows = self.run(self.harness.owner.fetch(
            """
            select (p.data->>'account_id')::bigint as account_id, p.data->>'idempotency_key' as key,
                   count(*) as orders, min((p.data->>'order_id')::bigint) as order_id,
                   min(k.response) as response
              from events p
              left join idempotency_keys k on k.account_id = (p.data->>'account_id')::bigint
                   and k.idempotency_key = p.data->>'idempotency_key'
             where p.type = 'OrderPlaced'
             group by 1, 2
            """
        ))
        assert all(row["orders"] == 1 for row in rows), [dict(row) for row in rows]
        assert {(row["account_id"], row["key"]) for row in rows} == set(self.first_answers)
        for row in rows:
            first = self.first_answers[(row["account_id"], row["key"])]
            assert row["order_id"] == first.order_id
            assert bytes(row["response"]) == first.answer, (row["response"], first.answer)

    @invariant()
    def every_stream_verifies(self) -> None:
        """Every stream's hash chain, versions and money invariants hold, and so does every
        other check of ``boost audit verify``; every few steps the projections are compared
        with a replay too (below)."""
        report = self.run(verify.verify(self.harness.owner, projections_too=False))
        assert report.ok, report.findings

    @invariant()
    def projections_equal_a_replay(self) -> None:
        """Rebuilding every projection from the log gives exactly the live tables (checked every
        few steps, and at the end of every program)."""
        self.steps += 1
        if self.steps % PROJECTIONS_EVERY_STEPS == 0:
            self.assert_projections_equal_a_replay()

    def assert_projections_equal_a_replay(self) -> None:
        differences = self.run(
            compare_with_replay(self.harness.owner, list(projections.PROJECTIONS))
        )
        assert differences == [], differences

    # -- the end of a program -------------------------------------------------------------

    def check_until_answered(self, placed: Placed) -> None:
        """Check an order until the provider answers (a slow reply is a 503, not a failure)."""
        for _ in range(5):
            checked = self.post(f"{ORDERS}/{placed.order_id}/check", placed.account)
            if checked.status_code == 200:
                return
            assert checked.status_code == 503, checked.text
        raise AssertionError(f"order {placed.order_id}: the provider never answered a check")

    def teardown(self) -> None:
        """Let everything settle (no faults, the queue drained, every order at the provider
        completed and checked), then compare the projections with a replay once more."""
        if sys.exc_info()[0] is not None:
            return  # a step failed: let hypothesis report that failure, not a later one
        self.run(self.harness.control.post("/faults", json={"action": "*", "mode": "none"}))
        self.run(submitter.drain(self.harness.runtime.pool, self.harness.provider))
        for placed in {p.order_id: p for p in self.first_answers.values()}.values():
            provider_order_id = self.run(self.harness.owner.fetchval(
                "select provider_order_id from orders where order_id = $1", placed.order_id
            ))
            if provider_order_id is not None:
                self.run(self.harness.control.post(
                    f"/orders/{provider_order_id}", json={"status": "Completed", "remains": 0}
                ))
                self.check_until_answered(placed)
        unsettled = self.run(self.harness.owner.fetch(
            "select order_id, status, submission from orders"
            " where status not in ('completed', 'partial', 'canceled', 'failed')"
            " and submission <> 'unknown'"
        ))
        assert unsettled == [], [dict(row) for row in unsettled]
        self.money_is_conserved()
        self.refunded_at_most_once_and_never_more_than_charged()
        self.assert_projections_equal_a_replay()


def test_ledger_state_machine(harness: Harness) -> None:
    """Random programs of checkouts, retries, bursts, checks, cancels, provider moves, faults
    and worker runs keep every invariant of the ledger (see the module docstring)."""
    profile = settings.get_current_profile_name()
    budget = settings(max_examples=15, stateful_step_count=25) if profile == "ci" else settings()
    run_state_machine_as_test(lambda: LedgerMachine(harness), settings=budget)
