"""HubSpot payloads -> the hub's records: pure functions, no I/O.

Every property value HubSpot returns is a string (numbers, dates and booleans included) or null; these
functions parse them and raise :class:`~hub.errors.SkippableRecordError` for a record that cannot be used, so
the stream skips and counts it and goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from hub.contracts import ActivityData, ActivityType, Consent, PersonData, Record
from hub.errors import SkippableRecordError

# Contact properties kept as person properties under the hub's names.
PERSON_PROPERTIES = {
    "lifecyclestage": "lifecycle_stage",
    "country": "country",
    "state": "region",
    "city": "city",
    "company": "company",
}
# Engagement counters kept as integer person properties.
COUNTERS = {
    "hs_email_delivered": "email_delivered_count",
    "hs_email_open": "email_open_count",
    "hs_email_click": "email_click_count",
    "hs_email_bounce": "email_bounce_count",
}
_TRUE = frozenset({"true", "1", "yes"})


def parse_time(value: Any) -> datetime | None:
    """A HubSpot timestamp: ISO 8601 (``Z`` or an offset), a date, or epoch milliseconds; None when empty.

    Raises:
        ValueError: a non-empty value in none of those forms.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isdigit():
        return datetime.fromtimestamp(int(text) / 1000.0, UTC)
    if len(text) == 10:
        day = date.fromisoformat(text)
        return datetime(day.year, day.month, day.day, tzinfo=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch_ms(at: datetime) -> int:
    """``at`` as epoch milliseconds (what search filters on date properties take)."""
    return int(at.timestamp() * 1000)


def _text(props: Mapping[str, Any], name: str) -> str | None:
    value = props.get(name)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _flag(props: Mapping[str, Any], name: str) -> bool:
    return (_text(props, name) or "").lower() in _TRUE


def consent_of(props: Mapping[str, Any]) -> Consent:
    """The contact's email consent from HubSpot's subscription, bounce and legal-basis properties.

    A bad address, a hard bounce or quarantine make it undeliverable; ``hs_email_optout`` (unsubscribed from
    all email) denies it; a pending double opt-in is pending; a legal basis of consent grants it. Anything
    else (legitimate interest, no basis recorded) says nothing about opt-in: unknown.
    """
    if _flag(props, "hs_email_bad_address") or _flag(props, "hs_email_quarantined"):
        return Consent.UNDELIVERABLE
    if _text(props, "hs_email_hard_bounce_reason_enum"):
        return Consent.UNDELIVERABLE
    if _flag(props, "hs_email_optout"):
        return Consent.DENIED
    if "pending" in (_text(props, "hs_emailconfirmationstatus") or "").lower():
        return Consent.PENDING
    if "consent" in (_text(props, "hs_legal_basis") or "").lower():
        return Consent.GRANTED
    return Consent.UNKNOWN


def _props(obj: Mapping[str, Any], what: str) -> tuple[str, Mapping[str, Any]]:
    raw_id = obj.get("id")
    if raw_id is None or not str(raw_id).strip():
        raise SkippableRecordError(f"{what} without an id")
    props = obj.get("properties")
    if not isinstance(props, Mapping):
        raise SkippableRecordError(f"{what} {raw_id}: 'properties' is not an object")
    return str(raw_id), props


def _time(value: Any, what: str) -> datetime | None:
    try:
        return parse_time(value)
    except (TypeError, ValueError):
        raise SkippableRecordError(f"{what}: unreadable timestamp {str(value)[:40]!r}") from None


def updated_at(obj: Mapping[str, Any], cursor_property: str) -> datetime | None:
    """The record's last change: ``updatedAt``, else its last-modified property."""
    what = f"record {obj.get('id')}"
    props = obj.get("properties")
    fallback = props.get(cursor_property) if isinstance(props, Mapping) else None
    return _time(obj.get("updatedAt"), what) or _time(fallback, what)


def contact_record(obj: Mapping[str, Any], custom: Sequence[str] = ()) -> Record:
    """A contact as a person record, with its email engagement as activities.

    Raises:
        SkippableRecordError: no id, no properties object, or an unreadable date.
    """
    contact_id, props = _props(obj, "contact")
    what = f"contact {contact_id}"
    properties: dict[str, Any] = {ours: v for theirs, ours in PERSON_PROPERTIES.items() if (v := _text(props, theirs))}
    for theirs, ours in COUNTERS.items():
        count = _text(props, theirs)
        if count is not None:
            try:
                properties[ours] = int(Decimal(count))
            except (InvalidOperation, ValueError):
                raise SkippableRecordError(f"{what}: {theirs} is not a number: {count[:40]!r}") from None
    for name in custom:
        if props.get(name) is not None:
            properties[name] = props[name]
    person = PersonData(
        email=_text(props, "email"),
        first_name=_text(props, "firstname"),
        last_name=_text(props, "lastname"),
        phone=_text(props, "phone") or _text(props, "mobilephone"),
        consent=consent_of(props),
        properties=properties,
    )
    return Record(
        object_type="contact",
        external_id=contact_id,
        payload=dict(obj),
        updated_at=updated_at(obj, "lastmodifieddate"),
        deleted=bool(obj.get("archived")),
        person=person,
        activities=engagement(contact_id, props),
    )


def engagement(contact_id: str, props: Mapping[str, Any]) -> list[ActivityData]:
    """Email opens and clicks the contact's engagement dates prove.

    HubSpot keeps marketing email engagement as counters and first/last dates on the contact, not as events.
    Each distinct date is one real open or click, so it becomes one activity whose id is the date: pulling the
    same contact again never doubles it, and a newer last open adds one.

    Raises:
        SkippableRecordError: an unreadable date.
    """
    what = f"contact {contact_id}"
    seen: set[tuple[str, int]] = set()
    out: list[ActivityData] = []
    for name, kind in (
        ("hs_email_first_open_date", ActivityType.EMAIL_OPEN),
        ("hs_email_last_open_date", ActivityType.EMAIL_OPEN),
        ("hs_email_last_click_date", ActivityType.EMAIL_CLICK),
    ):
        at = _time(props.get(name), what)
        if at is None or (kind.value, epoch_ms(at)) in seen:
            continue
        seen.add((kind.value, epoch_ms(at)))
        external_id = f"{contact_id}:{kind.value}:{epoch_ms(at)}"
        out.append(ActivityData(kind.value, external_id, at, person_external_id=contact_id))
    return out


@dataclass(frozen=True)
class StageBook:
    """Deal stage id -> ``won``, ``lost`` or ``open``, from the pipelines API.

    A closed stage with probability 1 is won and one with probability 0 is lost (HubSpot's own
    ``closedwon``/``closedlost`` and any custom closed stage alike).
    """

    outcomes: Mapping[str, str]

    @classmethod
    def from_pipelines(cls, pipelines: Sequence[Mapping[str, Any]]) -> StageBook:
        """Read every stage of every pipeline."""
        outcomes: dict[str, str] = {}
        for pipeline in pipelines:
            for stage in pipeline.get("stages") or ():
                if not isinstance(stage, Mapping) or stage.get("id") is None:
                    continue
                meta = stage.get("metadata")
                outcomes[str(stage["id"])] = _outcome(meta if isinstance(meta, Mapping) else {})
        return cls(outcomes)

    def outcome(self, stage: str | None) -> str:
        """The outcome of a stage id (an unknown stage counts as open)."""
        if stage is None:
            return "open"
        return self.outcomes.get(stage, "won" if stage == "closedwon" else "lost" if stage == "closedlost" else "open")


def _outcome(meta: Mapping[str, Any]) -> str:
    if str(meta.get("isClosed", "")).lower() != "true":
        return "open"
    try:
        probability = float(str(meta.get("probability", "0")))
    except ValueError:
        probability = 0.0
    return "won" if probability >= 1.0 else "lost"


def deal_records(
    obj: Mapping[str, Any],
    stages: StageBook,
    contacts: Sequence[str],
    *,
    currency: str | None = None,
    tombstone: bool = False,
) -> list[Record]:
    """A deal, carrying a ``deal_won`` activity when it is won.

    Args:
        obj: the deal payload.
        stages: the stage outcomes.
        contacts: the associated contact ids; the activity goes to the lowest one (HubSpot has no order).
        currency: the account currency, for deals without ``deal_currency_code``.
        tombstone: also retract the deal's ``deal_won`` activity when it is not won (or archived): a deal that
            moved out of closed-won must stop counting as revenue. Incremental runs set it.

    Raises:
        SkippableRecordError: no id, no properties, an unreadable amount or date.
    """
    deal_id, props = _props(obj, "deal")
    what = f"deal {deal_id}"
    stage = _text(props, "dealstage")
    outcome = stages.outcome(stage)
    amount_text = _text(props, "amount")
    try:
        amount = Decimal(amount_text) if amount_text is not None else None
    except InvalidOperation:
        raise SkippableRecordError(f"{what}: amount is not a number: {str(amount_text)[:40]!r}") from None
    changed = updated_at(obj, "hs_lastmodifieddate")
    closed = _time(props.get("closedate"), what)
    linked = sorted(dict.fromkeys(contacts), key=lambda c: (len(c), c))
    won = ActivityData(
        type=ActivityType.DEAL_WON.value,
        external_id=deal_id,
        occurred_at=closed or changed or datetime.now(UTC),
        amount=amount,
        currency=_text(props, "deal_currency_code") or currency,
        attributes={"deal_name": _text(props, "dealname"), "pipeline": _text(props, "pipeline"), "stage": stage},
        person_external_id=linked[0] if linked else None,
    )
    archived = bool(obj.get("archived"))
    payload = {**obj, "associations": {"contacts": linked}}
    deal = Record("deal", deal_id, payload, changed, archived, None, (won,) if outcome == "won" else ())
    if outcome == "won" or not tombstone:
        return [deal]
    retract = Record("deal_won", deal_id, {"id": deal_id, "dealstage": stage}, changed, True, None, (won,))
    return [deal, retract]
