"""Unit tests of boost_ledger.ledger.order_types: fields, billable quantity and errors per type."""

import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from boost_ledger.ledger.money import charge_kobo
from boost_ledger.ledger.order_types import (
    SERVICE_TYPES,
    FieldErrors,
    LinkRequired,
    OrderInvalid,
    OrderRequest,
    QuantityOutOfRange,
    QuantityRequired,
    ServiceLimits,
    is_flat,
    parse_order_fields,
)
from boost_ledger.upstream import sim_orders

LINK = "https://instagram.com/p/example"
DEFAULT_POSTS = 5


def parse(
    service_type: str, body: dict[str, object], minimum: int = 100, maximum: int = 10_000
) -> OrderRequest:
    limits = ServiceLimits(type=service_type, min=minimum, max=maximum)
    return parse_order_fields(limits, body, subscription_default_posts=DEFAULT_POSTS)


def field_errors(
    service_type: str, body: dict[str, object], minimum: int = 100
) -> dict[str, list[str]]:
    with pytest.raises(FieldErrors) as caught:
        parse(service_type, body, minimum)
    assert caught.value.code == "VALIDATION_FAILED"
    return caught.value.errors


def price(request: OrderRequest, service_type: str, rate_per_1000_kobo: int) -> int:
    return charge_kobo(rate_per_1000_kobo, request.billable_quantity, flat=is_flat(service_type))


# --- the catalogue of types ---------------------------------------------------------------------


def test_there_are_thirteen_service_types_and_only_package_is_flat() -> None:
    """SERVICE_TYPES names the 13 SMM v2 types exactly; Package alone is charged flat."""
    assert len(SERVICE_TYPES) == 13 == len(set(SERVICE_TYPES))
    assert "Mentions with Hashtags" in SERVICE_TYPES and "Invites from Groups" in SERVICE_TYPES
    assert [t for t in SERVICE_TYPES if is_flat(t)] == ["Package"]


def test_error_classes_carry_the_spec_codes() -> None:
    """Each OrderInvalid subclass carries its error code from the spec's table."""
    assert issubclass(FieldErrors, OrderInvalid)
    assert FieldErrors.code == "VALIDATION_FAILED"
    assert LinkRequired.code == "BOOST_LINK_REQUIRED"
    assert QuantityRequired.code == "BOOST_QUANTITY_REQUIRED"
    assert QuantityOutOfRange.code == "BOOST_QUANTITY_OUT_OF_RANGE"


# --- Default ------------------------------------------------------------------------------------


def test_default_bills_the_quantity() -> None:
    """Default: 1000 units at 1500.00 per 1000 cost 1500.00; caller-owned keys are ignored."""
    body: dict[str, object] = {
        "service_id": "101",
        "idempotency_key": "k1",
        "link": LINK,
        "quantity": 1000,
    }
    request = parse("Default", body)
    assert request == OrderRequest(
        fields={"link": LINK, "quantity": 1000}, link=LINK, quantity=1000, billable_quantity=1000
    )
    assert price(request, "Default", 150_000) == 150_000


def test_default_drip_feed_bills_quantity_times_runs() -> None:
    """Default with runs and interval bills quantity x runs and sends both upstream."""
    body: dict[str, object] = {"link": f"  {LINK} ", "quantity": 500, "runs": 3, "interval": 30}
    request = parse("Default", body)
    assert request.fields == {"link": LINK, "quantity": 500, "runs": 3, "interval": 30}
    assert (request.quantity, request.billable_quantity) == (500, 1500)
    assert price(request, "Default", 1234) == 1851  # ceil(1234 * 1500 / 1000) = ceil(1851.0)
    assert (
        price(parse("Default", {"link": LINK, "quantity": 101}), "Default", 1234) == 125
    )  # 124.634


@pytest.mark.parametrize(
    ("body", "minimum", "maximum"),
    [
        ({"link": LINK, "quantity": 99}, 100, 10_000),
        ({"link": LINK, "quantity": 10_001}, 100, 10_000),
        ({"link": LINK, "quantity": 0}, 100, 10_000),
        ({"link": LINK, "quantity": -5}, 100, 10_000),
        ({"link": LINK, "quantity": 50, "runs": 3, "interval": 5}, 100, 10_000),  # min per run
        ({"link": LINK, "quantity": 5000, "runs": 3, "interval": 5}, 100, 10_000),  # max on total
        ({"link": LINK, "quantity": 10**30}, 100, 10_000),
    ],
)
def test_default_quantity_out_of_range(body: dict[str, object], minimum: int, maximum: int) -> None:
    """Default checks min per run and on the total, max on the total, and says both bounds."""
    with pytest.raises(QuantityOutOfRange) as caught:
        parse("Default", body, minimum, maximum)
    assert (caught.value.min, caught.value.max) == (minimum, maximum)
    assert f"between {minimum} and {maximum}." in caught.value.message
    assert caught.value.code == "BOOST_QUANTITY_OUT_OF_RANGE"


def test_out_of_range_message_matches_the_spec_example() -> None:
    """The plain quantity message reads "Quantity must be between 100 and 10000."."""
    with pytest.raises(QuantityOutOfRange, match=r"^Quantity must be between 100 and 10000\.$"):
        parse("Default", {"link": LINK, "quantity": 1})


def test_provider_limits_are_clamped_to_our_bounds() -> None:
    """A provider min of 0 still needs 1 unit; a provider max above 10**9 is capped at 10**9."""
    with pytest.raises(QuantityOutOfRange) as caught:
        parse("Default", {"link": LINK, "quantity": 0}, 0, 10**12)
    assert (caught.value.min, caught.value.max) == (1, 10**9)


@pytest.mark.parametrize(
    ("body", "bad_fields"),
    [
        ({"link": LINK, "quantity": "1000"}, {"quantity"}),
        ({"link": LINK, "quantity": 1000.0}, {"quantity"}),
        ({"link": LINK, "quantity": True}, {"quantity"}),
        ({"link": LINK, "quantity": [1000]}, {"quantity"}),
        ({"link": 42, "quantity": 1000}, {"link"}),
        ({"link": "ftp://example.com/x", "quantity": 1000}, {"link"}),
        ({"link": "https://", "quantity": 1000}, {"link"}),
        ({"link": "instagram.com/p/x", "quantity": 1000}, {"link"}),
        ({"link": "https://insta gram.com/p", "quantity": 1000}, {"link"}),
        ({"link": "https://example.com/\x00", "quantity": 1000}, {"link"}),
        ({"link": "https://example.com:99999/", "quantity": 1000}, {"link"}),
        ({"link": "https://[::1/", "quantity": 1000}, {"link"}),
        ({"link": "https://e.com/" + "a" * 2040, "quantity": 1000}, {"link"}),
        ({"link": LINK, "quantity": 1000, "runs": 1, "interval": 5}, {"runs"}),
        ({"link": LINK, "quantity": 1000, "runs": 2, "interval": 0}, {"interval"}),
        ({"link": LINK, "quantity": 1000, "runs": 2}, {"interval"}),
        ({"link": LINK, "quantity": 1000, "interval": 5}, {"runs"}),
        ({"link": LINK, "quantity": 1000, "runs": 2.0, "interval": 5}, {"runs"}),
        ({"link": LINK, "quantity": 1000, "comments": "hi"}, {"comments"}),
        ({"link": LINK, "quantity": 1000, "price": "1.00"}, {"price"}),
        ({"quantity": "x"}, {"quantity", "link"}),  # every bad and missing field at once
    ],
)
def test_default_field_errors(body: dict[str, object], bad_fields: set[str]) -> None:
    """Wrong types, bad links, bad or unpaired runs/interval and unknown keys: VALIDATION_FAILED."""
    assert set(field_errors("Default", body)) == bad_fields


@pytest.mark.parametrize("key", ["price", "charge", "amount"])
def test_client_prices_are_refused(key: str) -> None:
    """A price sent by the client is refused with the server-computes-the-price message."""
    errors = field_errors("Default", {"link": LINK, "quantity": 1000, key: 1})
    assert errors == {key: ["The server computes the price; do not send it."]}


@pytest.mark.parametrize("link", [None, "", "   "])
def test_default_without_link_needs_a_link(link: str | None) -> None:
    """A missing, null or blank link is BOOST_LINK_REQUIRED."""
    with pytest.raises(LinkRequired) as caught:
        parse("Default", {"link": link, "quantity": 1000})
    assert caught.value.code == "BOOST_LINK_REQUIRED"


def test_default_without_quantity_needs_a_quantity() -> None:
    """A missing or null quantity is BOOST_QUANTITY_REQUIRED; a missing link is reported first."""
    with pytest.raises(QuantityRequired):
        parse("Default", {"link": LINK, "quantity": None})
    with pytest.raises(LinkRequired):
        parse("Default", {})


def test_link_scheme_is_case_insensitive() -> None:
    """HTTPS:// and Http:// are accepted, and the link is kept as written."""
    request = parse("Default", {"link": "HTTPS://Instagram.com/p/x", "quantity": 100})
    assert request.link == "HTTPS://Instagram.com/p/x"


# --- Package ------------------------------------------------------------------------------------


def test_package_bills_its_rate_once() -> None:
    """Package: a link only; billable 1 and charged the rate flat."""
    request = parse("Package", {"link": LINK}, 1, 1)
    assert request == OrderRequest(
        fields={"link": LINK}, link=LINK, quantity=1, billable_quantity=1
    )
    assert price(request, "Package", 750_000) == 750_000


def test_package_errors() -> None:
    """Package refuses a quantity (not one of its fields) and needs a link."""
    assert set(field_errors("Package", {"link": LINK, "quantity": 5})) == {"quantity"}
    with pytest.raises(LinkRequired):
        parse("Package", {})


# --- line-billed types: Custom Comments, Mentions Custom List, Comment Replies -------------------


def test_custom_comments_bill_the_non_empty_lines() -> None:
    """Custom Comments: lines are trimmed, empty ones dropped, re-joined with \\n and counted."""
    body: dict[str, object] = {"link": LINK, "comments": " great!\r\n\n  nice 🔥 \r\n\t\nwow"}
    with pytest.raises(FieldErrors):  # a tab is a control character
        parse("Custom Comments", body, 1, 100)
    body["comments"] = " great!\r\n\n  nice 🔥 \r\n   \nwow\n"
    request = parse("Custom Comments", body, 1, 100)
    assert request.fields == {"link": LINK, "comments": "great!\nnice 🔥\nwow"}
    assert (request.quantity, request.billable_quantity) == (3, 3)
    assert price(request, "Custom Comments", 1234) == 4  # ceil(3.702)


def test_mentions_custom_list_bills_the_username_lines() -> None:
    """Mentions Custom List: billable quantity is the number of non-empty username lines."""
    request = parse(
        "Mentions Custom List", {"link": LINK, "usernames": "alice\nbob\n\ncarol"}, 1, 10
    )
    assert request.fields == {"link": LINK, "usernames": "alice\nbob\ncarol"}
    assert request.billable_quantity == 3
    assert price(request, "Mentions Custom List", 500_000) == 1500


def test_a_comma_list_of_usernames_bills_each_name() -> None:
    """Panels read a comma list of usernames as one name per line (the simulator does too): a
    comma list is billed for every name, and sent one per line."""
    request = parse("Mentions Custom List", {"link": LINK, "usernames": "alice,bob, carol\ndan"}, 1)
    assert request.fields == {"link": LINK, "usernames": "alice\nbob\ncarol\ndan"}
    assert request.billable_quantity == 4


@pytest.mark.parametrize("separator", ["\u2028", "\u2029"])
def test_unicode_line_separators_are_line_breaks(separator: str) -> None:
    """The line and paragraph separators are not control characters, and panels split on them
    like any newline: each separates two billed lines, sent as a newline."""
    body = {"link": LINK, "comments": f"great{separator}nice{separator}"}
    request = parse("Custom Comments", body, 1)
    assert request.fields == {"link": LINK, "comments": "great\nnice"}
    assert request.billable_quantity == 2


_LIST_TEXT = st.text(
    alphabet=st.sampled_from(["a", "b", " ", ",", "\n", "\r", "\u2028", "\u2029", "\u00e9"]),
    max_size=40,
)
_LINE_BILLED = {
    "Custom Comments": ("comments", {}),
    "Mentions Custom List": ("usernames", {}),
    "Comment Replies": ("comments", {"username": "alice"}),
}


@given(service_type=st.sampled_from(sorted(_LINE_BILLED)), text=_LIST_TEXT)
def test_the_lines_billed_are_the_lines_the_provider_counts(service_type: str, text: str) -> None:
    """For every line-billed type, the quantity charged is the count the provider makes of
    the fields sent to it (the simulator's count, split as panels split), whatever mix of
    line breaks, separators and commas the client used."""
    field, extra = _LINE_BILLED[service_type]
    try:
        request = parse(service_type, {"link": LINK, field: text, **extra}, 1, 100)
    except QuantityRequired:
        assert not sim_orders.lines(text, commas=field == "usernames")
        return
    counted = sim_orders.lines(request.fields[field], commas=field == "usernames")
    assert request.billable_quantity == len(counted)
    assert counted == sim_orders.lines(text, commas=field == "usernames")


def test_comment_replies_bill_the_comment_lines() -> None:
    """Comment Replies: link, username and comments; billable is the comment line count."""
    body: dict[str, object] = {"link": LINK, "username": " alice ", "comments": "a\nb"}
    request = parse("Comment Replies", body, 1, 10)
    assert request.fields == {"link": LINK, "username": "alice", "comments": "a\nb"}
    assert request.billable_quantity == 2
    assert price(request, "Comment Replies", 999) == 2  # ceil(1.998)


@pytest.mark.parametrize(
    ("service_type", "field", "extra"),
    [
        ("Custom Comments", "comments", {}),
        ("Mentions Custom List", "usernames", {}),
        ("Comment Replies", "comments", {"username": "alice"}),
    ],
)
@pytest.mark.parametrize("lines", [None, "", " \n\r\n \n"])
def test_line_billed_types_need_a_non_empty_line(
    service_type: str, field: str, extra: dict[str, object], lines: str | None
) -> None:
    """Missing lines, or only empty ones, is BOOST_QUANTITY_REQUIRED for line-billed types."""
    with pytest.raises(QuantityRequired) as caught:
        parse(service_type, {"link": LINK, field: lines, **extra}, 1, 10)
    assert caught.value.field == field


@pytest.mark.parametrize("service_type", ["Custom Comments", "Mentions Custom List"])
def test_line_billed_types_check_the_count_against_the_range(service_type: str) -> None:
    """The line count must lie within the service's min..max."""
    field = "comments" if service_type == "Custom Comments" else "usernames"
    with pytest.raises(QuantityOutOfRange) as caught:
        parse(service_type, {"link": LINK, field: "a\nb\nc"}, 5, 10)
    assert (caught.value.min, caught.value.max) == (5, 10)
    with pytest.raises(QuantityOutOfRange):
        parse(service_type, {"link": LINK, field: "a\nb\nc"}, 1, 2)


@pytest.mark.parametrize(
    "comments", [42, ["a", "b"], "a\x00b", "a\x1bb", "x" * 20_001, "a\n" * 10_001]
)
def test_list_fields_refuse_bad_text(comments: object) -> None:
    """A list field must be a string of at most 20000 characters without control characters."""
    assert set(field_errors("Custom Comments", {"link": LINK, "comments": comments})) == {
        "comments"
    }


def test_list_field_of_the_maximum_size_is_accepted() -> None:
    """10000 one-character lines fit the 20000-character bound and bill 10000 units."""
    request = parse("Custom Comments", {"link": LINK, "comments": "a\n" * 9_999 + "a"}, 1, 10_000)
    assert request.billable_quantity == 10_000


def test_comment_replies_need_a_username() -> None:
    """Comment Replies: no username is VALIDATION_FAILED, no link is BOOST_LINK_REQUIRED."""
    assert set(field_errors("Comment Replies", {"link": LINK, "comments": "a"}, 1)) == {"username"}
    with pytest.raises(LinkRequired):
        parse("Comment Replies", {"username": "alice", "comments": "a"}, 1)


# --- Mentions with Hashtags ---------------------------------------------------------------------


def test_mentions_with_hashtags_bills_the_quantity_and_accepts_comma_lists() -> None:
    """Mentions with Hashtags: comma or newline lists go one per line; billable is quantity."""
    body: dict[str, object] = {
        "link": LINK,
        "quantity": 200,
        "usernames": "alice, bob\ncarol,",
        "hashtags": "#one,#two",
    }
    request = parse("Mentions with Hashtags", body)
    assert request.fields == {
        "link": LINK,
        "quantity": 200,
        "usernames": "alice\nbob\ncarol",
        "hashtags": "#one\n#two",
    }
    assert request.billable_quantity == 200
    assert price(request, "Mentions with Hashtags", 80_000) == 16_000


def test_mentions_with_hashtags_errors() -> None:
    """Empty hashtags/usernames: VALIDATION_FAILED; no quantity: BOOST_QUANTITY_REQUIRED."""
    body: dict[str, object] = {"link": LINK, "quantity": 200, "usernames": " , ,"}
    assert set(field_errors("Mentions with Hashtags", body)) == {"usernames", "hashtags"}
    with pytest.raises(QuantityRequired):
        parse("Mentions with Hashtags", {"link": LINK, "usernames": "a", "hashtags": "b"})
    with pytest.raises(QuantityOutOfRange):
        parse(
            "Mentions with Hashtags",
            {"link": LINK, "quantity": 5, "usernames": "a", "hashtags": "b"},
        )


# --- single-text types: Mentions Hashtag, Mentions User Followers, Comment Likes ----------------


@pytest.mark.parametrize(
    ("service_type", "field"),
    [
        ("Mentions Hashtag", "hashtag"),
        ("Mentions User Followers", "username"),
        ("Comment Likes", "username"),
    ],
)
def test_single_text_types_bill_the_quantity(service_type: str, field: str) -> None:
    """Link, quantity and one trimmed text field; billable is the quantity."""
    request = parse(service_type, {"link": LINK, "quantity": 300, field: "  target "})
    assert request.fields == {"link": LINK, "quantity": 300, field: "target"}
    assert request.billable_quantity == 300
    assert price(request, service_type, 33_333) == 10_000  # ceil(9999.9)


@pytest.mark.parametrize(
    ("service_type", "field"),
    [
        ("Mentions Hashtag", "hashtag"),
        ("Mentions User Followers", "username"),
        ("Comment Likes", "username"),
    ],
)
def test_single_text_types_errors(service_type: str, field: str) -> None:
    """The text field is required, a string, one line and at most 2048 characters."""
    for value in (None, " ", 7, "a\nb", "x" * 2049):
        body = {"link": LINK, "quantity": 300, field: value}
        assert set(field_errors(service_type, body)) == {field}
    with pytest.raises(LinkRequired):
        parse(service_type, {"quantity": 300, field: "t"})
    with pytest.raises(QuantityRequired):
        parse(service_type, {"link": LINK, field: "t"})
    with pytest.raises(QuantityOutOfRange):
        parse(service_type, {"link": LINK, "quantity": 20_000, field: "t"})


# --- Mentions Media Likers ----------------------------------------------------------------------


def test_mentions_media_likers_bills_the_quantity() -> None:
    """Mentions Media Likers: media is a URL; billable is the quantity."""
    media = "https://instagram.com/p/media1"
    request = parse("Mentions Media Likers", {"link": LINK, "quantity": 1000, "media": media})
    assert request.fields == {"link": LINK, "quantity": 1000, "media": media}
    assert price(request, "Mentions Media Likers", 1) == 1


def test_mentions_media_likers_errors() -> None:
    """A bad or missing media URL is VALIDATION_FAILED (not BOOST_LINK_REQUIRED)."""
    for media in ("not a url", "javascript:alert(1)", None, 5):
        body = {"link": LINK, "quantity": 1000, "media": media}
        assert set(field_errors("Mentions Media Likers", body)) == {"media"}


# --- Poll ---------------------------------------------------------------------------------------


def test_poll_bills_the_quantity() -> None:
    """Poll: link, quantity and a positive integer answer_number."""
    request = parse("Poll", {"link": LINK, "quantity": 100, "answer_number": 2})
    assert request.fields == {"link": LINK, "quantity": 100, "answer_number": 2}
    assert price(request, "Poll", 150_000) == 15_000


@pytest.mark.parametrize("answer", [None, "2", 0, -1, 2.0, True])
def test_poll_answer_number_must_be_a_positive_json_integer(answer: object) -> None:
    """answer_number must be a JSON integer of at least 1: no strings, floats or booleans."""
    body = {"link": LINK, "quantity": 100, "answer_number": answer}
    assert set(field_errors("Poll", body)) == {"answer_number"}


# --- Subscriptions ------------------------------------------------------------------------------


def test_subscriptions_bill_max_times_the_default_posts() -> None:
    """Subscriptions without posts bill max x the default posts, and send that posts upstream."""
    body: dict[str, object] = {"username": "alice", "min": 100, "max": 200, "delay": 30}
    request = parse("Subscriptions", body)
    assert request == OrderRequest(
        fields={"username": "alice", "min": 100, "max": 200, "delay": 30, "posts": DEFAULT_POSTS},
        link=None,
        quantity=200,
        billable_quantity=200 * DEFAULT_POSTS,
    )
    assert price(request, "Subscriptions", 150_000) == 150_000


def test_subscriptions_with_all_optional_fields() -> None:
    """Given posts, old_posts and expiry are normalised and sent; billable is max x posts."""
    body: dict[str, object] = {
        "username": "alice",
        "min": 100,
        "max": 100,
        "delay": 0,
        "posts": 3,
        "old_posts": 0,
        "expiry": "1/2/2027",
    }
    request = parse("Subscriptions", body)
    assert request.fields == {
        "username": "alice",
        "min": 100,
        "max": 100,
        "delay": 0,
        "posts": 3,
        "old_posts": 0,
        "expiry": "01/02/2027",
    }
    assert request.billable_quantity == 300
    assert price(request, "Subscriptions", 1234) == 371  # ceil(370.2)


@pytest.mark.parametrize(
    ("given", "sent"), [("1/1/0999", "01/01/0999"), ("31/12/0226", "31/12/0226")]
)
def test_an_expiry_is_sent_with_the_four_digit_year_it_was_given(given: str, sent: str) -> None:
    """An expiry is sent as d/m/Y with a four-digit year, as it must be written: the year 999
    was sent as "01/01/999", which the provider's d/m/Y refuses (the simulator says "Incorrect
    expiry date"), so the order was charged, then failed at submission and was refunded."""
    body: dict[str, object] = {
        "username": "alice", "min": 100, "max": 100, "delay": 0, "expiry": given,
    }
    fields = parse("Subscriptions", body).fields
    assert fields["expiry"] == sent
    assert datetime.datetime.strptime(str(fields["expiry"]), "%d/%m/%Y")  # as panels read it


@pytest.mark.parametrize(
    ("extra", "bad_fields"),
    [
        ({"delay": 7}, {"delay"}),
        ({"delay": "30"}, {"delay"}),
        ({"min": 300}, {"min"}),  # min above max
        ({"posts": 0}, {"posts"}),
        ({"old_posts": -1}, {"old_posts"}),
        ({"expiry": "31/02/2027"}, {"expiry"}),
        ({"expiry": "2027-02-01"}, {"expiry"}),
        ({"expiry": 20270201}, {"expiry"}),
        ({"username": None}, {"username"}),
        ({"delay": None}, {"delay"}),
        ({"min": None}, {"min"}),
        ({"max": "200"}, {"max"}),
        ({"link": LINK}, {"link"}),  # not a field of Subscriptions
        ({"quantity": 5}, {"quantity"}),
        ({"posts": 10**7}, {"posts"}),  # max x posts above 10**9
    ],
)
def test_subscriptions_field_errors(extra: dict[str, object], bad_fields: set[str]) -> None:
    """Subscription fields out of bounds, of a wrong type or missing: VALIDATION_FAILED."""
    body: dict[str, object] = {"username": "alice", "min": 100, "max": 200, "delay": 30, **extra}
    assert set(field_errors("Subscriptions", body)) == bad_fields


@pytest.mark.parametrize(("minimum", "maximum"), [(50, 200), (100, 20_000), (0, 0)])
def test_subscription_min_and_max_must_lie_in_the_service_range(minimum: int, maximum: int) -> None:
    """Subscription min and max each lie within the service's min..max."""
    body = {"username": "alice", "min": minimum, "max": maximum, "delay": 30}
    with pytest.raises(QuantityOutOfRange) as caught:
        parse("Subscriptions", body)
    assert (caught.value.min, caught.value.max) == (100, 10_000)


# --- Invites from Groups ------------------------------------------------------------------------


def test_invites_from_groups_bill_the_quantity_and_need_the_link() -> None:
    """Invites from Groups: link, quantity and groups (the provider refuses an order without
    its link, so none is taken and charged to be refunded later)."""
    request = parse("Invites from Groups", {"link": LINK, "quantity": 500, "groups": "g1\r\ng2"})
    assert request == OrderRequest(
        fields={"link": LINK, "quantity": 500, "groups": "g1\ng2"},
        link=LINK, quantity=500, billable_quantity=500,
    )
    assert price(request, "Invites from Groups", 2001) == 1001  # ceil(1000.5)
    with pytest.raises(LinkRequired):
        parse("Invites from Groups", {"quantity": 500, "groups": "g1"})


def test_invites_from_groups_errors() -> None:
    """No groups or a bad link: VALIDATION_FAILED; no quantity: BOOST_QUANTITY_REQUIRED."""
    assert set(field_errors("Invites from Groups", {"link": LINK, "quantity": 500})) == {"groups"}
    assert set(
        field_errors("Invites from Groups", {"quantity": 500, "groups": "g", "link": "x"})
    ) == {"link"}
    with pytest.raises(QuantityRequired):
        parse("Invites from Groups", {"link": LINK, "groups": "g1"})
