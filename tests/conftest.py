"""Shared fixtures.

``store`` runs each store test on SQLite (a file in tmp_path) and, when ``HUB_TEST_DATABASE_URL`` is set, on
PostgreSQL too. Each PostgreSQL test gets a fresh schema (through ``search_path``), dropped afterwards, so
the suite can run again and again against the same database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from hub.store import Store

PG_ENV = "HUB_TEST_DATABASE_URL"
PG_SKIP_REASON = (
    f"{PG_ENV} is not set: PostgreSQL store tests skipped "
    "(e.g. HUB_TEST_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/test, see DEVELOPERS.md)"
)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of an empty database: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'hub.db'}"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    yield from _pg_schema_url(base)


def _pg_schema_url(base: str) -> Iterator[str]:
    import sqlalchemy as sa

    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(base)
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    """An open, migrated store on each backend (see ``store_url``)."""
    from hub.store import open_store

    opened = open_store(store_url)
    try:
        yield opened
    finally:
        opened.close()
