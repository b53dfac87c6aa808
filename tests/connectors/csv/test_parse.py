from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from connectors.csv.config import CsvSourceConfig
from connectors.csv.parse import (
    BadValue,
    ContactMapper,
    bind_header,
    datetime_parser,
    decimal_parser,
    make_mapper,
    strptime_parser,
)
from hub.contracts import Consent, Record
from hub.errors import ConfigError, ConfigErrors


def entry(**fields: Any) -> Any:
    return CsvSourceConfig.model_validate({"type": "csv", "files": [{"path": "x.csv", **fields}]}).files[0]


def mapper(header: list[str], **fields: Any) -> Any:
    e = entry(**fields)
    return make_mapper(e, bind_header(e, header, where="x.csv", field_prefix="sources.s.files.0"))


# --- numbers


def write_number(value: Decimal, decimal: str, thousands: str) -> str:
    """Format ``value`` the way a spreadsheet in that locale would."""
    sign = "-" if value < 0 else ""
    whole, _, frac = f"{abs(value):f}".partition(".")
    groups: list[str] = []
    while len(whole) > 3:
        whole, groups = whole[:-3], [whole[-3:], *groups]
    text = (thousands or "").join([whole, *groups])
    return sign + text + (decimal + frac if frac else "")


SEPARATORS = [(".", ""), (",", ""), (".", ","), (",", "."), (",", " "), (".", " ")]


@given(
    value=st.decimals(min_value=-(10**12), max_value=10**12, places=2, allow_nan=False, allow_infinity=False),
    seps=st.sampled_from(SEPARATORS),
)
def test_numbers_round_trip_in_every_locale(value: Decimal, seps: tuple[str, str]) -> None:
    decimal, thousands = seps
    text = write_number(value, decimal, thousands)
    assert decimal_parser(decimal, thousands)(text) == value


@given(value=st.decimals(min_value=0, max_value=10**9, places=3, allow_nan=False, allow_infinity=False))
def test_grouping_is_optional(value: Decimal) -> None:
    # 1234,5 is fine in a file whose other amounts say 1.234,5
    assert decimal_parser(",", ".")(write_number(value, ",", "")) == value


@pytest.mark.parametrize(
    ("decimal", "thousands", "text"),
    [
        (",", ".", "1.5"),  # the other convention: would load 15 instead of 1.5
        (",", ".", "12.34.567"),
        (".", ",", "1,23"),
        (".", "", "1,234.5"),
        (",", "", "1.5"),
        (".", "", "NaN"),
        (".", "", "inf"),
        (".", "", "1e5"),
        (".", "", "1_000"),
        (".", "", "€12"),
        (".", "", "."),
        (".", "", "--1"),
    ],
)
def test_malformed_numbers_are_rejected(decimal: str, thousands: str, text: str) -> None:
    with pytest.raises(ValueError, match="not a number"):
        decimal_parser(decimal, thousands)(text)


def test_space_thousands_accepts_no_break_spaces() -> None:
    parse = decimal_parser(",", " ")
    assert parse("1\u00a0234,50") == parse("1\u202f234,50") == parse("1 234,50") == Decimal("1234.50")


# --- dates

NUMERIC_FORMATS = [
    "%Y-%m-%d",
    "%d/%m/%Y",
    "%m/%d/%Y %H:%M",
    "%d.%m.%Y %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%d.%m.%y",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%H:%M %d-%m-%Y",
    "%Y/%m/%d  %H.%M",
    "%d %m %Y",
]


@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(2068, 12, 31)),
    fmt=st.sampled_from(NUMERIC_FORMATS),
)
def test_compiled_formats_agree_with_strptime(moment: datetime, fmt: str) -> None:
    text = moment.strftime(fmt)
    assert strptime_parser(fmt)(text) == datetime.strptime(text, fmt).replace(tzinfo=UTC)


@given(text=st.text(alphabet="0123456789/.: -T", max_size=20), fmt=st.sampled_from(NUMERIC_FORMATS))
def test_compiled_formats_reject_what_strptime_rejects(text: str, fmt: str) -> None:
    try:
        expected: datetime | None = datetime.strptime(text, fmt).replace(tzinfo=UTC)
    except ValueError:
        expected = None
    try:
        got: datetime | None = strptime_parser(fmt)(text)
    except ValueError:
        got = None
    assert got == expected


@given(
    moment=st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)),
    zone=st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
    fmt=st.sampled_from(["iso", "%Y-%m-%d %H:%M:%S", "%d.%m.%Y %H:%M:%S"]),
)
def test_naive_values_are_read_in_the_configured_zone(moment: datetime, zone: str, fmt: str) -> None:
    from zoneinfo import ZoneInfo

    moment = moment.replace(microsecond=0)
    text = moment.isoformat() if fmt == "iso" else moment.strftime(fmt)
    got = datetime_parser([fmt], zone)(text)
    assert got.tzinfo is UTC
    assert got == moment.replace(tzinfo=ZoneInfo(zone))


@given(
    moment=st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(-14 * 60, 14 * 60),
)
def test_iso_values_with_an_offset_keep_their_instant(moment: datetime, offset_minutes: int) -> None:
    from datetime import timezone

    local = moment.astimezone(timezone(timedelta(minutes=offset_minutes)))
    assert datetime_parser(["iso"], "Europe/Berlin")(local.isoformat()) == moment


def test_iso_accepts_dates_z_and_spaces() -> None:
    parse = datetime_parser(["iso"])
    assert parse("2024-03-05") == datetime(2024, 3, 5, tzinfo=UTC)
    assert (
        parse("2024-03-05T10:11:12Z")
        == parse("2024-03-05 10:11:12")
        == datetime(2024, 3, 5, 10, 11, 12, tzinfo=UTC)
    )


@pytest.mark.parametrize(
    ("formats", "text", "message"),
    [
        (["iso"], "05/03/2024", "not a date in format iso: '05/03/2024'"),
        (["iso"], "2024-02-30", "not a valid date (day is out of range for month): '2024-02-30'"),
        (["%d/%m/%Y"], "2024-03-05", "not a date in format %d/%m/%Y: '2024-03-05'"),
        (["%d/%m/%Y"], "31/02/2024", "not a valid date (day is out of range for month): '31/02/2024'"),
        (["%d/%m/%Y", "iso"], "yesterday", "not a date in any of the formats %d/%m/%Y, iso: 'yesterday'"),
    ],
)
def test_date_errors_say_what_is_wrong(formats: list[str], text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        datetime_parser(formats)(text)
    assert str(info.value) == message


def test_several_formats_are_tried_in_order() -> None:
    parse = datetime_parser(["%d.%m.%Y", "iso"])
    assert parse("05.03.2024") == parse("2024-03-05") == datetime(2024, 3, 5, tzinfo=UTC)


def test_formats_with_month_names_fall_back_to_strptime() -> None:
    assert strptime_parser("%d %b %Y %I:%M %p")("05 Mar 2024 01:30 PM") == datetime(
        2024, 3, 5, 13, 30, tzinfo=UTC
    )
    assert strptime_parser("%Y-%m-%d %H:%M%z")("2024-03-05 10:00+0200") == datetime(2024, 3, 5, 8, tzinfo=UTC)


# --- header binding


def test_header_mismatch_names_the_column_and_suggests() -> None:
    e = entry(kind="orders", columns={"amount": "Totl"})
    with pytest.raises(ConfigError) as info:
        bind_header(
            e,
            ["id", "customer_id", "occurred_at", "Total", "Currency"],
            where="exports/o.csv",
            field_prefix="sources.shop.files.0",
        )
    err = info.value
    assert err.location == "exports/o.csv:1"
    assert err.field == "sources.shop.files.0.columns.amount"
    assert "no column 'Totl' in the header (did you mean 'Total'?)" in err.message


def test_every_mismatch_is_reported_at_once() -> None:
    e = entry(kind="orders", columns={"email": "E-mail"}, attributes=["Chanel"])
    with pytest.raises(ConfigErrors) as info:
        bind_header(
            e,
            ["order_id", "email_address", "occurred_at", "amount", "Channel"],
            where="o.csv",
            field_prefix="p",
        )
    lines = str(info.value).splitlines()
    assert lines == [
        "o.csv:1: p.columns.id: no column 'id' in the header (did you mean 'order_id'?)",
        "o.csv:1: p.columns.email: no column 'E-mail' in the header (did you mean 'email_address'?)",
        "o.csv:1: p.attributes.0: no column 'Chanel' in the header (did you mean 'Channel'?)",
    ]


def test_header_without_close_match_lists_the_columns() -> None:
    e = entry(kind="orders")
    with pytest.raises(
        ConfigError, match=r"no column 'amount' in the header \(the header has: id, email, occurred_at\)"
    ):
        bind_header(e, ["id", "email", "occurred_at"], where="o.csv", field_prefix="p")


def test_defaults_match_case_insensitively_and_missing_optional_columns_are_fine() -> None:
    e = entry(kind="orders")
    layout = bind_header(e, ["\ufeffID", "Email", "Occurred_At", "AMOUNT"], where="o.csv", field_prefix="p")
    assert dict(layout.index) == {"id": 0, "email": 1, "occurred_at": 2, "amount": 3}


def test_a_file_must_have_some_identity_column() -> None:
    with pytest.raises(ConfigError, match="needs a customer_id or an email column"):
        bind_header(entry(kind="orders"), ["id", "occurred_at", "amount"], where="o.csv", field_prefix="p")
    with pytest.raises(ConfigError, match="needs a type column"):
        bind_header(entry(kind="events"), ["email", "occurred_at"], where="e.csv", field_prefix="p")


def test_ambiguous_columns_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="column 'email' appears 2 times"):
        bind_header(entry(kind="contacts"), ["Email", "EMAIL"], where="c.csv", field_prefix="p")


# --- row mappers


def test_order_row() -> None:
    header = ["Order", "Customer", "Mail", "Placed", "Total", "Currency", "Status", "Channel"]
    m = mapper(
        header,
        kind="orders",
        decimal=",",
        thousands=".",
        date_format="%d.%m.%Y %H:%M",
        timezone="Europe/Berlin",
        attributes=["Channel"],
        columns={
            "id": "Order",
            "customer_id": "Customer",
            "email": "Mail",
            "occurred_at": "Placed",
            "amount": "Total",
            "currency": "Currency",
            "status": "Status",
        },
    )
    record: Record = m(
        ["A-1", "C7", " Ann@Example.com ", "05.03.2024 10:30", "1.234,50", "eur", "Refunded", "web"]
    )
    assert (record.object_type, record.external_id, record.person) == ("order", "A-1", None)
    assert record.payload["Total"] == "1.234,50"
    (activity,) = record.activities
    assert activity.type == "order" and activity.external_id == "A-1"
    assert activity.occurred_at == datetime(2024, 3, 5, 9, 30, tzinfo=UTC)
    assert (activity.amount, activity.currency) == (Decimal("1234.50"), "EUR")
    assert (activity.person_external_id, activity.person_email) == ("C7", "Ann@Example.com")
    assert activity.attributes == {
        "Channel": "web",
        "status": "Refunded",
        "cancelled": False,
        "refunded": True,
    }


def test_order_currency_defaults_and_status_is_optional() -> None:
    m = mapper(["id", "email", "occurred_at", "amount", "currency"], kind="orders", currency="CHF")
    activity = m(["1", "a@b.ch", "2024-01-01", "5", ""]).activities[0]
    assert activity.currency == "CHF" and activity.attributes == {}


@pytest.mark.parametrize(
    ("row", "error"),
    [
        (["", "a@b.c", "2024-01-01", "5", "EUR"], "id: missing value"),
        (["1", "", "2024-01-01", "5", "EUR"], "email: missing value (no customer id and no email)"),
        (["1", "not-an-email", "2024-01-01", "5", "EUR"], "email: not an email address: 'not-an-email'"),
        (["1", "a@b.c", "", "5", "EUR"], "occurred_at: missing value"),
        (["1", "a@b.c", "01/01/2024", "5", "EUR"], "occurred_at: not a date in format iso: '01/01/2024'"),
        (["1", "a@b.c", "2024-01-01", "5,0", "EUR"], "amount: not a number (decimal '.'): '5,0'"),
        (["1", "a@b.c", "2024-01-01", " ", "EUR"], "amount: missing value"),
        (["1", "a@b.c", "2024-01-01", "5", "Euro"], "currency: not an ISO 4217 code: 'Euro'"),
    ],
)
def test_bad_order_values(row: list[str], error: str) -> None:
    m = mapper(["id", "email", "occurred_at", "amount", "currency"], kind="orders")
    with pytest.raises(BadValue) as info:
        m(row)
    assert str(info.value) == error


def test_event_row_types_and_stable_ids() -> None:
    # the id hashes the normalized type, so "page-view" and "Page View" rows are the same event
    m = mapper(["email", "type", "occurred_at", "url"], kind="events", attributes=["url"])
    record = m(["a@b.c", "Page View", "2024-01-01T10:00:00", "/shoes"])
    activity = record.activities[0]
    assert record.object_type == "event" and activity.type == "page_view"
    assert activity.attributes == {"url": "/shoes"} and activity.amount is None
    assert record.external_id == activity.external_id and len(record.external_id) == 32
    # the same event in a file with its columns in another order and one more column keeps its id
    other = mapper(["url", "extra", "occurred_at", "type", "email"], kind="events", attributes=["url"])
    assert (
        other(["/shoes", "x", "2024-01-01T10:00:00", "page-view", "a@b.c"]).external_id == record.external_id
    )
    assert m(["a@b.c", "page_view", "2024-01-01T10:00:01", "/shoes"]).external_id != record.external_id


def test_event_with_fixed_type_and_id_column() -> None:
    m = mapper(["id", "customer_id", "occurred_at"], kind="events", event_type="Email Open")
    record = m(["ev1", "C1", "2024-01-01"])
    assert record.external_id == "ev1" and record.activities[0].type == "email_open"
    assert record.activities[0].person_external_id == "C1"


def test_contact_row() -> None:
    header = ["Email", "First", "Last", "Phone", "Country", "City", "Opt-in", "Created", "Updated", "Tier"]
    m = mapper(
        header,
        kind="contacts",
        properties=["Tier"],
        date_format="%d/%m/%Y",
        columns={
            "first_name": "First",
            "last_name": "Last",
            "consent": "Opt-in",
            "created_at": "Created",
            "updated_at": "Updated",
        },
    )
    record = m(
        [
            " Ann@Example.COM",
            "Ann",
            "Lee",
            "+49 30 1",
            "DE",
            "Berlin",
            "Yes",
            "01/02/2020",
            "03/04/2024",
            "gold",
        ]
    )
    assert record.object_type == "contact"
    assert record.external_id == "ann@example.com"  # no id column: the normalized email
    assert record.updated_at == datetime(2024, 4, 3, tzinfo=UTC)
    person = record.person
    assert person is not None
    assert (person.email, person.first_name, person.last_name, person.phone) == (
        "Ann@Example.COM",
        "Ann",
        "Lee",
        "+49 30 1",
    )
    assert person.consent is Consent.GRANTED
    assert person.properties == {
        "country": "DE",
        "city": "Berlin",
        "created_at": "2020-02-01T00:00:00+00:00",
        "Tier": "gold",
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("yes", Consent.GRANTED),
        ("SUBSCRIBED", Consent.GRANTED),
        ("no", Consent.DENIED),
        ("Unsubscribed", Consent.DENIED),
        ("cleaned", Consent.UNDELIVERABLE),
        ("pending", Consent.PENDING),
        ("", Consent.UNKNOWN),
        ("ja", Consent.GRANTED),
        ("widerrufen", Consent.OBJECTED),
        ("maybe", Consent.UNKNOWN),
    ],
)
def test_consent_values_map_to_one_status(raw: str, expected: Consent) -> None:
    m = mapper(["id", "consent"], kind="contacts", consent_values={"JA": "granted", "widerrufen": "objected"})
    assert isinstance(m, ContactMapper)
    person = m(["c1", raw]).person
    assert person is not None and person.consent is expected
    assert dict(m.unmapped_consent) == ({"maybe": 1} if raw == "maybe" else {})


def test_contact_needs_an_identity() -> None:
    m = mapper(["id", "email", "first_name"], kind="contacts")
    assert m(["", "A@B.c", "x"]).external_id == "a@b.c"
    assert m(["c9", "", "x"]).external_id == "c9"
    with pytest.raises(BadValue, match="id: missing value"):
        m(["", "", "x"])


# --- mapping, end to end through the csv module

FIELD_NAMES = ["id", "customer_id", "occurred_at", "amount", "currency"]
safe_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=12
)


@given(
    rows=st.lists(
        st.tuples(
            safe_text.filter(lambda s: s.strip() == s),
            safe_text.filter(lambda s: s.strip() == s),
            st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 1, 1)),
            st.decimals(min_value=-(10**6), max_value=10**6, places=2, allow_nan=False, allow_infinity=False),
            st.sampled_from(["EUR", "USD", "GBP"]),
        ),
        min_size=1,
        max_size=20,
    ),
    order=st.permutations(range(5)),
    names=st.lists(
        st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ _", min_size=1, max_size=10),
        min_size=5,
        max_size=5,
        unique_by=str.casefold,
    ),
    seps=st.sampled_from(SEPARATORS),
    delimiter=st.sampled_from([",", ";", "\t", "|"]),
)
def test_any_column_order_and_names_map_back_to_the_values(
    rows: list[tuple[str, str, datetime, Decimal, str]],
    order: list[int],
    names: list[str],
    seps: tuple[str, str],
    delimiter: str,
) -> None:
    assume(all(n.strip() == n and n.strip() for n in names))
    decimal, thousands = seps
    header = [names[i] for i in order]
    buf = io.StringIO()
    out = csv.writer(buf, delimiter=delimiter)
    out.writerow(header)
    for order_id, customer, moment, amount, currency in rows:
        values = [
            order_id,
            customer,
            moment.strftime("%d/%m/%Y %H:%M:%S.%f"),
            write_number(amount, decimal, thousands),
            currency,
        ]
        out.writerow([values[i] for i in order])
    m = mapper(
        header,
        kind="orders",
        decimal=decimal,
        thousands=thousands,
        date_format="%d/%m/%Y %H:%M:%S.%f",
        columns={"email": None, **dict(zip(FIELD_NAMES, names, strict=True))},
    )
    reader = csv.reader(io.StringIO(buf.getvalue(), newline=""), delimiter=delimiter)
    next(reader)
    for row, (order_id, customer, moment, amount, currency) in zip(reader, rows, strict=True):
        activity = m(row).activities[0]
        assert (activity.external_id, activity.person_external_id) == (order_id, customer)
        assert (activity.occurred_at, activity.amount, activity.currency) == (
            moment.replace(tzinfo=UTC),
            amount,
            currency,
        )
