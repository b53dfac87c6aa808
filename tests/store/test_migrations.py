"""The migrated schema is exactly what the models declare, migrations are idempotent, and SQLite connections
are configured for a store shared by several processes."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hub.store import Store, open_store
from hub.store import engine as engine_mod
from hub.store import models as m


def schema_diff(store: Store, metadata: sa.MetaData | None = None) -> list[Any]:
    """What autogenerate would write to bring the database to ``metadata`` (the models by default)."""
    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
        diff: list[Any] = compare_metadata(context, metadata if metadata is not None else m.metadata())
    return diff


def schema(store: Store) -> dict[str, Any]:
    """Tables, columns, indexes and constraints as the database reports them."""
    inspector = sa.inspect(store.engine)
    out: dict[str, Any] = {}
    for name in sorted(inspector.get_table_names()):
        out[name] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in inspector.get_columns(name)],
            "indexes": sorted((i["name"] or "", tuple(i["column_names"])) for i in inspector.get_indexes(name)),
            "unique": sorted(
                (u["name"] or "", tuple(u["column_names"])) for u in inspector.get_unique_constraints(name)
            ),
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"]) for f in inspector.get_foreign_keys(name)
            ),
        }
    return out


def test_migrated_schema_matches_the_models(store: Store) -> None:
    assert schema_diff(store) == []
    assert set(schema(store)) == {t.name for t in m.TABLES} | {"alembic_version"}


def _models_changed(change: Callable[[sa.MetaData], None]) -> sa.MetaData:
    copy = sa.MetaData()
    for table in m.metadata().sorted_tables:
        table.to_metadata(copy)
    change(copy)
    return copy


def _add_column(md: sa.MetaData) -> None:
    md.tables["person"].append_column(sa.Column("nickname", sa.String(50), nullable=True))


def _add_index(md: sa.MetaData) -> None:
    sa.Index("ix_activity_currency", md.tables["activity"].c.currency)


def _add_table(md: sa.MetaData) -> None:
    sa.Table("audit_note", md, sa.Column("id", sa.Integer, primary_key=True))


def _widen_column(md: sa.MetaData) -> None:
    md.tables["raw_record"].c.source_type.type = sa.Text()


@pytest.mark.parametrize(
    ("change", "op"),
    [(_add_column, "add_column"), (_add_index, "add_index"), (_add_table, "add_table"), (_widen_column, "modify_type")],
)
def test_schema_comparison_catches_a_model_change_without_migration(
    store: Store, change: Callable[[sa.MetaData], None], op: str
) -> None:
    diff = schema_diff(store, _models_changed(change))
    flat = [d for entry in diff for d in (entry if isinstance(entry, list) else [entry])]
    assert [d[0] for d in flat] == [op], diff


def test_current_revision_is_the_head(store: Store) -> None:
    head = engine_mod.head_revision()
    assert head is not None
    assert store.current_revision() == head


def test_upgrading_again_is_a_no_op(store_url: str) -> None:
    store = open_store(store_url)
    try:
        run_id = store.start_run("sync", "shop")
        before = schema(store)

        store.upgrade()
        again = open_store(store_url)
        again.close()

        assert schema(store) == before
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).all() == [
                (engine_mod.head_revision(),)
            ]
            assert conn.execute(sa.select(m.run.c.id)).scalars().all() == [run_id]
    finally:
        store.close()


def test_open_without_upgrade_leaves_an_empty_database_empty(store_url: str) -> None:
    store = open_store(store_url, upgrade=False)
    try:
        assert store.current_revision() is None
        assert sa.inspect(store.engine).get_table_names() == []
    finally:
        store.close()

    migrated = open_store(store_url)
    try:
        assert migrated.current_revision() == engine_mod.head_revision()
    finally:
        migrated.close()


def test_in_memory_sqlite_store_is_migrated() -> None:
    store = open_store("sqlite://")
    try:
        assert store.current_revision() == engine_mod.head_revision()
        assert schema_diff(store) == []
    finally:
        store.close()


# ----------------------------------------------------------------------------------------------- SQLite


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Any:
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        yield store
    finally:
        store.close()


def _pragma(conn: sa.Connection, name: str) -> Any:
    return conn.exec_driver_sql(f"PRAGMA {name}").scalar()


def test_sqlite_connections_are_configured(sqlite_store: Store) -> None:
    # Two connections at once: each new connection is configured, not just the first.
    with sqlite_store.engine.connect() as first, sqlite_store.engine.connect() as second:
        for conn in (first, second):
            assert str(_pragma(conn, "journal_mode")).lower() == "wal"
            assert _pragma(conn, "foreign_keys") == 1
            assert _pragma(conn, "busy_timeout") == engine_mod.BUSY_TIMEOUT_MS
            assert _pragma(conn, "synchronous") == 1  # NORMAL


def test_sqlite_enforces_foreign_keys(sqlite_store: Store) -> None:
    now = m.utcnow()
    row = {
        "person_id": 424242,
        "source": "shop",
        "external_id": "1",
        "consent": "unknown",
        "seen": True,
        "deleted": False,
        "created_at": now,
        "updated_at": now,
    }
    with pytest.raises(sa.exc.IntegrityError), sqlite_store.engine.begin() as conn:
        conn.execute(sa.insert(m.identity).values(**row))


def _other_writer_can_start(path: str) -> bool:
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError as exc:
        assert "locked" in str(exc)
        return False
    finally:
        other.close()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(sqlite_store: Store) -> None:
    path = sqlite_store.engine.url.database
    assert path is not None
    with sqlite_store.engine.connect() as conn:
        with conn.begin():  # a read transaction does not block writers
            conn.execute(sa.select(sa.func.count()).select_from(m.person)).scalar()
            assert _other_writer_can_start(path)
        conn.execution_options(**{engine_mod.WRITE_OPTION: True})
        with conn.begin():  # a write transaction holds the lock before its first write
            conn.execute(sa.select(sa.func.count()).select_from(m.person)).scalar()
            assert not _other_writer_can_start(path)
    assert _other_writer_can_start(path)


def test_upgrading_a_store_with_data_keeps_it(store_url: str) -> None:
    # A store created by the first release (revision 0001) with people and segment stays gets the segmentation
    # tables and columns; the existing rows survive with the new columns' defaults.
    store = open_store(store_url, upgrade=False)
    try:
        engine_mod.upgrade(store.engine, "0001")
        now = m.utcnow()
        with store.engine.begin() as conn:
            conn.execute(sa.text(
                "INSERT INTO person (id, consent, deleted, created_at, changed_at) VALUES (1, 'granted', false, :t, :t)"
            ), {"t": now})
            conn.execute(sa.text(
                "INSERT INTO segment_membership (person_id, segment, entered_at) VALUES (1, 'vip', :t)"
            ), {"t": now})
            conn.execute(sa.text("INSERT INTO segment_run (segment, evaluated_at, size, entered, exited) "
                                 "VALUES ('vip', :t, 1, 1, 0)"), {"t": now})
        store.upgrade()
        assert store.current_revision() == engine_mod.head_revision()
        assert schema_diff(store) == []
        with store.engine.connect() as conn:
            stay = conn.execute(sa.select(m.segment_membership.c.person_id, m.segment_membership.c.held_out)).one()
            run = conn.execute(sa.select(m.segment_run.c.size, m.segment_run.c.held_out)).one()
            person = conn.execute(sa.select(m.person.c.consent, m.person.c.properties)).one()
        assert tuple(stay) == (1, False) and tuple(run) == (1, 0) and tuple(person) == ("granted", None)
    finally:
        store.close()


def test_the_engine_tables_lose_their_person_keys_and_a_downgrade_restores_them(store_url: str) -> None:
    from alembic import command

    def person_keys(store: Store) -> dict[str, bool]:
        inspector = sa.inspect(store.engine)
        return {
            t: any(f["referred_table"] == "person" for f in inspector.get_foreign_keys(t))
            for t in ("person_feature", "person_score", "segment_membership", "activity")
        }

    store = open_store(store_url)
    try:
        assert person_keys(store) == {
            "person_feature": False, "person_score": False, "segment_membership": False, "activity": True
        }
        with store.engine.begin() as conn:
            command.downgrade(engine_mod._alembic_config(conn), "0004")
        assert set(person_keys(store).values()) == {True}
        store.upgrade()
        assert schema_diff(store) == [] and not person_keys(store)["segment_membership"]
    finally:
        store.close()
