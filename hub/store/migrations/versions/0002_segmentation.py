"""Segmentation: per-person features and scores, merged person properties, held-out segment members.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
MONEY = sa.Numeric(precision=18, scale=4)
_COUNTS = (
    "orders", "order_days", "orders_30d", "orders_90d", "orders_365d", "email_opens", "email_clicks", "email_opens_30d",
    "email_opens_90d", "email_opens_365d", "email_clicks_30d", "email_clicks_90d", "email_clicks_365d",
    "email_bounces", "email_unsubscribes", "sessions", "sessions_30d", "sessions_90d", "sessions_365d",
    "page_views_90d", "deals_won",
)  # fmt: skip
_SUMS = ("monetary", "spend_30d", "spend_90d", "spend_365d", "deals_won_amount")
_TIMES = ("first_order_at", "last_order_at", "last_email_open_at", "last_email_click_at", "last_session_at",
          "first_seen_at")  # fmt: skip


def upgrade() -> None:
    op.create_table(
        "person_feature",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("as_of", TS, nullable=False),
        *(sa.Column(name, sa.Integer(), nullable=False) for name in _COUNTS),
        *(sa.Column(name, MONEY, nullable=False) for name in _SUMS),
        *(sa.Column(name, TS, nullable=True) for name in _TIMES),
        sa.Column("lifecycle_stage", sa.String(length=100), nullable=True),
        sa.Column("country", sa.String(length=100), nullable=True),
        sa.Column("city", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("person_id"),
    )
    op.create_index(op.f("ix_person_feature_last_order_at"), "person_feature", ["last_order_at"], unique=False)
    op.create_table(
        "person_score",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("scored_at", TS, nullable=False),
        sa.Column("rfm_r", sa.Integer(), nullable=True),
        sa.Column("rfm_f", sa.Integer(), nullable=True),
        sa.Column("rfm_m", sa.Integer(), nullable=True),
        sa.Column("rfm_score", sa.String(length=3), nullable=True),
        sa.Column("rfm_segment", sa.String(length=50), nullable=True),
        sa.Column("clv", sa.Float(), nullable=True),
        sa.Column("clv_percentile", sa.Float(), nullable=True),
        sa.Column("clv_simple", sa.Float(), nullable=True),
        sa.Column("expected_orders", sa.Float(), nullable=True),
        sa.Column("churn_probability", sa.Float(), nullable=True),
        sa.Column("cluster", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("person_id"),
    )
    # Existing rows get the defaults; the server defaults go again so the schema matches the models.
    with op.batch_alter_table("person") as batch:
        batch.add_column(sa.Column("properties", JSON_TYPE, nullable=True))
    with op.batch_alter_table("segment_membership") as batch:
        batch.add_column(sa.Column("held_out", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("segment_run") as batch:
        batch.add_column(sa.Column("held_out", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("warnings", JSON_TYPE, nullable=True))
    with op.batch_alter_table("segment_membership") as batch:
        batch.alter_column("held_out", server_default=None)
    with op.batch_alter_table("segment_run") as batch:
        batch.alter_column("held_out", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("segment_run") as batch:
        batch.drop_column("warnings")
        batch.drop_column("held_out")
    with op.batch_alter_table("segment_membership") as batch:
        batch.drop_column("held_out")
    with op.batch_alter_table("person") as batch:
        batch.drop_column("properties")
    op.drop_table("person_score")
    op.drop_index(op.f("ix_person_feature_last_order_at"), table_name="person_feature")
    op.drop_table("person_feature")
