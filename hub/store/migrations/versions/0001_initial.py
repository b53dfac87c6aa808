"""The initial schema: raw records, people and identities, activities, sync state, runs, and the tables
segmentation, the push engine and the daemon build on (segment membership and runs, push ledger, connector
locks, model artifacts).

Revision ID: 0001
Revises:
Create Date: 2025-11-22
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Column types as of this revision, spelled out here so later model changes cannot rewrite history.
TS = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(precision=18, scale=4)


def upgrade() -> None:
    op.create_table(
        "connector_lock",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("holder", sa.String(length=200), nullable=False),
        sa.Column("acquired_at", TS, nullable=False),
        sa.Column("expires_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "model_artifact",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("version", sa.String(length=50), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("params", JSON_TYPE, nullable=True),
        sa.Column("blob", sa.LargeBinary(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name", "version", name="uq_model_artifact_version"),
    )
    op.create_table(
        "person",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("consent", sa.String(length=20), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("merged_into", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["merged_into"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_person_changed_at"), "person", ["changed_at"], unique=False)
    op.create_index(op.f("ix_person_email"), "person", ["email"], unique=False)
    op.create_index(op.f("ix_person_merged_into"), "person", ["merged_into"], unique=False)
    op.create_table(
        "raw_record",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("source_type", sa.String(length=50), nullable=False),
        sa.Column("object_type", sa.String(length=100), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("updated_at", TS, nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("is_person", sa.Boolean(), nullable=False),
        sa.Column("first_seen_at", TS, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "object_type", "external_id", name="uq_raw_record_key"),
    )
    op.create_table(
        "run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=30), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=30), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.Column("counts", JSON_TYPE, nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_run_kind_target", "run", ["kind", "target", "started_at"], unique=False)
    op.create_table(
        "sync_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("stream", sa.String(length=100), nullable=False),
        sa.Column("state", JSON_TYPE, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "stream", name="uq_sync_state_key"),
    )
    op.create_table(
        "activity",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("type", sa.String(length=50), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("amount", MONEY, nullable=True),
        sa.Column("currency", sa.String(length=16), nullable=True),
        sa.Column("attributes", JSON_TYPE, nullable=True),
        sa.Column("person_external_id", sa.String(length=255), nullable=True),
        sa.Column("person_email", sa.String(length=320), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "type", "external_id", name="uq_activity_key"),
    )
    op.create_index(
        "ix_activity_person_type_time", "activity", ["person_id", "type", "occurred_at"], unique=False
    )
    op.create_index("ix_activity_type_time", "activity", ["type", "occurred_at"], unique=False)
    op.create_table(
        "identity",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("external_id", sa.String(length=255), nullable=True),
        sa.Column("email", sa.String(length=320), nullable=True),
        sa.Column("email_seen", sa.String(length=320), nullable=True),
        sa.Column("first_name", sa.String(), nullable=True),
        sa.Column("last_name", sa.String(), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("consent", sa.String(length=20), nullable=False),
        sa.Column("properties", JSON_TYPE, nullable=True),
        sa.Column("seen", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source", "external_id", name="uq_identity_key"),
    )
    op.create_index(op.f("ix_identity_email"), "identity", ["email"], unique=False)
    op.create_index(op.f("ix_identity_person_id"), "identity", ["person_id"], unique=False)
    op.create_table(
        "person_merge",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("winner_id", sa.Integer(), nullable=False),
        sa.Column("loser_id", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("merged_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["loser_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["winner_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_person_merge_loser_id"), "person_merge", ["loser_id"], unique=False)
    op.create_index(op.f("ix_person_merge_winner_id"), "person_merge", ["winner_id"], unique=False)
    op.create_table(
        "push_ledger",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(length=100), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("tag", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("remote_id", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("destination", "person_id", "tag", name="uq_push_ledger_key"),
    )
    op.create_index(op.f("ix_push_ledger_person_id"), "push_ledger", ["person_id"], unique=False)
    op.create_index(
        "ix_push_ledger_state", "push_ledger", ["destination", "state", "next_attempt_at"], unique=False
    )
    op.create_table(
        "segment_membership",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("segment", sa.String(length=200), nullable=False),
        sa.Column("entered_at", TS, nullable=False),
        sa.Column("exited_at", TS, nullable=True),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_membership_segment_open", "segment_membership", ["segment", "exited_at"], unique=False
    )
    op.create_index(
        op.f("ix_segment_membership_person_id"), "segment_membership", ["person_id"], unique=False
    )
    op.create_index(
        "uq_membership_open",
        "segment_membership",
        ["person_id", "segment"],
        unique=True,
        sqlite_where=sa.text("exited_at IS NULL"),
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    op.create_table(
        "segment_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=True),
        sa.Column("segment", sa.String(length=200), nullable=False),
        sa.Column("evaluated_at", TS, nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("entered", sa.Integer(), nullable=False),
        sa.Column("exited", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"],
            ["run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_segment_run_segment", "segment_run", ["segment", "evaluated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_segment_run_segment", table_name="segment_run")
    op.drop_table("segment_run")
    op.drop_index(
        "uq_membership_open",
        table_name="segment_membership",
        sqlite_where=sa.text("exited_at IS NULL"),
        postgresql_where=sa.text("exited_at IS NULL"),
    )
    op.drop_index(op.f("ix_segment_membership_person_id"), table_name="segment_membership")
    op.drop_index("ix_membership_segment_open", table_name="segment_membership")
    op.drop_table("segment_membership")
    op.drop_index("ix_push_ledger_state", table_name="push_ledger")
    op.drop_index(op.f("ix_push_ledger_person_id"), table_name="push_ledger")
    op.drop_table("push_ledger")
    op.drop_index(op.f("ix_person_merge_winner_id"), table_name="person_merge")
    op.drop_index(op.f("ix_person_merge_loser_id"), table_name="person_merge")
    op.drop_table("person_merge")
    op.drop_index(op.f("ix_identity_person_id"), table_name="identity")
    op.drop_index(op.f("ix_identity_email"), table_name="identity")
    op.drop_table("identity")
    op.drop_index("ix_activity_type_time", table_name="activity")
    op.drop_index("ix_activity_person_type_time", table_name="activity")
    op.drop_table("activity")
    op.drop_table("sync_state")
    op.drop_index("ix_run_kind_target", table_name="run")
    op.drop_table("run")
    op.drop_table("raw_record")
    op.drop_index(op.f("ix_person_merged_into"), table_name="person")
    op.drop_index(op.f("ix_person_email"), table_name="person")
    op.drop_index(op.f("ix_person_changed_at"), table_name="person")
    op.drop_table("person")
    op.drop_table("model_artifact")
    op.drop_table("connector_lock")
