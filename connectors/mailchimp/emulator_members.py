"""Member writes and per-member reads of the emulated audience, with Mailchimp's rules.

- ``POST /lists/{id}/members`` adds (400 "Member Exists" for a live member; an archived one comes back),
  ``PUT .../members/{hash}`` adds or updates, ``PATCH`` updates, ``DELETE`` archives,
  ``POST .../actions/delete-permanent`` forgets the address for good ("Forgotten Email Not Subscribed" on
  any later import), ``POST /lists/{id}`` is the batch subscribe of up to 500 members.
- Compliance: a member who unsubscribed themselves or was cleaned (bounced) cannot be set back to
  ``subscribed`` through the API (400 "Member In Compliance State"); a leaver may be set to ``pending`` (a
  confirmation email). A member unsubscribed by an admin (through the API) may be subscribed again.
- Member tags (``/members/{hash}/tags``) are the audience's static segments: a new active tag creates one.
- The activity feed and the activity list are read from the campaign reports.

The functions here run under the emulator's lock and raise :class:`~.emulator_http.Problem` for errors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .emulator_data import AudienceData, Campaign, Member, iso
from .emulator_http import Problem, invalid, not_found
from .ids import subscriber_hash
from .paging import parse_time

ADD_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
UPDATE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending")
ADMIN_UNSUBSCRIBE = "N/A (Unsubscribed by an admin)"
BATCH_LIMIT = 500
"""Members per batch subscribe call (``POST /lists/{id}``)."""

_TEXT_MERGE_FIELDS = {"FNAME": "first_name", "LNAME": "last_name", "PHONE": "phone", "BIRTHDAY": "birthday"}
_STREET = ("addr1", "addr2", "zip")
_BIRTHDAY = re.compile(r"^(0[1-9]|1[0-2])/(0[1-9]|[12]\d|3[01])$")
_PLACE = {"city": "city", "state": "region", "country": "country"}


@dataclass
class _Changes:
    """The validated fields of a member body, applied only once the whole body is valid."""

    values: dict[str, Any] = field(default_factory=dict)
    street: dict[str, str] = field(default_factory=dict)

    def apply(self, member: Member) -> bool:
        changed = False
        for name, value in self.values.items():
            if getattr(member, name) != value:
                setattr(member, name, value)
                changed = True
        if self.street and {**member.street, **self.street} != member.street:
            member.street = {**member.street, **self.street}
            changed = True
        return changed


# ----------------------------------------------------------------------------------------------- validation


def _email(body: Mapping[str, Any], *, required: bool = True) -> str | None:
    value = body.get("email_address")
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise invalid("email_address", "This value should not be blank.")
    email = value.strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or " " in email:
        raise Problem(400, "Please provide a valid email address.", title="Invalid Resource")
    return email


def _status(body: Mapping[str, Any], key: str, allowed: tuple[str, ...], *, required: bool) -> str | None:
    value = body.get(key)
    if value is None and not required:
        return None
    if value not in allowed:
        raise invalid(key, f"Value must be one of: {', '.join(allowed)}")
    return str(value)


def _timestamp(body: Mapping[str, Any], key: str) -> int | None:
    parsed = parse_time(body[key])
    if parsed is None:
        raise invalid(key, "Please provide a valid ISO 8601 date and time.")
    return int(parsed.timestamp())


def parse_fields(body: Mapping[str, Any]) -> _Changes:
    """The writable member fields of a body (POST, PUT, PATCH, batch items), validated.

    Merge tags the audience does not define are ignored; the audience has no interest groups, so any interest
    id is refused, as Mailchimp refuses an unknown one.
    """
    changes = _Changes()
    out = changes.values
    if "email_type" in body:
        if body["email_type"] not in ("html", "text"):
            raise invalid("email_type", "Value must be one of: html, text")
        out["email_type"] = body["email_type"]
    for key in ("language", "ip_signup", "ip_opt"):
        if key in body:
            if not isinstance(body[key], str):
                raise invalid(key, "This value should be of type string.")
            out[key] = body[key]
    if "vip" in body:
        if not isinstance(body["vip"], bool):
            raise invalid("vip", "This value should be of type boolean.")
        out["vip"] = body["vip"]
    for key in ("timestamp_signup", "timestamp_opt"):
        if body.get(key):
            out[key] = _timestamp(body, key)
    _location(body.get("location"), out)
    _merge_fields(body.get("merge_fields"), changes)
    interests = body.get("interests")
    if interests:
        first = next(iter(interests)) if isinstance(interests, dict) else interests
        raise Problem(400, f"Invalid interest ID: '{first}'.", title="Invalid Resource")
    return changes


def _location(location: Any, out: dict[str, Any]) -> None:
    if location is None:
        return
    if not isinstance(location, dict):
        raise invalid("location", "This value should be of type object.")
    for key in ("latitude", "longitude"):
        if key in location:
            value = location[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise invalid(f"location.{key}", "This value should be a number.")
            out[key] = float(value)


def _merge_fields(merge: Any, changes: _Changes) -> None:
    if merge is None:
        return
    if not isinstance(merge, dict):
        raise invalid("merge_fields", "This value should be of type object.")
    for tag, value in merge.items():
        name = _TEXT_MERGE_FIELDS.get(str(tag).upper())
        if name is not None:
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                raise invalid(str(tag), "This value should be of type string.")
            if name == "birthday" and value and not _BIRTHDAY.match(str(value)):
                raise invalid(str(tag), "Please enter the date in the format MM/DD.")
            changes.values[name] = str(value)
        elif str(tag).upper() == "ADDRESS":
            _address(value, changes)


def _address(value: Any, changes: _Changes) -> None:
    if value == "":
        return  # Mailchimp accepts an empty string for an address it does not know
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise invalid("ADDRESS", "Please enter a complete address.")
    for key in _STREET:
        if key in value:
            changes.street[key] = value[key]
    for key, name in _PLACE.items():
        if key in value:
            changes.values[name] = value[key]


def _tag_names(body: Mapping[str, Any]) -> list[str]:
    tags = body.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t.strip() for t in tags):
        raise invalid("tags", "Expected an array of tag names.")
    return [t.strip() for t in tags]


# ----------------------------------------------------------------------------------------------- status rules


def _compliance(email: str) -> Problem:
    return Problem(
        400,
        f"{email} is in a compliance state due to unsubscribe, bounce, or compliance review and cannot be subscribed.",
        title="Member In Compliance State",
    )


def set_status(data: AudienceData, member: Member, status: str, at: int) -> bool:
    """Move a member to ``status`` (an archived one comes back with it); False when nothing changed.

    Raises:
        Problem: 400 "Member In Compliance State" for a leaver or a cleaned address set to subscribed.
    """
    was = member.archived_from if member.status == "archived" else member.status
    self_unsubscribed = was == "unsubscribed" and member.unsubscribe_reason != ADMIN_UNSUBSCRIBE
    if (status == "subscribed" and (was == "cleaned" or self_unsubscribed)) or (
        status == "pending" and was == "cleaned"
    ):
        raise _compliance(member.email)
    if member.status == status:
        return False
    if status == "subscribed":
        member.timestamp_opt, member.unsubscribe_reason = at, None
    elif status == "unsubscribed" and was != "unsubscribed":
        member.unsubscribe_reason = ADMIN_UNSUBSCRIBE
    elif status != "unsubscribed":
        member.unsubscribe_reason = None
    member.status, member.archived_from = status, None
    return True


def _forgotten(email: str) -> Problem:
    return Problem(
        400,
        f"{email} was permanently deleted and cannot be re-imported. The contact must re-subscribe to get back "
        "on the list.",
        title="Forgotten Email Not Subscribed",
    )


def _exists(email: str) -> Problem:
    return Problem(
        400, f"{email} is already a list member. Use PUT to insert or update list members.", title="Member Exists"
    )


def _create(data: AudienceData, email: str, status: str, changes: _Changes, at: int) -> Member:
    """A new member, or an archived one back in the audience."""
    member = data.members.get(subscriber_hash(email))
    if member is None:
        if subscriber_hash(email) in data.forgotten:
            raise _forgotten(email)
        member = data.new_member(email, status, at)
    else:
        set_status(data, member, status, at)
    changes.apply(member)
    data.touch(member, at)
    return member


def _update(data: AudienceData, member: Member, status: str | None, changes: _Changes, at: int) -> Member:
    changed = set_status(data, member, status, at) if status is not None else False
    if changes.apply(member) or changed:
        data.touch(member, at)
    return member


def _same_address(member: Member, email: str | None) -> None:
    # Mailchimp can change a member's address (and so its hash); the sandbox keeps every member's id stable.
    if email is not None and subscriber_hash(email) != member.id:
        raise invalid("email_address", "The sandbox does not change a member's email address.")


# ----------------------------------------------------------------------------------------------- operations


def add_member(data: AudienceData, body: Mapping[str, Any], at: int) -> Member:
    """``POST /lists/{id}/members``."""
    email = _email(body)
    assert email is not None
    status = _status(body, "status", ADD_STATUSES, required=True)
    assert status is not None
    changes, tags = parse_fields(body), _tag_names(body)
    existing = data.members.get(subscriber_hash(email))
    if existing is not None and existing.status != "archived":
        raise _exists(email)
    member = _create(data, email, status, changes, at)
    set_tags(data, member, [{"name": t, "status": "active"} for t in tags], at)
    return member


def upsert_member(data: AudienceData, key: str, body: Mapping[str, Any], at: int) -> Member:
    """``PUT /lists/{id}/members/{hash}``: add or update; ``status_if_new`` is the status of a new member."""
    email = _email(body)
    assert email is not None
    status = _status(body, "status", ADD_STATUSES, required=False)
    if_new = _status(body, "status_if_new", ADD_STATUSES, required=False)
    changes = parse_fields(body)
    member = data.find(key)
    if member is None:
        if key != subscriber_hash(email) and key.strip().lower() != email.lower():
            raise invalid("email_address", "The subscriber hash in the path does not match this email address.")
    else:
        _same_address(member, email)
    if member is None or member.status == "archived":
        first = if_new or status
        if first is None:
            raise invalid("status_if_new", "This value is required for a new member.")
        return _create(data, email, first, changes, at)
    return _update(data, member, status, changes, at)


def update_member(data: AudienceData, key: str, body: Mapping[str, Any], at: int) -> Member:
    """``PATCH /lists/{id}/members/{hash}``."""
    member = data.find(key)
    if member is None:
        raise not_found()
    _same_address(member, _email(body, required=False))
    status = _status(body, "status", UPDATE_STATUSES, required=False)
    return _update(data, member, status, parse_fields(body), at)


def set_tags(data: AudienceData, member: Member, tags: Any, at: int) -> None:
    """``POST /lists/{id}/members/{hash}/tags``: activate or deactivate tags; a new active tag is created."""
    if not isinstance(tags, list) or not all(isinstance(t, dict) for t in tags):
        raise invalid("tags", "Expected an array of objects with name and status.")
    for i, tag in enumerate(tags):
        name = tag.get("name")
        if not isinstance(name, str) or not name.strip():
            raise invalid(f"tags[{i}].name", "This value should not be blank.")
        if tag.get("status") not in ("active", "inactive"):
            raise invalid(f"tags[{i}].status", "Value must be one of: active, inactive")
    for tag in tags:
        segment = data.segment_by_name(tag["name"].strip())
        if tag["status"] == "active":
            if segment is None:
                segment = data.new_segment(tag["name"].strip(), at)
            data.tag(segment, member.id, at)
        elif segment is not None:
            data.untag(segment, member.id, at)


def batch_subscribe(data: AudienceData, body: Mapping[str, Any], at: int) -> dict[str, Any]:
    """``POST /lists/{id}``: add or update up to 500 members; per-member errors in the answer."""
    members = body.get("members")
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise invalid("members", "Expected an array of members.")
    if len(members) > BATCH_LIMIT:
        raise Problem(400, f"You may only batch subscribe {BATCH_LIMIT} members at a time.")
    update_existing = body.get("update_existing") is True
    created: list[Member] = []
    updated: list[Member] = []
    errors: list[dict[str, str]] = []
    for item in members:
        address = item.get("email_address")
        try:
            email = _email(item)
            assert email is not None
            existing = data.members.get(subscriber_hash(email))
            if existing is not None and existing.status != "archived":
                if not update_existing:
                    errors.append(_batch_error(email, _contact_exists(email), "ERROR_CONTACT_EXISTS"))
                    continue
                status = _status(item, "status", ADD_STATUSES, required=False)
                updated.append(_update(data, existing, status, parse_fields(item), at))
            else:
                status = _status(item, "status", ADD_STATUSES, required=True)
                assert status is not None
                created.append(_create(data, email, status, parse_fields(item), at))
        except Problem as problem:
            errors.append(_batch_error(str(address), problem.detail, "ERROR_GENERIC", problem))
    return {
        "new_members": [data.member_payload(m) for m in created],
        "updated_members": [data.member_payload(m) for m in updated],
        "errors": errors,
        "total_created": len(created),
        "total_updated": len(updated),
        "error_count": len(errors),
        "_links": [],
    }


def _contact_exists(email: str) -> str:
    return (
        f"{email} is already a list member, do you want to update? please provide update_existing:true in the "
        "request body"
    )


def _batch_error(email: str, message: str, code: str, problem: Problem | None = None) -> dict[str, str]:
    error = {"email_address": email, "error": message, "error_code": code}
    if problem is not None and problem.errors:
        error.update(field=problem.errors[0]["field"], field_message=problem.errors[0]["message"])
    return error


# ----------------------------------------------------------------------------------------------- activity


@dataclass(frozen=True)
class Event:
    """One thing that happened to a member in a campaign."""

    at: int
    action: str  # sent, open, click, bounce, unsub
    campaign: Campaign
    detail: str | None = None  # the url clicked, the bounce type or the unsubscribe reason


def events_of(data: AudienceData, member: Member) -> list[Event]:
    """Every campaign event of a member, newest first (ties: later campaigns first)."""
    events: list[Event] = []
    for campaign in data.campaigns:
        report = data.report(campaign)
        if member.id in report.sent_to:
            events.append(Event(campaign.send_time, "sent", campaign))
        for at, action, detail in report.events.get(member.id, []):
            events.append(Event(at, action, campaign, detail))
        for member_id, at, reason in report.unsubscribes:
            if member_id == member.id:
                events.append(Event(at, "unsub", campaign, reason))
    events.sort(key=lambda e: (e.at, e.campaign.send_time), reverse=True)
    return events


def feed_item(event: Event) -> dict[str, Any]:
    """An event as ``GET .../activity-feed`` lists it."""
    item: dict[str, Any] = {
        "activity_type": event.action,
        "created_at_timestamp": iso(event.at),
        "campaign_id": event.campaign.id,
        "campaign_title": event.campaign.title,
    }
    if event.action == "click" and event.detail:
        item["link_clicked"] = event.detail
    elif event.action == "bounce":
        item["bounce_type"] = event.detail if event.detail in ("hard", "soft") else "soft"
        item["bounce_has_open_activity"] = False
    elif event.action == "unsub":
        item["unsubscribe_reason"] = event.detail or ""
        item["is_admin_unsubscribed"] = False
    return item


def activity_item(event: Event) -> dict[str, Any]:
    """An event as ``GET .../activity`` (the last 50 events) lists it."""
    item: dict[str, Any] = {
        "action": event.action,
        "timestamp": iso(event.at),
        "type": "regular",
        "campaign_id": event.campaign.id,
        "title": event.campaign.title,
    }
    if event.action == "click" and event.detail:
        item["url"] = event.detail
    return item
