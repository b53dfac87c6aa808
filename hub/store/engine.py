"""Engine creation for the store: SQLite (the default) or PostgreSQL.

SQLite connections get WAL (readers never block the writer), a busy timeout (the CLI and the daemon may
share a file), ``foreign_keys=ON``, ``synchronous=NORMAL`` and a 64 MiB page cache. In WAL mode NORMAL is
still safe against a killed process (only a power loss may drop the last commits), and it makes page commits
much cheaper. The memory is taken as pages are read, so a connection that reads little stays small.
Write transactions begin with ``BEGIN IMMEDIATE`` so two writers queue on the busy timeout instead of
failing with "database is locked" when a read transaction tries to upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.engine.url import URL
from sqlalchemy.pool import StaticPool

from hub.errors import ConfigError

BUSY_TIMEOUT_MS = 30_000
# Page cache per SQLite connection, in KiB (negative: a size, not a page count). The default 2 MiB is far
# smaller than what one page commit dirties in the indexes of a store with a million activities; SQLite then
# spills dirty pages to the WAL mid-transaction and writes some twice. 64 MiB took ~8% off a 1M-order load.
SQLITE_CACHE_KIB = 65_536
# Execution option that makes the next transaction on a connection a write transaction (BEGIN IMMEDIATE).
WRITE_OPTION = "hub_write"


def json_default(value: Any) -> Any:
    """JSON for the types connectors commonly leave in payloads (dates, decimals, sets, bytes)."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def _stdlib_dumps(value: Any, sort_keys: bool) -> str:
    return json.dumps(value, default=json_default, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)


def _c_dumps(sort_keys: bool) -> Callable[[Any], str] | None:
    """``json.dumps`` with our settings, minus its per-call Python set-up, or None if that cannot be had.

    A page commit serializes each record two or three times (the content hash, the payload column, the
    attributes), and for small documents json.dumps spends more time building its encoder object than
    encoding. This calls the C encoder json.dumps itself uses, with a fresh circular-reference table per
    call, so the text and every error are the same. The result is checked against json.dumps once; any
    difference (another Python implementation or version) falls back to json.dumps.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    basestring = json.encoder.encode_basestring

    def encode(value: Any) -> str:
        return "".join(make({}, json_default, basestring, None, ":", ",", sort_keys, False, True)(value, 0))

    sample = [{"b": [1, 2.5, None, True], "a": "é\n\"", "c": {"z": 1, "y": {}}}, datetime(2024, 1, 2, 3, 4, 5)]
    try:
        if encode(sample) != _stdlib_dumps(sample, sort_keys) or encode("x") != _stdlib_dumps("x", sort_keys):
            return None
    except Exception:
        return None
    return encode


_dumps_plain = _c_dumps(False) or partial(_stdlib_dumps, sort_keys=False)
_dumps_sorted = _c_dumps(True) or partial(_stdlib_dumps, sort_keys=True)


def dumps(value: Any) -> str:
    """The JSON the store writes: compact, non-ASCII kept, tolerant of dates and decimals."""
    return _dumps_plain(value)


def canonical_dumps(value: Any) -> str:
    """:func:`dumps` with sorted keys: the same document always gives the same text (for content hashes)."""
    return _dumps_sorted(value)


def resolve_url(url: str, base_dir: Path | None = None) -> URL:
    """Parse ``url``, resolving a relative SQLite path against ``base_dir`` (the config file's folder).

    Raises:
        ConfigError: the URL cannot be parsed or names an unsupported backend.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise ConfigError(f"invalid store URL: {exc}", field="store.url") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        # psycopg 3 is the driver we test; a bare postgresql:// would pick psycopg2, which is not installed.
        return parsed.set(drivername="postgresql+psycopg") if parsed.drivername == "postgresql" else parsed
    if backend != "sqlite":
        raise ConfigError(
            f"unsupported store backend {backend!r} (use sqlite:/// or postgresql+psycopg://)",
            field="store.url",
        )
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return parsed
    path = Path(database).expanduser()
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return parsed.set(database=str(path.resolve()))


def create_engine(url: str, *, base_dir: Path | None = None) -> Engine:
    """An engine for the store at ``url``, configured for this backend.

    Args:
        url: a SQLAlchemy URL (``sqlite:///hub.db``, ``postgresql+psycopg://user@host/db``).
        base_dir: the folder relative SQLite paths are resolved against (default: the current directory).

    Returns:
        The engine. For a SQLite file, its folder is created if missing.
    """
    resolved = resolve_url(url, base_dir)
    if resolved.get_backend_name() == "sqlite":
        return _sqlite_engine(resolved)
    return sa.create_engine(resolved, json_serializer=dumps, pool_pre_ping=True)


def is_memory_sqlite(url: URL) -> bool:
    """Whether ``url`` is a private in-memory SQLite database."""
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def _sqlite_engine(url: URL) -> Engine:
    kwargs: dict[str, Any] = {"json_serializer": dumps}
    if is_memory_sqlite(url):
        # One shared connection, or every checkout would see its own empty database.
        kwargs.update(poolclass=StaticPool, connect_args={"check_same_thread": False})
    elif url.database and not url.database.startswith("file:"):
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **kwargs)
    sa.event.listen(engine, "connect", _on_sqlite_connect)
    sa.event.listen(engine, "begin", _on_sqlite_begin)
    return engine


def _on_sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Take transaction control from the sqlite3 module, so BEGIN is ours (see _on_sqlite_begin).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute(f"PRAGMA cache_size = -{SQLITE_CACHE_KIB}")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: sa.Connection) -> None:
    write = conn.get_execution_options().get(WRITE_OPTION, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# ----------------------------------------------------------------------------------------------- migrations

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Serializes concurrent upgrades on PostgreSQL (the CLI and the daemon may start together).
_PG_MIGRATION_LOCK = 0x4855_4221


def _alembic_config(connection: sa.Connection) -> Any:
    from alembic.config import Config

    # No alembic.ini on disk: the script location is the package folder, the connection is handed over.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the store's migrations up to ``revision`` in one transaction (idempotent)."""
    from alembic import command

    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
            command.upgrade(_alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The migration revision the database is at (None when it was never migrated)."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
    return str(revision) if revision is not None else None


def head_revision() -> str | None:
    """The newest migration revision shipped with this version of the hub."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
    return str(head) if head is not None else None
