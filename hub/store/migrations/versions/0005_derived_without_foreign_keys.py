"""The segmentation engine's tables (features, scores, memberships) keep their person ids without a foreign key.

PostgreSQL checks a foreign key by locking the referenced person row (FOR KEY SHARE) for every row written:
a full evaluation writes a million rows to each of these tables, and the checks cost more than the writes
(1M feature rows: 14 s with the key, 5.6 s without), two concurrent writers turn the locks into multixacts,
and every locked person page is written again. The engine writes these rows only for people it has just read,
and people are never deleted (they are marked deleted or merged), so the key guarded nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("person_feature", "person_score", "segment_membership")
# PostgreSQL's own names for the keys 0002 created unnamed; SQLite's (unnamed) get the same through the
# naming convention of the batch, which rebuilds the table.
NAMING = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch:
            batch.drop_constraint(f"{table}_person_id_fkey", type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, naming_convention=NAMING) as batch:
            batch.create_foreign_key(f"{table}_person_id_fkey", "person", ["person_id"], ["id"])
