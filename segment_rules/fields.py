"""The fields segment rules can test: person fields, computed features and scores, with their types.

This catalog is the single source of truth shared by the rule validator (unknown field, type mismatch), the
feature builder (one column of ``person_feature`` per feature field) and ``hub explain``. Windowed features
are written ``orders_90d``: the window is part of the name, so rules stay short and the SQL stays static.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FieldType(StrEnum):
    """What a field holds; decides which operators a condition may use on it."""

    NUMBER = "number"
    INTEGER = "integer"
    STRING = "string"
    DATETIME = "datetime"
    BOOLEAN = "boolean"
    ANY = "any"  # source-specific properties: untyped JSON, compared as the literal's type


class FieldKind(StrEnum):
    """Where a field's value comes from."""

    PERSON = "person"  # the resolved person row
    FEATURE = "feature"  # aggregated from activities at ``as_of``
    SCORE = "score"  # RFM, CLV, churn, cluster: written by the scoring step
    PROPERTY = "property"  # ``properties.NAME``: a source-specific person property


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of the catalog.

    Args:
        name: the name used in rule files.
        type: its value type.
        kind: where the value comes from.
        description: one line for ``hub segment fields`` and the docs.
    """

    name: str
    type: FieldType
    kind: FieldKind
    description: str


PROPERTY_PREFIX = "properties."
# The windows every windowed feature is computed for; a rule needing another window uses an event condition.
WINDOWS_DAYS = (30, 90, 365)

_N, _I, _S, _T, _B = FieldType.NUMBER, FieldType.INTEGER, FieldType.STRING, FieldType.DATETIME, FieldType.BOOLEAN


def _person(name: str, type_: FieldType, description: str) -> FieldSpec:
    return FieldSpec(name, type_, FieldKind.PERSON, description)


def _feature(name: str, type_: FieldType, description: str) -> FieldSpec:
    return FieldSpec(name, type_, FieldKind.FEATURE, description)


def _score(name: str, type_: FieldType, description: str) -> FieldSpec:
    return FieldSpec(name, type_, FieldKind.SCORE, description)


def _windowed(stem: str, type_: FieldType, what: str) -> list[FieldSpec]:
    return [_feature(f"{stem}_{d}d", type_, f"{what} in the {d} days before as_of") for d in WINDOWS_DAYS]


_CATALOG: list[FieldSpec] = [
    _person("email", _S, "normalized email address"),
    _person("first_name", _S, "first name"),
    _person("last_name", _S, "last name"),
    _person("phone", _S, "phone number"),
    _person("consent", _S, "marketing consent: granted, pending, denied, undeliverable, objected or unknown"),
    _person("created_at", _T, "when the hub first saw the person"),
    _feature("lifecycle_stage", _S, "lifecycle stage from the CRM or a CSV property (lead, customer, ...)"),
    _feature("country", _S, "country (ISO code where the source gives one)"),
    _feature("city", _S, "city"),
    _feature("first_seen_at", _T, "earliest of the person's creation and first activity"),
    _feature("tenure_days", _N, "days from first_seen_at to as_of"),
    _feature("orders", _I, "orders placed (cancelled and refunded orders excluded), all time"),
    _feature("frequency", _I, "same as orders: the F of RFM"),
    _feature("monetary", _N, "total spend of those orders (shop currency), all time"),
    _feature("aov", _N, "average order value"),
    _feature("first_order_at", _T, "time of the first order"),
    _feature("last_order_at", _T, "time of the latest order"),
    _feature("recency_days", _N, "days from the latest order to as_of (empty without orders)"),
    *_windowed("orders", _I, "orders"),
    *_windowed("spend", _N, "spend"),
    _feature("email_opens", _I, "email opens, all time"),
    _feature("email_clicks", _I, "email clicks, all time"),
    *_windowed("email_opens", _I, "email opens"),
    *_windowed("email_clicks", _I, "email clicks"),
    _feature("click_to_open_rate", _N, "email clicks / email opens, all time (empty without opens)"),
    _feature("last_email_open_at", _T, "time of the latest email open"),
    _feature("last_email_click_at", _T, "time of the latest email click"),
    _feature("email_bounced", _B, "an email to the person bounced"),
    _feature("email_unsubscribed", _B, "the person unsubscribed from an email"),
    _feature("sessions", _I, "web sessions, all time"),
    *_windowed("sessions", _I, "web sessions"),
    _feature("page_views_90d", _I, "page views in the 90 days before as_of"),
    _feature("last_session_at", _T, "time of the latest web session"),
    _feature("deals_won", _I, "won CRM deals, all time"),
    _feature("deals_won_amount", _N, "total amount of won CRM deals"),
    _score("rfm_r", _I, "RFM recency score, 1 (oldest) to 5 (most recent)"),
    _score("rfm_f", _I, "RFM frequency score, 1 to 5"),
    _score("rfm_m", _I, "RFM monetary score, 1 to 5"),
    _score("rfm_score", _S, "the three RFM scores as a code, e.g. '545'"),
    _score("rfm_segment", _S, "named RFM segment: champions, loyal, at_risk, cant_lose_them, hibernating, ..."),
    _score("clv", _N, "predicted value over the CLV horizon (BG/NBD x Gamma-Gamma)"),
    _score("clv_percentile", _N, "the person's CLV as a percentile of all scored people, 0 to 100"),
    _score("clv_simple", _N, "historic CLV: average order value x purchase frequency x lifespan"),
    _score("expected_orders", _N, "orders expected over the CLV horizon (BG/NBD)"),
    _score("churn_probability", _N, "probability of no order within the churn horizon, 0 to 1"),
    _score("cluster", _I, "cluster number from the latest cluster suggestion"),
]

FIELDS: dict[str, FieldSpec] = {spec.name: spec for spec in _CATALOG}
FEATURE_FIELDS: tuple[FieldSpec, ...] = tuple(s for s in _CATALOG if s.kind is FieldKind.FEATURE)
SCORE_FIELDS: tuple[FieldSpec, ...] = tuple(s for s in _CATALOG if s.kind is FieldKind.SCORE)


def lookup(name: str) -> FieldSpec | None:
    """The field ``name`` (``properties.X`` is any source property), or None when there is no such field."""
    if name.startswith(PROPERTY_PREFIX) and len(name) > len(PROPERTY_PREFIX):
        return FieldSpec(name, FieldType.ANY, FieldKind.PROPERTY, "source-specific person property")
    return FIELDS.get(name)
