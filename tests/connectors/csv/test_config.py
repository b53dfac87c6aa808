from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from connectors.csv import CONNECTOR, build_source
from connectors.csv.config import ContactsFile, CsvSourceConfig, EventsFile, OrdersFile
from hub.contracts import Consent, Source
from hub.registry import BuildContext


def config(*files: dict[str, Any], **extra: Any) -> CsvSourceConfig:
    return CsvSourceConfig.model_validate({"type": "csv", "files": list(files), **extra})


def errors(*files: dict[str, Any], **extra: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        config(*files, **extra)
    return [(".".join(str(p) for p in e["loc"]), e["msg"]) for e in info.value.errors()]


def test_a_minimal_entry_uses_our_field_names_and_defaults() -> None:
    cfg = config({"kind": "orders", "path": "orders.csv"})
    entry = cfg.files[0]
    assert isinstance(entry, OrdersFile)
    assert entry.columns.mapping()["amount"] == "amount"
    assert entry.columns.explicit() == set()
    assert (entry.delimiter, entry.encoding, entry.date_formats, entry.decimal, entry.thousands) == (
        ",",
        "utf-8",
        ["iso"],
        ".",
        "",
    )
    assert cfg.page_size == 5000


def test_each_kind_gets_its_own_model() -> None:
    cfg = config(
        {"kind": "contacts", "path": "c.csv"},
        {"kind": "orders", "path": "o.csv"},
        {"kind": "events", "path": "e.csv", "event_type": "email_open", "columns": {"type": None}},
    )
    assert [type(f) for f in cfg.files] == [ContactsFile, OrdersFile, EventsFile]


@pytest.mark.parametrize(
    ("entry", "where", "message"),
    [
        (
            {"kind": "orders", "path": "o.csv", "columns": {"emial": "E"}},
            "files.0.orders.columns.emial",
            "Extra inputs",
        ),
        ({"kind": "orders", "path": "o.csv", "delimeter": ";"}, "files.0.orders.delimeter", "Extra inputs"),
        ({"kind": "invoices", "path": "o.csv"}, "files.0", "does not match any of the expected tags"),
        ({"kind": "orders"}, "files.0.orders.path", "Field required"),
        (
            {"kind": "orders", "path": "o.csv", "columns": {"amount": None}},
            "files.0.orders.columns.amount",
            "valid string",
        ),
        (
            {"kind": "orders", "path": "o.csv", "columns": {"customer_id": None, "email": None}},
            "files.0.orders.columns",
            "customer_id' or 'email",
        ),
        (
            {"kind": "contacts", "path": "c.csv", "columns": {"id": None, "email": None}},
            "files.0.contacts.columns",
            "'id' or 'email'",
        ),
        (
            {"kind": "events", "path": "e.csv", "columns": {"type": None}},
            "files.0.events",
            "every event needs a type",
        ),
        (
            {"kind": "events", "path": "e.csv", "event_type": "x", "columns": {"type": "Kind"}},
            "files.0.events",
            "not both",
        ),
        ({"kind": "orders", "path": "o.csv", "decimal": ",", "thousands": ","}, "files.0.orders", "both ','"),
        (
            {"kind": "orders", "path": "o.csv", "thousands": "'"},
            "files.0.orders.thousands",
            "Input should be",
        ),
        (
            {"kind": "orders", "path": "o.csv", "encoding": "utf-9"},
            "files.0.orders.encoding",
            "unknown encoding",
        ),
        (
            {"kind": "orders", "path": "o.csv", "timezone": "Europe/Bonn"},
            "files.0.orders.timezone",
            "unknown time zone",
        ),
        (
            {"kind": "orders", "path": "o.csv", "date_format": "dd/mm/yyyy"},
            "files.0.orders.date_format",
            "neither 'iso' nor",
        ),
        (
            {"kind": "orders", "path": "o.csv", "date_format": "%d/%m/%Q"},
            "files.0.orders.date_format",
            "invalid strptime format",
        ),
        ({"kind": "orders", "path": "o.csv", "delimiter": ";;"}, "files.0.orders.delimiter", "one character"),
        ({"kind": "orders", "path": "o.csv", "currency": "euro"}, "files.0.orders.currency", "ISO 4217"),
        (
            {"kind": "contacts", "path": "c.csv", "consent_values": {"ja": "yes"}},
            "files.0.contacts.consent_values.ja",
            "Input should be",
        ),
    ],
)
def test_invalid_entries_are_pydantic_errors_at_the_field(
    entry: dict[str, Any], where: str, message: str
) -> None:
    found = errors(entry)
    assert any(loc == where and message in msg for loc, msg in found), found


def test_source_level_errors() -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        CsvSourceConfig.model_validate({"type": "csv", "files": []})
    with pytest.raises(ValidationError, match="both named 'orders'"):
        config({"kind": "orders", "path": "a.csv"}, {"kind": "orders", "path": "b.csv"})
    config({"kind": "orders", "path": "a.csv"}, {"kind": "orders", "path": "b.csv", "name": "returns"})
    with pytest.raises(ValidationError, match="page_size"):
        config({"kind": "orders", "path": "a.csv"}, page_size=0)
    with pytest.raises(ValidationError, match="Input should be 'csv'"):
        CsvSourceConfig.model_validate({"type": "hubspot", "files": [{"kind": "orders", "path": "a.csv"}]})


def test_normalised_values() -> None:
    cfg = config(
        {
            "kind": "orders",
            "path": "o.csv",
            "currency": " eur ",
            "delimiter": "tab",
            "date_format": ["iso", "%d.%m.%Y"],
        },
        {
            "kind": "contacts",
            "path": "c.csv",
            "consent_values": {" JA ": "granted"},
            "columns": {"email": "E-Mail"},
        },
    )
    orders, contacts = cfg.files
    assert isinstance(orders, OrdersFile) and isinstance(contacts, ContactsFile)
    assert (orders.currency, orders.delimiter, orders.date_formats) == ("EUR", "\t", ["iso", "%d.%m.%Y"])
    assert contacts.consent_table()["ja"] is Consent.GRANTED
    assert contacts.consent_table()["unsubscribed"] is Consent.DENIED  # the built-in table still applies
    assert contacts.columns.explicit() == {"email"}


def test_connector_spec_builds_a_source(tmp_path: Any) -> None:
    assert CONNECTOR.name == "csv" and CONNECTOR.source_config is CsvSourceConfig
    assert CONNECTOR.build_source is build_source
    cfg = config({"kind": "orders", "path": "o.csv"}, {"kind": "contacts", "path": "c.csv"})
    ctx = BuildContext(
        resolve_secret=lambda ref: pytest.fail("the CSV source has no secrets"), base_dir=tmp_path
    )
    source = CONNECTOR.build_source(cfg, "shop", ctx)
    assert isinstance(source, Source)
    assert source.name == "shop"
    assert [s.name for s in source.streams()] == ["orders", "contacts"]


def test_json_schema_is_generated() -> None:
    schema = CsvSourceConfig.model_json_schema()
    assert "files" in schema["properties"]
