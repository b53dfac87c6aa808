"""Mailchimp payloads -> hub records: members as people, email reports as activities.

Every function here is pure. A payload the hub cannot use raises :class:`hub.errors.SkippableRecordError`
(the stream counts and reports it and goes on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hub.contracts import ActivityData, ActivityType, Consent, PersonData, Record
from hub.errors import SkippableRecordError

from . import settings
from .ids import member_key
from .paging import format_time, parse_time

# Merge fields that become PersonData fields rather than properties (Mailchimp's default merge tags).
_NAME_FIELDS = frozenset({"FNAME", "LNAME", "PHONE", "ADDRESS"})


@dataclass(frozen=True, slots=True)
class CampaignInfo:
    """What an activity needs to know about its campaign."""

    id: str
    send_time: datetime
    list_id: str | None = None
    title: str | None = None
    subject: str | None = None

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> CampaignInfo:
        """From a ``campaigns[]`` item.

        Raises:
            SkippableRecordError: no id or no parseable ``send_time`` (a draft, or a broken payload).
        """
        campaign_id = payload.get("id")
        send_time = parse_time(payload.get("send_time"))
        if not isinstance(campaign_id, str) or not campaign_id or send_time is None:
            raise SkippableRecordError(f"campaign {campaign_id!r}: no id or no send_time")
        recipients = payload.get("recipients")
        settings_ = payload.get("settings")
        list_id = recipients.get("list_id") if isinstance(recipients, Mapping) else None
        title = settings_.get("title") if isinstance(settings_, Mapping) else None
        subject = settings_.get("subject_line") if isinstance(settings_, Mapping) else None
        return cls(campaign_id, send_time, _str(list_id), _str(title), _str(subject))

    def attributes(self) -> dict[str, Any]:
        """The campaign attributes every activity of it carries."""
        out: dict[str, Any] = {"campaign_id": self.id, "send_time": format_time(self.send_time)}
        for key, value in (("campaign", self.title), ("subject", self.subject), ("list_id", self.list_id)):
            if value:
                out[key] = value
        return out


def member_record(list_id: str, member: Mapping[str, Any]) -> Record:
    """A ``member`` record; archived members are deleted records.

    Raises:
        SkippableRecordError: no id, no email address or no ``last_changed``.
    """
    member_id = member.get("id")
    email = member.get("email_address")
    changed = parse_time(member.get("last_changed"))
    if not isinstance(member_id, str) or not member_id:
        raise SkippableRecordError(f"audience {list_id}: a member without id")
    if not isinstance(email, str) or "@" not in email:
        raise SkippableRecordError(f"audience {list_id}: member {member_id} has no email address")
    if changed is None:
        raise SkippableRecordError(f"audience {list_id}: member {member_id} has no valid last_changed")
    payload = {k: v for k, v in member.items() if k != "_links"}
    return Record(
        object_type="member",
        external_id=member_key(list_id, member_id),
        payload=payload,
        updated_at=changed,
        deleted=member.get("status") == "archived",
        person=person_of(member, list_id),
    )


def consent_of(status: object) -> Consent:
    """A member status as hub consent (subscribed -> granted, cleaned -> undeliverable, ...)."""
    return Consent(settings.CONSENT_BY_STATUS.get(status, "unknown") if isinstance(status, str) else "unknown")


def person_of(member: Mapping[str, Any], list_id: str) -> PersonData:
    """The person a member payload describes."""
    merge = member.get("merge_fields")
    merge = merge if isinstance(merge, Mapping) else {}
    address = merge.get("ADDRESS")
    address = address if isinstance(address, Mapping) else {}
    location = member.get("location")
    location = location if isinstance(location, Mapping) else {}
    stats = member.get("stats")
    stats = stats if isinstance(stats, Mapping) else {}
    tags = member.get("tags")
    props: dict[str, Any] = {
        "list_id": list_id,
        "email_status": member.get("status"),
        # Mailchimp geolocates members from their opens (no city there); the ADDRESS merge field has one.
        "country": _str(location.get("country_code")) or _str(address.get("country")),
        "region": _str(location.get("region")) or _str(address.get("state")),
        "city": _str(address.get("city")),
        "timezone": _str(location.get("timezone")),
        "member_rating": _number(member.get("member_rating")),
        "avg_open_rate": _number(stats.get("avg_open_rate")),
        "avg_click_rate": _number(stats.get("avg_click_rate")),
        "tags": sorted(t["name"] for t in tags if isinstance(t, Mapping) and isinstance(t.get("name"), str))
        if isinstance(tags, list)
        else None,
        "language": _str(member.get("language")),
        "vip": member.get("vip") if isinstance(member.get("vip"), bool) else None,
        "email_type": _str(member.get("email_type")),
        "signup_source": _str(member.get("source")),
        "signed_up_at": _iso(member.get("timestamp_signup")),
        "opted_in_at": _iso(member.get("timestamp_opt")),
    }
    for tag, value in merge.items():
        if tag not in _NAME_FIELDS and isinstance(value, str | int | float) and value != "":
            props[f"merge_{str(tag).lower()}"] = value
    return PersonData(
        email=_str(member.get("email_address")),
        first_name=_str(merge.get("FNAME")),
        last_name=_str(merge.get("LNAME")),
        phone=_str(merge.get("PHONE")),
        consent=consent_of(member.get("status")),
        properties={k: v for k, v in props.items() if v is not None},
    )


def activity_record(campaign: CampaignInfo, entry: Mapping[str, Any]) -> tuple[Record, list[str]]:
    """An ``email_activity`` record (one recipient of one campaign) with its opens, clicks and bounces.

    Returns:
        The record, and messages about activity items that were left out (unknown action, bad timestamp).

    Raises:
        SkippableRecordError: the entry names no recipient.
    """
    email_id = entry.get("email_id")
    if not isinstance(email_id, str) or not email_id:
        raise SkippableRecordError(f"campaign {campaign.id}: an email activity entry without email_id")
    list_id = _str(entry.get("list_id")) or campaign.list_id or ""
    email = _str(entry.get("email_address"))
    activities: list[ActivityData] = []
    problems: list[str] = []
    items = entry.get("activity")
    for item in items if isinstance(items, list) else []:
        activity = _activity(campaign, list_id, email_id, email, item)
        if isinstance(activity, str):
            problems.append(activity)
        else:
            activities.append(activity)
    latest = max((a.occurred_at for a in activities), default=None)
    record = Record(
        object_type="email_activity",
        external_id=f"{campaign.id}:{list_id}:{email_id}",
        payload={k: v for k, v in entry.items() if k != "_links"},
        updated_at=latest,
        activities=tuple(activities),
    )
    return record, problems


def unsubscribe_record(campaign: CampaignInfo, entry: Mapping[str, Any]) -> Record:
    """An ``unsubscribe`` record with its one ``email_unsubscribe`` activity.

    Raises:
        SkippableRecordError: no recipient or no parseable timestamp.
    """
    email_id = entry.get("email_id")
    at = parse_time(entry.get("timestamp"))
    if not isinstance(email_id, str) or not email_id or at is None:
        raise SkippableRecordError(f"campaign {campaign.id}: an unsubscribe without email_id or timestamp")
    list_id = _str(entry.get("list_id")) or campaign.list_id or ""
    attributes = campaign.attributes()
    if _str(entry.get("reason")):
        attributes["reason"] = entry["reason"]
    activity = ActivityData(
        type=ActivityType.EMAIL_UNSUBSCRIBE,
        external_id=f"{campaign.id}:{email_id}:unsubscribe",
        occurred_at=at,
        attributes=attributes,
        person_external_id=member_key(list_id, email_id),
        person_email=_str(entry.get("email_address")),
    )
    return Record(
        object_type="unsubscribe",
        external_id=f"{campaign.id}:{list_id}:{email_id}",
        payload={k: v for k, v in entry.items() if k != "_links"},
        updated_at=at,
        activities=(activity,),
    )


def _activity(
    campaign: CampaignInfo, list_id: str, email_id: str, email: str | None, item: object
) -> ActivityData | str:
    """One activity item, or a message saying why it was left out."""
    if not isinstance(item, Mapping):
        return f"campaign {campaign.id}: recipient {email_id}: an activity item that is not an object"
    action = item.get("action")
    kind = settings.ACTIVITY_TYPES.get(action) if isinstance(action, str) else None
    at = parse_time(item.get("timestamp"))
    if kind is None or at is None:
        return f"campaign {campaign.id}: recipient {email_id}: activity {action!r} without a known action or time"
    attributes = campaign.attributes()
    external_id = f"{campaign.id}:{email_id}:{action}:{int(at.timestamp())}"
    url = _str(item.get("url"))
    if action == "click" and url:
        attributes["url"] = url
        # Two links clicked in the same second are two clicks.
        external_id += ":" + hashlib.sha1(url.encode(), usedforsecurity=False).hexdigest()[:12]
    bounce = _str(item.get("type"))
    if action == "bounce" and bounce:
        attributes["bounce_type"] = bounce
    return ActivityData(
        type=kind,
        external_id=external_id,
        occurred_at=at,
        attributes=attributes,
        person_external_id=member_key(list_id, email_id) if list_id else None,
        person_email=email,
    )


def _str(value: object) -> str | None:
    return (value.strip() or None) if isinstance(value, str) else None


def _number(value: object) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _iso(value: object) -> str | None:
    parsed = parse_time(value)
    return format_time(parsed) if parsed is not None else None
