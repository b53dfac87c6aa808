"""The push ledger: what each destination holds of the hub's tags, and what it still owes.

One row per (destination, person, tag), in one of these states:

- ``present``: the destination acknowledged the tag on the person's contact (``remote_id``).
- ``retry_add`` / ``retry_remove``: the last attempt failed transiently; ``next_attempt_at`` is when to try again
  (backoff doubles with ``attempts``). A ``retry_add`` may or may not have landed, so it is treated as possibly
  present: when the person leaves the segment the tag is removed all the same.
- ``skipped``: the destination cannot take it (not found, compliance state, invalid email); ``last_error`` says
  why. It is looked at again after ``next_attempt_at`` (a contact may appear later), or never when that is NULL.
- ``drifted``: someone removed the tag by hand and the drift policy is to respect that: it is not re-added while
  the person stays in the segment.

A row disappears when the tag is removed (or was never placed) and the person is no longer in the segment.
Ledger rows of a person merged into another are read as the winner's.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from hub.store import models as m

_CHUNK = 5_000


class State(StrEnum):
    PRESENT = "present"
    RETRY_ADD = "retry_add"
    RETRY_REMOVE = "retry_remove"
    SKIPPED = "skipped"
    DRIFTED = "drifted"


@dataclass(frozen=True, slots=True)
class Entry:
    """One ledger row, read under the person's current (merged-into) id."""

    person_id: int
    tag: str
    state: State
    remote_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    stored_person_id: int  # the id the row is stored under (differs after a merge)

    def due(self, now: datetime) -> bool:
        """Whether a retry or a skipped record should be tried again now."""
        return self.next_attempt_at is not None and self.next_attempt_at <= now


def read(conn: Connection, destination: str) -> dict[tuple[int, str], Entry]:
    """The destination's ledger by (person, tag); rows of merged-away people fold into the winner's.

    When a merge leaves two rows for one (person, tag), the one saying the tag is on the contact wins.
    """
    pl, p = m.push_ledger, m.person
    canonical = sa.func.coalesce(p.c.merged_into, p.c.id)
    rows = conn.execute(
        sa.select(canonical, pl.c.tag, pl.c.state, pl.c.remote_id, pl.c.attempts, pl.c.next_attempt_at,
                  pl.c.last_error, pl.c.person_id)
        .select_from(pl.join(p, p.c.id == pl.c.person_id))
        .where(pl.c.destination == destination)
        .order_by(pl.c.id)
    )
    out: dict[tuple[int, str], Entry] = {}
    for pid, tag, state, remote, attempts, next_at, error, stored in rows:
        entry = Entry(int(pid), str(tag), State(state), remote, int(attempts), next_at, error, int(stored))
        key = (entry.person_id, entry.tag)
        if key not in out or _rank(entry.state) < _rank(out[key].state):
            out[key] = entry
    return out


def _rank(state: State) -> int:
    return (State.PRESENT, State.RETRY_REMOVE, State.RETRY_ADD, State.DRIFTED, State.SKIPPED).index(state)


@dataclass(frozen=True, slots=True)
class Write:
    """A ledger change: set (person, tag) to ``state``, or delete it when ``state`` is None."""

    person_id: int
    tag: str
    state: State | None
    remote_id: str | None = None
    attempts: int = 0
    next_attempt_at: datetime | None = None
    last_error: str | None = None


def write(conn: Connection, destination: str, writes: Sequence[Write], now: datetime) -> None:
    """Apply ledger changes (upserts and deletes); rows stored under merged-away ids for the same (person, tag)
    are dropped, the winner's row now speaks for the contact."""
    if not writes:
        return
    pl = m.push_ledger
    _drop_merged_copies(conn, destination, writes)
    gone = [(w.person_id, w.tag) for w in writes if w.state is None]
    for chunk in _chunks(gone):
        conn.execute(
            sa.delete(pl).where(pl.c.destination == destination, sa.tuple_(pl.c.person_id, pl.c.tag).in_(list(chunk)))
        )
    rows = [
        {"destination": destination, "person_id": w.person_id, "tag": w.tag, "state": w.state.value,
         "remote_id": w.remote_id, "attempts": w.attempts, "next_attempt_at": w.next_attempt_at,
         "last_error": w.last_error, "updated_at": now}
        for w in writes if w.state is not None
    ]
    if not rows:
        return
    from sqlalchemy.dialects import postgresql, sqlite

    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(pl)
    upsert = insert.on_conflict_do_update(
        index_elements=[pl.c.destination, pl.c.person_id, pl.c.tag],
        set_={c: insert.excluded[c] for c in ("state", "remote_id", "attempts", "next_attempt_at", "last_error",
                                               "updated_at")},
    )
    for start in range(0, len(rows), _CHUNK):
        conn.execute(upsert, rows[start : start + _CHUNK])


def _drop_merged_copies(conn: Connection, destination: str, writes: Sequence[Write]) -> None:
    pl, p = m.push_ledger, m.person
    people = sorted({w.person_id for w in writes})
    for chunk in _chunks(people):
        losers = dict(conn.execute(sa.select(p.c.id, p.c.merged_into).where(p.c.merged_into.in_(chunk))).all())
        if not losers:
            continue
        tags = sorted({w.tag for w in writes if w.person_id in set(losers.values())})
        conn.execute(sa.delete(pl).where(pl.c.destination == destination, pl.c.person_id.in_(sorted(losers)),
                                         pl.c.tag.in_(tags)))


def backoff(attempts: int, base: timedelta, cap: timedelta) -> timedelta:
    """Wait before attempt ``attempts + 1``: ``base`` doubled per earlier failure, at most ``cap``."""
    wait: timedelta = min(base * (2 ** max(attempts - 1, 0)), cap)
    return wait


def remote_ids(conn: Connection, source: str, people: Iterable[int]) -> dict[int, str]:
    """Each person's id in ``source`` (a live profile; the lowest external id when a person has several)."""
    i, p = m.identity, m.person
    out: dict[int, str] = {}
    canonical = sa.func.coalesce(p.c.merged_into, p.c.id)
    for chunk in _chunks(sorted(set(people))):
        rows = conn.execute(
            sa.select(canonical, i.c.external_id)
            .select_from(i.join(p, p.c.id == i.c.person_id))
            .where(i.c.source == source, i.c.seen.is_(True), i.c.deleted.is_(False), i.c.external_id.is_not(None),
                   canonical.in_(chunk))
            .order_by(i.c.external_id)
        )
        for pid, external in rows:
            out.setdefault(int(pid), str(external))
    return out


def people_by_remote(conn: Connection, source: str, external_ids: Iterable[str]) -> dict[str, int]:
    """The person of each of ``source``'s external ids."""
    i, p = m.identity, m.person
    out: dict[str, int] = {}
    canonical = sa.func.coalesce(p.c.merged_into, p.c.id)
    for chunk in _chunks(sorted(set(external_ids))):
        rows = conn.execute(
            sa.select(i.c.external_id, canonical).select_from(i.join(p, p.c.id == i.c.person_id))
            .where(i.c.source == source, i.c.external_id.in_(chunk))
        )
        out.update({str(e): int(pid) for e, pid in rows})
    return out


def people_by_email(conn: Connection, emails: Iterable[str]) -> dict[str, int]:
    """The live person of each normalized email (the lowest id when several people share one)."""
    i, p = m.identity, m.person
    out: dict[str, int] = {}
    canonical = sa.func.coalesce(p.c.merged_into, p.c.id)
    for chunk in _chunks(sorted(set(emails))):
        rows = conn.execute(
            sa.select(i.c.email, sa.func.min(canonical)).select_from(i.join(p, p.c.id == i.c.person_id))
            .where(i.c.email.in_(chunk)).group_by(i.c.email)
        )
        out.update({str(e): int(pid) for e, pid in rows})
    return out


def _chunks(items: Sequence[object]) -> Iterator[Sequence[object]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def counts(entries: Mapping[tuple[int, str], Entry]) -> dict[str, dict[str, int]]:
    """Per tag, the number of rows in each state (for status and the guards)."""
    out: dict[str, dict[str, int]] = {}
    for entry in entries.values():
        per = out.setdefault(entry.tag, {})
        per[entry.state.value] = per.get(entry.state.value, 0) + 1
    return out
