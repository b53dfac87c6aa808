"""The store: raw records, unified people, activities, sync state and run audit, on SQLite or PostgreSQL.

Importing this package is cheap (SQLAlchemy loads on first use), so the CLI stays fast. Everything else
talks to the database through :class:`Store`::

    store = open_store("sqlite:///hub.db", base_dir=config_dir)
    stats = store.commit_page("shop", "csv", "orders", page)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hub.store.repo import PageStats, PersonExplanation, Store, StoreSummary

__all__ = ["PageStats", "PersonExplanation", "Store", "StoreSummary", "open_store"]


def open_store(url: str, *, base_dir: Path | None = None, upgrade: bool = True) -> Store:
    """Open the store at ``url``, migrating it to the current schema unless ``upgrade`` is False.

    Args:
        url: ``sqlite:///PATH`` (relative to ``base_dir``) or ``postgresql+psycopg://...``.
        base_dir: the folder relative SQLite paths are resolved against (the config file's folder).
        upgrade: apply pending migrations first (what every command does on start).

    Raises:
        ConfigError: the URL is invalid or names an unsupported backend.
    """
    from hub.store.engine import create_engine
    from hub.store.repo import Store

    store = Store(create_engine(url, base_dir=base_dir))
    if upgrade:
        try:
            store.upgrade()
        except BaseException:
            store.close()
            raise
    return store


def __getattr__(name: str) -> Any:
    # Lazy re-exports: `from hub.store import Store` works without importing SQLAlchemy up front.
    if name in ("PageStats", "PersonExplanation", "Store", "StoreSummary"):
        from hub.store import repo

        return getattr(repo, name)
    raise AttributeError(f"module 'hub.store' has no attribute {name!r}")
