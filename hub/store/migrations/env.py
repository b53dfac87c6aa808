"""Alembic environment of the store: runs on the connection :func:`hub.store.engine.upgrade` hands over.

There is no ``alembic.ini``: migrations always run programmatically (on start, and with ``hub db upgrade``).
"""

from __future__ import annotations

from alembic import context

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run store migrations through hub.store (hub db upgrade), not the alembic command")

context.configure(
    connection=connection,
    target_metadata=None,
    # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
