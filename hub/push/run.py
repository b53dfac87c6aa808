"""Executing push plans and reconciling the ledger with what the destination really holds.

A push sends the plan's changes to the sink in chunks; after each chunk the per-record results go into the
ledger in one transaction, so a crash loses at most the chunk in flight (and every tag operation is idempotent,
so the next run simply sends it again). A record is ``present`` only when the destination acknowledged it; a
transient failure is retried in a later run with backoff; a permanent one is ``skipped`` with the vendor's
reason. One failed record never holds back the rest of its batch: that is the sink's contract.

Reconcile reads the destination's hub-prefixed tags back (:meth:`~hub.contracts.Sink.read_tags`): on the first
push to a destination (a new machine, a lost database) it adopts what is there instead of re-sending or
orphaning tags; later it detects drift (a hub tag removed by hand), reports it, and either restores the tag or
respects the removal, as configured.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.engine import Connection

from hub.contracts import Outcome, Sink, TagChange, TagOp, TagResult
from hub.push import ledger
from hub.push.ledger import State, Write
from hub.push.plan import Plan, Targeting
from hub.store import Store
from hub.store import models as m
from hub.store.identity import normalize_email

logger = logging.getLogger(__name__)

CHUNK = 5_000  # changes per sink call batch-of-batches: the sink splits them to the vendor's limits


@dataclass(frozen=True)
class RetrySettings:
    base: timedelta
    cap: timedelta
    max_attempts: int


@dataclass
class PushResult:
    """What one push did to one destination."""

    destination: str
    added: int = 0
    removed: int = 0
    retry: int = 0
    failed: int = 0  # given up after max_attempts
    skipped: Counter[str] = field(default_factory=Counter)
    blocked: int = 0
    guards: list[str] = field(default_factory=list)
    drift: int = 0
    adopted: int = 0
    calls: int | None = None
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        """The integer counts recorded in the run row."""
        out = {"added": self.added, "removed": self.removed, "retry": self.retry, "failed": self.failed,
               "blocked": self.blocked, "drift": self.drift, "adopted": self.adopted,
               "skipped": sum(self.skipped.values())}
        out.update({f"skipped:{reason}": n for reason, n in self.skipped.items()})
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return {"destination": self.destination, **self.counts(), "guards": list(self.guards),
                "seconds": round(self.seconds, 3)}


def execute(store: Store, plan: Plan, sink: Sink, retry: RetrySettings, result: PushResult) -> None:
    """Send the plan's changes and record every outcome; bookkeeping rows are written first."""
    now = m.utcnow()
    with store.transaction() as conn:
        ledger.write(conn, plan.destination, plan.bookkeeping, now)
        ledger.write(conn, plan.destination, [_skip_write(s.person_id, s.tag, s.reason, retry, now)
                                               for s in plan.skips], now)
    for skip in plan.skips:
        result.skipped[skip.reason] += 1
    result.blocked = len(plan.blocked)
    result.guards = list(plan.guards)
    changes = [*plan.removes, *plan.adds]
    if changes:
        sink.ensure_tags(sorted({c.tag for c in plan.adds}))
    with store.transaction() as conn:
        attempts = _attempts(conn, plan.destination)
    for start in range(0, len(changes), CHUNK):
        chunk = changes[start : start + CHUNK]
        results = sink.apply(chunk)
        writes = _record(results, chunk, attempts, retry, m.utcnow(), result)
        with store.transaction() as conn:
            ledger.write(conn, plan.destination, writes, m.utcnow())


def _attempts(conn: Connection, destination: str) -> dict[tuple[int, str], int]:
    return {key: e.attempts for key, e in ledger.read(conn, destination).items()}


def _skip_write(person_id: int, tag: str, reason: str, retry: RetrySettings, now: datetime) -> Write:
    # A contact that may appear later (not found) is looked for again after the longest backoff; a state that
    # forbids tagging (unsubscribed, invalid email) only changes when the person's data does.
    again = now + retry.cap if reason == "not in the destination" else None
    return Write(person_id, tag, State.SKIPPED, last_error=reason, next_attempt_at=again)


def _record(
    results: Sequence[TagResult],
    sent: Sequence[TagChange],
    attempts: Mapping[tuple[int, str], int],
    retry: RetrySettings,
    now: datetime,
    result: PushResult,
) -> list[Write]:
    """Ledger writes for the sink's per-record results; a change without a result counts as a retry."""
    by_change = {id(r.change): r for r in results}
    answered = {(r.change.person_id, r.change.tag, r.change.op): r for r in results}
    writes: list[Write] = []
    for change in sent:
        outcome = by_change.get(id(change)) or answered.get((change.person_id, change.tag, change.op))
        writes.append(_after(change, outcome, attempts.get((change.person_id, change.tag), 0), retry, now, result))
    return writes


def _after(
    change: TagChange, outcome: TagResult | None, attempts: int, retry: RetrySettings, now: datetime,
    result: PushResult,
) -> Write:
    key = (change.person_id, change.tag)
    add = change.op is TagOp.ADD
    if outcome is not None and outcome.outcome is Outcome.ACKNOWLEDGED:
        if add:
            result.added += 1
            return Write(*key, State.PRESENT, change.remote_id)
        result.removed += 1
        return Write(*key, None)
    if outcome is not None and outcome.outcome is Outcome.SKIPPED:
        reason = outcome.reason or "refused by the destination"
        result.skipped[reason] += 1
        if add:
            return Write(*key, State.SKIPPED, change.remote_id, last_error=reason)
        return Write(*key, None)  # the contact is gone, or the tag was not there: nothing left to remove
    # Transient, or no answer at all: try again in a later run, never recorded as applied.
    tries = attempts + 1
    reason = (outcome.reason if outcome is not None else None) or "no answer from the destination"
    if tries >= retry.max_attempts:
        result.failed += 1
        return Write(*key, State.SKIPPED if add else State.PRESENT, change.remote_id, tries, None,
                     f"gave up after {tries} attempts: {reason}")
    result.retry += 1
    state = State.RETRY_ADD if add else State.RETRY_REMOVE
    wait = ledger.backoff(tries, retry.base, retry.cap)
    return Write(*key, state, change.remote_id, tries, now + wait, reason)


# ----------------------------------------------------------------------------------------------- reconcile


def reconcile(store: Store, targeting: Targeting, sink: Sink, *, restore: bool, result: PushResult) -> None:
    """:func:`reconcile_in` in its own transaction."""
    with store.transaction() as conn:
        reconcile_in(conn, targeting, sink, restore=restore, result=result)


def reconcile_in(conn: Connection, targeting: Targeting, sink: Sink, *, restore: bool, result: PushResult) -> None:
    """Read the destination's hub tags and bring the ledger in line with them.

    - A hub tag on a contact the ledger does not know (lost database, new machine) is adopted as present, so it
      is neither sent again nor orphaned (the next diff removes it if the person is no longer a member).
    - A ledger tag the contact no longer holds is drift: with ``restore`` it is re-added on the next push, else
      it is marked ``drifted`` and left alone while the person stays in the segment.
    - Hub tags on contacts that match no person are reported and left alone.
    """
    started = time.perf_counter()
    remote = list(sink.read_tags(targeting.prefix))
    wanted_tags = set(targeting.tags.values())
    now = m.utcnow()
    people = _people_of(conn, targeting, remote)
    have = ledger.read(conn, targeting.destination)
    holding: set[tuple[int, str]] = set()
    writes: list[Write] = []
    orphans = 0
    for contact in remote:
        pid = people.get(contact.remote_id)
        if pid is None:
            orphans += sum(1 for t in contact.tags if t.startswith(targeting.prefix))
            continue
        for tag in contact.tags:
            if not tag.startswith(targeting.prefix):
                continue
            holding.add((pid, tag))
            entry = have.get((pid, tag))
            if entry is None or entry.state is not State.PRESENT:
                writes.append(Write(pid, tag, State.PRESENT, contact.remote_id))
                result.adopted += entry is None
    for key, entry in have.items():
        if entry.state is State.PRESENT and key not in holding and entry.tag in wanted_tags:
            result.drift += 1
            if restore:
                writes.append(Write(*key, State.RETRY_ADD, entry.remote_id, 0, now, "removed by hand: restoring"))
            else:
                writes.append(Write(*key, State.DRIFTED, entry.remote_id, last_error="removed by hand"))
    ledger.write(conn, targeting.destination, writes, now)
    if orphans:
        result.guards.append(f"{orphans} hub tags on contacts that match no person were left alone")
    logger.info("%s: reconciled %d contacts in %.1f s: %d adopted, %d drifted", targeting.destination,
                len(remote), time.perf_counter() - started, result.adopted, result.drift)


def _people_of(conn: Connection, targeting: Targeting, remote: Sequence[Any]) -> dict[str, int]:
    """Remote id -> person, by the linked source's ids first, then by email."""
    out: dict[str, int] = {}
    if targeting.source:
        out.update(ledger.people_by_remote(conn, targeting.source, [c.remote_id for c in remote]))
    emails = {c.remote_id: normalize_email(c.email) for c in remote if c.remote_id not in out}
    found = ledger.people_by_email(conn, [e for e in emails.values() if e])
    for rid, email in emails.items():
        if email and email in found:
            out[rid] = found[email]
    return out
