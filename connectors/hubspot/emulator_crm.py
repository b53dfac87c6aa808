"""The emulated HubSpot account's data: CRM objects seeded from the shared business, property definitions,
the deal pipeline, associations, static lists, and the search engine over them.

Everything is plain in-memory state mutated by :mod:`connectors.hubspot.emulator`; nothing here speaks HTTP.
Ids are derived from the business's stable keys, so the same seed gives the same ids.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np

from hub.sandbox.business import EMAIL_EVENT_KINDS, Business, Person

JSON = dict[str, Any]

CONTACT_ID_BASE = 1_000
DEAL_ID_BASE = 20_000_000
PORTAL_ID = 4_242_424
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# (name, type, fieldType, label, options): the standard properties the emulator knows. Every value is a string.
_CONTACT_DEFS: tuple[tuple[str, str, str, str], ...] = (
    ("email", "string", "text", "Email"),
    ("firstname", "string", "text", "First Name"),
    ("lastname", "string", "text", "Last Name"),
    ("phone", "string", "phonenumber", "Phone Number"),
    ("mobilephone", "string", "phonenumber", "Mobile Phone Number"),
    ("company", "string", "text", "Company Name"),
    ("country", "string", "text", "Country/Region"),
    ("state", "string", "text", "State/Region"),
    ("city", "string", "text", "City"),
    ("lifecyclestage", "enumeration", "radio", "Lifecycle Stage"),
    ("createdate", "datetime", "date", "Create Date"),
    ("lastmodifieddate", "datetime", "date", "Last Modified Date"),
    ("hs_object_id", "number", "number", "Record ID"),
    ("hs_email_optout", "bool", "booleancheckbox", "Unsubscribed from all email"),
    ("hs_email_bad_address", "bool", "booleancheckbox", "Invalid email address"),
    ("hs_email_hard_bounce_reason_enum", "enumeration", "select", "Email hard bounce reason"),
    ("hs_email_quarantined", "bool", "booleancheckbox", "Email address quarantined"),
    ("hs_emailconfirmationstatus", "enumeration", "select", "Marketing email confirmation status"),
    ("hs_legal_basis", "enumeration", "checkbox", "Legal basis for processing contact's data"),
    ("hs_email_delivered", "number", "number", "Marketing emails delivered"),
    ("hs_email_open", "number", "number", "Marketing emails opened"),
    ("hs_email_click", "number", "number", "Marketing emails clicked"),
    ("hs_email_bounce", "number", "number", "Marketing emails bounced"),
    ("hs_email_first_open_date", "datetime", "date", "First marketing email open date"),
    ("hs_email_last_open_date", "datetime", "date", "Last marketing email open date"),
    ("hs_email_last_click_date", "datetime", "date", "Last marketing email click date"),
    ("hs_email_last_send_date", "datetime", "date", "Last marketing email send date"),
)
_DEAL_DEFS: tuple[tuple[str, str, str, str], ...] = (
    ("dealname", "string", "text", "Deal Name"),
    ("amount", "number", "number", "Amount"),
    ("deal_currency_code", "enumeration", "select", "Currency"),
    ("closedate", "datetime", "date", "Close Date"),
    ("dealstage", "enumeration", "radio", "Deal Stage"),
    ("pipeline", "enumeration", "select", "Pipeline"),
    ("createdate", "datetime", "date", "Create Date"),
    ("hs_lastmodifieddate", "datetime", "date", "Last Modified Date"),
    ("hs_object_id", "number", "number", "Record ID"),
)
# Custom contact properties the account defines (so property discovery has something to find).
_CUSTOM_CONTACT = {"customer_tier": ["bronze", "silver", "gold"], "loyalty_points": None}
LIFECYCLE_STAGES = ("subscriber", "lead", "marketingqualifiedlead", "opportunity", "customer", "evangelist")
# (stage id, label, probability, closed)
DEAL_STAGES = (
    ("appointmentscheduled", "Appointment Scheduled", "0.2", False),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", False),
    ("presentationscheduled", "Presentation Scheduled", "0.6", False),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", False),
    ("contractsent", "Contract Sent", "0.9", False),
    ("closedwon", "Closed Won", "1.0", True),
    ("closedlost", "Closed Lost", "0.0", True),
)
OPEN_STAGES = tuple(s[0] for s in DEAL_STAGES if not s[3])
DEFAULT_PROPERTIES = {
    "contacts": ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"),
    "deals": (
        "amount",
        "closedate",
        "createdate",
        "dealname",
        "dealstage",
        "hs_lastmodifieddate",
        "hs_object_id",
        "pipeline",
    ),
}
CURSOR_PROPERTY = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate"}


def iso(at: datetime) -> str:
    """HubSpot's timestamp format: UTC, milliseconds, ``Z``."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def parse_instant(value: Any) -> int | None:
    """Epoch milliseconds of a filter value or a stored datetime (ms digits or ISO 8601); None if neither."""
    text = str(value).strip() if value is not None else ""
    if not text:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


@dataclass
class CrmObject:
    """One contact or deal. ``indexed_at``: when search starts to see its current version."""

    id: int
    properties: dict[str, str | None]
    created_at: datetime
    updated_at: datetime
    indexed_at: datetime
    archived_at: datetime | None = None

    @property
    def archived(self) -> bool:
        return self.archived_at is not None

    def payload(self, names: Iterable[str], known: Mapping[str, JSON]) -> JSON:
        """The object as HubSpot serialises it: requested known properties only (null when empty)."""
        out: JSON = {
            "id": str(self.id),
            "properties": {n: self.properties.get(n) for n in names if n in known},
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.updated_at),
            "archived": self.archived,
        }
        if self.archived_at is not None:
            out["archivedAt"] = iso(self.archived_at)
        return out


@dataclass
class StaticList:
    """A contact list; only MANUAL and SNAPSHOT lists accept membership writes."""

    id: int
    name: str
    processing_type: str
    object_type_id: str
    created_at: datetime
    members: dict[int, datetime] = field(default_factory=dict)  # record id -> when added
    version: int = 1

    def payload(self) -> JSON:
        return {
            "listId": str(self.id),
            "listVersion": self.version,
            "name": self.name,
            "objectTypeId": self.object_type_id,
            "processingStatus": "COMPLETE",
            "processingType": self.processing_type,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(self.created_at),
        }


class ObjectTable:
    """The records of one object type, ordered by id."""

    def __init__(self, object_type: str, definitions: dict[str, JSON]) -> None:
        self.object_type = object_type
        self.definitions = definitions
        self.rows: dict[int, CrmObject] = {}
        self._ids: list[int] = []

    def add(self, obj: CrmObject) -> None:
        if obj.id not in self.rows:
            bisect.insort(self._ids, obj.id)
        self.rows[obj.id] = obj

    def drop(self, ids: Iterable[int]) -> None:
        """Forget records entirely (not archived: as if they never existed)."""
        gone = {i for i in ids if i in self.rows}
        for object_id in gone:
            del self.rows[object_id]
        self._ids = [i for i in self._ids if i not in gone]

    def first_ids(self, count: int) -> list[int]:
        """The ``count`` lowest ids."""
        return self._ids[:count]

    def ids_from(self, start: int) -> Iterator[int]:
        """Ids >= ``start``, ascending."""
        for i in range(bisect.bisect_left(self._ids, start), len(self._ids)):
            yield self._ids[i]

    def live(self) -> list[CrmObject]:
        return [o for o in self.rows.values() if not o.archived]

    def kind(self, name: str) -> str:
        """The property's type (string, number, datetime, bool, enumeration)."""
        definition = self.definitions.get(name)
        return str(definition["type"]) if definition else "string"


# ---------------------------------------------------------------------------------------------- search


Matcher = Callable[[CrmObject], bool]


class FilterError(ValueError):
    """A search filter HubSpot would refuse (400 VALIDATION_ERROR)."""


def compile_filter(table: ObjectTable, spec: Mapping[str, Any]) -> Matcher:
    """One search filter as a predicate, typed by the property's definition."""
    name = spec.get("propertyName")
    operator = str(spec.get("operator", "")).upper()
    if not isinstance(name, str) or not name:
        raise FilterError("a filter needs a propertyName")
    kind = table.kind(name)
    multi = table.definitions.get(name, {}).get("fieldType") == "checkbox"

    def value_of(raw: Any) -> Any:
        if kind == "datetime":
            return parse_instant(raw)
        if kind == "number":
            try:
                return float(str(raw))
            except ValueError:
                return None
        return str(raw).strip().lower() if raw is not None else None

    def stored(obj: CrmObject) -> Any:
        raw = str(obj.id) if name == "hs_object_id" else obj.properties.get(name)
        return None if raw is None or raw == "" else value_of(raw)

    def tokens(obj: CrmObject) -> set[str]:
        raw = obj.properties.get(name)
        return {t.strip().lower() for t in raw.split(";")} if raw else set()

    if operator == "HAS_PROPERTY":
        return lambda o: stored(o) is not None
    if operator == "NOT_HAS_PROPERTY":
        return lambda o: stored(o) is None
    if operator in ("IN", "NOT_IN"):
        values = {value_of(v) for v in spec.get("values") or ()}
        hit: Matcher = (lambda o: bool(tokens(o) & values)) if multi else (lambda o: stored(o) in values)
        return hit if operator == "IN" else (lambda o: not hit(o))
    if operator == "CONTAINS_TOKEN":
        needle = str(spec.get("value", "")).strip("*").lower()
        return lambda o: needle in str(o.properties.get(name) or "").lower()
    target = value_of(spec.get("value"))
    if target is None and operator not in ("EQ", "NEQ"):
        raise FilterError(f"filter on {name}: {spec.get('value')!r} is not a valid {kind} value")
    if operator == "BETWEEN":
        high = value_of(spec.get("highValue"))
        return lambda o: (v := stored(o)) is not None and target <= v <= high
    compare = _COMPARE.get(operator)
    if compare is None:
        raise FilterError(f"unknown filter operator {operator!r}")
    if multi and operator == "EQ":
        return lambda o: target in tokens(o)
    return lambda o: (v := stored(o)) is not None and compare(v, target)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "EQ": lambda a, b: a == b,
    "NEQ": lambda a, b: a != b,
    "LT": lambda a, b: a < b,
    "LTE": lambda a, b: a <= b,
    "GT": lambda a, b: a > b,
    "GTE": lambda a, b: a >= b,
}


def search(
    table: ObjectTable, groups: Sequence[Sequence[Matcher]], sort: tuple[str, bool] | None, visible_at: datetime
) -> list[CrmObject]:
    """Live objects the index already holds that match any group (all filters of one), sorted."""
    found = [
        o
        for o in table.rows.values()
        if not o.archived and o.indexed_at <= visible_at and (not groups or any(all(f(o) for f in g) for g in groups))
    ]
    name, descending = sort or ("hs_object_id", False)
    kind = table.kind(name)

    def key(o: CrmObject) -> tuple[bool, Any, int]:
        raw = str(o.id) if name == "hs_object_id" else o.properties.get(name)
        if kind in ("number", "datetime"):
            value: Any = parse_instant(raw) if kind == "datetime" else _float(raw)
        else:
            value = (raw or "").lower()
        return (value is None, value if value is not None else 0, o.id)

    found.sort(key=key, reverse=descending)
    return found


def _float(raw: str | None) -> float | None:
    try:
        return float(raw) if raw else None
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------- seeding


def definitions(object_type: str) -> dict[str, JSON]:
    """The property definitions of an object type (standard ones, plus the custom contact properties)."""
    rows = _CONTACT_DEFS if object_type == "contacts" else _DEAL_DEFS
    out = {name: property_definition(name, label, kind, field_type, True) for name, kind, field_type, label in rows}
    if object_type == "contacts":
        out["lifecyclestage"]["options"] = [_opt(s, i) for i, s in enumerate(LIFECYCLE_STAGES)]
        for name, options in _CUSTOM_CONTACT.items():
            kind, field_type = ("enumeration", "select") if options else ("number", "number")
            out[name] = property_definition(name, name.replace("_", " ").title(), kind, field_type, False)
            out[name]["options"] = [_opt(o, i) for i, o in enumerate(options or ())]
    else:
        out["dealstage"]["options"] = [_opt(s[0], i, s[1]) for i, s in enumerate(DEAL_STAGES)]
    return out


def property_definition(name: str, label: str, kind: str, field_type: str, hubspot: bool) -> JSON:
    """A property definition as the properties API returns it."""
    return {
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "groupName": "contactinformation",
        "description": "",
        "options": [],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": name in ("email", "hs_object_id"),
        "hidden": False,
        "hubspotDefined": hubspot,
        "formField": not hubspot,
        "archived": False,
        "createdAt": iso(_EPOCH),
        "updatedAt": iso(_EPOCH),
        "modificationMetadata": {"archivable": not hubspot, "readOnlyDefinition": hubspot, "readOnlyValue": False},
    }


def _opt(value: str, order: int, label: str | None = None) -> JSON:
    return {"label": label or value, "value": value, "displayOrder": order, "hidden": False}


def pipelines() -> list[JSON]:
    """The default deal pipeline: HubSpot's standard stages, metadata values as strings."""
    stages = [
        {
            "id": stage,
            "label": label,
            "displayOrder": i,
            "metadata": {"isClosed": "true" if closed else "false", "probability": probability},
            "createdAt": iso(_EPOCH),
            "updatedAt": iso(_EPOCH),
            "archived": False,
        }
        for i, (stage, label, probability, closed) in enumerate(DEAL_STAGES)
    ]
    return [
        {
            "id": "default",
            "label": "Sales Pipeline",
            "displayOrder": 0,
            "stages": stages,
            "createdAt": iso(_EPOCH),
            "updatedAt": iso(_EPOCH),
            "archived": False,
        }
    ]


@dataclass
class Engagement:
    """Per-person marketing email counters and dates (arrays indexed by person key)."""

    sends: np.ndarray
    opens: np.ndarray
    clicks: np.ndarray
    bounces: np.ndarray
    first_open: np.ndarray
    last_open: np.ndarray
    last_click: np.ndarray
    last_send: np.ndarray

    @classmethod
    def of(cls, business: Business) -> Engagement:
        n = len(business.people) + 1
        email = business.email
        kinds = {k: np.flatnonzero(email.event_kind == i) for i, k in enumerate(EMAIL_EVENT_KINDS)}
        sends = np.bincount(email.send_person, minlength=n)

        def count(kind: str) -> np.ndarray:
            return np.bincount(email.event_person[kinds[kind]], minlength=n)

        def extreme(kind: str, func: Any, fill: int) -> np.ndarray:
            out = np.full(n, fill, dtype=np.int64)
            func.at(out, email.event_person[kinds[kind]], email.event_at[kinds[kind]])
            return out

        campaign_at = np.array([0] + [int(c.send_time.timestamp()) for c in business.campaigns], dtype=np.int64)
        last_send = np.zeros(n, dtype=np.int64)
        np.maximum.at(last_send, email.send_person, campaign_at[email.send_campaign])
        big = np.iinfo(np.int64).max
        return cls(
            sends,
            count("open"),
            count("click"),
            count("bounce"),
            extreme("open", np.minimum, big),
            extreme("open", np.maximum, 0),
            extreme("click", np.maximum, 0),
            last_send,
        )

    def properties(self, key: int) -> dict[str, str | None]:
        big = np.iinfo(np.int64).max

        def when(value: int) -> str | None:
            return iso(datetime.fromtimestamp(int(value), UTC)) if 0 < value < big else None

        return {
            "hs_email_delivered": str(int(self.sends[key] - self.bounces[key])),
            "hs_email_open": str(int(self.opens[key])),
            "hs_email_click": str(int(self.clicks[key])),
            "hs_email_bounce": str(int(self.bounces[key])),
            "hs_email_first_open_date": when(int(self.first_open[key])),
            "hs_email_last_open_date": when(int(self.last_open[key])),
            "hs_email_last_click_date": when(int(self.last_click[key])),
            "hs_email_last_send_date": when(int(self.last_send[key])),
        }


def _consent(person: Person) -> dict[str, str | None]:
    status = person.email_consent
    if status == "subscribed":
        return {"hs_email_optout": "false", "hs_legal_basis": "Freely given consent from contact"}
    if status == "unsubscribed":
        return {"hs_email_optout": "true", "hs_legal_basis": "Freely given consent from contact"}
    if status == "cleaned":
        return {"hs_email_optout": "false", "hs_email_hard_bounce_reason_enum": "BAD_MAILBOX"}
    if status == "pending":
        return {"hs_email_optout": "false", "hs_emailconfirmationstatus": "Confirmation Pending"}
    return {"hs_email_optout": "false", "hs_legal_basis": "Legitimate interest - prospect/lead"}


def contact_of(person: Person, engagement: Engagement, as_of: datetime) -> CrmObject:
    """The HubSpot contact of a person the business says HubSpot knows."""
    view = person.vendors["hubspot"]
    created = view.created_at
    props: dict[str, str | None] = {
        "email": view.email,
        "firstname": person.first_name,
        "lastname": person.last_name,
        "phone": person.phone,
        "company": person.company,
        "country": person.country,
        "state": person.region,
        "city": person.city,
        "lifecyclestage": person.lifecycle_stage,
        "createdate": iso(created),
        **_consent(person),
        **engagement.properties(person.key),
    }
    if person.latent in ("vip", "repeat") or person.key % 7 == 0:
        props["customer_tier"] = {"vip": "gold", "repeat": "silver"}.get(person.latent, "bronze")
        props["loyalty_points"] = str(person.key % 500 * 10)
    touched = [created] + [v for v in (props["hs_email_last_open_date"], props["hs_email_last_click_date"]) if v]
    modified = min(max(_as_dt(t) for t in touched), as_of)
    contact_id = CONTACT_ID_BASE + person.key
    props["lastmodifieddate"] = iso(modified)
    props["hs_object_id"] = str(contact_id)
    return CrmObject(contact_id, props, created, modified, modified)


def _as_dt(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def deal_of(deal: Any, as_of: datetime) -> CrmObject:
    """The HubSpot deal of a business deal."""
    if deal.stage == "won":
        stage = "closedwon"
    elif deal.stage == "lost":
        stage = "closedlost"
    else:
        stage = OPEN_STAGES[deal.key % len(OPEN_STAGES)]
    closed = deal.stage in ("won", "lost")
    modified = min(deal.close_date if closed else deal.created_at, as_of)
    deal_id = DEAL_ID_BASE + deal.key
    props: dict[str, str | None] = {
        "dealname": deal.name,
        "amount": str(Decimal(deal.amount)),
        "deal_currency_code": "EUR",
        "closedate": iso(deal.close_date),
        "dealstage": stage,
        "pipeline": "default",
        "createdate": iso(deal.created_at),
        "hs_lastmodifieddate": iso(modified),
        "hs_object_id": str(deal_id),
    }
    return CrmObject(deal_id, props, deal.created_at, modified, modified)


@dataclass
class Account:
    """The whole emulated account."""

    contacts: ObjectTable
    deals: ObjectTable
    deal_contacts: dict[int, list[int]]
    lists: dict[int, StaticList] = field(default_factory=dict)
    next_list_id: int = 1

    def table(self, object_type: str) -> ObjectTable | None:
        return {"contacts": self.contacts, "0-1": self.contacts, "deals": self.deals, "0-3": self.deals}.get(
            object_type
        )

    def contact_deals(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        for deal_id, contact_ids in self.deal_contacts.items():
            for contact_id in contact_ids:
                out.setdefault(contact_id, []).append(deal_id)
        return out


def seed(business: Business) -> Account:
    """The account as the business describes it: every person HubSpot knows, and their deals."""
    engagement = Engagement.of(business)
    contacts = ObjectTable("contacts", definitions("contacts"))
    for person in business.people_in("hubspot"):
        contacts.add(contact_of(person, engagement, business.as_of))
    deals = ObjectTable("deals", definitions("deals"))
    links: dict[int, list[int]] = {}
    for deal in business.deals:
        contact_id = CONTACT_ID_BASE + deal.person
        if contact_id not in contacts.rows:
            continue  # the deal's person is not in HubSpot
        obj = deal_of(deal, business.as_of)
        deals.add(obj)
        links[obj.id] = [contact_id]
    return Account(contacts, deals, links)


def later(previous: datetime, now: datetime) -> datetime:
    """A change time after ``previous``: now, or a millisecond after when the clock has not moved on."""
    return max(now, previous + timedelta(milliseconds=1))
