"""Turns CSV rows into records: value converters, header binding and one row mapper per file kind.

Everything per file is decided once, when the header is read: column indexes, the date and number parsers,
the consent table. A row then costs a few index lookups and conversions and no pydantic, which keeps a
million-row export well above 100k rows/s.

A bad value raises :class:`BadValue` (the field and what is wrong); the stream turns it into a skipped row
reported as ``path:line: field: what is wrong``. A header that does not fit the mapping raises ConfigError.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from operator import itemgetter
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from hub.contracts import ActivityData, Consent, PersonData, Record
from hub.errors import ConfigError, ConfigErrors

from .config import ISO, ContactsFile, EventsFile, OrdersFile

CsvFile = ContactsFile | OrdersFile | EventsFile
RowMapper = Callable[[list[str]], Record]
T = TypeVar("T")

# Spaces people (and spreadsheet locales) put between thousands: plain, no-break and narrow no-break.
_SPACES = " \u00a0\u202f"


class BadValue(ValueError):
    """A row cannot be used: ``field`` holds a value that is missing or malformed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- numbers


def decimal_parser(decimal: str = ".", thousands: str = "") -> Callable[[str], Decimal]:
    """Build a parser of numbers written with the given separators.

    Grouping is checked (``1.234,5`` is accepted with ``decimal=","``, ``thousands="."``; ``1.5`` is not), so
    a file exported with the other convention fails loudly instead of loading amounts off by a factor of 1000.

    Args:
        decimal: the decimal separator, ``.`` or ``,``.
        thousands: the thousands separator: ``""`` (none), ``,``, ``.`` or ``" "`` (any kind of space).

    Returns:
        A function from the (stripped) text to a finite Decimal; it raises ValueError on anything else.
    """
    dec = re.escape(decimal)
    plain = re.compile(rf"[+-]?(?:\d+(?:{dec}\d*)?|{dec}\d+)")
    seps = _SPACES if thousands == " " else thousands
    grouped = re.compile(rf"[+-]?\d{{1,3}}(?:[{re.escape(seps)}]\d{{3}})+(?:{dec}\d*)?") if seps else None
    strip_seps = str.maketrans("", "", seps) if seps else None
    label = f"decimal {decimal!r}" + (f", thousands {thousands!r}" if thousands else "")

    def parse(text: str) -> Decimal:
        if plain.fullmatch(text):
            return Decimal(text if decimal == "." else text.replace(",", "."))
        if grouped is not None and strip_seps is not None and grouped.fullmatch(text):
            digits = text.translate(strip_seps)
            return Decimal(digits if decimal == "." else digits.replace(",", "."))
        raise ValueError(f"not a number ({label}): {text!r}")

    return parse


# --- dates

# The same patterns CPython's _strptime uses, so a compiled format accepts exactly what strptime accepts.
_DIRECTIVES = {
    "d": r"(3[0-1]|[1-2]\d|0[1-9]|[1-9]| [1-9])",
    "f": r"([0-9]{1,6})",
    "H": r"(2[0-3]|[0-1]\d|\d)",
    "M": r"([0-5]\d|\d)",
    "S": r"(6[0-1]|[0-5]\d|\d)",
    "m": r"(1[0-2]|0[1-9]|[1-9])",
    "y": r"(\d\d)",
    "Y": r"(\d\d\d\d)",
}
_DIRECTIVE_RE = re.compile(r"%(.)|(\s+)|([^%\s]+)")


def _zone(name: str) -> tzinfo:
    return UTC if name == "UTC" else ZoneInfo(name)


def _to_utc(dt: datetime, tz: tzinfo) -> datetime:
    """An aware UTC datetime; a naive ``dt`` is read in zone ``tz``."""
    if dt.tzinfo is not None:
        return dt.astimezone(UTC)
    # combine() is three times faster than dt.replace(tzinfo=...), which shows on a million rows.
    aware = datetime.combine(dt.date(), dt.time(), tz)
    return aware if tz is UTC else aware.astimezone(UTC)


def _date_error(text: str, fmt: str, exc: ValueError) -> ValueError:
    reason = str(exc)
    if "range" in reason or "must be in" in reason:  # the shape fits, a part does not: say which
        return ValueError(f"not a valid date ({reason.split(':')[0]}): {text!r}")
    return ValueError(f"not a date in format {fmt}: {text!r}")


def _iso_parser(tz: tzinfo) -> Callable[[str], datetime]:
    fromisoformat = datetime.fromisoformat

    def parse(text: str) -> datetime:
        try:
            return _to_utc(fromisoformat(text), tz)
        except ValueError as exc:
            raise _date_error(text, ISO, exc) from None

    return parse


def _compile_format(fmt: str) -> re.Pattern[str] | None:
    """A regex with one group per directive, or None when the format has a directive we leave to strptime."""
    parts: list[str] = []
    seen: set[str] = set()
    for m in _DIRECTIVE_RE.finditer(fmt):
        directive, space, literal = m.groups()
        if directive is not None:
            if directive == "%":
                parts.append("%")
                continue
            if directive not in _DIRECTIVES or directive in seen:
                return None  # names, AM/PM, %z, weekdays...: strptime handles them (slowly)
            seen.add(directive)
            parts.append(_DIRECTIVES[directive])
        else:
            parts.append(r"\s+" if space is not None else re.escape(literal))
    return re.compile("".join(parts))


def _order_of(fmt: str) -> list[str]:
    return [d for d in re.findall(r"%(.)", fmt) if d != "%"]


def strptime_parser(fmt: str, tz: tzinfo = UTC) -> Callable[[str], datetime]:
    """Build a parser equivalent to ``datetime.strptime(text, fmt)``, returning aware UTC datetimes.

    Numeric formats (``%Y %m %d %H %M %S %f %y``) are compiled to one regex and run about three times faster
    than strptime; any other directive falls back to strptime itself.

    Args:
        fmt: a strptime format.
        tz: the time zone of the (naive) values.
    """
    pattern = _compile_format(fmt)
    if pattern is None:

        def parse_slowly(text: str) -> datetime:
            try:
                return _to_utc(datetime.strptime(text, fmt), tz)
            except ValueError as exc:
                raise _date_error(text, fmt, exc) from None

        return parse_slowly
    order = _order_of(fmt)
    # Each datetime() argument is picked from the matched numbers followed by strptime's defaults, with one
    # C-level itemgetter call instead of a Python branch per field.
    pick = itemgetter(*[order.index(k) if k in order else len(order) + n for n, k in enumerate(_FIELDS)])
    fix = _fixer(order)
    to_utc = tz is not UTC

    def parse(text: str) -> datetime:
        m = pattern.fullmatch(text)
        if m is None:
            raise ValueError(f"not a date in format {fmt}: {text!r}")
        values = [*map(int, m.groups()), *_DEFAULTS]
        if fix is not None:
            fix(values, m.groups())
        try:
            dt = datetime(*pick(values), tzinfo=tz)  # type: ignore[misc]  # pick gives the 7 int fields
        except ValueError as exc:
            raise _date_error(text, fmt, exc) from None
        return dt.astimezone(UTC) if to_utc else dt

    return parse


_FIELDS = ("Y", "m", "d", "H", "M", "S", "f")
_DEFAULTS = (1900, 1, 1, 0, 0, 0, 0)


def _fixer(order: list[str]) -> Callable[[list[int], tuple[str, ...]], None] | None:
    """What int() alone gets wrong: %y's century and %f's trailing zeros (".5" is 500000 us)."""
    i_year2 = order.index("y") if "y" in order else None
    i_micro = order.index("f") if "f" in order else None
    if i_year2 is None and i_micro is None:
        return None

    def fix(values: list[int], groups: tuple[str, ...]) -> None:
        if i_year2 is not None:
            year = values[i_year2]
            values[len(order)] = year + (
                2000 if year <= 68 else 1900
            )  # strptime's pivot, as %Y's default slot
        if i_micro is not None:
            values[i_micro] = int(groups[i_micro].ljust(6, "0"))

    return fix


def datetime_parser(formats: Sequence[str], timezone: str = "UTC") -> Callable[[str], datetime]:
    """Build a parser trying each format in turn (``iso`` or strptime formats).

    Args:
        formats: ``["iso"]``, ``["%d/%m/%Y %H:%M"]``, or several, tried in order.
        timezone: IANA zone of values written without an offset.

    Returns:
        A function from text to an aware UTC datetime; it raises ValueError naming the formats.
    """
    tz = _zone(timezone)
    parsers = [_iso_parser(tz) if f == ISO else strptime_parser(f, tz) for f in formats]
    if len(parsers) == 1:
        return parsers[0]

    def parse_any(text: str) -> datetime:
        for parser in parsers:
            try:
                return parser(text)
            except ValueError:
                continue
        raise ValueError(f"not a date in any of the formats {', '.join(formats)}: {text!r}")

    return parse_any


# --- header binding


@dataclass(frozen=True)
class Layout:
    """Where the mapped fields and extra columns sit in one file's header.

    Args:
        header: the header row as read (the keys of every payload).
        index: our field name -> column index, for the fields the file has.
        extras: (column name, index) of the extra columns kept as properties/attributes, in config order.
    """

    header: tuple[str, ...]
    index: Mapping[str, int]
    extras: tuple[tuple[str, int], ...]


class _Header:
    """Finds columns by exact name, else by a unique case-insensitive match (``Email`` for ``email``)."""

    def __init__(self, header: Sequence[str]) -> None:
        self.names = [h.strip() for h in header]
        if self.names:
            self.names[0] = self.names[0].removeprefix("\ufeff")  # a BOM read as utf-8 instead of utf-8-sig
        self.exact: dict[str, list[int]] = {}
        self.folded: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            self.exact.setdefault(name, []).append(i)
            self.folded.setdefault(name.casefold(), []).append(i)

    def find(self, column: str) -> list[int]:
        return self.exact.get(column) or self.folded.get(column.casefold(), [])

    def hint(self, column: str) -> str:
        close = difflib.get_close_matches(column, self.names, n=3, cutoff=0.6)
        if not close:  # "E-mail" for "email_address": compare letters and digits only
            want = _letters(column)
            close = [
                n for n in self.names if want and (want in _letters(n) or _letters(n) in want) and _letters(n)
            ]
        if close:
            return f" (did you mean {' or '.join(repr(c) for c in close[:3])}?)"
        shown = ", ".join(self.names[:20]) + (", ..." if len(self.names) > 20 else "")
        return f" (the header has: {shown})"


def _letters(name: str) -> str:
    return "".join(c for c in name.casefold() if c.isalnum())


def bind_header(entry: CsvFile, header: Sequence[str], *, where: str, field_prefix: str) -> Layout:
    """Resolve the entry's column mapping against a file's header.

    Args:
        entry: the validated file entry.
        header: the file's first row.
        where: the file as shown to the admin (its path).
        field_prefix: the entry's config path, e.g. ``sources.shop.files.0``.

    Raises:
        ConfigError: a required or explicitly mapped column is missing or ambiguous (one error per column,
            with a did-you-mean among the header's columns).
    """
    cols = _Header(header)
    errors: list[ConfigError] = []
    index: dict[str, int] = {}

    def locate(column: str, field: str, required: bool) -> int | None:
        found = cols.find(column)
        if len(found) > 1:
            errors.append(
                ConfigError(
                    f"column {column!r} appears {len(found)} times in the header",
                    location=f"{where}:1",
                    field=f"{field_prefix}.{field}",
                )
            )
        elif not found and required:
            errors.append(
                ConfigError(
                    f"no column {column!r} in the header{cols.hint(column)}",
                    location=f"{where}:1",
                    field=f"{field_prefix}.{field}",
                )
            )
        return found[0] if found else None

    explicit, required = entry.columns.explicit(), set(entry.columns.REQUIRED)
    for field, column in entry.columns.mapping().items():
        i = locate(column, f"columns.{field}", field in required or field in explicit)
        if i is not None:
            index[field] = i
    extra_names = entry.properties if isinstance(entry, ContactsFile) else entry.attributes
    extras_key = "properties" if isinstance(entry, ContactsFile) else "attributes"
    extras: list[tuple[str, int]] = []
    for n, column in enumerate(extra_names):
        i = locate(column, f"{extras_key}.{n}", True)
        if i is not None:
            extras.append((column, i))
    if not errors:  # a missing mapped column already explains a missing identity
        errors.extend(_identity_errors(entry, index, where, field_prefix))
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise ConfigErrors(errors)
    return Layout(tuple(header), index, tuple(extras))


def _identity_errors(entry: CsvFile, index: Mapping[str, int], where: str, prefix: str) -> list[ConfigError]:
    """Fields that are optional one by one but of which the file must have at least one."""
    need: list[tuple[tuple[str, ...], str]] = []
    if isinstance(entry, ContactsFile):
        need.append((("id", "email"), "a contacts file needs an id or an email column"))
    else:
        need.append(
            (("customer_id", "email"), f"an {entry.kind} file needs a customer_id or an email column")
        )
    if isinstance(entry, EventsFile) and entry.event_type is None:
        need.append((("type",), "an events file needs a type column (or set event_type)"))
    cols = entry.columns.mapping()
    return [
        ConfigError(
            f"{msg}; none of {', '.join(repr(cols[f]) for f in fields if f in cols)} is in the header",
            location=f"{where}:1",
            field=f"{prefix}.columns",
        )
        for fields, msg in need
        if not any(f in index for f in fields)
    ]


# --- row mappers


def _cell(row: list[str], i: int | None) -> str | None:
    if i is None:
        return None
    return row[i].strip() or None


def _required(row: list[str], i: int, field: str) -> str:
    value = row[i].strip()
    if not value:
        raise BadValue(field, "missing value")
    return value


def _missing(**values: str) -> BadValue:
    """The error for the first of ``values`` (field=text) that is empty."""
    field = next(name for name, text in values.items() if not text)
    return BadValue(field, "missing value")


def _convert(parse: Callable[[str], T], text: str, field: str) -> T:
    try:
        return parse(text)
    except ValueError as exc:
        raise BadValue(field, str(exc)) from None


class _Mapper:
    """What every kind shares: the header, the converters and the person's email."""

    def __init__(self, entry: CsvFile, layout: Layout) -> None:
        self.header = layout.header
        self.index = layout.index
        self.extras = layout.extras
        self.date = datetime_parser(entry.date_formats, entry.timezone)
        self.number = decimal_parser(entry.decimal, entry.thousands)
        self.i_email = layout.index.get("email")

    def email(self, row: list[str]) -> str | None:
        value = _cell(row, self.i_email)
        if value is not None and ("@" not in value or " " in value):
            raise BadValue("email", f"not an email address: {value!r}")
        return value

    def optional_date(self, row: list[str], field: str) -> datetime | None:
        text = _cell(row, self.index.get(field))
        return None if text is None else _convert(self.date, text, field)

    def extra_values(self, row: list[str]) -> dict[str, str | None]:
        return {name: row[i].strip() or None for name, i in self.extras}


class ContactMapper(_Mapper):
    """Maps a contacts row to a ``contact`` record carrying a PersonData."""

    def __init__(self, entry: ContactsFile, layout: Layout) -> None:
        super().__init__(entry, layout)
        self.consent_table = entry.consent_table()
        # Consent values nobody mapped load as UNKNOWN (never as granted); the stream reports them once.
        self.unmapped_consent: Counter[str] = Counter()
        ix = layout.index
        self.i_id = ix.get("id")
        self.i_names = (ix.get("first_name"), ix.get("last_name"), ix.get("phone"))
        self.i_country, self.i_city, self.i_consent = ix.get("country"), ix.get("city"), ix.get("consent")

    def __call__(self, row: list[str]) -> Record:
        email = self.email(row)
        external_id = _cell(row, self.i_id) or (email.casefold() if email else None)
        if external_id is None:
            raise BadValue(
                "id" if self.i_id is not None else "email", "missing value (a contact needs an id or email)"
            )
        created_at = self.optional_date(row, "created_at")
        updated_at = self.optional_date(row, "updated_at")
        properties: dict[str, Any] = {
            "country": _cell(row, self.i_country),
            "city": _cell(row, self.i_city),
            "created_at": created_at.isoformat() if created_at else None,
            **self.extra_values(row),
        }
        first, last, phone = (_cell(row, i) for i in self.i_names)
        person = PersonData(
            email=email,
            first_name=first,
            last_name=last,
            phone=phone,
            consent=self.consent(row),
            properties=properties,
        )
        return Record(
            object_type="contact",
            external_id=external_id,
            payload=dict(zip(self.header, row, strict=True)),
            updated_at=updated_at,
            person=person,
        )

    def consent(self, row: list[str]) -> Consent:
        value = _cell(row, self.i_consent)
        if value is None:
            return Consent.UNKNOWN
        status = self.consent_table.get(value.casefold())
        if status is None:
            self.unmapped_consent[value] += 1
            return Consent.UNKNOWN
        return status


class _ActivityMapper(_Mapper):
    """Orders and events: a person reference, an amount with its currency, extra attributes."""

    def __init__(self, entry: OrdersFile | EventsFile, layout: Layout) -> None:
        super().__init__(entry, layout)
        ix = layout.index
        self.i_customer = ix.get("customer_id")
        self.i_occurred = ix["occurred_at"]
        self.i_amount, self.i_currency = ix.get("amount"), ix.get("currency")
        self.default_currency = entry.currency
        self.currencies: dict[str, str | None] = {}

    def person(self, row: list[str]) -> tuple[str | None, str | None]:
        customer_id = None if self.i_customer is None else (row[self.i_customer].strip() or None)
        email = None if self.i_email is None else (row[self.i_email].strip() or None)
        if email is not None and ("@" not in email or " " in email):
            raise BadValue("email", f"not an email address: {email!r}")
        if customer_id is None and email is None:
            field = "customer_id" if self.i_customer is not None else "email"
            raise BadValue(field, "missing value (no customer id and no email)")
        return customer_id, email

    def occurred_at(self, row: list[str]) -> datetime:
        return _convert(self.date, _required(row, self.i_occurred, "occurred_at"), "occurred_at")

    def amount(self, row: list[str], required: bool) -> Decimal | None:
        if self.i_amount is None:
            return None
        text = _required(row, self.i_amount, "amount") if required else _cell(row, self.i_amount)
        return None if text is None else _convert(self.number, text, "amount")

    def currency(self, row: list[str]) -> str | None:
        if self.i_currency is None:
            return self.default_currency
        raw = row[self.i_currency]
        code = self.currencies.get(raw)  # an export has a handful of distinct values: check each once
        if code is None:
            code = self.currencies[raw] = self._check_currency(raw)
        return code

    def _check_currency(self, raw: str) -> str | None:
        code = raw.strip()
        if not code:
            return self.default_currency
        if len(code) != 3 or not code.isalpha() or not code.isascii():
            raise BadValue("currency", f"not an ISO 4217 code: {code!r}")
        return code.upper()


class OrderMapper(_ActivityMapper):
    """Maps an orders row to an ``order`` record carrying one ``order`` activity."""

    def __init__(self, entry: OrdersFile, layout: Layout) -> None:
        super().__init__(entry, layout)
        self.i_id, self.i_status, self.i_total = (
            layout.index["id"],
            layout.index.get("status"),
            layout.index["amount"],
        )
        self.cancelled = frozenset(s.casefold() for s in entry.cancelled_statuses)
        self.refunded = frozenset(s.casefold() for s in entry.refunded_statuses)
        self.statuses: dict[str, dict[str, Any]] = {}

    def __call__(self, row: list[str]) -> Record:
        # Orders files are the big ones: locals and inline checks here rather than one helper call per field.
        order_id, occurred, total = (
            row[self.i_id].strip(),
            row[self.i_occurred].strip(),
            row[self.i_total].strip(),
        )
        if not (order_id and occurred and total):
            raise _missing(id=order_id, occurred_at=occurred, amount=total)
        customer_id, email = self.person(row)
        try:
            occurred_at = self.date(occurred)
        except ValueError as exc:
            raise BadValue("occurred_at", str(exc)) from None
        try:
            amount = self.number(total)
        except ValueError as exc:
            raise BadValue("amount", str(exc)) from None
        activity = ActivityData(
            type="order",
            external_id=order_id,
            occurred_at=occurred_at,
            amount=amount,
            currency=self.currency(row),
            attributes=self.attributes(row),
            person_external_id=customer_id,
            person_email=email,
        )
        return Record(
            object_type="order",
            external_id=order_id,
            payload=dict(zip(self.header, row, strict=True)),
            activities=(activity,),
        )

    def attributes(self, row: list[str]) -> dict[str, Any]:
        attributes: dict[str, Any] = self.extra_values(row) if self.extras else {}
        if self.i_status is not None:
            raw = row[self.i_status]
            status = self.statuses.get(raw)
            if status is None:
                status = self.statuses[raw] = self._status(raw)
            attributes.update(status)
        return attributes

    def _status(self, raw: str) -> dict[str, Any]:
        status = raw.strip()
        if not status:
            return {}
        # Segments count revenue without cancelled or refunded orders; they must not need to know each
        # export's wording for it.
        folded = status.casefold()
        return {"status": status, "cancelled": folded in self.cancelled, "refunded": folded in self.refunded}


def _event_type(value: str) -> str:
    """``Email Open`` and ``email-open`` are the same type as ``email_open``."""
    return "_".join(value.casefold().replace("-", " ").split())


class EventMapper(_ActivityMapper):
    """Maps an events row to an ``event`` record carrying one activity of the row's type."""

    def __init__(self, entry: EventsFile, layout: Layout) -> None:
        super().__init__(entry, layout)
        self.i_id, self.i_type = layout.index.get("id"), layout.index.get("type")
        self.fixed_type = _event_type(entry.event_type) if entry.event_type else None
        # The row hash covers our mapped fields in a fixed order, so it survives reordered or added columns.
        mapped = [i for field, i in sorted(layout.index.items()) if field not in ("id", "type")]
        self.hashed = mapped + [i for _, i in layout.extras]

    def __call__(self, row: list[str]) -> Record:
        event_type = self.event_type(row)
        customer_id, email = self.person(row)
        event_id = _cell(row, self.i_id) or self.row_hash(row, event_type)
        activity = ActivityData(
            type=event_type,
            external_id=event_id,
            occurred_at=self.occurred_at(row),
            amount=self.amount(row, required=False),
            currency=self.currency(row),
            attributes=self.extra_values(row),
            person_external_id=customer_id,
            person_email=email,
        )
        return Record(
            object_type="event",
            external_id=event_id,
            payload=dict(zip(self.header, row, strict=True)),
            activities=(activity,),
        )

    def event_type(self, row: list[str]) -> str:
        if self.fixed_type is not None:
            return self.fixed_type
        assert self.i_type is not None  # bind_header insists on a type column when there is no event_type
        return _event_type(_required(row, self.i_type, "type"))

    def row_hash(self, row: list[str], event_type: str) -> str:
        key = "\x1f".join([event_type, *(row[i].strip() for i in self.hashed)])
        return hashlib.sha256(key.encode()).hexdigest()[:32]


def make_mapper(entry: CsvFile, layout: Layout) -> ContactMapper | OrderMapper | EventMapper:
    """The row mapper of an entry's kind, bound to one file's header."""
    if isinstance(entry, ContactsFile):
        return ContactMapper(entry, layout)
    if isinstance(entry, OrdersFile):
        return OrderMapper(entry, layout)
    return EventMapper(entry, layout)
