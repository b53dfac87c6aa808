"""The Mailchimp sink: hub tags as Mailchimp tags, which are static segments of one audience.

- ``apply`` sends ``POST /lists/{list_id}/segments/{segment_id}`` with up to 500 ``members_to_add`` and 500
  ``members_to_remove`` per call (Mailchimp's cap), so 2,000 changes on one tag take 4 calls; calls run in
  parallel within the account's connection limit. Only the named tag changes: others' tags stay as they are.
- Members are addressed by email; the hub's remote id is ``{list_id}:{subscriber hash}``. A change whose email
  does not hash to its remote id (the person's address differs in Mailchimp), and every removal (the engine
  sends no email with those), is resolved to Mailchimp's address from what this sink has seen, else from the
  tag's member listing or a member lookup.
- A member's status is never changed, and no member is created. Members known to be unsubscribed, cleaned or
  archived get no tag (skipped with that reason); Mailchimp's per-member ``errors`` (compliance state, invalid
  address) become per-record results.
- ``lookup`` reads members one by one by subscriber hash, or scans the audience when that is fewer calls.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hub.contracts import Outcome, RemoteContact, TagChange, TagOp, TagResult
from hub.errors import ConfigError, HubError, TransientError
from hub.http import HttpError, NotFoundError, OffsetPaginator

from . import settings
from .client import MailchimpClient
from .config import MailchimpDestinationConfig
from .ids import member_key, split_member_key, subscriber_hash
from .parallel import Chain, run_chains

logger = logging.getLogger(__name__)

# Per-member errors that say the tag is already where it should be.
_ALREADY = re.compile(r"\balready (?:a member of|in) (?:this|the) (?:segment|tag)\b", re.IGNORECASE)
_ABSENT = re.compile(r"\bnot (?:a member of|in) (?:this|the) (?:segment|tag)\b", re.IGNORECASE)


@dataclass
class _Member:
    """What the sink knows of one member."""

    email: str
    status: str | None
    tags: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class _Segment:
    id: int
    name: str
    member_count: int = 0


@dataclass
class _Call:
    """One batch call: emails to add and remove on one tag, and the changes waiting on each email's answer."""

    tag: str
    segment: _Segment
    add: dict[str, list[TagChange]] = field(default_factory=dict)  # hash -> changes
    remove: dict[str, list[TagChange]] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)  # hash -> email sent


class MailchimpSink:
    """One Mailchimp audience as a destination.

    Args:
        config: the validated entry.
        name: the entry's name.
        client: the account's client.
    """

    batch_limits: Mapping[str, int] = {
        "segment_members_add": settings.SEGMENT_BATCH_LIMIT,
        "segment_members_remove": settings.SEGMENT_BATCH_LIMIT,
    }

    def __init__(self, config: MailchimpDestinationConfig, name: str, client: MailchimpClient) -> None:
        self.name = name
        self._list_id = config.list_id
        self.client = client
        self._workers = config.connections
        self._lock = threading.Lock()
        self._segments: dict[str, _Segment] | None = None  # by casefolded name: Mailchimp tags ignore case
        self._members: dict[str, _Member] = {}  # by subscriber hash
        self._untaggable_listed = False  # every unsubscribed and cleaned member is in _members

    @property
    def list_id(self) -> str:
        """The configured audience, else the account's only one (asked once).

        Raises:
            ConfigError: no list_id is configured and the account has no audience or several.
        """
        if self._list_id is None:
            ids = [str(a.get("id")) for a in self.client.audiences() if a.get("id")]
            if len(ids) != 1:
                found = ", ".join(ids) or "none"
                raise ConfigError(f"{self.name}: set list_id: the account has {len(ids)} audiences ({found})")
            self._list_id = ids[0]
        return self._list_id

    # ------------------------------------------------------------------ the Sink contract

    def check(self) -> None:
        """Test the credentials and the audience id (ConfigError otherwise)."""
        self.client.ping()
        self.client.audience(self.list_id)

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        """The audience's members for these emails, with their tags and a blocking status, if any."""
        wanted: dict[str, list[str]] = defaultdict(list)
        for email in emails:
            if email and email.strip():
                wanted[subscriber_hash(email)].append(email)
        found = self._fetch(list(wanted))
        return {email: self._contact(h, found[h]) for h, names in wanted.items() if h in found for email in names}

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        """Every member holding a tag that starts with ``prefix``, read from the tags' segment listings."""
        folded = prefix.casefold()
        segments = [s for key, s in self._segment_map().items() if key.startswith(folded)]
        holders: dict[str, set[str]] = defaultdict(set)
        chains = [Chain(s, self._segment_members(s)) for s in segments]
        for key, page in run_chains(chains, self._workers):
            segment: _Segment = key  # type: ignore[assignment]
            for member_id in page:
                holders[member_id].add(segment.name)
        for member_id, tags in sorted(holders.items()):
            member = self._members[member_id]
            member.tags |= tags
            yield self._contact(member_id, member)

    def ensure_tags(self, tags: Sequence[str]) -> None:
        """Create the static segments of tags the audience does not have yet."""
        for tag in dict.fromkeys(tags):
            self._segment_for(tag, create=True)

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Add and remove tags in batches of up to 500 per direction; one result per change."""
        results: list[TagResult] = []
        if not changes:
            return results
        ready: dict[tuple[str, TagOp], dict[str, list[TagChange]]] = defaultdict(lambda: defaultdict(list))
        for change in changes:
            target = self._target(change)
            if isinstance(target, TagResult):
                results.append(target)
            else:
                ready[(change.tag, change.op)][target].append(change)
        calls, early = self._plan_calls(ready)
        results.extend(early)
        for _key, outcome in run_chains([Chain(i, self._send(c)) for i, c in enumerate(calls)], self._workers):
            results.extend(outcome)
        return results

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    # ------------------------------------------------------------------ planning a push

    def _target(self, change: TagChange) -> str | TagResult:
        """The subscriber hash a change is about, or its result when it cannot be sent at all."""
        if change.remote_id:
            list_id, member_id = split_member_key(change.remote_id)
            if list_id is not None and list_id != self.list_id:
                return TagResult(change, Outcome.SKIPPED, f"the contact belongs to another audience ({list_id})")
            return member_id
        if change.email and change.email.strip():
            return subscriber_hash(change.email)
        return TagResult(change, Outcome.SKIPPED, "no email and no Mailchimp id")

    def _plan_calls(
        self, ready: Mapping[tuple[str, TagOp], Mapping[str, list[TagChange]]]
    ) -> tuple[list[_Call], list[TagResult]]:
        """Batch calls of at most 500 emails per direction and tag; results for what needs no call."""
        early: list[TagResult] = []
        calls: list[_Call] = []
        for tag in dict.fromkeys(t for t, _ in ready):
            adds = dict(ready.get((tag, TagOp.ADD), {}))
            removes = dict(ready.get((tag, TagOp.REMOVE), {}))
            for member_id in set(adds) & set(removes):  # the engine never asks this; refuse to guess the order
                for change in (*adds.pop(member_id), *removes.pop(member_id)):
                    early.append(TagResult(change, Outcome.RETRY, "added and removed in the same push"))
            segment = self._segment_for(tag, create=bool(adds))
            if segment is None:  # no such tag in Mailchimp: nobody holds it
                early.extend(TagResult(c, Outcome.ACKNOWLEDGED) for cs in removes.values() for c in cs)
                removes = {}
            emails = self._emails(adds, removes, segment)
            self._know_statuses(adds)
            add_ids, remove_ids = [], []
            for member_id, group in adds.items():
                refusal = self._refusal(member_id, emails)
                if refusal:
                    early.extend(TagResult(c, Outcome.SKIPPED, refusal) for c in group)
                else:
                    add_ids.append(member_id)
            for member_id, group in removes.items():
                if member_id in emails:
                    remove_ids.append(member_id)
                else:  # not in the tag's listing: the tag is not on that member
                    early.extend(TagResult(c, Outcome.ACKNOWLEDGED) for c in group)
            if segment is None:
                continue
            limit = settings.SEGMENT_BATCH_LIMIT
            for start in range(0, max(len(add_ids), len(remove_ids)), limit):
                call = _Call(tag, segment)
                call.add = {h: adds[h] for h in add_ids[start : start + limit]}
                call.remove = {h: removes[h] for h in remove_ids[start : start + limit]}
                call.emails = {h: emails[h] for h in (*call.add, *call.remove)}
                calls.append(call)
        return calls, early

    def _emails(
        self, adds: Mapping[str, list[TagChange]], removes: Mapping[str, list[TagChange]], segment: _Segment | None
    ) -> dict[str, str]:
        """Mailchimp's email for every member of the push, from the changes, the cache, then the API."""
        emails: dict[str, str] = {}
        for member_id, group in adds.items():
            for change in group:
                if change.email and subscriber_hash(change.email) == member_id:
                    emails[member_id] = change.email.strip()
        with self._lock:
            emails.update(
                {h: self._members[h].email for h in (*adds, *removes) if h not in emails and h in self._members}
            )
        missing_removes = [h for h in removes if h not in emails]
        listing_calls = -(-segment.member_count // settings.PAGE_SIZE) if segment is not None else 0
        if missing_removes and segment is not None and listing_calls < len(missing_removes):
            # The members to take a tag from hold it: the tag's listing names them all, 1000 per call. Whoever
            # is not in it does not hold the tag.
            for _key, page in run_chains([Chain(segment, self._segment_members(segment))], 1):
                emails.update({h: self._members[h].email for h in page if h in removes})
            missing_removes = []
        missing = [h for h in adds if h not in emails] + missing_removes
        if missing:
            emails.update({h: m.email for h, m in self._fetch(missing).items() if m.email})
        return emails

    def _know_statuses(self, member_ids: Iterable[str]) -> None:
        """Learn the status of every member about to get a tag, so that none in a compliance state is sent.

        Remote ids from a linked source come without a status. A few members are read one by one; for more,
        the audience's unsubscribed and cleaned members are listed once (what is not among them may be tagged),
        which costs calls in proportion to those members, not to the push.
        """
        with self._lock:
            if self._untaggable_listed:
                return
            unknown = [h for h in member_ids if h not in self._members]
        if not unknown:
            return
        if len(unknown) <= settings.LOOKUP_BY_HASH_MAX:
            self._fetch(unknown)
            return
        for status in sorted(settings.LISTED_UNTAGGABLE):
            self._scan(status=status)
        with self._lock:
            self._untaggable_listed = True

    def _refusal(self, member_id: str, emails: Mapping[str, str]) -> str | None:
        """Why a tag cannot be added to this member, if it cannot."""
        if member_id not in emails:
            return "not in the audience"
        with self._lock:
            member = self._members.get(member_id)
        if member is not None and member.status in settings.UNTAGGABLE_STATUSES:
            return f"the member is {member.status} in Mailchimp: tags are not added to {member.status} members"
        return None

    # ------------------------------------------------------------------ sending

    def _send(self, call: _Call) -> Iterator[list[TagResult]]:
        """One batch call and its per-member results (runs in a worker thread)."""
        add = [call.emails[h] for h in call.add]
        remove = [call.emails[h] for h in call.remove]
        try:
            body = self.client.update_segment(self.list_id, call.segment.id, add, remove)
        except NotFoundError:
            with self._lock:
                self._segments = None  # deleted by someone meanwhile: look again next time
            yield _all(call, Outcome.RETRY, f"the tag {call.tag!r} vanished from Mailchimp during the push")
            return
        except (TransientError, HttpError) as exc:
            yield _all(call, Outcome.RETRY, str(exc))
            return
        yield self._results(call, body)

    def _results(self, call: _Call, body: Mapping[str, Any]) -> list[TagResult]:
        """Per-member outcomes from ``members_added``, ``members_removed`` and ``errors``."""
        added = _hashes(body.get("members_added"))
        removed = _hashes(body.get("members_removed"))
        refused: dict[str, str] = {}
        for error in body.get("errors") or []:
            if not isinstance(error, Mapping):
                continue
            message = str(error.get("error") or "refused by Mailchimp")
            for email in error.get("email_addresses") or []:
                if isinstance(email, str):
                    refused[subscriber_hash(email)] = message
        out: list[TagResult] = []
        for member_id, group in call.add.items():
            outcome, reason = _outcome(member_id in added, refused.get(member_id), _ALREADY)
            if outcome is Outcome.ACKNOWLEDGED:
                self._remember_tag(member_id, call.tag, present=True)
            out.extend(TagResult(c, outcome, reason) for c in group)
        for member_id, group in call.remove.items():
            outcome, reason = _outcome(member_id in removed, refused.get(member_id), _ABSENT)
            if outcome is Outcome.ACKNOWLEDGED:
                self._remember_tag(member_id, call.tag, present=False)
            out.extend(TagResult(c, outcome, reason) for c in group)
        return out

    # ------------------------------------------------------------------ reading members and tags

    def _fetch(self, hashes: Sequence[str]) -> dict[str, _Member]:
        """Members by subscriber hash (absent ones left out): one by one, or a scan when that is cheaper."""
        if not hashes:
            return {}
        wanted = set(hashes)
        if len(hashes) > settings.LOOKUP_BY_HASH_MAX:
            pages = -(-self.client.member_count(self.list_id) // settings.PAGE_SIZE)
            if pages < len(hashes):
                scanned = self._scan(pages)
                return {h: m for h, m in scanned.items() if h in wanted}
        found: dict[str, _Member] = {}
        for key, payload in run_chains([Chain(h, self._one(h)) for h in hashes], self._workers):
            if payload is not None:
                found[str(key)] = self._learn(payload)
        return found

    def _one(self, member_id: str) -> Iterator[Mapping[str, Any] | None]:
        yield self.client.member(self.list_id, member_id)

    def _scan(self, pages: int | None = None, *, status: str | None = None) -> dict[str, _Member]:
        """Every member of the audience (or of one status), pages read in parallel.

        Without ``pages`` the first page tells how many there are, and the rest follow in parallel.
        """
        size = settings.PAGE_SIZE
        out: dict[str, _Member] = {}
        first = 0
        if pages is None:
            body = self.client.members_page(self.list_id, 0, size, status=status)
            out.update(self._learn_all(_members_of(body)))
            total = body.get("total_items")
            pages, first = -(-(total if isinstance(total, int) else 0) // size), 1
        chains = [Chain(p, self._scan_page(p * size, size, status)) for p in range(first, pages)]
        for _key, members in run_chains(chains, self._workers):
            out.update(self._learn_all(members))
        return out

    def _scan_page(self, offset: int, count: int, status: str | None) -> Iterator[list[Mapping[str, Any]]]:
        yield _members_of(self.client.members_page(self.list_id, offset, count, status=status))

    def _learn_all(self, members: Iterable[Mapping[str, Any]]) -> dict[str, _Member]:
        return {str(m["id"]): self._learn(m) for m in members if isinstance(m.get("id"), str)}

    def _segment_members(self, segment: _Segment) -> Iterator[list[str]]:
        """The subscriber hashes of a tag's holders, a page at a time (every status included)."""
        pager = OffsetPaginator(
            settings.PAGE_SIZE, limit_param="count", records_path="members", total_path="total_items"
        )
        path = self.client.segment_members_path(self.list_id, segment.id)
        params = {
            "fields": ",".join(settings.LOOKUP_FIELDS),
            "include_cleaned": True,
            "include_transactional": True,
            "include_unsubscribed": True,
        }
        for response in self.client.pages(path, pager, **params):
            members = response.json().get("members") or []
            page = []
            for payload in members:
                if isinstance(payload, Mapping) and isinstance(payload.get("id"), str):
                    self._learn(payload)
                    page.append(str(payload["id"]))
            yield page

    def _learn(self, payload: Mapping[str, Any]) -> _Member:
        """Remember a member payload (email, status, the tags it lists)."""
        tags = {
            t["name"] for t in payload.get("tags") or [] if isinstance(t, Mapping) and isinstance(t.get("name"), str)
        }
        email = str(payload.get("email_address") or "")
        status = payload.get("status") if isinstance(payload.get("status"), str) else None
        with self._lock:
            member = self._members.get(str(payload["id"]))
            if member is None:
                member = self._members[str(payload["id"])] = _Member(email, status, tags)
            else:
                member.email, member.status = email or member.email, status or member.status
                member.tags |= tags
            return member

    def _remember_tag(self, member_id: str, tag: str, *, present: bool) -> None:
        with self._lock:
            member = self._members.get(member_id)
            if member is not None:
                (member.tags.add if present else member.tags.discard)(tag)

    def _contact(self, member_id: str, member: _Member) -> RemoteContact:
        blocked = member.status if member.status in settings.UNTAGGABLE_STATUSES else None
        return RemoteContact(member_key(self.list_id, member_id), member.email, frozenset(member.tags), blocked)

    # ------------------------------------------------------------------ segments

    def _segment_map(self) -> dict[str, _Segment]:
        with self._lock:
            if self._segments is not None:
                return dict(self._segments)
        listed = self.client.segments(self.list_id)
        found = {
            str(s["name"]).casefold(): _Segment(int(s["id"]), str(s["name"]), _int(s.get("member_count")))
            for s in listed
            if isinstance(s.get("id"), int) and isinstance(s.get("name"), str)
        }
        with self._lock:
            self._segments = found
            return dict(found)

    def _segment_for(self, tag: str, *, create: bool) -> _Segment | None:
        """The static segment of ``tag``; created when missing and ``create``."""
        existing = self._segment_map().get(tag.casefold())
        if existing is not None or not create:
            return existing
        try:
            made = self.client.create_segment(self.list_id, tag)
        except (TransientError, HttpError) as exc:
            # It may have been created anyway (a timeout after the write) or by someone else: look again.
            with self._lock:
                self._segments = None
            again = self._segment_map().get(tag.casefold())
            if again is None:
                raise HubError(f"could not create the Mailchimp tag {tag!r}: {exc}") from exc
            return again
        segment = _Segment(int(made["id"]), str(made.get("name") or tag))
        logger.info("mailchimp: created tag %r in audience %s", segment.name, self.list_id)
        with self._lock:
            if self._segments is not None:
                self._segments[tag.casefold()] = segment
        return segment


def _members_of(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    members = body.get("members")
    return [m for m in members if isinstance(m, Mapping)] if isinstance(members, list) else []


def _hashes(members: object) -> set[str]:
    out: set[str] = set()
    for m in members if isinstance(members, list) else []:
        if isinstance(m, Mapping):
            if isinstance(m.get("id"), str):
                out.add(m["id"])
            elif isinstance(m.get("email_address"), str):
                out.add(subscriber_hash(m["email_address"]))
    return out


def _outcome(confirmed: bool, refusal: str | None, in_place: re.Pattern[str]) -> tuple[Outcome, str | None]:
    """The result of one email in a batch answer.

    A refusal saying the member already is (for an add) or is not (for a removal) in the segment means the
    tag is where it should be; any other refusal is permanent. An email Mailchimp did not mention at all was
    ignored, which it does with addresses that are not in the audience.
    """
    if confirmed:
        return Outcome.ACKNOWLEDGED, None
    if refusal is not None:
        return (Outcome.ACKNOWLEDGED, None) if in_place.search(refusal) else (Outcome.SKIPPED, refusal)
    return Outcome.SKIPPED, "not in the audience (Mailchimp ignored the address)"


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def _all(call: _Call, outcome: Outcome, reason: str) -> list[TagResult]:
    return [TagResult(c, outcome, reason) for group in (*call.add.values(), *call.remove.values()) for c in group]
