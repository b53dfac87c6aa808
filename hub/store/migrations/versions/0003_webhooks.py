"""Outgoing segment webhooks: one row per membership change and webhook, with its delivery state.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
JSON_TYPE = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "webhook_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("webhook", sa.String(length=100), nullable=False),
        sa.Column("event_key", sa.String(length=100), nullable=False),
        sa.Column("payload", JSON_TYPE, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=True),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_error", sa.String(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("webhook", "event_key", name="uq_webhook_event_key"),
    )
    op.create_index("ix_webhook_event_due", "webhook_event", ["webhook", "delivered_at", "next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_event_due", table_name="webhook_event")
    op.drop_table("webhook_event")
