"""Tolerant parsing and error translation of odd replies the simulator never sends (no I/O)."""

from collections.abc import AsyncIterator, Callable
from decimal import Decimal

import httpx
import pytest

from boost_ledger.upstream import (
    ProviderClient,
    ProviderMalformed,
    ProviderRefused,
    ProviderService,
    ProviderStatus,
    ProviderUnavailable,
)
from boost_ledger.upstream.parsing import decode_json

Reply = Callable[[httpx.Request], httpx.Response]
FakeProvider = Callable[[Reply], ProviderClient]


@pytest.fixture
async def fake_provider() -> AsyncIterator[FakeProvider]:
    """Build clients whose every request is answered by a function, without a network."""
    clients: list[ProviderClient] = []

    def build(reply: Reply) -> ProviderClient:
        transport = httpx.MockTransport(reply)
        client = ProviderClient(
            "https://panel.test/api/v2", "k", transport=transport, read_retries=2, backoff_s=0
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.aclose()


def json_reply(body: str, status_code: int = 200) -> Reply:
    return lambda request: httpx.Response(status_code, content=body.encode())


async def test_services_with_odd_but_valid_shapes(fake_provider: FakeProvider) -> None:
    """Numbers as ints, floats or strings, 0/1/"1" booleans and missing keys all parse exactly."""
    body = """[
      {"service": 7, "name": "A", "type": "Default", "category": "C", "rate": 0.1,
       "min": 10, "max": "1000", "refill": 1, "cancel": "0", "dripfeed": "true"},
      {"service": "8", "name": "B", "category": "C", "rate": "1.23456",
       "min": "1", "max": 1, "refill": false, "desc": null}
    ]"""
    reply = await fake_provider(json_reply(body)).services()
    assert reply.unreadable == []
    assert reply.services == [
        ProviderService(service="7", name="A", type="Default", category="C", rate=Decimal("0.1"),
                        min=10, max=1000, refill=True, cancel=False, dripfeed=True),
        ProviderService(service="8", name="B", type="Default", category="C",
                        rate=Decimal("1.23456"), min=1, max=1, refill=False, cancel=False),
    ]  # fmt: skip


async def test_status_spelling_and_missing_numbers(fake_provider: FakeProvider) -> None:
    """ "Cancelled" reads as "Canceled"; null, empty or absent numbers read as None."""
    body = '{"status": " Cancelled ", "charge": 0.27819, "start_count": "", "remains": null}'
    status = await fake_provider(json_reply(body)).status("1")
    assert status == ProviderStatus(status="Canceled", charge=Decimal("0.27819"))


async def test_negative_remains_and_unknown_status_survive(fake_provider: FakeProvider) -> None:
    """Over-delivery (negative remains) and statuses we do not know are passed through as sent."""
    body = '{"status": "Refunded", "charge": "1", "start_count": 5, "remains": "-12"}'
    status = await fake_provider(json_reply(body)).status("1")
    assert (status.status, status.remains, status.start_count) == ("Refunded", -12, 5)


@pytest.mark.parametrize(
    ("charge", "start_count"),
    [
        ('"NaN"', '"n/a"'), ("true", '"1,000"'), ('"0.5 USD"', "1.5"),
        ("1e9999999999999999999", "1e-9999999999999999999"),
    ],
)
async def test_an_unreadable_charge_or_start_count_is_unknown_not_the_whole_status(
    fake_provider: FakeProvider, charge: str, start_count: str
) -> None:
    """The provider's charge and the start count only inform: one that cannot be read is None,
    and the status and remains beside it are read (it made the whole status malformed, so a
    Canceled order was never refunded)."""
    body = (
        f'{{"status": "Canceled", "remains": "100", "charge": {charge},'
        f' "start_count": {start_count}}}'
    )
    status = await fake_provider(json_reply(body)).status("1")
    assert status == ProviderStatus(status="Canceled", remains=100)


@pytest.mark.parametrize("remains", ['"many"', '"1.5"', '"1,250"', '"-"', "1e9999999999", "true"])
async def test_an_unreadable_remains_is_marked_not_the_whole_status(
    fake_provider: FakeProvider, remains: str
) -> None:
    """A remains that cannot be read is None and marked unreadable, and the status beside it is
    read: a Canceled order owes its whole charge whatever remains says (it made the whole status
    malformed, so such an order was never refunded), and the mark lets the ledger hold back a
    Partial or an Expired, whose refund depends on it."""
    body = f'{{"status": "Canceled", "remains": {remains}, "start_count": 5}}'
    status = await fake_provider(json_reply(body)).status("1")
    assert status == ProviderStatus(
        status="Canceled", start_count=5, remains=None, remains_unreadable=True
    )
    for absent in ("null", '""'):
        body = f'{{"status": "Expired", "remains": {absent}}}'
        assert await fake_provider(json_reply(body)).status("1") == ProviderStatus(
            status="Expired"
        )


async def test_multi_status_leaves_no_requested_id_out(fake_provider: FakeProvider) -> None:
    """An id the provider leaves out of a multi-status reply comes back as a refusal."""
    body = '{"1": {"status": "Completed", "remains": 0}, "2": {"error": "Incorrect order ID"}}'
    statuses = await fake_provider(json_reply(body)).multi_status(["1", "2", "3"])
    assert statuses == {
        "1": ProviderStatus(status="Completed", remains=0),
        "2": ProviderRefused("Incorrect order ID"),
        "3": ProviderRefused("Missing from provider reply"),
    }


async def test_a_null_error_beside_the_answer_is_no_error(fake_provider: FakeProvider) -> None:
    """Some panel scripts send ``"error": null`` in every reply: beside a status (alone, or in a
    multi-status slot) or a balance it is no refusal, and the answer is read (it was the
    refusal "None": such an order was never settled, and the balance never counted)."""
    body = '{"status": "Canceled", "remains": "100", "error": null}'
    provider = fake_provider(json_reply(body))
    assert await provider.status("1") == ProviderStatus(status="Canceled", remains=100)
    body = '{"1": {"status": "Completed", "remains": 0, "error": null}, "2": {"error": null}}'
    statuses = await fake_provider(json_reply(body)).multi_status(["1", "2"])
    assert statuses == {
        "1": ProviderStatus(status="Completed", remains=0),
        "2": ProviderRefused("None"),  # a null error and nothing else still answers nothing
    }
    body = '{"balance": "12.5", "currency": "USD", "error": null}'
    balance = await fake_provider(json_reply(body)).balance()
    assert (balance.balance, balance.currency) == (Decimal("12.5"), "USD")
    with pytest.raises(ProviderRefused, match=r"^None$"):
        await fake_provider(json_reply('{"error": null}')).status("1")


@pytest.mark.parametrize(
    ("call", "body"),
    [
        ("status", '{"error": null, "message": "Incorrect order ID"}'),
        ("cancel", '{"error": null, "message": "Incorrect order ID"}'),
        ("add", '{"error": null, "message": "Not enough funds"}'),
    ],
)
async def test_a_null_error_without_the_answer_is_still_a_refusal(
    fake_provider: FakeProvider, call: str, body: str
) -> None:
    """Only beside the answer's own field (the status, the balance, the order id) is a null
    error no error: without it the reply answers nothing, and stays the refusal it was."""
    provider = fake_provider(json_reply(body))
    calls = {
        "status": lambda: provider.status("1"),
        "cancel": lambda: provider.cancel(["1"]),
        "add": lambda: provider.add("1", {"link": "x", "quantity": "10"}),
    }
    with pytest.raises(ProviderRefused, match=r"^None$"):
        await calls[call]()


async def test_a_cancel_item_with_a_null_error_is_that_items_refusal(
    fake_provider: FakeProvider,
) -> None:
    """A cancel item is a plain value when it succeeds, so an object in its place is that
    item's refusal, whatever its error says; the other items are read."""
    body = '[{"order": 1, "cancel": {"error": null, "message": "No"}}, {"order": 2, "cancel": 1}]'
    replies = await fake_provider(json_reply(body)).cancel(["1", "2"])
    assert replies == {"1": ProviderRefused("None"), "2": True}


async def test_cancel_accepts_every_spelling_of_yes(fake_provider: FakeProvider) -> None:
    """Cancel results may be 1, "1" or true; an error object is a per-item refusal."""
    body = """[{"order": 1, "cancel": 1}, {"order": "2", "cancel": "1"},
               {"order": 3, "cancel": true}, {"order": 4, "cancel": {"error": "Nope"}}]"""
    replies = await fake_provider(json_reply(body)).cancel(["1", "2", "3", "4"])
    assert replies == {"1": True, "2": True, "3": True, "4": ProviderRefused("Nope")}


@pytest.mark.parametrize(
    ("body", "status_code", "error"),
    [
        ('{"error": "Incorrect order ID"}', 200, ProviderRefused),
        ('{"error": "Bad request"}', 400, ProviderRefused),
        ('{"error": "down"}', 503, ProviderUnavailable),
        ("<html>502 Bad Gateway</html>", 502, ProviderUnavailable),
        ("<html>Not Found</html>", 404, ProviderMalformed),
        ('{"status": "x"}', 404, ProviderMalformed),
        ("", 200, ProviderMalformed),
        ("[1, 2]", 200, ProviderMalformed),
        ('{"charge": "1"}', 200, ProviderMalformed),
        ('{"status": 5}', 200, ProviderMalformed),
    ],
)
async def test_odd_status_replies_become_typed_errors(
    fake_provider: FakeProvider, body: str, status_code: int, error: type[Exception]
) -> None:
    """Every odd reply to a read is one typed error, never a KeyError or a crash."""
    with pytest.raises(error):
        await fake_provider(json_reply(body, status_code)).status("1")


@pytest.mark.parametrize(
    "body",
    [
        '{"order": null}', "{}", '{"order": 1.5}', "[]", '{"order": 23501',
        # ids no later call could carry: empty, in a comma list, with a space, too long
        '{"order": ""}', '{"order": "23,501"}', '{"order": "235 01"}', '{"order": " 23501"}',
        '{"order": "' + "7" * 65 + '"}',
        # a number no Decimal holds (it raised decimal.InvalidOperation, no typed error)
        '{"order": 1e9999999999999999999}',
    ],
)
async def test_garbled_add_reply_is_malformed(fake_provider: FakeProvider, body: str) -> None:
    """An add reply without a usable order id is malformed: the outcome is unknown."""
    with pytest.raises(ProviderMalformed):
        await fake_provider(json_reply(body)).add("1", {"link": "x", "quantity": "10"})


async def test_a_bad_catalog_entry_is_set_aside(fake_provider: FakeProvider) -> None:
    """A catalog entry with a bad rate, a missing bound or a bad flag is set aside with its id
    and its reason; the entries around it are read."""
    good = '{"service": 2, "name": "B", "rate": "1", "min": 1, "max": 2}'
    body = f"""[{good},
      {{"service": 3, "name": "A", "rate": "x", "min": 1, "max": 2}},
      {{"service": 4, "name": "A", "rate": "1", "min": 1}},
      {{"service": 5, "rate": "1", "min": 1, "max": 2, "cancel": "maybe"}}, {good}]"""
    reply = await fake_provider(json_reply(body)).services()
    assert [service.service for service in reply.services] == ["2", "2"]
    assert [(entry.position, entry.service) for entry in reply.unreadable] == [
        (1, "3"), (2, "4"), (3, "5"),
    ]  # fmt: skip
    assert [entry.reason for entry in reply.unreadable] == [
        "rate: not a number: 'x'", "missing field 'max'", "cancel: not a boolean: 'maybe'",
    ]  # fmt: skip


@pytest.mark.parametrize("body", ['{"services": []}', '"services"', "null", "7"])
async def test_a_catalog_that_is_not_a_list_is_malformed(
    fake_provider: FakeProvider, body: str
) -> None:
    """A services reply that is not a list at all is malformed as a whole."""
    with pytest.raises(ProviderMalformed):
        await fake_provider(json_reply(body)).services()


async def test_a_connection_error_is_unavailable(fake_provider: FakeProvider) -> None:
    """A transport failure is ProviderUnavailable, after the read's retries."""
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(ProviderUnavailable):
        await fake_provider(refuse).balance()
    assert len(calls) == 3


async def test_refusals_are_not_retried_and_requests_are_forms(fake_provider: FakeProvider) -> None:
    """A refusal ends a read at once; every call is a form POST carrying key and action."""
    calls: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=b'{"error": "Incorrect order ID"}')

    with pytest.raises(ProviderRefused):
        await fake_provider(refuse).status("42")
    [request] = calls
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.content == b"key=k&action=status&order=42"


async def test_malformed_reads_are_retried_until_they_parse(fake_provider: FakeProvider) -> None:
    """A read that gets garbage and then a good reply succeeds on its retry."""
    replies = iter([b"<html>", b'{"balance": "1.50000", "currency": "USD"}'])
    balance = await fake_provider(
        lambda request: httpx.Response(200, content=next(replies))
    ).balance()
    assert balance.balance == Decimal("1.5")


async def test_id_lists_are_checked_before_any_request(fake_provider: FakeProvider) -> None:
    """Too many ids, a bare string, an empty id or one with a comma is a caller error."""
    client = fake_provider(json_reply("{}"))
    with pytest.raises(ValueError):
        await client.cancel([str(number) for number in range(101)])
    with pytest.raises(TypeError):
        await client.multi_status("123")
    with pytest.raises(ValueError):
        await client.refill(["1,2"])
    with pytest.raises(ValueError):
        await client.multi_status(["1", ""])


def test_a_nul_anywhere_in_a_reply_becomes_a_replacement_character() -> None:
    """Keys and texts at any depth lose their NUL, which no PostgreSQL text can hold; the text
    of an escaped backslash before ``u0000`` is not a NUL, and stays as it is."""
    body = rb'{"1\u0000": {"status": "In\u0000progress", "list": ["a\u0000"]}, "k": "\\u0000"}'
    assert decode_json(body) == {
        "1\ufffd": {"status": "In\ufffdprogress", "list": ["a\ufffd"]},
        "k": "\\u0000",
    }
