"""The store's tables, as SQLModel classes.

The classes declare the schema (and serve as read models); every write goes through SQLAlchemy Core in
:mod:`hub.store.repo` for speed. Every timestamp is a tz-aware UTC ``datetime`` (:class:`UTCDateTime`), and
JSON columns are ``JSONB`` on PostgreSQL so segmentation can query attributes in SQL.

Changing a table means a new Alembic revision in ``hub/store/migrations/versions``; a test compares these
classes with the migrated schema, so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlmodel import Field, SQLModel


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A tz-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone type, so values are stored as naive UTC text
    (which sorts and compares correctly in SQL) and come back with ``tzinfo=UTC``. Naive input is taken to
    be UTC already.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# JSON text on SQLite (queryable with its JSON functions), JSONB on PostgreSQL.
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# Money: exact NUMERIC on PostgreSQL; SQLite keeps it as REAL, which is fine for scoring sums.
Money = sa.Numeric(18, 4, asdecimal=True)
# 64-bit ids where rows are many and PostgreSQL's upserts burn sequence values on every re-pull; SQLite keeps
# INTEGER so the column stays the rowid alias (BIGINT would lose autoincrement there).
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    """The current time, tz-aware UTC."""
    return datetime.now(UTC)


def _ts(nullable: bool = False, index: bool = False) -> Any:
    return Field(default=None, sa_type=UTCDateTime, nullable=nullable, index=index)


def _json(nullable: bool = True) -> Any:
    return Field(default=None, sa_type=JSONType, nullable=nullable)


class RawRecord(SQLModel, table=True):
    """One source object as last pulled; re-pulling updates it in place (unique per source object)."""

    __tablename__ = "raw_record"
    __table_args__ = (sa.UniqueConstraint("source", "object_type", "external_id", name="uq_raw_record_key"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    source: str = Field(max_length=100)
    source_type: str = Field(max_length=50)
    object_type: str = Field(max_length=100)
    external_id: str = Field(max_length=255)
    payload: dict[str, Any] | None = _json()
    # sha256 of the canonical JSON of everything the hub derives from the record: unchanged => no write.
    content_hash: str = Field(max_length=64)
    updated_at: datetime | None = _ts(nullable=True)
    deleted: bool = False
    # The record described a person (so a later deletion without person data still deletes that profile).
    is_person: bool = False
    first_seen_at: datetime = _ts()
    changed_at: datetime = _ts()


class Person(SQLModel, table=True):
    """A unified person: the resolved view over its identities (see :mod:`hub.store.identity`).

    ``merged_into`` is set when this person was merged into another (always the lowest id); merged rows are
    kept so old ids and ``hub explain`` still resolve. ``changed_at`` moves whenever the person's profile,
    identities or activities change, so segmentation can re-evaluate only the people who changed.
    """

    __tablename__ = "person"

    id: int | None = Field(default=None, primary_key=True)
    email: str | None = Field(default=None, max_length=320, index=True)
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = Field(default=None, max_length=64)
    consent: str = Field(default="unknown", max_length=20)
    # The person's source properties merged over its profiles (first value wins, in the view's profile order).
    properties: dict[str, Any] | None = _json()
    deleted: bool = False
    merged_into: int | None = Field(default=None, foreign_key="person.id", index=True)
    created_at: datetime = _ts()
    changed_at: datetime = _ts(index=True)


class Identity(SQLModel, table=True):
    """One identity key of a person, with what that source says about them (a source profile).

    ``seen`` is true once a record of ``source`` described the person. Key-only rows (``seen`` false) come
    from an explicit link in another source's record or from an activity naming a person not pulled yet;
    they fill in when the profile arrives. ``external_id`` is NULL for an email known only from activities.
    """

    __tablename__ = "identity"
    __table_args__ = (sa.UniqueConstraint("source", "external_id", name="uq_identity_key"),)

    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    source: str = Field(max_length=100)
    external_id: str | None = Field(default=None, max_length=255)
    email: str | None = Field(default=None, max_length=320, index=True)  # normalized: the merge key
    email_seen: str | None = Field(default=None, max_length=320)  # as the source wrote it
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = Field(default=None, max_length=64)
    consent: str = Field(default="unknown", max_length=20)
    properties: dict[str, Any] | None = _json()
    seen: bool = False
    deleted: bool = False
    created_at: datetime = _ts()
    updated_at: datetime = _ts()


class PersonMerge(SQLModel, table=True):
    """Why two stored people became one, for ``hub explain``."""

    __tablename__ = "person_merge"

    id: int | None = Field(default=None, primary_key=True)
    winner_id: int = Field(foreign_key="person.id", index=True)
    loser_id: int = Field(foreign_key="person.id", index=True)
    reason: str
    merged_at: datetime = _ts()


class Activity(SQLModel, table=True):
    """Something a person did; unique per (source, type, external_id), so re-pulls never double it.

    The person keys as the source gave them are kept beside ``person_id`` (which is NULL only when the
    activity named no person at all).
    """

    __tablename__ = "activity"
    __table_args__ = (
        sa.UniqueConstraint("source", "type", "external_id", name="uq_activity_key"),
        sa.Index("ix_activity_person_type_time", "person_id", "type", "occurred_at"),
        sa.Index("ix_activity_type_time", "type", "occurred_at"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=BigId)
    person_id: int | None = Field(default=None, foreign_key="person.id")
    source: str = Field(max_length=100)
    type: str = Field(max_length=50)
    external_id: str = Field(max_length=255)
    occurred_at: datetime = _ts()
    amount: Decimal | None = Field(default=None, sa_type=Money)
    currency: str | None = Field(default=None, max_length=16)
    attributes: dict[str, Any] | None = _json()
    person_external_id: str | None = Field(default=None, max_length=255)
    person_email: str | None = Field(default=None, max_length=320)
    deleted: bool = False
    updated_at: datetime = _ts()


class SyncState(SQLModel, table=True):
    """The resume point of one (source, stream), written in the same transaction as its page."""

    __tablename__ = "sync_state"
    __table_args__ = (sa.UniqueConstraint("source", "stream", name="uq_sync_state_key"),)

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=100)
    stream: str = Field(max_length=100)
    state: dict[str, Any] | None = _json()
    updated_at: datetime = _ts()


class Run(SQLModel, table=True):
    """An audit row per job (sync, push, segment, ...): when, how it ended, counts and error."""

    __tablename__ = "run"
    __table_args__ = (sa.Index("ix_run_kind_target", "kind", "target", "started_at"),)

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=30)
    target: str = Field(max_length=100)
    status: str = Field(default="running", max_length=30)
    started_at: datetime = _ts()
    finished_at: datetime | None = _ts(nullable=True)
    counts: dict[str, Any] | None = _json()
    error: str | None = None
    # The process that runs it (HOST:PID), so a run a kill left "running" can be told from a live one.
    holder: str | None = Field(default=None, max_length=200)


class SegmentMembership(SQLModel, table=True):
    """A person's stay in a segment: open (``exited_at`` NULL) while they are a member."""

    __tablename__ = "segment_membership"
    __table_args__ = (
        sa.Index("ix_membership_segment_open", "segment", "exited_at"),
        # At most one open stay per person and segment.
        sa.Index(
            "uq_membership_open",
            "person_id",
            "segment",
            unique=True,
            sqlite_where=sa.text("exited_at IS NULL"),
            postgresql_where=sa.text("exited_at IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    # No foreign key on the engine's tables (migration 0005): PostgreSQL's check locks the person row for
    # every row written, which cost more than the writes; people are never deleted, only marked.
    person_id: int = Field(index=True)
    segment: str = Field(max_length=200)
    entered_at: datetime = _ts()
    exited_at: datetime | None = _ts(nullable=True)
    # Held-out members are computed and kept, but never pushed, so the segment's lift can be measured.
    held_out: bool = False


class SegmentRun(SQLModel, table=True):
    """The size of one segment after one evaluation, and how many entered and left."""

    __tablename__ = "segment_run"
    __table_args__ = (sa.Index("ix_segment_run_segment", "segment", "evaluated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    segment: str = Field(max_length=200)
    evaluated_at: datetime = _ts()
    size: int = 0
    entered: int = 0
    exited: int = 0
    held_out: int = 0
    # The quality checks' findings for this evaluation (too small, overlap, unstable, ...).
    warnings: list[str] | None = _json()


class PushLedger(SQLModel, table=True):
    """What a destination acknowledged (or still owes) for one person's tag: the push engine's memory."""

    __tablename__ = "push_ledger"
    __table_args__ = (
        sa.UniqueConstraint("destination", "person_id", "tag", name="uq_push_ledger_key"),
        sa.Index("ix_push_ledger_state", "destination", "state", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    destination: str = Field(max_length=100)
    person_id: int = Field(foreign_key="person.id", index=True)
    tag: str = Field(max_length=200)
    state: str = Field(max_length=20)  # acknowledged / pending / retry / skipped
    remote_id: str | None = Field(default=None, max_length=255)
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    last_error: str | None = None
    updated_at: datetime = _ts()


class ConnectorLock(SQLModel, table=True):
    """One run of a connector at a time across processes; a crashed holder's lock expires."""

    __tablename__ = "connector_lock"

    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=200)
    acquired_at: datetime = _ts()
    expires_at: datetime = _ts()


class ModelArtifact(SQLModel, table=True):
    """A fitted model (CLV, churn, ...) with its parameters and a serialized blob."""

    __tablename__ = "model_artifact"
    __table_args__ = (sa.UniqueConstraint("name", "version", name="uq_model_artifact_version"),)

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=100)
    version: str = Field(max_length=50)
    created_at: datetime = _ts()
    params: dict[str, Any] | None = _json()
    blob: bytes | None = Field(default=None, sa_type=sa.LargeBinary)


class PersonFeature(SQLModel, table=True):
    """The stored features of one person at ``as_of`` (see :mod:`segment_rules.features`).

    Counts and sums are 0 rather than NULL for a person without such activities; times are NULL.
    """

    __tablename__ = "person_feature"

    # No foreign key (see SegmentMembership), and not a counter: the person's id.
    person_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    as_of: datetime = _ts()
    orders: int = 0
    # Distinct days with an order: BG/NBD counts repeat purchase days, not orders.
    order_days: int = 0
    orders_30d: int = 0
    orders_90d: int = 0
    orders_365d: int = 0
    email_opens: int = 0
    email_clicks: int = 0
    email_opens_30d: int = 0
    email_opens_90d: int = 0
    email_opens_365d: int = 0
    email_clicks_30d: int = 0
    email_clicks_90d: int = 0
    email_clicks_365d: int = 0
    email_bounces: int = 0
    email_unsubscribes: int = 0
    sessions: int = 0
    sessions_30d: int = 0
    sessions_90d: int = 0
    sessions_365d: int = 0
    page_views_90d: int = 0
    deals_won: int = 0
    monetary: Decimal = Field(default=Decimal(0), sa_type=Money)
    spend_30d: Decimal = Field(default=Decimal(0), sa_type=Money)
    spend_90d: Decimal = Field(default=Decimal(0), sa_type=Money)
    spend_365d: Decimal = Field(default=Decimal(0), sa_type=Money)
    deals_won_amount: Decimal = Field(default=Decimal(0), sa_type=Money)
    first_order_at: datetime | None = _ts(nullable=True)
    last_order_at: datetime | None = _ts(nullable=True, index=True)
    last_email_open_at: datetime | None = _ts(nullable=True)
    last_email_click_at: datetime | None = _ts(nullable=True)
    last_session_at: datetime | None = _ts(nullable=True)
    first_seen_at: datetime | None = _ts(nullable=True)
    lifecycle_stage: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=200)


class PersonScore(SQLModel, table=True):
    """The scores of one person from the latest scoring run: RFM, CLV, churn risk, cluster."""

    __tablename__ = "person_score"

    # No foreign key (see SegmentMembership), and not a counter: the person's id.
    person_id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    scored_at: datetime = _ts()
    rfm_r: int | None = None
    rfm_f: int | None = None
    rfm_m: int | None = None
    rfm_score: str | None = Field(default=None, max_length=3)
    rfm_segment: str | None = Field(default=None, max_length=50)
    clv: float | None = None
    clv_percentile: float | None = None
    clv_simple: float | None = None
    expected_orders: float | None = None
    churn_probability: float | None = None
    cluster: int | None = None


class WebhookEvent(SQLModel, table=True):
    """A segment entry or exit waiting for (or done with) delivery to one outgoing webhook."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        sa.UniqueConstraint("webhook", "event_key", name="uq_webhook_event_key"),
        sa.Index("ix_webhook_event_due", "webhook", "delivered_at", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    webhook: str = Field(max_length=100)
    # "<stay id>:entered" or "<stay id>:exited": one event per membership change, whatever reruns happen.
    event_key: str = Field(max_length=100)
    payload: dict[str, Any] | None = _json()
    attempts: int = 0
    next_attempt_at: datetime | None = _ts(nullable=True)
    delivered_at: datetime | None = _ts(nullable=True)
    last_error: str | None = None
    created_at: datetime = _ts()


class ConnectorHealth(SQLModel, table=True):
    """How a source or destination has been doing under the daemon: the failure breaker and its heartbeat.

    ``consecutive_failures`` counts runs failed in a row; past the configured threshold (or at once on a
    ConfigError) the connector is ``paused`` with ``paused_reason`` until a run succeeds or ``hub resume``.
    """

    __tablename__ = "connector_health"

    name: str = Field(primary_key=True, max_length=120)  # "source:crm", "destination:crm-tags"
    consecutive_failures: int = 0
    paused: bool = False
    paused_reason: str | None = None
    last_run_at: datetime | None = _ts(nullable=True)
    last_success_at: datetime | None = _ts(nullable=True)
    last_error: str | None = None
    last_error_at: datetime | None = _ts(nullable=True)
    next_run_at: datetime | None = _ts(nullable=True)


def table(model: type[SQLModel]) -> sa.Table:
    """The Core ``Table`` of a model class (the writers use Core statements, not ORM objects)."""
    result = model.__table__  # type: ignore[attr-defined]
    assert isinstance(result, sa.Table)
    return result


def metadata() -> sa.MetaData:
    """The metadata holding the store's tables (for Alembic comparisons)."""
    return SQLModel.metadata


raw_record = table(RawRecord)
person = table(Person)
identity = table(Identity)
person_merge = table(PersonMerge)
activity = table(Activity)
sync_state = table(SyncState)
run = table(Run)
segment_membership = table(SegmentMembership)
segment_run = table(SegmentRun)
push_ledger = table(PushLedger)
connector_lock = table(ConnectorLock)
model_artifact = table(ModelArtifact)
person_feature = table(PersonFeature)
person_score = table(PersonScore)
webhook_event = table(WebhookEvent)
connector_health = table(ConnectorHealth)

# The tables of this store, in creation order (every FK points backwards in this tuple).
TABLES = (
    raw_record,
    person,
    identity,
    person_merge,
    activity,
    sync_state,
    run,
    segment_membership,
    segment_run,
    push_ledger,
    connector_lock,
    model_artifact,
    person_feature,
    person_score,
    webhook_event,
    connector_health,
)
