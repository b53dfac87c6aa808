"""What a push would do: desired tags, the diff against the ledger, and the safety guards.

Desired state of a destination = (person, tag) for every open, not held-out membership of a segment the
destination carries, for people in scope (not merged away, not deleted) whose consent the destination accepts.
Against the ledger, only additions and removals are planned; nothing changed means nothing to send. A removal is
only ever planned for a ledger row, that is for a tag the hub placed itself, and every tag carries the
destination's prefix.

Guards (a removal looks the same whether a customer left a segment or a source broke):

- no removal at all when the latest segment evaluation failed or there is none, or when an enabled source's
  latest sync failed, or a source that had profiles has none left (an outage looks like everyone leaving);
- per tag, no removal when it would take away more than ``max_removal_share`` of the tag's members (from
  ``removal_guard_min`` removals on).

Blocked removals are reported with the reason and kept for the next run; ``--force`` lifts the guards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.contracts import RemoteContact, Sink, TagChange, TagOp
from hub.push import ledger
from hub.push.ledger import Entry, State, Write
from hub.store import models as m
from hub.store.identity import normalize_email

SAMPLE_SIZE = 5


@dataclass(frozen=True)
class Targeting:
    """What one destination carries: segments and their full tags, how contacts are found, consent rules.

    Args:
        destination: the destination entry's name.
        prefix: its tag prefix (every tag the hub writes there starts with it).
        tags: segment name -> full tag (prefix included).
        source: the source entry whose record ids address this destination's contacts, if any.
        require_consent: the consent statuses a person needs to get tags here (None: any).
    """

    destination: str
    prefix: str
    tags: Mapping[str, str]
    source: str | None = None
    require_consent: frozenset[str] | None = None


def targeting_for(
    name: str,
    entry: Any,
    segment_tags: Mapping[str, str],
    rule_destinations: Mapping[str, Sequence[str]],
) -> Targeting:
    """The targeting of destination ``name`` from its config entry and the rule files.

    A segment is carried when the destination's ``segments`` lists it (a map also renames its tag) or when the
    segment's rule file lists the destination; the tag is the config's name, else the rule file's ``tag``.

    Raises:
        ConfigError: the destination names a segment no rule file defines.
    """
    from hub.errors import ConfigError

    configured = entry.segments if isinstance(entry.segments, Mapping) else {s: None for s in entry.segments}
    unknown = [s for s in configured if s not in segment_tags]
    if unknown:
        raise ConfigError(f"unknown segment(s) {', '.join(sorted(unknown))}", field=f"destinations.{name}.segments")
    chosen: dict[str, str] = {}
    for segment, tag in segment_tags.items():
        if segment in configured or name in rule_destinations.get(segment, ()):
            chosen[segment] = f"{entry.tag_prefix}{configured.get(segment) or tag}"
    consent = frozenset(entry.require_consent) if entry.require_consent is not None else None
    return Targeting(name, entry.tag_prefix, chosen, getattr(entry, "source", None), consent)


@dataclass
class Skip:
    """A desired tag that is not sent, and why."""

    person_id: int
    email: str | None
    tag: str
    reason: str


@dataclass
class Plan:
    """The changes one push makes to one destination (what ``--dry-run`` prints and a push executes)."""

    destination: str
    adds: list[TagChange] = field(default_factory=list)
    removes: list[TagChange] = field(default_factory=list)
    blocked: list[TagChange] = field(default_factory=list)  # removals held back by a guard
    skips: list[Skip] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)
    unchanged: int = 0
    # Ledger rows to write without a call: new skips, rows that are no longer needed, adopted states.
    bookkeeping: list[Write] = field(default_factory=list)
    members: dict[str, int] = field(default_factory=dict)  # per tag, people holding it now (ledger)

    @property
    def calls_needed(self) -> bool:
        return bool(self.adds or self.removes)

    def by_tag(self) -> dict[str, dict[str, Any]]:
        """Per tag: additions, removals, blocked removals, skips by reason, and a few sample people."""
        out: dict[str, dict[str, Any]] = {}

        def row(tag: str) -> dict[str, Any]:
            return out.setdefault(tag, {"add": 0, "remove": 0, "blocked": 0, "skipped": {}, "samples": {},
                                        "members": self.members.get(tag, 0)})

        for kind, changes in (("add", self.adds), ("remove", self.removes), ("blocked", self.blocked)):
            for change in changes:
                r = row(change.tag)
                r[kind] += 1
                samples = r["samples"].setdefault(kind, [])
                if len(samples) < SAMPLE_SIZE:
                    samples.append(change.email or f"person {change.person_id}")
        for skip in self.skips:
            r = row(skip.tag)
            r["skipped"][skip.reason] = r["skipped"].get(skip.reason, 0) + 1
        return dict(sorted(out.items()))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view for ``hub push --dry-run --json``."""
        return {
            "destination": self.destination,
            "add": len(self.adds),
            "remove": len(self.removes),
            "blocked": len(self.blocked),
            "skipped": len(self.skips),
            "unchanged": self.unchanged,
            "guards": list(self.guards),
            "tags": self.by_tag(),
        }


@dataclass(frozen=True)
class Desired:
    person_id: int
    email: str | None
    tag: str


def desired(conn: Connection, targeting: Targeting) -> dict[tuple[int, str], Desired]:
    """The (person, tag) pairs the destination should hold now."""
    if not targeting.tags:
        return {}
    sm, p = m.segment_membership, m.person
    rows = conn.execute(
        sa.select(sm.c.person_id, sm.c.segment, p.c.email, p.c.consent)
        .select_from(sm.join(p, p.c.id == sm.c.person_id))
        .where(
            sm.c.exited_at.is_(None),
            sm.c.held_out.is_(False),
            sm.c.segment.in_(sorted(targeting.tags)),
            p.c.merged_into.is_(None),
            p.c.deleted.is_(False),
        )
    )
    out: dict[tuple[int, str], Desired] = {}
    for pid, segment, email, consent in rows:
        if targeting.require_consent is not None and consent not in targeting.require_consent:
            continue
        tag = targeting.tags[segment]
        out[(int(pid), tag)] = Desired(int(pid), email, tag)
    return out


def build_plan(
    conn: Connection,
    targeting: Targeting,
    sink: Sink,
    *,
    now: datetime,
    guards: Guards,
    force: bool = False,
) -> Plan:
    """Plan one destination's push: diff, contact lookup for new people, guards."""
    plan = Plan(targeting.destination)
    want = desired(conn, targeting)
    have = ledger.read(conn, targeting.destination)
    plan.members = {t: n.get(State.PRESENT.value, 0) for t, n in ledger.counts(have).items()}
    contacts = _contacts_for(conn, targeting, sink, want, have, now)
    for key, item in want.items():
        _plan_desired(plan, item, have.get(key), contacts, now)
    for key, entry in have.items():
        if key not in want:
            _plan_undesired(plan, entry, now)
    _guard(plan, guards, force)
    return plan


def _plan_desired(
    plan: Plan, item: Desired, entry: Entry | None, contacts: Mapping[int, RemoteContact | str], now: datetime
) -> None:
    if entry is not None and entry.state in (State.PRESENT, State.DRIFTED):
        plan.unchanged += 1
        return
    if entry is not None and entry.state is State.RETRY_REMOVE:
        # The removal never went through, and the tag is wanted again: it is still there.
        plan.bookkeeping.append(Write(item.person_id, item.tag, State.PRESENT, entry.remote_id))
        plan.unchanged += 1
        return
    if entry is not None and entry.state in (State.RETRY_ADD, State.SKIPPED) and not entry.due(now):
        plan.unchanged += 1
        return
    contact = contacts.get(item.person_id)
    if contact is None or isinstance(contact, str):
        reason = contact if isinstance(contact, str) else "not in the destination"
        plan.skips.append(Skip(item.person_id, item.email, item.tag, reason))
        return
    if contact.status is not None:
        plan.skips.append(Skip(item.person_id, item.email, item.tag, f"contact is {contact.status}"))
        return
    change = TagChange(TagOp.ADD, item.tag, item.person_id, item.email, contact.remote_id)
    if item.tag in contact.tags:
        # Already there (set by hand, or by an earlier push the ledger lost): adopt it, no call.
        plan.bookkeeping.append(Write(item.person_id, item.tag, State.PRESENT, contact.remote_id))
        plan.unchanged += 1
        return
    plan.adds.append(change)


def _plan_undesired(plan: Plan, entry: Entry, now: datetime) -> None:
    if entry.state in (State.SKIPPED, State.DRIFTED) or entry.remote_id is None:
        plan.bookkeeping.append(Write(entry.person_id, entry.tag, None))  # nothing is on the contact
        return
    if entry.state is State.RETRY_REMOVE and not entry.due(now):
        plan.unchanged += 1
        return
    plan.removes.append(TagChange(TagOp.REMOVE, entry.tag, entry.person_id, None, entry.remote_id))


def _contacts_for(
    conn: Connection,
    targeting: Targeting,
    sink: Sink,
    want: Mapping[tuple[int, str], Desired],
    have: Mapping[tuple[int, str], Entry],
    now: datetime,
) -> dict[int, RemoteContact | str]:
    """The destination contact of every person that may get a tag, or the reason there is none.

    Order: a linked source's record id; a remote id the ledger already knows; else a lookup by email (one
    batched lookup for everyone still unknown).
    """
    needs: dict[int, str | None] = {}
    for key, item in want.items():
        entry = have.get(key)
        if entry is None or (entry.state in (State.RETRY_ADD, State.SKIPPED) and entry.due(now)):
            needs[item.person_id] = item.email
    out: dict[int, RemoteContact | str] = {}
    known = {e.person_id: e.remote_id for e in have.values() if e.remote_id}
    linked = ledger.remote_ids(conn, targeting.source, needs) if targeting.source else {}
    by_email: dict[str, list[int]] = {}
    for pid, email in needs.items():
        rid = linked.get(pid) or known.get(pid)
        if rid is not None:
            # Its state (unsubscribed, ...) is unknown here; the destination refuses such a record per record.
            out[pid] = RemoteContact(rid, email)
            continue
        normalized = normalize_email(email)
        if normalized is None:
            out[pid] = "no valid email"
            continue
        by_email.setdefault(normalized, []).append(pid)
    if by_email:
        found = sink.lookup(sorted(by_email))
        for email, pids in by_email.items():
            contact = found.get(email)
            for pid in pids:
                out[pid] = contact if contact is not None else "not in the destination"
    return out


# ----------------------------------------------------------------------------------------------- guards


@dataclass(frozen=True)
class Guards:
    """What the guards know about the store, and their thresholds."""

    max_removal_share: float
    removal_guard_min: int
    broken_sources: Sequence[str] = ()  # "crm: the last sync failed", ...
    evaluation_problem: str | None = None  # "no segment evaluation yet", ...


def _guard(plan: Plan, guards: Guards, force: bool) -> None:
    if not plan.removes:
        return
    reasons = list(guards.broken_sources)
    if guards.evaluation_problem:
        reasons.append(guards.evaluation_problem)
    if reasons:
        message = "removals held back: " + "; ".join(reasons)
        _block(plan, plan.removes, message, force)
        return
    per_tag: dict[str, list[TagChange]] = {}
    for change in plan.removes:
        per_tag.setdefault(change.tag, []).append(change)
    for tag, changes in sorted(per_tag.items()):
        members = plan.members.get(tag, 0)
        limit = max(guards.removal_guard_min, int(guards.max_removal_share * members))
        if len(changes) > limit:
            share = len(changes) / members if members else 1.0
            message = (f"{tag}: would remove {len(changes):,} of {members:,} members ({share:.0%}), more than "
                       f"{guards.max_removal_share:.0%}: removals held back")
            _block(plan, changes, message, force)


def _block(plan: Plan, changes: Sequence[TagChange], message: str, force: bool) -> None:
    if force:
        plan.guards.append(f"{message} (overridden with --force)")
        return
    plan.guards.append(f"{message} (use --force to push them anyway)")
    blocked = {id(c) for c in changes}
    plan.blocked.extend(changes)
    plan.removes = [c for c in plan.removes if id(c) not in blocked]


def store_guards(conn: Connection, sources: Sequence[str], max_share: float, guard_min: int) -> Guards:
    """The guard inputs from the store: failing or emptied sources, and the segment evaluation's health."""
    r, i = m.run, m.identity
    broken: list[str] = []
    for source in sources:
        last = conn.execute(
            sa.select(r.c.status).where(r.c.kind == "sync", r.c.target == source).order_by(r.c.id.desc()).limit(1)
        ).scalar_one_or_none()
        if last is not None and last not in ("ok", "ok_with_skips", "running"):
            broken.append(f"{source}: its last sync ended {last}")
            continue
        live = conn.execute(
            sa.select(sa.func.count()).select_from(i).where(i.c.source == source, i.c.seen.is_(True),
                                                           i.c.deleted.is_(False))
        ).scalar_one()
        ever = conn.execute(
            sa.select(sa.func.count()).select_from(i).where(i.c.source == source, i.c.seen.is_(True))
        ).scalar_one()
        if ever and not live:
            broken.append(f"{source}: every profile it had is now deleted")
    last_eval = conn.execute(
        sa.select(r.c.status).where(r.c.kind == "segment").order_by(r.c.id.desc()).limit(1)
    ).scalar_one_or_none()
    problem = None
    if last_eval is None:
        problem = "no segment evaluation yet"
    elif last_eval != "ok":
        problem = f"the last segment evaluation ended {last_eval}"
    return Guards(max_share, guard_min, tuple(broken), problem)
