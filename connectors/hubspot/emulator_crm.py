"""The emulated HubSpot account's data: CRM objects (contacts, companies, deals) seeded from the shared business,
property definitions and groups, the deal pipeline, owners, associations with HubSpot's type ids, static lists,
and the search engine over them.

Everything is plain in-memory state mutated by the emulator's handlers (:mod:`connectors.hubspot.emulator` and
its ``emulator_*`` modules); nothing here speaks HTTP.
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

from hub.sandbox.business import EMAIL_EVENT_KINDS, Business, Deal, Person

from .settings import OBJECT_TYPE_IDS

JSON = dict[str, Any]

CONTACT_ID_BASE = 1_000
DEAL_ID_BASE = 20_000_000
COMPANY_ID_BASE = 30_000_000
OWNER_ID_BASE = 110_000_000
OWNER_USER_ID_BASE = 9_100_000
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
    ("hubspot_owner_id", "enumeration", "select", "Deal owner"),
)
_COMPANY_DEFS: tuple[tuple[str, str, str, str], ...] = (
    ("name", "string", "text", "Company name"),
    ("domain", "string", "text", "Company Domain Name"),
    ("website", "string", "text", "Website URL"),
    ("industry", "enumeration", "select", "Industry"),
    ("numberofemployees", "number", "number", "Number of Employees"),
    ("phone", "string", "phonenumber", "Phone Number"),
    ("city", "string", "text", "City"),
    ("state", "string", "text", "State/Region"),
    ("country", "string", "text", "Country/Region"),
    ("lifecyclestage", "enumeration", "radio", "Lifecycle Stage"),
    ("createdate", "datetime", "date", "Create Date"),
    ("hs_lastmodifieddate", "datetime", "date", "Last Modified Date"),
    ("hs_object_id", "number", "number", "Record ID"),
    ("hubspot_owner_id", "enumeration", "select", "Company owner"),
)
_DEFS = {"contacts": _CONTACT_DEFS, "companies": _COMPANY_DEFS, "deals": _DEAL_DEFS}
# HubSpot's own property groups per object type: (name, label). Every standard property sits in the first one,
# except the marketing email properties of contacts.
PROPERTY_GROUPS: dict[str, tuple[tuple[str, str], ...]] = {
    "contacts": (("contactinformation", "Contact information"), ("emailinformation", "Email information")),
    "companies": (("companyinformation", "Company information"),),
    "deals": (("dealinformation", "Deal information"),),
}
# Industry option values are HubSpot's (an enumeration of about 150); the seeded companies use three.
INDUSTRIES = ("RETAIL", "WHOLESALE", "DESIGN")
_INDUSTRY_BY_SUFFIX = {"Studio": "DESIGN", "Design": "DESIGN", "Handel": "WHOLESALE"}
# The account's users who own records (a small sales team of the shop).
_OWNERS = (("Katrin", "Vogel"), ("Matteo", "Ricci"), ("Ines", "Laurent"))
_SALES_TEAM = {"id": "5001", "name": "Sales", "primary": True}
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
    "companies": ("createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"),
}
CURSOR_PROPERTY = {"contacts": "lastmodifieddate", "deals": "hs_lastmodifieddate", "companies": "hs_lastmodifieddate"}
# What a search `query` looks in: HubSpot's documented default searchable properties of each object.
SEARCHABLE = {
    "contacts": ("firstname", "lastname", "email", "phone", "mobilephone", "company"),
    "companies": ("name", "domain", "website", "phone"),
    "deals": ("dealname", "pipeline", "dealstage"),
}


@dataclass(frozen=True)
class AssociationType:
    """One of HubSpot's association types between two object types.

    Attributes:
        type_id: HubSpot's ``associationTypeId`` (category ``HUBSPOT_DEFINED``).
        from_type: the object type it points from (plural name).
        to_type: the object type it points to.
        name: the v3 name (``associations.<type>.results[].type``).
        label: the v4 label (``Primary``), None for the unlabeled type.
        inverse: the type id of the same link seen from the other side.
    """

    type_id: int
    from_type: str
    to_type: str
    name: str
    label: str | None
    inverse: int


# HubSpot's documented type ids. Setting a primary company also sets the unlabeled type (both are listed);
# a contact and a deal have at most one primary company.
_ASSOCIATION_TYPES = (
    AssociationType(1, "contacts", "companies", "contact_to_company", "Primary", 2),
    AssociationType(279, "contacts", "companies", "contact_to_company_unlabeled", None, 280),
    AssociationType(2, "companies", "contacts", "company_to_contact", "Primary", 1),
    AssociationType(280, "companies", "contacts", "company_to_contact_unlabeled", None, 279),
    AssociationType(3, "deals", "contacts", "deal_to_contact", None, 4),
    AssociationType(4, "contacts", "deals", "contact_to_deal", None, 3),
    AssociationType(5, "deals", "companies", "deal_to_company", "Primary", 6),
    AssociationType(341, "deals", "companies", "deal_to_company_unlabeled", None, 342),
    AssociationType(6, "companies", "deals", "company_to_deal", "Primary", 5),
    AssociationType(342, "companies", "deals", "company_to_deal_unlabeled", None, 341),
)
ASSOCIATION_TYPES = {t.type_id: t for t in _ASSOCIATION_TYPES}
DEFAULT_ASSOCIATION = {(t.from_type, t.to_type): t.type_id for t in _ASSOCIATION_TYPES if t.label is None}
_SINGLE_PRIMARY = frozenset({1, 5})  # held by the contact / the deal: one primary company each


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
    """One CRM record (contact, company or deal). ``indexed_at``: when search starts to see its current version."""

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
    """The records of one object type, ordered by id.

    Args:
        object_type: the plural name (``contacts``).
        definitions: its property definitions by name.
        id_base: ids of records created through the API start above it.
    """

    def __init__(self, object_type: str, definitions: dict[str, JSON], id_base: int = 0) -> None:
        self.object_type = object_type
        self.definitions = definitions
        self.groups = property_groups(object_type)
        self.rows: dict[int, CrmObject] = {}
        self._ids: list[int] = []
        self._id_base = id_base

    def next_id(self) -> int:
        """The id of the next record created (above every id the table has held)."""
        self._id_base = max(self._id_base, self._ids[-1] if self._ids else 0) + 1
        return self._id_base

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

    def visible(self, object_id: int) -> CrmObject | None:
        """The live (not archived) record with that id."""
        obj = self.rows.get(object_id)
        return obj if obj is not None and not obj.archived else None


class Associations:
    """Links between records, by association type, kept in both directions.

    ``links[(from_type, to_type)][from_id][to_id]`` is the set of type ids from ``from_id`` to ``to_id``; adding
    a type adds its inverse on the other side. Links of archived records stay (HubSpot restores them with the
    record) and readers hide them.
    """

    def __init__(self) -> None:
        self._links: dict[tuple[str, str], dict[int, dict[int, set[int]]]] = {}

    def add(self, type_id: int, from_id: int, to_id: int) -> None:
        """Link two records with a type (and its inverse); a new primary replaces the previous one.

        Raises:
            KeyError: an unknown type id.
        """
        kind = ASSOCIATION_TYPES[type_id]
        if kind.inverse in _SINGLE_PRIMARY:  # the company side of a primary: the rule lives on the other side
            kind, from_id, to_id = ASSOCIATION_TYPES[kind.inverse], to_id, from_id
        if kind.type_id in _SINGLE_PRIMARY:
            for other, types in list(self._side(kind.from_type, kind.to_type, from_id).items()):
                if other != to_id and kind.type_id in types:
                    self._discard(kind, from_id, other)
        # A labeled link always comes with the pair's unlabeled type (HubSpot lists both).
        unlabeled = ASSOCIATION_TYPES[DEFAULT_ASSOCIATION[(kind.from_type, kind.to_type)]]
        for k in dict.fromkeys((kind, unlabeled)):
            for t, a, b in ((k, from_id, to_id), (ASSOCIATION_TYPES[k.inverse], to_id, from_id)):
                self._links.setdefault((t.from_type, t.to_type), {}).setdefault(a, {}).setdefault(b, set()).add(
                    t.type_id
                )

    def remove(
        self, from_type: str, from_id: int, to_type: str, to_id: int, type_ids: Iterable[int] | None = None
    ) -> bool:
        """Unlink two records (every type, or only ``type_ids``); whether anything was removed.

        Removing the unlabeled type removes the whole link, labels included, as HubSpot does.
        """
        present = self.types(from_type, from_id, to_type, to_id)
        chosen = present if type_ids is None else present & set(type_ids)
        if DEFAULT_ASSOCIATION.get((from_type, to_type)) in chosen:
            chosen = present
        for type_id in chosen:
            self._discard(ASSOCIATION_TYPES[type_id], from_id, to_id)
        return bool(chosen)

    def types(self, from_type: str, from_id: int, to_type: str, to_id: int) -> set[int]:
        """The type ids from one record to another."""
        return set(self._side(from_type, to_type, from_id).get(to_id, ()))

    def targets(self, from_type: str, from_id: int, to_type: str) -> list[tuple[int, list[int]]]:
        """(target id, its type ids) of one record towards an object type, by target id; type ids sorted."""
        side = self._side(from_type, to_type, from_id)
        return [(to_id, sorted(side[to_id])) for to_id in sorted(side)]

    def drop(self, object_type: str, ids: Iterable[int]) -> None:
        """Forget every link of records that are gone for good."""
        gone = set(ids)
        for (from_type, to_type), by_source in self._links.items():
            if from_type == object_type:
                for object_id in gone & by_source.keys():
                    del by_source[object_id]
            if to_type == object_type:
                for targets in by_source.values():
                    for object_id in gone & targets.keys():
                        del targets[object_id]

    def _side(self, from_type: str, to_type: str, from_id: int) -> dict[int, set[int]]:
        return self._links.get((from_type, to_type), {}).get(from_id, {})

    def _discard(self, kind: AssociationType, from_id: int, to_id: int) -> None:
        for k, a, b in ((kind, from_id, to_id), (ASSOCIATION_TYPES[kind.inverse], to_id, from_id)):
            side = self._links.get((k.from_type, k.to_type), {}).get(a)
            if side is None or b not in side:
                continue
            side[b].discard(k.type_id)
            if not side[b]:
                del side[b]


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
    table: ObjectTable,
    groups: Sequence[Sequence[Matcher]],
    sort: tuple[str, bool] | None,
    visible_at: datetime,
    query: str | None = None,
) -> list[CrmObject]:
    """Live objects the index already holds that match any group (all filters of one) and the ``query``, sorted.

    The query matches when each of its words occurs in one of the object type's default searchable
    properties (case-insensitive), as HubSpot's full-text ``query`` does over those properties.
    """
    words = (query or "").lower().split()
    searched = SEARCHABLE.get(table.object_type, ())

    def matches_query(o: CrmObject) -> bool:
        text = " ".join((o.properties.get(n) or "") for n in searched).lower()
        return all(w in text for w in words)

    found = [
        o
        for o in table.rows.values()
        if not o.archived
        and o.indexed_at <= visible_at
        and (not groups or any(all(f(o) for f in g) for g in groups))
        and (not words or matches_query(o))
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


def definitions(object_type: str, owners: Sequence[JSON] = ()) -> dict[str, JSON]:
    """The property definitions of an object type (standard ones, plus the custom contact properties).

    Args:
        object_type: contacts, companies or deals.
        owners: the account's owners, the options of ``hubspot_owner_id``.
    """
    group = PROPERTY_GROUPS[object_type][0][0]
    out: dict[str, JSON] = {}
    for name, kind, field_type, label in _DEFS[object_type]:
        in_group = "emailinformation" if name.startswith("hs_email") else group
        out[name] = property_definition(name, label, kind, field_type, True, in_group)
    if "hubspot_owner_id" in out:
        out["hubspot_owner_id"]["options"] = [
            _opt(str(o["id"]), i, f"{o['firstName']} {o['lastName']}") for i, o in enumerate(owners)
        ]
    if object_type in ("contacts", "companies"):
        out["lifecyclestage"]["options"] = [_opt(s, i) for i, s in enumerate(LIFECYCLE_STAGES)]
    if object_type == "contacts":
        for name, options in _CUSTOM_CONTACT.items():
            kind, field_type = ("enumeration", "select") if options else ("number", "number")
            out[name] = property_definition(name, name.replace("_", " ").title(), kind, field_type, False)
            out[name]["options"] = [_opt(o, i) for i, o in enumerate(options or ())]
    elif object_type == "companies":
        out["industry"]["options"] = [_opt(s, i, s.title()) for i, s in enumerate(INDUSTRIES)]
    else:
        out["dealstage"]["options"] = [_opt(s[0], i, s[1]) for i, s in enumerate(DEAL_STAGES)]
    return out


def property_groups(object_type: str) -> dict[str, JSON]:
    """The property groups of an object type, as the groups API returns them."""
    return {
        name: {"name": name, "label": label, "displayOrder": i, "archived": False}
        for i, (name, label) in enumerate(PROPERTY_GROUPS.get(object_type, ()))
    }


def property_definition(
    name: str, label: str, kind: str, field_type: str, hubspot: bool, group: str = "contactinformation"
) -> JSON:
    """A property definition as the properties API returns it."""
    return {
        "name": name,
        "label": label,
        "type": kind,
        "fieldType": field_type,
        "groupName": group,
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


def deal_of(deal: Deal, as_of: datetime, owners: Sequence[JSON] = ()) -> CrmObject:
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
    if owners:
        props["hubspot_owner_id"] = str(owners[deal.key % len(owners)]["id"])
    return CrmObject(deal_id, props, deal.created_at, modified, modified)


def seed_owners(as_of: datetime) -> list[JSON]:
    """The account's owners (users records are assigned to), as the owners API returns them."""
    joined = iso(as_of - timedelta(days=3 * 365))
    return [
        {
            "id": str(OWNER_ID_BASE + i),
            "email": f"{first.lower()}.{last.lower()}@shop.example",
            "type": "PERSON",
            "firstName": first,
            "lastName": last,
            "userId": OWNER_USER_ID_BASE + i,
            "userIdIncludingInactive": OWNER_USER_ID_BASE + i,
            "createdAt": joined,
            "updatedAt": joined,
            "archived": False,
            "teams": [dict(_SALES_TEAM)],
        }
        for i, (first, last) in enumerate(_OWNERS, start=1)
    ]


def company_ids(business: Business) -> dict[str, int]:
    """Company ids by name: every employer of the business, in name order (stable for a seed)."""
    names = sorted({p.company for p in business.people if p.company})
    return {name: COMPANY_ID_BASE + i for i, name in enumerate(names, start=1)}


def companies_of(
    business: Business, people: Sequence[Person], owners: Sequence[JSON], deals: Mapping[int, Sequence[Deal]]
) -> ObjectTable:
    """The companies HubSpot knows: the employers of its B2B contacts, named as the business names them.

    The domain is the one of the staff's addresses (B2B people write from the company's domain), the address
    is the one of the first contact HubSpot created, and the lifecycle stage follows the staff's deals.
    """
    staff: dict[str, list[Person]] = {}
    for person in people:
        if person.company:
            staff.setdefault(person.company, []).append(person)
    ids = company_ids(business)
    table = ObjectTable("companies", definitions("companies", owners), COMPANY_ID_BASE)
    for name, members in staff.items():
        company_id = ids[name]
        created = min(m.vendors["hubspot"].created_at for m in members)
        first = min(members, key=lambda m: (m.vendors["hubspot"].created_at, m.key))
        modified = min(max(m.vendors["hubspot"].created_at for m in members), business.as_of)
        stages = {d.stage for m in members for d in deals.get(m.key, ())}
        domain = first.email.rsplit("@", 1)[1]
        suffix = name.rsplit(" ", 1)[-1]
        props: dict[str, str | None] = {
            "name": name,
            "domain": domain,
            "website": f"https://www.{domain}",
            "industry": _INDUSTRY_BY_SUFFIX.get(suffix, INDUSTRIES[0]),
            "numberofemployees": str(10 * len(members) + company_id % 40),
            "city": first.city,
            "state": first.region,
            "country": first.country,
            "lifecyclestage": "customer" if "won" in stages else "opportunity" if "open" in stages else "lead",
            "createdate": iso(created),
            "hs_lastmodifieddate": iso(modified),
            "hs_object_id": str(company_id),
            "hubspot_owner_id": str(owners[company_id % len(owners)]["id"]) if owners else None,
        }
        table.add(CrmObject(company_id, props, created, modified, modified))
    return table


@dataclass
class Account:
    """The whole emulated account."""

    contacts: ObjectTable
    deals: ObjectTable
    companies: ObjectTable
    associations: Associations
    owners: list[JSON] = field(default_factory=list)
    lists: dict[int, StaticList] = field(default_factory=dict)
    next_list_id: int = 1

    def tables(self) -> dict[str, ObjectTable]:
        """The object tables by plural name."""
        return {"contacts": self.contacts, "companies": self.companies, "deals": self.deals}

    def table(self, object_type: str) -> ObjectTable | None:
        """The table of an object type, by name or type id (``contacts``, ``contact``, ``0-1``)."""
        name = object_type_name(object_type)
        return self.tables().get(name) if name else None


_TYPE_ALIASES = {
    **{v: k for k, v in OBJECT_TYPE_IDS.items()},
    **{k: k for k in OBJECT_TYPE_IDS},
    "contact": "contacts",
    "company": "companies",
    "deal": "deals",
}


def object_type_name(object_type: str) -> str | None:
    """The plural name of an object type given by name, singular name or type id; None if not emulated."""
    return _TYPE_ALIASES.get(object_type.strip().lower())


def seed(business: Business) -> Account:
    """The account as the business describes it: every person HubSpot knows, their companies and their deals."""
    engagement = Engagement.of(business)
    owners = seed_owners(business.as_of)
    people = business.people_in("hubspot")
    contacts = ObjectTable("contacts", definitions("contacts", owners), CONTACT_ID_BASE)
    for person in people:
        contacts.add(contact_of(person, engagement, business.as_of))
    deals_by_person: dict[int, list[Deal]] = {}
    for deal in business.deals:
        deals_by_person.setdefault(deal.person, []).append(deal)
    companies = companies_of(business, people, owners, deals_by_person)
    ids = company_ids(business)
    links = Associations()
    for person in people:
        if person.company:
            contact_id = CONTACT_ID_BASE + person.key
            links.add(1, contact_id, ids[person.company])  # the primary company (and the unlabeled type)
    deals = ObjectTable("deals", definitions("deals", owners), DEAL_ID_BASE)
    for deal in business.deals:
        contact_id = CONTACT_ID_BASE + deal.person
        if contact_id not in contacts.rows:
            continue  # the deal's person is not in HubSpot
        obj = deal_of(deal, business.as_of, owners)
        deals.add(obj)
        links.add(3, obj.id, contact_id)
        employer = business.person(deal.person).company
        if employer:
            links.add(5, obj.id, ids[employer])
    return Account(contacts, deals, companies, links, owners)


def later(previous: datetime, now: datetime) -> datetime:
    """A change time after ``previous``: now, or a millisecond after when the clock has not moved on."""
    return max(now, previous + timedelta(milliseconds=1))
