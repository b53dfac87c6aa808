"""The emulated account's data: one audience, its members, tags (static segments), campaigns and reports.

Everything is derived from the seeded :class:`~hub.sandbox.business.Business`: its email members become the
audience (the address as the email tool has it, trimmed, case kept; Mailchimp keeps one member per lowercased
address), its newsletters the campaigns, and its columnar email events the campaign reports. Payloads are
built from the templates in ``fixtures/`` so that their shape is Mailchimp's in one place.

Not thread-safe on its own: :class:`~.emulator.MailchimpEmulator` calls it under its lock.
"""

from __future__ import annotations

import bisect
import copy
import hashlib
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from hub.sandbox.business import EMAIL_EVENT_KINDS, Business, Person

from .ids import subscriber_hash

FIXTURES = Path(__file__).parent / "fixtures"

_TIMEZONES = {
    "DE": ("Europe/Berlin", 1), "AT": ("Europe/Vienna", 1), "CH": ("Europe/Zurich", 1), "FR": ("Europe/Paris", 1),
    "NL": ("Europe/Amsterdam", 1), "IT": ("Europe/Rome", 1), "ES": ("Europe/Madrid", 1),
    "BE": ("Europe/Brussels", 1), "GB": ("Europe/London", 0), "US": ("America/New_York", -5),
    "PL": ("Europe/Warsaw", 1),
}  # fmt: skip
_LANGUAGES = {
    "DE": "de",
    "AT": "de",
    "CH": "de",
    "FR": "fr",
    "NL": "nl",
    "IT": "it",
    "ES": "es",
    "BE": "fr",
    "GB": "en",
    "US": "en",
    "PL": "pl",
}
_SOURCES = ("Hosted Signup Form", "API - Generic", "Import", "Embedded Form")
_UNSUBSCRIBE_REASONS = (
    "I no longer want to receive these emails", "I never signed up for this mailing list",
    "The emails are spam and should be reported", "The emails are inappropriate", "Other",
)  # fmt: skip
_LINKS = ("new-arrivals", "sale", "gift-guide", "autumn-edit", "bestsellers")


@cache
def template(name: str) -> dict[str, Any]:
    """A payload template from ``fixtures/`` (callers deep-copy it)."""
    loaded: dict[str, Any] = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    return loaded


def iso(epoch: int) -> str:
    """Epoch seconds as Mailchimp writes timestamps."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def short_id(kind: str, key: object, length: int = 10) -> str:
    """A stable hex id like Mailchimp's list and campaign ids."""
    return hashlib.sha1(f"{kind}:{key}".encode(), usedforsecurity=False).hexdigest()[:length]


@dataclass
class Member:
    """One audience member, in Mailchimp's terms."""

    id: str
    email: str
    person: int
    order: int  # creation order: the default listing order and the tie-breaker of sorted listings
    status: str
    first_name: str
    last_name: str
    phone: str
    city: str
    region: str
    country: str
    timestamp_signup: int | None
    timestamp_opt: int | None
    last_changed: int
    member_rating: int
    avg_open_rate: float
    avg_click_rate: float
    source: str
    language: str
    vip: bool = False
    unsubscribe_reason: str | None = None
    email_type: str = "html"
    ip_signup: str = ""
    ip_opt: str = ""
    birthday: str = ""
    street: dict[str, str] = field(default_factory=dict)  # ADDRESS addr1, addr2, zip (city etc. are above)
    latitude: float = 0.0
    longitude: float = 0.0
    archived_from: str | None = None  # the status before archiving: an archived leaver stays a leaver


@dataclass
class Segment:
    """A static segment; Mailchimp's tags are exactly these.

    ``members`` holds subscriber hashes; ``added`` when each was tagged (the member tags' ``date_added``; a
    member put in ``members`` directly counts as tagged when the segment was created).
    """

    id: int
    name: str
    created_at: int
    updated_at: int
    members: set[str] = field(default_factory=set)
    added: dict[str, int] = field(default_factory=dict)

    def added_at(self, member_id: str) -> int:
        """When the member got this tag."""
        return self.added.get(member_id, self.created_at)


@dataclass
class Campaign:
    """A sent regular campaign."""

    id: str
    key: int
    web_id: int
    title: str
    subject: str
    send_time: int
    emails_sent: int


@dataclass
class Report:
    """One campaign's recipients and what they did, by subscriber hash."""

    recipients: list[str]
    events: dict[str, list[tuple[int, str, str | None]]]  # hash -> [(epoch, action, url or bounce type)]
    active: list[str]  # recipients with any event, in send order
    unsubscribes: list[tuple[str, int, str]]  # (hash, epoch, reason), by time
    sent_to: set[str] = field(default_factory=set)  # the recipients, for membership tests

    def __post_init__(self) -> None:
        self.sent_to.update(self.recipients)


class AudienceData:
    """The audience, built from the business; ``version`` moves with every change.

    Args:
        business: the seeded business.
        list_id: the audience id.
    """

    def __init__(self, business: Business, list_id: str) -> None:
        self.business = business
        self.list_id = list_id
        self.version = 0
        self.members: dict[str, Member] = {}
        self.by_person: dict[int, str] = {}
        self.segments: dict[int, Segment] = {}
        self.campaigns: list[Campaign] = []
        self._reports: dict[str, Report] = {}
        self._extra_events: dict[str, list[tuple[str, tuple[int, str, str | None]]]] = {}
        self._extra_unsubscribes: dict[str, list[tuple[str, int, str]]] = {}
        self._index: dict[bool, list[tuple[int, int, str]]] = {}
        self._index_version = -1
        self._next_segment = 2001
        self.forgotten: set[str] = set()  # hashes of permanently deleted members: never re-imported
        self.high_water = 0
        self._build()
        self._next_order = max((m.order for m in self.members.values()), default=0) + 1

    # ------------------------------------------------------------------ building

    def _build(self) -> None:
        business = self.business
        stats = _engagement(business)
        for person in business.people_in("mailchimp"):
            member = self._member(person, stats)
            if member is not None and member.id not in self.members:
                self.members[member.id] = member
                self.by_person[person.key] = member.id
        self.high_water = max((m.last_changed for m in self.members.values()), default=0)
        as_of = int(business.as_of.timestamp())
        for name, chosen in self._initial_tags():
            segment = self.new_segment(name, as_of - 86_400 * 200)
            segment.members = {h for h in chosen if h in self.members}
        for campaign in business.campaigns:
            sent = int(business.email.recipients(campaign.key).size)
            self.campaigns.append(
                Campaign(
                    short_id("campaign", campaign.key),
                    campaign.key,
                    8_000_000 + campaign.key,
                    campaign.name,
                    campaign.subject,
                    int(campaign.send_time.timestamp()),
                    sent,
                )
            )

    def _member(self, person: Person, stats: dict[int, tuple[float, float]]) -> Member | None:
        seen = person.email_in("mailchimp")
        if not seen or not seen.strip() or person.consent_at is None:
            return None
        email = seen.strip()
        opt = int(person.consent_at.timestamp())
        changed = int(person.consent_ended_at.timestamp()) if person.consent_ended_at else opt
        status = person.email_consent
        archived = status == "unsubscribed" and person.key % 29 == 0  # someone archived a few leavers
        if archived:
            as_of = int(self.business.as_of.timestamp())
            status, changed = "archived", min(changed + 86_400 * (1 + person.key % 20), as_of - 1)
        archived_from = "unsubscribed" if archived else None
        open_rate, click_rate = stats.get(person.key, (0.0, 0.0))
        return Member(
            id=subscriber_hash(email),
            email=email,
            person=person.key,
            order=person.key,
            status=status,
            first_name=person.first_name,
            last_name=person.last_name,
            phone=person.phone or "",
            city=person.city,
            region=person.region,
            country=person.country,
            # Imported members have no signup time: Mailchimp leaves the field empty.
            timestamp_signup=None if person.key % 3 == 0 else opt - 60,
            timestamp_opt=opt,
            last_changed=changed,
            member_rating=_rating(open_rate),
            avg_open_rate=round(open_rate, 4),
            avg_click_rate=round(click_rate, 4),
            source=_SOURCES[person.key % len(_SOURCES)],
            language=_LANGUAGES.get(person.country, "en"),
            vip=person.latent == "vip",
            unsubscribe_reason=_UNSUBSCRIBE_REASONS[person.key % 5] if status == "unsubscribed" else None,
            archived_from=archived_from,
        )

    def _initial_tags(self) -> Iterator[tuple[str, Iterable[str]]]:
        """Tags someone set by hand or another tool: the hub must leave them alone."""
        people = self.business.people
        yield (
            "Customer",
            (self.by_person[p.key] for p in people if p.key in self.by_person and self.business.orders_of(p.key)),
        )
        yield "B2B", (self.by_person[p.key] for p in people if p.key in self.by_person and p.company)
        yield "VIP", (self.by_person[p.key] for p in people if p.key in self.by_person and p.latent == "vip")

    # ------------------------------------------------------------------ members

    def sorted_members(self, *, archived: bool) -> list[tuple[int, int, str]]:
        """(last_changed, order, id) of live or archived members, ascending (rebuilt after changes)."""
        if self._index_version != self.version:
            self._index = {False: [], True: []}
            for m in self.members.values():
                self._index[m.status == "archived"].append((m.last_changed, m.order, m.id))
            for rows in self._index.values():
                rows.sort()
            self._index_version = self.version
        return self._index[archived]

    def changed_between(self, since: int | None, before: int | None, *, archived: bool) -> list[str]:
        """Ids with ``since < last_changed < before``, ascending by ``last_changed`` (ties by creation)."""
        rows = self.sorted_members(archived=archived)
        lo = 0 if since is None else bisect.bisect_right(rows, (since, float("inf"), ""))
        hi = len(rows) if before is None else bisect.bisect_left(rows, (before, -1, ""))
        return [row[2] for row in rows[lo:hi]]

    def find(self, key: str) -> Member | None:
        """A member by subscriber hash, email address or contact id, as Mailchimp accepts them all."""
        if key in self.members:
            return self.members[key]
        if "@" in key:
            return self.members.get(subscriber_hash(key))
        return next((m for m in self.members.values() if contact_id(m) == key), None)

    def new_member(self, email: str, status: str, at: int) -> Member:
        """Add a member created through the API (no business person behind it) and return it."""
        member = Member(
            id=subscriber_hash(email),
            email=email.strip(),
            person=-1,
            order=self._next_order,
            status=status,
            first_name="",
            last_name="",
            phone="",
            city="",
            region="",
            country="",
            timestamp_signup=None,
            timestamp_opt=at if status == "subscribed" else None,
            last_changed=at,
            member_rating=2,  # Mailchimp's rating of a contact it knows nothing about yet
            avg_open_rate=0.0,
            avg_click_rate=0.0,
            source="API - Generic",
            language="",
        )
        self._next_order += 1
        self.members[member.id] = member
        self.forgotten.discard(member.id)
        self.version += 1
        return member

    def touch(self, member: Member, at: int) -> None:
        """Record a change of the member: a new ``last_changed``."""
        member.last_changed = at
        self.version += 1

    def archive(self, member: Member, at: int) -> None:
        """Archive a member (Mailchimp's delete): hidden from listings, kept with its tags and history."""
        if member.status != "archived":
            member.archived_from, member.status = member.status, "archived"
            self.touch(member, at)

    def forget(self, member: Member) -> None:
        """Delete a member permanently: gone from the audience, its tags and its reports, never re-imported."""
        del self.members[member.id]
        self.forgotten.add(member.id)
        if self.by_person.get(member.person) == member.id:
            del self.by_person[member.person]
        for segment in self.segments.values():
            segment.members.discard(member.id)
            segment.added.pop(member.id, None)
        self.version += 1

    def tags_of(self, member_id: str) -> list[Segment]:
        """The tags (static segments) holding a member, oldest first."""
        return [s for s in self.segments.values() if member_id in s.members]

    def member_payload(self, member: Member) -> dict[str, Any]:
        """A member as ``GET /lists/{id}/members`` returns it."""
        out = copy.deepcopy(template("member"))
        tags = self.tags_of(member.id)
        # A member added through the API without a country has no known location yet.
        tz, offset = _TIMEZONES.get(member.country, ("Europe/Berlin", 1)) if member.country else ("", 0)
        address: dict[str, str] | str = dict(
            out["merge_fields"]["ADDRESS"],
            **member.street,
            city=member.city,
            state=member.region,
            country=member.country,
        )
        out.update(
            id=member.id,
            email_address=member.email,
            unique_email_id=short_id("unique", member.id),
            contact_id=contact_id(member),
            full_name=f"{member.first_name} {member.last_name}".strip(),
            web_id=100_000 + member.order,
            email_type=member.email_type,
            status=member.status,
            merge_fields={
                "FNAME": member.first_name,
                "LNAME": member.last_name,
                "ADDRESS": address,
                "PHONE": member.phone,
                "BIRTHDAY": member.birthday,
            },
            stats={"avg_open_rate": member.avg_open_rate, "avg_click_rate": member.avg_click_rate},
            timestamp_signup=iso(member.timestamp_signup) if member.timestamp_signup else "",
            ip_signup=member.ip_signup,
            timestamp_opt=iso(member.timestamp_opt) if member.timestamp_opt else "",
            ip_opt=member.ip_opt,
            member_rating=member.member_rating,
            last_changed=iso(member.last_changed),
            language=member.language,
            vip=member.vip,
            location=dict(
                out["location"],
                gmtoff=offset,
                dstoff=offset + (offset > 0),
                latitude=member.latitude,
                longitude=member.longitude,
                country_code=member.country,
                timezone=tz,
                region=member.region,
            ),
            source=member.source,
            tags_count=len(tags),
            tags=[{"id": s.id, "name": s.name} for s in tags[:50]],
            list_id=self.list_id,
            _links=[],
        )
        if member.unsubscribe_reason:
            out["unsubscribe_reason"] = member.unsubscribe_reason
        return out

    # ------------------------------------------------------------------ segments

    def new_segment(self, name: str, at: int) -> Segment:
        """Create an empty static segment."""
        segment = Segment(self._next_segment, name, at, at)
        self.segments[segment.id] = segment
        self._next_segment += 1
        self.version += 1
        return segment

    def tag(self, segment: Segment, member_id: str, at: int) -> bool:
        """Put a member in a static segment; False when it already was."""
        if member_id in segment.members:
            return False
        segment.members.add(member_id)
        segment.added[member_id] = at
        segment.updated_at = at
        self.version += 1
        return True

    def untag(self, segment: Segment, member_id: str, at: int) -> bool:
        """Take a member out of a static segment; False when it was not in it."""
        if member_id not in segment.members:
            return False
        segment.members.discard(member_id)
        segment.added.pop(member_id, None)
        segment.updated_at = at
        self.version += 1
        return True

    def delete_segment(self, segment: Segment) -> None:
        """Delete a segment: the tag disappears from every member."""
        del self.segments[segment.id]
        self.version += 1

    def segment_by_name(self, name: str) -> Segment | None:
        """A segment by name; Mailchimp tag names ignore case."""
        folded = name.casefold()
        return next((s for s in self.segments.values() if s.name.casefold() == folded), None)

    def segment_payload(self, segment: Segment) -> dict[str, Any]:
        """A segment as ``GET /lists/{id}/segments`` returns it."""
        live = sum(1 for h in segment.members if self.members[h].status != "archived")
        return dict(
            copy.deepcopy(template("segment")),
            id=segment.id,
            name=segment.name,
            member_count=live,
            created_at=iso(segment.created_at),
            updated_at=iso(segment.updated_at),
            list_id=self.list_id,
        )

    # ------------------------------------------------------------------ campaigns and reports

    def campaign(self, campaign_id: str) -> Campaign | None:
        """A campaign by id."""
        return next((c for c in self.campaigns if c.id == campaign_id), None)

    def campaign_payload(self, campaign: Campaign) -> dict[str, Any]:
        """A campaign as ``GET /campaigns`` returns it."""
        out = copy.deepcopy(template("campaign"))
        out.update(
            id=campaign.id,
            web_id=campaign.web_id,
            create_time=iso(campaign.send_time - 18 * 3600),
            emails_sent=campaign.emails_sent,
            send_time=iso(campaign.send_time),
            archive_url=f"https://mailchi.mp/example/{campaign.id}",
        )
        out["recipients"].update(list_id=self.list_id, recipient_count=campaign.emails_sent)
        out["settings"].update(subject_line=campaign.subject, title=campaign.title)
        return out

    def report(self, campaign: Campaign) -> Report:
        """The campaign's report, built on first use from the business's email arrays, plus later events."""
        report = self._reports.get(campaign.id)
        if report is None:
            report = self._reports[campaign.id] = self._build_report(campaign)
            for member_id, event in self._extra_events.get(campaign.id, []):
                self._add_event(report, member_id, event)
            report.unsubscribes.extend(self._extra_unsubscribes.get(campaign.id, []))
        return report

    def _build_report(self, campaign: Campaign) -> Report:
        email = self.business.email
        by_person = self.by_person
        recipients = [by_person[int(k)] for k in email.recipients(campaign.key).tolist() if int(k) in by_person]
        rows = np.flatnonzero(email.event_campaign == campaign.key)
        events: dict[str, list[tuple[int, str, str | None]]] = {}
        unsubscribes: list[tuple[str, int, str]] = []
        for i in rows.tolist():
            member_id = by_person.get(int(email.event_person[i]))
            if member_id is None:
                continue
            kind, at = EMAIL_EVENT_KINDS[int(email.event_kind[i])], int(email.event_at[i])
            if kind == "unsubscribe":
                unsubscribes.append((member_id, at, _UNSUBSCRIBE_REASONS[int(email.event_person[i]) % 5]))
                continue
            detail = _detail(kind, member_id, campaign.key)
            events.setdefault(member_id, []).append((at, kind, detail))
        order = {h: i for i, h in enumerate(recipients)}
        active = sorted(events, key=lambda h: order.get(h, len(order)))
        for member_events in events.values():
            member_events.sort()
        unsubscribes.sort(key=lambda u: u[1])
        return Report(recipients, events, active, unsubscribes)

    def add_event(self, campaign: Campaign, member_id: str, event: tuple[int, str, str | None]) -> None:
        """Record a new open, click or bounce (kept for reports built later, too)."""
        self._extra_events.setdefault(campaign.id, []).append((member_id, event))
        report = self._reports.get(campaign.id)
        if report is not None:
            self._add_event(report, member_id, event)
        self.version += 1

    def add_unsubscribe(self, campaign: Campaign, member_id: str, at: int, reason: str) -> None:
        """Record an unsubscribe in a campaign's report."""
        self._extra_unsubscribes.setdefault(campaign.id, []).append((member_id, at, reason))
        report = self._reports.get(campaign.id)
        if report is not None:
            report.unsubscribes.append((member_id, at, reason))
        self.version += 1

    @staticmethod
    def _add_event(report: Report, member_id: str, event: tuple[int, str, str | None]) -> None:
        if member_id not in report.events:
            report.events[member_id] = []
            report.active.append(member_id)
            if member_id not in report.sent_to:
                report.recipients.append(member_id)
                report.sent_to.add(member_id)
        report.events[member_id].append(event)
        report.events[member_id].sort()

    # ------------------------------------------------------------------ changes

    def stamp(self, now: datetime) -> int:
        """The ``last_changed`` of a change made now: never before an earlier change (a server's clock)."""
        self.high_water = max(int(now.timestamp()), self.high_water + 1)
        return self.high_water

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random, now: datetime) -> dict[str, int]:
        """Change and archive a share of the live members (see :meth:`MailchimpEmulator.mutate`)."""
        live = sorted(h for h, m in self.members.items() if m.status != "archived")
        changed = rng.sample(live, round(len(live) * fraction))
        rest = sorted(set(live) - set(changed))
        archived = rng.sample(rest, min(len(rest), round(len(live) * delete_fraction)))
        at = self.stamp(now)  # one bulk update: every change shares the second, as imports and automations do
        latest = self.campaigns[-1] if self.campaigns else None
        counts = {
            "members_changed": len(changed),
            "members_archived": len(archived),
            "opens_added": 0,
            "unsubscribed": 0,
        }
        for member_id in changed:
            member = self.members[member_id]
            member.last_changed = at
            member.member_rating = 1 + (member.member_rating % 5)
            draw = rng.random()
            if draw < 0.1 and member.status == "subscribed" and latest is not None:
                member.status, member.unsubscribe_reason = "unsubscribed", _UNSUBSCRIBE_REASONS[4]
                self.add_unsubscribe(latest, member_id, at, _UNSUBSCRIBE_REASONS[4])
                counts["unsubscribed"] += 1
            elif draw < 0.4 and member.status == "subscribed" and latest is not None:
                self.add_event(latest, member_id, (at, "open", None))
                counts["opens_added"] += 1
            else:
                member.language = "en" if member.language != "en" else "de"
        for member_id in archived:
            member = self.members[member_id]
            member.archived_from, member.status, member.last_changed = member.status, "archived", at
        self.version += 1
        return counts


def contact_id(member: Member) -> str:
    """A member's ``contact_id`` (stable across audiences in Mailchimp; derived here)."""
    return short_id("contact", member.id, 32)


def _rating(open_rate: float) -> int:
    """Mailchimp's 1-5 star member rating, from engagement."""
    return 1 + min(4, int(open_rate * 8))


def _detail(kind: str, member_id: str, campaign: int) -> str | None:
    if kind == "click":
        return f"https://shop.example/{_LINKS[(int(member_id[:4], 16) + campaign) % len(_LINKS)]}"
    if kind == "bounce":
        return "soft" if int(member_id[-2:], 16) % 4 else "hard"
    return None


def _engagement(business: Business) -> dict[int, tuple[float, float]]:
    """Average open and click rate per person key: opens and clicks per email sent."""
    email = business.email
    size = len(business.people) + 1
    sent = np.bincount(email.send_person, minlength=size)
    opens = np.bincount(email.event_person[email.event_kind == 0], minlength=size)
    clicks = np.bincount(email.event_person[email.event_kind == 1], minlength=size)
    out: dict[int, tuple[float, float]] = {}
    for key in np.flatnonzero(sent).tolist():
        out[key] = (float(opens[key] / sent[key]), float(clicks[key] / sent[key]))
    return out
