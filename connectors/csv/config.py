"""The config model of a ``type: csv`` source entry.

One entry lists several files (or globs), each with a ``kind`` (contacts, orders or events), a column mapping
from our field names to the file's header names, and the file's date and number formats. Everything that can
be checked without opening a file is checked here, so a typo shows by ``hub check`` as ``file:line:col``.
"""

from __future__ import annotations

import codecs
from datetime import datetime
from typing import Annotated, ClassVar, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, Field, field_validator, model_validator

from hub.config.models import SourceConfigBase, StrictModel
from hub.contracts import Consent

ISO = "iso"

# Raw consent values understood without any config, compared case-insensitively after stripping.
DEFAULT_CONSENT_VALUES: dict[str, Consent] = {
    **dict.fromkeys(
        ("granted", "yes", "y", "true", "1", "subscribed", "opted_in", "opt-in", "opt_in", "optin"),
        Consent.GRANTED,
    ),
    **dict.fromkeys(("pending", "unconfirmed", "double_opt_in_pending"), Consent.PENDING),
    **dict.fromkeys(
        ("denied", "no", "n", "false", "0", "unsubscribed", "opted_out", "opt-out", "opt_out", "optout"),
        Consent.DENIED,
    ),
    **dict.fromkeys(("undeliverable", "bounced", "cleaned", "hard_bounce"), Consent.UNDELIVERABLE),
    **dict.fromkeys(("objected", "do_not_profile"), Consent.OBJECTED),
    **dict.fromkeys(("unknown",), Consent.UNKNOWN),
}


class ColumnsBase(StrictModel):
    """Maps our field names to the file's header names.

    A field left at its default is looked up under its own name and ignored when the file lacks it; a field
    set explicitly must exist in the header; ``null`` means the file has no such column.
    """

    # Fields that must resolve to a header column whatever the config says.
    REQUIRED: ClassVar[tuple[str, ...]] = ()

    def mapping(self) -> dict[str, str]:
        """Our field name -> header name, for every field that is not ``null``."""
        values = ((name, getattr(self, name)) for name in type(self).model_fields)
        return {name: column for name, column in values if column is not None}

    def explicit(self) -> set[str]:
        """The fields the admin set in the config (these must exist in the header)."""
        return set(self.model_fields_set)


class ContactColumns(ColumnsBase):
    """Header names of a contacts file. ``id`` defaults to the normalized email when the file has no id."""

    id: str | None = Field("id", description="The contact's id in the file (default: the normalized email)")
    email: str | None = "email"
    first_name: str | None = "first_name"
    last_name: str | None = "last_name"
    phone: str | None = "phone"
    country: str | None = "country"
    city: str | None = "city"
    consent: str | None = Field("consent", description="Marketing consent; values mapped by `consent_values`")
    created_at: str | None = "created_at"
    updated_at: str | None = "updated_at"

    @model_validator(mode="after")
    def _id_or_email(self) -> ContactColumns:
        if self.id is None and self.email is None:
            raise ValueError("map at least one of 'id' or 'email': a contact needs an identity")
        return self


class OrderColumns(ColumnsBase):
    """Header names of an orders file: one row per order."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("id", "occurred_at", "amount")
    id: str = Field("id", description="The order id, unique in the file")
    customer_id: str | None = Field("customer_id", description="The customer's id, as in the contacts file")
    email: str | None = Field("email", description="The customer's email (used when there is no customer id)")
    occurred_at: str = Field("occurred_at", description="When the order was placed")
    amount: str = Field("amount", description="The order total")
    currency: str | None = Field("currency", description="ISO 4217 code; the entry's `currency` when absent")
    status: str | None = Field("status", description="Order status; see cancelled_statuses/refunded_statuses")

    @model_validator(mode="after")
    def _customer_or_email(self) -> OrderColumns:
        if self.customer_id is None and self.email is None:
            raise ValueError("map at least one of 'customer_id' or 'email': an order needs a customer")
        return self


class EventColumns(ColumnsBase):
    """Header names of an events file: email opens and clicks, sessions, page views, ..."""

    REQUIRED: ClassVar[tuple[str, ...]] = ("occurred_at",)
    id: str | None = Field(
        "id", description="The event id (default: a stable hash of the row's mapped values)"
    )
    customer_id: str | None = "customer_id"
    email: str | None = "email"
    type: str | None = Field("type", description="The event type column (or set the entry's `event_type`)")
    occurred_at: str = "occurred_at"
    amount: str | None = "amount"
    currency: str | None = "currency"

    @model_validator(mode="after")
    def _customer_or_email(self) -> EventColumns:
        if self.customer_id is None and self.email is None:
            raise ValueError("map at least one of 'customer_id' or 'email': an event needs a person")
        return self


class CsvFileBase(StrictModel):
    """What every file entry shares: where the file is and how it is written."""

    name: str | None = Field(
        None, description="Stream name (default: the kind); needed when two entries have the same kind"
    )
    path: str = Field(
        description="A file or a glob (exports/orders-*.csv), relative to the config file's folder",
        examples=["exports/orders-*.csv"],
    )
    allow_empty: bool = Field(False, description="A glob matching no file is not an error (a drop folder)")
    delimiter: str = Field(",", description="Field delimiter: one character, or 'tab'", examples=[";", "tab"])
    quotechar: str = Field('"', min_length=1, max_length=1, description="Quote character")
    encoding: str = Field("utf-8", description="Text encoding: utf-8, utf-8-sig, latin-1, cp1252, ...")
    date_format: str | list[str] = Field(
        ISO,
        description="'iso' (ISO 8601) or a strptime format like '%d/%m/%Y %H:%M'; a list is tried in order",
        examples=["%d.%m.%Y"],
    )
    timezone: str = Field("UTC", description="IANA time zone of dates written without an offset")
    decimal: Literal[".", ","] = Field(".", description="Decimal separator of numbers")
    thousands: Literal["", ",", ".", " "] = Field(
        "", description="Thousands separator of numbers ('' for none; ' ' also accepts non-breaking spaces)"
    )

    @field_validator("delimiter", mode="before")
    @classmethod
    def _delimiter(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in ("tab", "\\t"):
            return "\t"
        if isinstance(value, str) and len(value) != 1:
            raise ValueError("must be one character (or 'tab')")
        return value

    @field_validator("encoding")
    @classmethod
    def _encoding(cls, value: str) -> str:
        try:
            codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding {value!r} (e.g. utf-8, utf-8-sig, latin-1, cp1252)") from None
        return value

    @field_validator("date_format")
    @classmethod
    def _date_format(cls, value: str | list[str]) -> str | list[str]:
        for fmt in [value] if isinstance(value, str) else value:
            _check_date_format(fmt)
        if isinstance(value, list) and not value:
            raise ValueError("give at least one format")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (use an IANA name such as Europe/Berlin)"
            ) from None
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> CsvFileBase:
        if self.decimal == self.thousands:
            raise ValueError(f"decimal and thousands separators are both {self.decimal!r}")
        return self

    @property
    def date_formats(self) -> list[str]:
        """``date_format`` as a list."""
        return [self.date_format] if isinstance(self.date_format, str) else list(self.date_format)


def _check_date_format(fmt: str) -> None:
    if fmt == ISO:
        return
    if "%" not in fmt:
        raise ValueError(f"{fmt!r} is neither 'iso' nor a strptime format (e.g. '%d/%m/%Y %H:%M')")
    sample = datetime(2001, 2, 3, 4, 5, 6)
    try:
        datetime.strptime(sample.strftime(fmt), fmt)
    except ValueError as exc:
        raise ValueError(f"invalid strptime format {fmt!r}: {exc}") from None


def _currency(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 3 or not code.isalpha() or not code.isascii():
        raise ValueError(f"{value!r} is not an ISO 4217 currency code (e.g. EUR, USD)")
    return code


CurrencyCode = Annotated[str, AfterValidator(_currency)]


class ContactsFile(CsvFileBase):
    """A contacts file: one row per person."""

    kind: Literal["contacts"]
    columns: ContactColumns = Field(default_factory=ContactColumns)
    properties: list[str] = Field(default_factory=list, description="Extra columns kept as person properties")
    consent_values: dict[str, Consent] = Field(
        default_factory=dict,
        description="Raw consent value -> consent status, over the built-in table (yes/no, subscribed, ...)",
        examples=[{"ja": "granted", "nein": "denied"}],
    )

    @field_validator("consent_values")
    @classmethod
    def _fold_keys(cls, value: dict[str, Consent]) -> dict[str, Consent]:
        return {k.strip().casefold(): v for k, v in value.items()}

    def consent_table(self) -> dict[str, Consent]:
        """The built-in consent values overlaid with this entry's ``consent_values``."""
        return {**DEFAULT_CONSENT_VALUES, **self.consent_values}


class OrdersFile(CsvFileBase):
    """An orders file: one row per order."""

    kind: Literal["orders"]
    columns: OrderColumns = Field(default_factory=OrderColumns)
    attributes: list[str] = Field(default_factory=list, description="Extra columns kept as order attributes")
    currency: CurrencyCode | None = Field(
        None, description="Currency of rows without a currency column or value"
    )
    cancelled_statuses: list[str] = Field(
        ["cancelled", "canceled", "voided"], description="Status values marking an order cancelled"
    )
    refunded_statuses: list[str] = Field(["refunded"], description="Status values marking an order refunded")


class EventsFile(CsvFileBase):
    """An events file: one row per event (email open, click, session, page view, ...)."""

    kind: Literal["events"]
    columns: EventColumns = Field(default_factory=EventColumns)
    event_type: str | None = Field(
        None,
        description="A fixed event type for every row (instead of a type column)",
        examples=["email_open"],
    )
    attributes: list[str] = Field(default_factory=list, description="Extra columns kept as event attributes")
    currency: CurrencyCode | None = Field(
        None, description="Currency of amounts without a currency column or value"
    )

    @model_validator(mode="after")
    def _one_type_source(self) -> EventsFile:
        if (
            self.event_type is not None
            and "type" in self.columns.explicit()
            and self.columns.type is not None
        ):
            raise ValueError("set either 'event_type' or 'columns.type', not both")
        if self.event_type is None and self.columns.type is None:
            raise ValueError("set 'event_type' or map 'columns.type': every event needs a type")
        return self


CsvFile = Annotated[ContactsFile | OrdersFile | EventsFile, Field(discriminator="kind")]


class CsvSourceConfig(SourceConfigBase):
    """A CSV source: contacts, orders and events exported by a point of sale, a spreadsheet or a shop."""

    type: Literal["csv"]
    files: list[CsvFile] = Field(min_length=1, description="The files to read, one stream per entry")
    page_size: int = Field(5000, ge=1, le=1_000_000, description="Rows per committed page")

    @model_validator(mode="after")
    def _unique_stream_names(self) -> CsvSourceConfig:
        seen: set[str] = set()
        for entry in self.files:
            name = stream_name(entry)
            if name in seen:
                raise ValueError(f"two file entries are both named {name!r}: give one of them a 'name'")
            seen.add(name)
        return self


def stream_name(entry: ContactsFile | OrdersFile | EventsFile) -> str:
    """The stream an entry feeds: its ``name``, else its ``kind``."""
    return entry.name or entry.kind
