"""The store's writers and readers: the only code that writes SQL.

:meth:`Store.commit_page` is the heart. One page and its stream state go into one transaction:

1. raw records are hashed (canonical JSON of everything the hub derives from them); a record whose hash is
   unchanged is skipped entirely, so a re-pull of the same data writes nothing but the state;
2. the page's person claims are resolved against the identities they touch (:mod:`hub.store.identity`),
   creating people, attaching profiles, merging people and logging why;
3. activities are upserted on (source, type, external_id), pointing at their person;
4. the stream state is upserted.

Activities never wait for their person: an activity naming a person the store has not seen yet creates that
person at once from the keys it carries (a key-only identity, ``seen`` false). When the profile record
arrives later it lands on that same identity row, so nothing needs re-attaching. Only an activity naming no
person at all is kept with ``person_id`` NULL.

Writes use SQLAlchemy Core bulk statements (executemany, ``INSERT .. ON CONFLICT``) and chunked ``IN``
lookups, never an ORM object per row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub.contracts import ActivityData, Page, PersonData, Record
from hub.redact import redact
from hub.store import engine as engine_mod
from hub.store import identity as ident
from hub.store import models as m

logger = logging.getLogger(__name__)

# Serializes identity resolution across processes on PostgreSQL: two syncs creating the same email at once
# would otherwise each make a person. SQLite needs nothing: BEGIN IMMEDIATE already admits one writer.
_PG_IDENTITY_LOCK = 0x4855_4222
# Rows per IN (...) lookup: below SQLite's default variable limit (32,766) and PostgreSQL's (65,535).
CHUNK = 5_000
T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- results


@dataclass
class PageStats:
    """What one committed page did (integer fields are summed into the run's counts)."""

    records_new: int = 0
    records_changed: int = 0
    records_unchanged: int = 0
    records_deleted: int = 0
    people_created: int = 0
    people_merged: int = 0
    activities_written: int = 0
    activities_unlinked: int = 0


@dataclass
class StoreSummary:
    """Counts for ``hub status``.

    Args:
        people: active people (not merged away, not deleted).
        merged: people merged into another.
        deleted_people: people all of whose profiles were deleted.
        identities: source profiles per source (rows a source actually described).
        key_only_identities: identity keys known only from links or activities, not yet pulled.
        raw_records: raw records per ``source/object_type``, deleted ones included.
        raw_deleted: of those, the ones the source reported deleted.
        activities: activities per type.
        last_runs: the latest run of each (kind, target).
        sample_email: the email of a person assembled from the most source profiles (a good first
            ``hub explain``), or None when the store has no people with an email.
    """

    people: int = 0
    merged: int = 0
    deleted_people: int = 0
    identities: dict[str, int] = field(default_factory=dict)
    key_only_identities: int = 0
    raw_records: dict[str, int] = field(default_factory=dict)
    raw_deleted: dict[str, int] = field(default_factory=dict)
    activities: dict[str, int] = field(default_factory=dict)
    last_runs: list[dict[str, Any]] = field(default_factory=list)
    sample_email: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able view (timestamps as ISO 8601)."""
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


@dataclass
class IdentityInfo:
    """One identity of an explained person."""

    source: str
    external_id: str | None
    email_seen: str | None
    email: str | None
    consent: str
    seen: bool
    deleted: bool
    updated_at: datetime | None


@dataclass
class MergeInfo:
    """One logged merge into an explained person."""

    winner_id: int
    loser_id: int
    reason: str
    merged_at: datetime | None


@dataclass
class PersonExplanation:
    """How a person was assembled, for ``hub explain``."""

    person_id: int
    email: str | None
    first_name: str | None
    last_name: str | None
    phone: str | None
    consent: str
    deleted: bool
    created_at: datetime | None
    changed_at: datetime | None
    merged_ids: list[int]
    identities: list[IdentityInfo]
    merges: list[MergeInfo]
    activities: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-able view (timestamps as ISO 8601)."""
        result: dict[str, Any] = _jsonable(asdict(self))
        return result


def _jsonable(value: Any) -> Any:
    result: Any = json.loads(engine_mod.dumps(value))
    return result


# ----------------------------------------------------------------------------------------------- page prep


@dataclass(slots=True)
class _Prepared:
    record: Record
    content_hash: str
    person_email: str | None = None


def content_hash(record: Record) -> str:
    """sha256 of the canonical JSON of what the hub derives from ``record``.

    The source's ``updated_at`` is left out on purpose: a touched-but-identical record is not a change.
    Person and activities are in, so a changed column mapping is picked up on a full re-pull.
    """
    doc = [
        record.payload,
        record.deleted,
        _person_doc(record.person),
        [_activity_doc(a) for a in record.activities],
    ]
    text = json.dumps(
        doc, sort_keys=True, default=engine_mod.json_default, ensure_ascii=False, separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _person_doc(p: PersonData | None) -> list[Any] | None:
    if p is None:
        return None
    return [p.email, p.first_name, p.last_name, p.phone, p.consent.value, p.properties, p.links]


def _activity_doc(a: ActivityData) -> list[Any]:
    amount = str(a.amount) if a.amount is not None else None
    return [
        a.type,
        a.external_id,
        a.occurred_at,
        amount,
        a.currency,
        a.attributes,
        a.person_external_id,
        a.person_email,
    ]


def _prepare(records: Sequence[Record]) -> list[_Prepared]:
    # The last copy of a record in a page wins, as if the page had been two pages.
    latest: dict[tuple[str, str], Record] = {}
    for record in records:
        latest[(record.object_type, record.external_id)] = record
    return [_Prepared(r, content_hash(r)) for r in latest.values()]


def _chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ----------------------------------------------------------------------------------------------- the store


class Store:
    """The store: one engine and the operations the rest of the hub needs.

    Args:
        engine: an engine from :func:`hub.store.engine.create_engine`.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    # -- schema

    def upgrade(self) -> None:
        """Apply pending migrations (``alembic upgrade head``); a no-op when the schema is current."""
        engine_mod.upgrade(self.engine)

    def current_revision(self) -> str | None:
        """The schema's migration revision, or None for an empty database."""
        return engine_mod.current_revision(self.engine)

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            conn.execution_options(**{engine_mod.WRITE_OPTION: True})
            with conn.begin():
                yield conn

    # -- sync state

    def get_state(self, source: str, stream: str) -> dict[str, Any] | None:
        """The stored state of (source, stream), or None before its first committed page."""
        t = m.sync_state
        with self.engine.connect() as conn:
            state = conn.execute(
                sa.select(t.c.state).where(t.c.source == source, t.c.stream == stream)
            ).scalar_one_or_none()
        return dict(state) if state is not None else None

    def reset_state(self, source: str, stream: str | None = None) -> None:
        """Forget the state of one stream (or every stream of ``source``), for ``hub sync --full``."""
        t = m.sync_state
        condition = t.c.source == source
        if stream is not None:
            condition = condition & (t.c.stream == stream)
        with self._write() as conn:
            conn.execute(sa.delete(t).where(condition))

    def _write_state(
        self, conn: Connection, source: str, stream: str, state: Mapping[str, Any] | None, now: datetime
    ) -> None:
        if state is None:
            return
        t = m.sync_state
        stmt = self._insert(t).values(source=source, stream=stream, state=dict(state), updated_at=now)
        conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.source, t.c.stream],
                set_={"state": stmt.excluded.state, "updated_at": stmt.excluded.updated_at},
            )
        )

    # -- runs

    def start_run(self, kind: str, target: str) -> int:
        """Open an audit row for a job (``kind``: sync, push, ...; ``target``: a source or destination)."""
        with self._write() as conn:
            run_id = conn.execute(
                sa.insert(m.run)
                .values(kind=kind, target=target, status="running", started_at=m.utcnow())
                .returning(m.run.c.id)
            ).scalar_one()
        return int(run_id)

    def finish_run(
        self, run_id: int, status: str, counts: Mapping[str, int], error: str | None = None
    ) -> None:
        """Close a run's audit row. The error text is redacted again here: it is about to be stored."""
        values = {
            "status": status,
            "finished_at": m.utcnow(),
            "counts": dict(counts),
            "error": redact(error) if error is not None else None,
        }
        with self._write() as conn:
            conn.execute(sa.update(m.run).where(m.run.c.id == run_id).values(**values))

    # -- connector locks: one run of a connector at a time across processes

    def acquire_lock(self, name: str, holder: str, ttl: timedelta) -> bool:
        """Take (or renew) lock ``name`` for ``holder`` unless someone else holds an unexpired one."""
        t = m.connector_lock
        now = m.utcnow()
        stmt = self._insert(t).values(name=name, holder=holder, acquired_at=now, expires_at=now + ttl)
        stmt = stmt.on_conflict_do_update(
            index_elements=[t.c.name],
            set_={"holder": holder, "acquired_at": now, "expires_at": now + ttl},
            where=(t.c.expires_at < now) | (t.c.holder == holder),
        )
        with self._write() as conn:
            conn.execute(stmt)
            current = conn.execute(sa.select(t.c.holder).where(t.c.name == name)).scalar_one()
        return bool(current == holder)

    def release_lock(self, name: str, holder: str) -> None:
        """Release lock ``name`` if ``holder`` holds it."""
        t = m.connector_lock
        with self._write() as conn:
            conn.execute(sa.delete(t).where(t.c.name == name, t.c.holder == holder))

    # -- the page commit

    def commit_page(self, source: str, source_type: str, stream: str, page: Page) -> PageStats:
        """Commit a page of records and its stream state in one transaction.

        Args:
            source: the configured source name (``shop``, ``crm``): the namespace of external ids.
            source_type: its connector type, recorded on raw records.
            stream: the stream the page came from; its state is stored under (source, stream).
            page: the records and the state to store once they are committed.

        Returns:
            What the page changed. Either all of it is committed, or (on any exception) nothing.
        """
        stats = PageStats()
        prepared = _prepare(page.records)
        now = m.utcnow()
        with self._write() as conn:
            changed = self._write_raw(conn, source, source_type, prepared, now, stats)
            if changed:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_IDENTITY_LOCK})
                _PageWriter(conn, self._insert, source, now, stats).run(changed)
            self._write_state(conn, source, stream, page.state, now)
        return stats

    def _write_raw(
        self,
        conn: Connection,
        source: str,
        source_type: str,
        prepared: list[_Prepared],
        now: datetime,
        stats: PageStats,
    ) -> list[_Prepared]:
        """Upsert the raw records whose hash changed; return those (the rest need no further work)."""
        stored = _stored_hashes(conn, source, prepared)
        changed: list[_Prepared] = []
        rows: list[dict[str, Any]] = []
        for p in prepared:
            r = p.record
            before = stored.get((r.object_type, r.external_id))
            if before is not None and before[0] == p.content_hash:
                stats.records_unchanged += 1
                continue
            was_person = before is not None and before[1]
            stats.records_new += before is None
            stats.records_changed += before is not None
            stats.records_deleted += r.deleted
            changed.append(p)
            rows.append(
                {
                    "source": source,
                    "source_type": source_type,
                    "object_type": r.object_type,
                    "external_id": r.external_id,
                    "payload": dict(r.payload),
                    "content_hash": p.content_hash,
                    "updated_at": r.updated_at,
                    "deleted": r.deleted,
                    "is_person": r.person is not None or (r.deleted and was_person),
                    "first_seen_at": now,
                    "changed_at": now,
                }
            )
        if rows:
            t = m.raw_record
            stmt = self._insert(t)
            keep = ("first_seen_at", "id", "source", "object_type", "external_id")
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=[t.c.source, t.c.object_type, t.c.external_id],
                    set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name not in keep},
                ),
                rows,
            )
        return changed

    # -- reading

    def summary(self) -> StoreSummary:
        """Counts of people, identities, raw records and activities, and the latest runs."""
        p, i, r, a = m.person, m.identity, m.raw_record, m.activity
        out = StoreSummary()
        with self.engine.connect() as conn:
            out.people = _count(conn, p, p.c.merged_into.is_(None) & p.c.deleted.is_(False))
            out.merged = _count(conn, p, p.c.merged_into.is_not(None))
            out.deleted_people = _count(conn, p, p.c.merged_into.is_(None) & p.c.deleted.is_(True))
            out.identities = _grouped(conn, [i.c.source], i.c.seen.is_(True))
            out.key_only_identities = _count(conn, i, i.c.seen.is_(False))
            out.raw_records = _grouped(conn, [r.c.source, r.c.object_type], None)
            out.raw_deleted = _grouped(conn, [r.c.source, r.c.object_type], r.c.deleted.is_(True))
            out.activities = _grouped(conn, [a.c.type], None)
            out.last_runs = _last_runs(conn)
            out.sample_email = _sample_email(conn)
        return out

    def explain_person(self, email_or_id: str) -> PersonExplanation | None:
        """How the person named by an email, a person id or ``source:external_id`` was assembled."""
        with self.engine.connect() as conn:
            person_id = _find_person(conn, email_or_id.strip())
            if person_id is None:
                return None
            return _explain(conn, person_id)


# ----------------------------------------------------------------------------------------------- page writer


@dataclass(slots=True)
class _ActivityRef:
    """An activity and the person reference (resolver ref) it resolved to."""

    activity: ActivityData
    deleted: bool
    email: str | None
    ref: int | None
    new_key: bool  # the activity introduced its person key: it needs a key-only identity row


class _PageWriter:
    """Identity resolution and activity upserts for the changed records of one page (one transaction)."""

    def __init__(self, conn: Connection, insert: Any, source: str, now: datetime, stats: PageStats) -> None:
        self.conn = conn
        self.insert = insert
        self.source = source
        self.now = now
        self.stats = stats
        self.resolver = ident.Resolver()
        self.stored_ids: set[ident.IdKey] = set()
        self.stored_person: dict[ident.IdKey, int] = {}
        self.real: dict[int, int] = {}  # resolver ref -> person id

    def run(self, changed: list[_Prepared]) -> None:
        profiles = [p for p in changed if p.record.person is not None]
        for p in profiles:
            p.person_email = ident.normalize_email(p.record.person.email if p.record.person else None)
        gone = [p.record.external_id for p in changed if p.record.person is None and p.record.deleted]
        self._load(profiles, changed, gone)
        profile_refs = [self.resolver.resolve(self._claim(p)) for p in profiles]
        activities = self._resolve_activities(changed)
        self._create_people()
        self._apply_merges()
        dirty = {self.person_of(ref) for ref in profile_refs}
        self._write_profiles(profiles, profile_refs)
        self._write_key_only(profiles, profile_refs, activities)
        dirty |= self._delete_gone(gone)
        dirty |= {self.real[ref] for ref in self.resolver.new_people}
        dirty |= {self.person_of(mg.winner) for mg in self.resolver.merges}
        self._refresh_people(sorted(dirty))
        touched = self._write_activities(activities)
        self._touch(sorted(touched - dirty))

    def person_of(self, ref: int) -> int:
        """The stored person id a resolver reference ended up as."""
        root = self.resolver.find(ref)
        return self.real.get(root, root)

    # -- resolution

    def _claim(self, p: _Prepared) -> ident.Claim:
        person = p.record.person
        assert person is not None
        links = tuple(
            sorted((s, e) for s, e in person.links.items() if (s, e) != (self.source, p.record.external_id))
        )
        return ident.Claim(self.source, p.record.external_id, p.person_email, links)

    def _load(self, profiles: list[_Prepared], changed: list[_Prepared], gone: list[str]) -> None:
        """Load every stored identity any key of this page can reach."""
        ids: dict[str, set[str]] = defaultdict(set)
        emails: set[str] = set()
        for p in profiles:
            person = p.record.person
            assert person is not None
            ids[self.source].add(p.record.external_id)
            for s, e in person.links.items():
                ids[s].add(e)
            if p.person_email:
                emails.add(p.person_email)
        for p in changed:
            for a in p.record.activities:
                if a.person_external_id is not None:
                    ids[self.source].add(a.person_external_id)
                elif (email := ident.normalize_email(a.person_email)) is not None:
                    emails.add(email)
        ids[self.source].update(gone)
        t = m.identity
        cols = (t.c.person_id, t.c.source, t.c.external_id, t.c.email)
        for src, keys in ids.items():
            for chunk in _chunks(sorted(keys)):
                self._take(
                    self.conn.execute(sa.select(*cols).where(t.c.source == src, t.c.external_id.in_(chunk)))
                )
        for chunk in _chunks(sorted(emails)):
            self._take(self.conn.execute(sa.select(*cols).where(t.c.email.in_(chunk))))

    def _take(self, rows: Iterable[Any]) -> None:
        for person_id, source, external_id, email in rows:
            self.resolver.load(person_id, source, external_id, email)
            if external_id is not None:
                self.stored_ids.add((source, external_id))
                self.stored_person[(source, external_id)] = person_id

    def _resolve_activities(self, changed: list[_Prepared]) -> list[_ActivityRef]:
        latest: dict[tuple[str, str], _ActivityRef] = {}
        for p in changed:
            for a in p.record.activities:
                latest[(a.type, a.external_id)] = self._activity_ref(a, p.record.deleted)
        return list(latest.values())

    def _activity_ref(self, a: ActivityData, deleted: bool) -> _ActivityRef:
        email = ident.normalize_email(a.person_email)
        if a.person_external_id is not None:
            new_key = not self.resolver.known(ident.id_key(self.source, a.person_external_id))
            # A known profile is authoritative: the activity's email only seeds a person not seen yet.
            claim = ident.Claim(self.source, a.person_external_id, email if new_key else None)
        elif email is not None:
            new_key = not self.resolver.known(ident.email_key(email))
            claim = ident.Claim(self.source, None, email)
        else:
            self.stats.activities_unlinked += 1
            return _ActivityRef(a, deleted, None, None, False)
        return _ActivityRef(a, deleted, email, self.resolver.resolve(claim), new_key)

    # -- people

    def _create_people(self) -> None:
        new = self.resolver.new_people
        if not new:
            return
        rows = [
            {"consent": "unknown", "deleted": False, "created_at": self.now, "changed_at": self.now}
            for _ in new
        ]
        stmt = sa.insert(m.person).returning(m.person.c.id, sort_by_parameter_order=True)
        ids = self.conn.execute(stmt, rows).scalars().all()
        self.real = dict(zip(new, ids, strict=True))
        self.stats.people_created += len(new)

    def _apply_merges(self) -> None:
        merges = self.resolver.merges
        if not merges:
            return
        losers_by_winner: dict[int, list[int]] = defaultdict(list)
        for mg in merges:
            losers_by_winner[self.person_of(mg.winner)].append(mg.loser)
        for winner, losers in sorted(losers_by_winner.items()):
            _merge_people(self.conn, winner, sorted(losers), self.now)
        self.conn.execute(
            sa.insert(m.person_merge),
            [
                {"winner_id": mg.winner, "loser_id": mg.loser, "reason": mg.reason, "merged_at": self.now}
                for mg in merges
            ],
        )
        self.stats.people_merged += len(merges)

    def _write_profiles(self, profiles: list[_Prepared], refs: list[int]) -> None:
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for p, ref in zip(profiles, refs, strict=True):
            person = p.record.person
            assert person is not None
            rows[(self.source, p.record.external_id)] = {
                "person_id": self.person_of(ref),
                "source": self.source,
                "external_id": p.record.external_id,
                "email": p.person_email,
                "email_seen": person.email,
                "first_name": person.first_name or None,
                "last_name": person.last_name or None,
                "phone": person.phone or None,
                "consent": person.consent.value,
                "properties": dict(person.properties),
                "seen": True,
                "deleted": p.record.deleted,
                "created_at": self.now,
                "updated_at": self.now,
            }
        if not rows:
            return
        t = m.identity
        stmt = self.insert(t)
        keep = ("id", "source", "external_id", "created_at")
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.source, t.c.external_id],
                set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name not in keep},
            ),
            list(rows.values()),
        )

    def _write_key_only(
        self, profiles: list[_Prepared], refs: list[int], activities: list[_ActivityRef]
    ) -> None:
        """Identity rows for keys this page introduced without a profile: links and activity references."""
        described = {(self.source, p.record.external_id) for p in profiles}
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        email_only: dict[str, dict[str, Any]] = {}
        for p, ref in zip(profiles, refs, strict=True):
            assert p.record.person is not None
            for s, e in p.record.person.links.items():
                if (s, e) not in described and (s, e) not in self.stored_ids:
                    rows.setdefault((s, e), self._key_row(s, e, self.person_of(ref)))
        for act in activities:
            if act.ref is None or not act.new_key:
                continue
            a, person_id = act.activity, self.person_of(act.ref)
            if a.person_external_id is not None:
                k = (self.source, a.person_external_id)
                if k not in described:
                    rows.setdefault(k, self._key_row(*k, person_id, act.email, a.person_email))
            elif act.email is not None:
                email_only.setdefault(
                    act.email, self._key_row(self.source, None, person_id, act.email, a.person_email)
                )
        if rows:
            stmt = self.insert(m.identity).on_conflict_do_nothing(index_elements=["source", "external_id"])
            self.conn.execute(stmt, list(rows.values()))
        if email_only:
            self.conn.execute(sa.insert(m.identity), list(email_only.values()))

    def _key_row(
        self,
        source: str,
        external_id: str | None,
        person_id: int,
        email: str | None = None,
        email_seen: str | None = None,
    ) -> dict[str, Any]:
        return {
            "person_id": person_id,
            "source": source,
            "external_id": external_id,
            "email": email,
            "email_seen": email_seen,
            "consent": "unknown",
            "properties": None,
            "seen": False,
            "deleted": False,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _delete_gone(self, gone: list[str]) -> set[int]:
        """Mark profiles deleted whose records were deleted without person data; return their people."""
        keys = [e for e in gone if (self.source, e) in self.stored_ids]
        if not keys:
            return set()
        t = m.identity
        for chunk in _chunks(keys):
            self.conn.execute(
                sa.update(t)
                .where(t.c.source == self.source, t.c.external_id.in_(chunk))
                .values(deleted=True, updated_at=self.now)
            )
        return {self.person_of(self.stored_person[(self.source, e)]) for e in keys}

    def _refresh_people(self, people: list[int]) -> None:
        """Recompute the resolved view of ``people`` from all their identities."""
        t = m.identity
        profiles: dict[int, list[ident.Profile]] = defaultdict(list)
        cols = (
            t.c.person_id,
            t.c.source,
            t.c.external_id,
            t.c.email,
            t.c.first_name,
            t.c.last_name,
            t.c.phone,
            t.c.consent,
            t.c.seen,
            t.c.deleted,
        )
        for chunk in _chunks(people):
            for r in self.conn.execute(sa.select(*cols).where(t.c.person_id.in_(chunk))):
                profiles[r.person_id].append(
                    ident.Profile(
                        source=r.source,
                        external_id=r.external_id,
                        email=r.email,
                        first_name=r.first_name,
                        last_name=r.last_name,
                        phone=r.phone,
                        consent=r.consent,
                        seen=r.seen,
                        deleted=r.deleted,
                    )
                )
        rows = []
        for pid in people:
            view = ident.person_view(profiles.get(pid, []))
            rows.append(
                {
                    "_id": pid,
                    "email": view.email,
                    "first_name": view.first_name,
                    "last_name": view.last_name,
                    "phone": view.phone,
                    "consent": view.consent,
                    "deleted": view.deleted,
                    "changed_at": self.now,
                }
            )
        if rows:
            p = m.person
            stmt = (
                sa.update(p)
                .where(p.c.id == sa.bindparam("_id"))
                .values({k: sa.bindparam(k) for k in rows[0] if k != "_id"})
            )
            self.conn.execute(stmt, rows)

    # -- activities

    def _write_activities(self, activities: list[_ActivityRef]) -> set[int]:
        """Upsert the page's activities; return the people they point at."""
        if not activities:
            return set()
        touched: set[int] = set()
        rows = []
        for ref in activities:
            a = ref.activity
            person_id = self.person_of(ref.ref) if ref.ref is not None else None
            if person_id is not None:
                touched.add(person_id)
            rows.append(
                {
                    "person_id": person_id,
                    "source": self.source,
                    "type": a.type,
                    "external_id": a.external_id,
                    "occurred_at": a.occurred_at,
                    "amount": a.amount,
                    "currency": a.currency,
                    "attributes": dict(a.attributes) if a.attributes else None,
                    "person_external_id": a.person_external_id,
                    "person_email": ref.email,
                    "deleted": ref.deleted,
                    "updated_at": self.now,
                }
            )
        t = m.activity
        stmt = self.insert(t)
        keep = ("id", "source", "type", "external_id")
        self.conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[t.c.source, t.c.type, t.c.external_id],
                set_={c.name: stmt.excluded[c.name] for c in t.columns if c.name not in keep},
            ),
            rows,
        )
        self.stats.activities_written += len(rows)
        return touched

    def _touch(self, people: list[int]) -> None:
        """Move ``changed_at`` of people whose activities changed, so segmentation re-evaluates them."""
        p = m.person
        for chunk in _chunks(people):
            self.conn.execute(sa.update(p).where(p.c.id.in_(chunk)).values(changed_at=self.now))


def _stored_hashes(
    conn: Connection, source: str, prepared: list[_Prepared]
) -> dict[tuple[str, str], tuple[str, bool]]:
    """(object_type, external_id) -> (content hash, is_person) of the page's records already stored."""
    t = m.raw_record
    by_type: dict[str, list[str]] = defaultdict(list)
    for p in prepared:
        by_type[p.record.object_type].append(p.record.external_id)
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    for object_type, ids in by_type.items():
        for chunk in _chunks(ids):
            rows = conn.execute(
                sa.select(t.c.external_id, t.c.content_hash, t.c.is_person).where(
                    t.c.source == source, t.c.object_type == object_type, t.c.external_id.in_(chunk)
                )
            )
            for external_id, digest, is_person in rows:
                out[(object_type, external_id)] = (digest, bool(is_person))
    return out


def _merge_people(conn: Connection, winner: int, losers: list[int], now: datetime) -> None:
    """Fold ``losers`` into ``winner``: identities, activities and segment stays move; losers are marked."""
    i, a, p, sm = m.identity, m.activity, m.person, m.segment_membership
    conn.execute(sa.update(i).where(i.c.person_id.in_(losers)).values(person_id=winner, updated_at=now))
    conn.execute(sa.update(a).where(a.c.person_id.in_(losers)).values(person_id=winner))
    _close_duplicate_stays(conn, winner, losers, now)
    conn.execute(sa.update(sm).where(sm.c.person_id.in_(losers)).values(person_id=winner))
    # Keep merged_into flat (one hop) so an old id resolves in one lookup.
    conn.execute(
        sa.update(p)
        .where(p.c.id.in_(losers) | p.c.merged_into.in_(losers))
        .values(merged_into=winner, changed_at=now)
    )
    # The push ledger stays with the loser ids: those rows describe what each remote contact holds, and the
    # push engine reconciles a merged person's tags.


def _close_duplicate_stays(conn: Connection, winner: int, losers: list[int], now: datetime) -> None:
    """Of the open stays in one segment among the merged people, keep the earliest one open."""
    sm = m.segment_membership
    rows = conn.execute(
        sa.select(sm.c.id, sm.c.segment, sm.c.entered_at).where(
            sm.c.person_id.in_([winner, *losers]), sm.c.exited_at.is_(None)
        )
    ).all()
    first: dict[str, tuple[datetime, int]] = {}
    for stay_id, segment, entered_at in rows:
        if segment not in first or (entered_at, stay_id) < first[segment]:
            first[segment] = (entered_at, stay_id)
    keep = {stay_id for _, stay_id in first.values()}
    close = [row[0] for row in rows if row[0] not in keep]
    if close:
        conn.execute(sa.update(sm).where(sm.c.id.in_(close)).values(exited_at=now))


# ----------------------------------------------------------------------------------------------- readers


def _count(conn: Connection, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return int(conn.execute(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one())


def _grouped(
    conn: Connection, cols: list[sa.Column[Any]], where: sa.ColumnElement[bool] | None
) -> dict[str, int]:
    stmt = sa.select(*cols, sa.func.count()).group_by(*cols)
    if where is not None:
        stmt = stmt.where(where)
    return {"/".join(str(v) for v in row[:-1]): int(row[-1]) for row in conn.execute(stmt)}


def _last_runs(conn: Connection) -> list[dict[str, Any]]:
    r = m.run
    latest = sa.select(sa.func.max(r.c.id)).group_by(r.c.kind, r.c.target).scalar_subquery()
    rows = conn.execute(sa.select(r).where(r.c.id.in_(latest)).order_by(r.c.kind, r.c.target)).mappings()
    return [dict(row) for row in rows]


def _sample_email(conn: Connection) -> str | None:
    p, i = m.person, m.identity
    profiles = sa.func.count(i.c.id)
    row = conn.execute(
        sa.select(p.c.email)
        .join(i, i.c.person_id == p.c.id)
        .where(p.c.merged_into.is_(None), p.c.deleted.is_(False), p.c.email.is_not(None), i.c.seen.is_(True))
        .group_by(p.c.id, p.c.email)
        .order_by(profiles.desc(), p.c.id)
        .limit(1)
    ).first()
    return None if row is None else str(row[0])


def _find_person(conn: Connection, who: str) -> int | None:
    p, i = m.person, m.identity
    if who.isdigit():
        found = conn.execute(sa.select(p.c.id, p.c.merged_into).where(p.c.id == int(who))).first()
    else:
        email = ident.normalize_email(who)
        if email is not None:
            where = i.c.email == email
        elif ":" in who:
            source, _, external_id = who.partition(":")
            where = (i.c.source == source) & (i.c.external_id == external_id)
        else:
            return None
        found = conn.execute(
            sa.select(p.c.id, p.c.merged_into)
            .join(i, i.c.person_id == p.c.id)
            .where(where)
            .order_by(p.c.id)
            .limit(1)
        ).first()
    if found is None:
        return None
    return int(found[1] if found[1] is not None else found[0])


def _explain(conn: Connection, person_id: int) -> PersonExplanation | None:
    p, i, a, pm = m.person, m.identity, m.activity, m.person_merge
    row = conn.execute(sa.select(p).where(p.c.id == person_id)).mappings().first()
    if row is None:
        return None
    merged_ids = list(
        conn.execute(sa.select(p.c.id).where(p.c.merged_into == person_id).order_by(p.c.id)).scalars()
    )
    identities = [
        IdentityInfo(
            r.source, r.external_id, r.email_seen, r.email, r.consent, r.seen, r.deleted, r.updated_at
        )
        for r in conn.execute(
            sa.select(i).where(i.c.person_id == person_id).order_by(i.c.source, i.c.external_id)
        )
    ]
    merges = [
        MergeInfo(r.winner_id, r.loser_id, r.reason, r.merged_at)
        for r in conn.execute(
            sa.select(pm).where(pm.c.winner_id.in_([person_id, *merged_ids])).order_by(pm.c.id)
        )
    ]
    counts = conn.execute(
        sa.select(a.c.type, sa.func.count()).where(a.c.person_id == person_id).group_by(a.c.type)
    )
    return PersonExplanation(
        person_id=person_id,
        email=row["email"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        phone=row["phone"],
        consent=row["consent"],
        deleted=row["deleted"],
        created_at=row["created_at"],
        changed_at=row["changed_at"],
        merged_ids=merged_ids,
        identities=identities,
        merges=merges,
        activities={t: int(n) for t, n in counts},
    )
