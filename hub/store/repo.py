"""The store's writers and readers of pulled data, runs, locks and sync state.

Every write to the store, here or elsewhere, runs in :meth:`Store.transaction`. The rows of pulled data
(raw records, people, identities, activities, sync state) are written only here (with :mod:`hub.store.bulk`,
its bulk statements); the segmentation engine (features, scores, memberships), the push ledger and the
daemon's health rows write their own tables, each through a :meth:`Store.transaction`.

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

The page's rows go through :mod:`hub.store.bulk`: tuples already in the driver's form, executemany on SQLite
and COPY through a temporary table on PostgreSQL, because SQLAlchemy's per-row parameter processing cost more
than the database itself. Lookups are chunked ``IN`` queries run the same way. Everything else uses SQLAlchemy
Core; nothing builds an ORM object per row.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from hub.contracts import ActivityData, Page, PersonData, Record
from hub.process import this_process
from hub.redact import redact
from hub.store import engine as engine_mod
from hub.store import identity as ident
from hub.store import models as m
from hub.store.bulk import Bulk, for_dialect, json_value

logger = logging.getLogger(__name__)

# Serializes identity resolution across processes on PostgreSQL: two syncs creating the same email at once
# would otherwise each make a person. SQLite needs nothing: BEGIN IMMEDIATE already admits one writer.
_PG_IDENTITY_LOCK = 0x4855_4222
# Rows per IN (...) lookup: below SQLite's default variable limit (32,766) and PostgreSQL's (65,535).
CHUNK = 5_000
T = TypeVar("T")
# normalize_email is pure and called for every activity; customers recur across pages.
_normalize_email = functools.lru_cache(maxsize=1 << 16)(ident.normalize_email)


def _bulk_columns(table: sa.Table, names: str) -> tuple[str, ...]:
    """The column order of ``table``'s bulk rows: ``names``, which must be all its columns but ``id``.

    Bulk rows are plain tuples, so a column added to the table without being added here would shift values
    into the wrong columns; this fails at import instead.
    """
    columns = tuple(names.split())
    expected = {c.name for c in table.columns} - {"id"}
    if set(columns) != expected or len(columns) != len(expected):
        raise RuntimeError(f"bulk columns of {table.name} out of date: {sorted(expected ^ set(columns))}")
    return columns


def _updated(columns: tuple[str, ...], keep: str) -> tuple[str, ...]:
    """The columns an upsert overwrites: all but the key and those that keep their first value."""
    fixed = set(keep.split())
    return tuple(c for c in columns if c not in fixed)


_RAW_COLUMNS = _bulk_columns(
    m.raw_record,
    "source source_type object_type external_id payload content_hash updated_at deleted is_person "
    "first_seen_at changed_at",
)
_RAW_KEY = ("source", "object_type", "external_id")
_RAW_UPDATE = _updated(_RAW_COLUMNS, "source object_type external_id first_seen_at")
_IDENTITY_COLUMNS = _bulk_columns(
    m.identity,
    "person_id source external_id email email_seen first_name last_name phone consent properties seen deleted "
    "created_at updated_at",
)
_IDENTITY_KEY = ("source", "external_id")
_IDENTITY_UPDATE = _updated(_IDENTITY_COLUMNS, "source external_id created_at")
_ACTIVITY_COLUMNS = _bulk_columns(
    m.activity,
    "person_id source type external_id occurred_at amount currency attributes person_external_id person_email "
    "deleted updated_at",
)
_ACTIVITY_KEY = ("source", "type", "external_id")
_ACTIVITY_UPDATE = _updated(_ACTIVITY_COLUMNS, "source type external_id")
_NEW_PERSON_COLUMNS = ("id", "consent", "deleted", "created_at", "changed_at")
_JSON_NULL = json_value(None)
_PERSON_VIEW_COLUMNS = (
    "email", "first_name", "last_name", "phone", "consent", "deleted", "properties", "changed_at"
)


# ----------------------------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class RunningRun:
    """A run whose row says ``running``: its kind, target and the process (``HOST:PID``) that started it."""

    id: int
    kind: str
    target: str
    holder: str | None


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
    # The stored hashes of every existing store depend on this exact text: changing it (key order,
    # separators, how a value is written) would make the next re-pull rewrite every record.
    return hashlib.sha256(engine_mod.canonical_dumps(doc).encode()).hexdigest()


def _person_doc(p: PersonData | None) -> list[Any] | None:
    if p is None:
        return None
    return [p.email, p.first_name, p.last_name, p.phone, p.consent.value, p.properties, p.links]


def _activity_doc(a: ActivityData) -> list[Any]:
    amount = str(a.amount) if a.amount is not None else None
    occurred = a.occurred_at
    return [
        a.type,
        a.external_id,
        # What json_default would write, without a call back from the encoder per activity.
        occurred.isoformat() if isinstance(occurred, date) else occurred,
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
        self._bulk = for_dialect(engine.dialect)

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
    def write_connection(self) -> Iterator[Connection]:
        """A connection whose transactions are write transactions (``BEGIN IMMEDIATE`` on SQLite), for a
        caller that begins, commits or rolls back itself."""
        with self.engine.connect() as conn:
            conn.execution_options(**{engine_mod.WRITE_OPTION: True})
            yield conn

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back when it raises.

        Every write to the store goes through one. On SQLite it takes the write lock at its start, so two
        writers queue on the busy timeout instead of failing half-way with "database is locked".
        """
        with self.write_connection() as conn, conn.begin():
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
        with self.transaction() as conn:
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

    def start_run(self, kind: str, target: str, holder: str | None = None) -> int:
        """Open an audit row for a job (``kind``: sync, push, ...; ``target``: a source or destination).

        ``holder`` names the process running it (default: this one), so a run a crash leaves ``running`` can
        be told apart from one still going (:func:`hub.locks.close_dead_runs`).
        """
        with self.transaction() as conn:
            run_id = conn.execute(
                sa.insert(m.run)
                .values(kind=kind, target=target, status="running", started_at=m.utcnow(),
                        holder=holder or this_process())
                .returning(m.run.c.id)
            ).scalar_one()
        return int(run_id)

    def running_runs(self) -> list[RunningRun]:
        """The runs whose row still says ``running``, oldest first."""
        t = m.run
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(t.c.id, t.c.kind, t.c.target, t.c.holder).where(t.c.status == "running").order_by(t.c.id)
            ).all()
        return [RunningRun(int(r.id), r.kind, r.target, r.holder) for r in rows]

    def mark_runs_interrupted(self, run_ids: Sequence[int]) -> None:
        """Close runs whose process is gone as ``interrupted`` (only those still ``running``)."""
        t = m.run
        with self.transaction() as conn:
            conn.execute(
                sa.update(t)
                .where(t.c.id.in_(list(run_ids)), t.c.status == "running")
                .values(status="interrupted", finished_at=m.utcnow(),
                        error="the process running it was killed or crashed; the next run resumed from its last "
                              "committed page")
            )

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
        with self.transaction() as conn:
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
        with self.transaction() as conn:
            conn.execute(stmt)
            current = conn.execute(sa.select(t.c.holder).where(t.c.name == name)).scalar_one()
        return bool(current == holder)

    def lock_holder(self, name: str) -> str | None:
        """Who holds lock ``name`` (expired or not), or None."""
        t = m.connector_lock
        with self.engine.connect() as conn:
            holder = conn.execute(sa.select(t.c.holder).where(t.c.name == name)).scalar_one_or_none()
        return str(holder) if holder is not None else None

    def live_lock_holders(self) -> dict[str, str]:
        """Holders of the locks that have not expired, by lock name."""
        t = m.connector_lock
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(t.c.name, t.c.holder).where(t.c.expires_at >= m.utcnow())).all()
        return {str(r.name): str(r.holder) for r in rows}

    def take_over_lock(self, name: str, previous: str, holder: str, ttl: timedelta) -> bool:
        """Give lock ``name`` to ``holder`` if ``previous`` still holds it (a holder known to be dead)."""
        t = m.connector_lock
        now = m.utcnow()
        with self.transaction() as conn:
            taken = conn.execute(
                sa.update(t)
                .where(t.c.name == name, t.c.holder == previous)
                .values(holder=holder, acquired_at=now, expires_at=now + ttl)
            ).rowcount
        return bool(taken)

    def release_lock(self, name: str, holder: str) -> None:
        """Release lock ``name`` if ``holder`` holds it."""
        t = m.connector_lock
        with self.transaction() as conn:
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
        with self.transaction() as conn:
            changed = self._write_raw(conn, source, source_type, prepared, now, stats)
            if changed:
                if conn.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_IDENTITY_LOCK})
                _PageWriter(conn, self._bulk, source, now, stats).run(changed)
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
        stored = _stored_hashes(conn, self._bulk, source, prepared)
        changed: list[_Prepared] = []
        rows: list[tuple[Any, ...]] = []
        ts = self._bulk.ts
        stamp = ts(now)
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
                (
                    source,
                    source_type,
                    r.object_type,
                    r.external_id,
                    json_value(dict(r.payload)),
                    p.content_hash,
                    ts(r.updated_at),
                    r.deleted,
                    r.person is not None or (r.deleted and was_person),
                    stamp,  # first_seen_at: the upsert keeps the stored one
                    stamp,
                )
            )
        self._bulk.insert(conn, m.raw_record, _RAW_COLUMNS, rows, conflict=_RAW_KEY, update=_RAW_UPDATE)
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

    def __init__(self, conn: Connection, bulk: Bulk, source: str, now: datetime, stats: PageStats) -> None:
        self.conn = conn
        self.bulk = bulk
        self.source = source
        self.now = now
        self.stamp = bulk.ts(now)  # ``now`` as the bulk rows carry it
        self.stats = stats
        self.resolver = ident.Resolver()
        self.stored_ids: set[ident.IdKey] = set()
        self.stored_person: dict[ident.IdKey, int] = {}
        self.real: dict[int, int] = {}  # resolver ref -> person id
        # The person each activity person key resolved to in this page: ("id", external id) or ("email", email).
        self._resolved: dict[tuple[str, str], int] = {}

    @staticmethod
    def email(raw: str | None) -> str | None:
        """:func:`hub.store.identity.normalize_email`, remembered across pages (the orders of one customer
        all carry the same address, and the function walks every character)."""
        return None if raw is None else _normalize_email(raw)

    def run(self, changed: list[_Prepared]) -> None:
        profiles = [p for p in changed if p.record.person is not None]
        for p in profiles:
            p.person_email = self.email(p.record.person.email if p.record.person else None)
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
                elif (email := self.email(a.person_email)) is not None:
                    emails.add(email)
        ids[self.source].update(gone)
        for src, keys in ids.items():
            for chunk in _chunks(sorted(keys)):
                self._take(self._identities("external_id", chunk, src))
        for chunk in _chunks(sorted(emails)):
            self._take(self._identities("email", chunk))
        # An activity naming a person id not stored yet seeds that person with its email (_activity_ref), so
        # whoever already has that email must be loaded too, or the store would get a second person for it.
        seeds: set[str] = set()
        for p in changed:
            for a in p.record.activities:
                if a.person_external_id is not None and (self.source, a.person_external_id) not in self.stored_ids:
                    email = self.email(a.person_email)
                    if email is not None and email not in emails:
                        seeds.add(email)
        for chunk in _chunks(sorted(seeds)):
            self._take(self._identities("email", chunk))

    def _identities(self, column: str, values: Sequence[str], source: str | None = None) -> list[tuple[Any, ...]]:
        """(person_id, source, external_id, email) of the identities whose ``column`` (``email``, or
        ``external_id`` of ``source``) is one of ``values``.

        In the order of the lookup's index, (value, id), on both backends: the first identity loaded names
        its person in merge reasons, and the physical order of rows (which differs by how they were
        written, and moves with VACUUM) must not choose it.
        """
        bulk = self.bulk
        columns = ("person_id", "source", "external_id", "email")
        if source is not None:  # (source, external_id) is unique
            return bulk.by_unique_key(self.conn, "identity", columns, [("source", source)], column, values)
        test, params = bulk.in_(values, "varchar")
        sql = (
            f"SELECT {', '.join(columns)} FROM identity WHERE {column}{test} ORDER BY {bulk.binary(column)}, id"
        )
        return bulk.rows(self.conn, sql, params)

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
        email = self.email(a.person_email)
        if a.person_external_id is not None:
            memo = ("id", a.person_external_id)
        elif email is not None:
            memo = ("email", email)
        else:
            self.stats.activities_unlinked += 1
            return _ActivityRef(a, deleted, None, None, False)
        # A key this page already resolved, to a person not merged away since, resolves to that person again
        # and changes nothing in the resolver (its keys point at that person alone): skip the work. The key
        # is known by then, so the activity brings no new key.
        ref = self._resolved.get(memo)
        if ref is not None and self.resolver.find(ref) == ref:
            return _ActivityRef(a, deleted, email, ref, False)
        if a.person_external_id is not None:
            new_key = not self.resolver.known(ident.id_key(self.source, a.person_external_id))
            # A known profile is authoritative: the activity's email only seeds a person not seen yet.
            claim = ident.Claim(self.source, a.person_external_id, email if new_key else None)
        else:
            assert email is not None  # the memo key above
            new_key = not self.resolver.known(ident.email_key(email))
            claim = ident.Claim(self.source, None, email)
        ref = self._resolved[memo] = self.resolver.resolve(claim)
        return _ActivityRef(a, deleted, email, ref, new_key)

    # -- people

    def _create_people(self) -> None:
        new = self.resolver.new_people
        if not new:
            return
        # The ids are taken first and inserted explicitly: the same ids the database would have given the
        # rows, without an INSERT .. RETURNING (which SQLite runs one row at a time).
        ids = self.bulk.reserve_ids(self.conn, m.person, len(new))
        stamp = self.stamp
        rows = [(person_id, "unknown", False, stamp, stamp) for person_id in ids]
        self.bulk.insert(self.conn, m.person, _NEW_PERSON_COLUMNS, rows)
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
        rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        stamp = self.stamp
        for p, ref in zip(profiles, refs, strict=True):
            person = p.record.person
            assert person is not None
            rows[(self.source, p.record.external_id)] = (
                self.person_of(ref),
                self.source,
                p.record.external_id,
                p.person_email,
                person.email,
                person.first_name or None,
                person.last_name or None,
                person.phone or None,
                person.consent.value,
                json_value(dict(person.properties)),
                True,  # seen
                p.record.deleted,
                stamp,  # created_at: the upsert keeps the stored one
                stamp,
            )
        self.bulk.insert(
            self.conn,
            m.identity,
            _IDENTITY_COLUMNS,
            list(rows.values()),
            conflict=_IDENTITY_KEY,
            update=_IDENTITY_UPDATE,
        )

    def _write_key_only(
        self, profiles: list[_Prepared], refs: list[int], activities: list[_ActivityRef]
    ) -> None:
        """Identity rows for keys this page introduced without a profile: links and activity references."""
        described = {(self.source, p.record.external_id) for p in profiles}
        rows: dict[tuple[str, str], tuple[Any, ...]] = {}
        email_only: dict[str, tuple[Any, ...]] = {}
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
        self.bulk.insert(self.conn, m.identity, _IDENTITY_COLUMNS, list(rows.values()), conflict=_IDENTITY_KEY)
        self.bulk.insert(self.conn, m.identity, _IDENTITY_COLUMNS, list(email_only.values()))

    def _key_row(
        self,
        source: str,
        external_id: str | None,
        person_id: int,
        email: str | None = None,
        email_seen: str | None = None,
    ) -> tuple[Any, ...]:
        """A key-only identity row (in :data:`_IDENTITY_COLUMNS` order): no names, unknown consent."""
        stamp = self.stamp
        return (
            person_id,
            source,
            external_id,
            email,
            email_seen,
            None,
            None,
            None,
            "unknown",
            _JSON_NULL,  # properties
            False,  # seen
            False,  # deleted
            stamp,
            stamp,
        )

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
        profiles: dict[int, list[ident.Profile]] = defaultdict(list)
        bulk = self.bulk
        for chunk in _chunks(people):
            test, params = bulk.in_(chunk, "integer")
            sql = (
                "SELECT person_id, source, external_id, email, first_name, last_name, phone, consent, seen, deleted, "
                f"properties FROM identity WHERE person_id{test}"
            )
            for pid, source, external_id, email, first, last, phone, consent, seen, deleted, props in bulk.rows(
                self.conn, sql, params
            ):
                profiles[pid].append(
                    ident.Profile(
                        source=source,
                        external_id=external_id,
                        email=email,
                        first_name=first,
                        last_name=last,
                        phone=phone,
                        consent=consent,
                        seen=bool(seen),  # SQLite returns 0/1
                        deleted=bool(deleted),
                        properties=_json_object(props),
                    )
                )
        rows = []
        stamp = self.stamp
        for pid in people:
            view = ident.person_view(profiles.get(pid, []))
            props = json_value(view.properties) if view.properties else _JSON_NULL
            rows.append(
                (pid, view.email, view.first_name, view.last_name, view.phone, view.consent, view.deleted, props, stamp)
            )
        self.bulk.update(self.conn, m.person, "id", _PERSON_VIEW_COLUMNS, rows)

    # -- activities

    def _write_activities(self, activities: list[_ActivityRef]) -> set[int]:
        """Upsert the page's activities; return the people they point at."""
        if not activities:
            return set()
        touched: set[int] = set()
        rows = []
        source, stamp, ts, money, person_of = self.source, self.stamp, self.bulk.ts, self.bulk.money, self.person_of
        for ref in activities:
            a = ref.activity
            person_id = person_of(ref.ref) if ref.ref is not None else None
            if person_id is not None:
                touched.add(person_id)
            rows.append(
                (
                    person_id,
                    source,
                    a.type,
                    a.external_id,
                    ts(a.occurred_at),
                    money(a.amount),
                    a.currency,
                    json_value(dict(a.attributes)) if a.attributes else _JSON_NULL,
                    a.person_external_id,
                    ref.email,
                    ref.deleted,
                    stamp,
                )
            )
        self.bulk.insert(
            self.conn, m.activity, _ACTIVITY_COLUMNS, rows, conflict=_ACTIVITY_KEY, update=_ACTIVITY_UPDATE
        )
        self.stats.activities_written += len(rows)
        return touched

    def _touch(self, people: list[int]) -> None:
        """Move ``changed_at`` of people whose activities changed, so segmentation re-evaluates them."""
        bulk = self.bulk
        for chunk in _chunks(people):
            test, params = bulk.in_(chunk, "integer")
            sql = f"UPDATE person SET changed_at = {bulk.placeholder} WHERE id{test}"
            self.conn.exec_driver_sql(sql, (self.stamp, *params))


def _json_object(value: Any) -> dict[str, Any] | None:
    """A JSON column read through the raw driver: text on SQLite, already decoded on PostgreSQL."""
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else None


def _stored_hashes(
    conn: Connection, bulk: Bulk, source: str, prepared: list[_Prepared]
) -> dict[tuple[str, str], tuple[str, bool]]:
    """(object_type, external_id) -> (content hash, is_person) of the page's records already stored."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for p in prepared:
        by_type[p.record.object_type].append(p.record.external_id)
    out: dict[tuple[str, str], tuple[str, bool]] = {}
    columns = ("external_id", "content_hash", "is_person")
    for object_type, ids in by_type.items():
        fixed = [("source", source), ("object_type", object_type)]
        for chunk in _chunks(ids):
            for external_id, digest, is_person in bulk.by_unique_key(
                conn, "raw_record", columns, fixed, "external_id", chunk
            ):
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
