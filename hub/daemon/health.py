"""The failure breaker and heartbeat of each connector under the daemon (``connector_health`` rows).

A source that fails ``failure_threshold`` runs in a row is paused, and so is one that raised a ConfigError (bad
credentials do not heal by retrying); the other sources keep running. A paused source resumes on its next
successful run (``hub sync`` by hand) or with ``hub resume SOURCE``. ``hub status`` and ``/healthz`` read these
rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from hub.redact import redact
from hub.store import Store
from hub.store import models as m


def key(kind: str, name: str) -> str:
    """The row name of a connector: ``source:crm``, ``destination:crm-tags``."""
    return f"{kind}:{name}"


@dataclass(frozen=True)
class Health:
    """One connector's health."""

    name: str
    consecutive_failures: int
    paused: bool
    paused_reason: str | None
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    next_run_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()}


def _upsert(store: Store, name: str, values: dict[str, Any]) -> None:
    h = m.connector_health
    with store.transaction() as conn:
        exists = conn.execute(sa.select(h.c.name).where(h.c.name == name)).first() is not None
        if exists:
            conn.execute(sa.update(h).where(h.c.name == name).values(**values))
        else:
            row = {"name": name, "consecutive_failures": 0, "paused": False, **values}
            conn.execute(sa.insert(h).values(**row))


def record_success(store: Store, name: str, at: datetime | None = None) -> None:
    """A run succeeded: reset the failure count and lift a pause."""
    at = at or m.utcnow()
    _upsert(store, name, {"consecutive_failures": 0, "paused": False, "paused_reason": None, "last_run_at": at,
                          "last_success_at": at})


def record_failure(store: Store, name: str, error: str, *, threshold: int, config_error: bool) -> Health:
    """A run failed: count it, and pause past ``threshold`` failures in a row, or at once for a config error."""
    now = m.utcnow()
    current = read(store, name)
    failures = (current.consecutive_failures if current else 0) + 1
    message = redact(error)
    paused = config_error or failures >= threshold
    reason = None
    if paused:
        reason = (f"configuration problem: {message}" if config_error
                  else f"{failures} failed runs in a row; last: {message}")
    _upsert(store, name, {"consecutive_failures": failures, "paused": paused, "paused_reason": reason,
                          "last_run_at": now, "last_error": message, "last_error_at": now})
    result = read(store, name)
    assert result is not None
    return result


def resume(store: Store, name: str) -> bool:
    """Lift a pause by hand; False when the connector was not paused."""
    current = read(store, name)
    if current is None or not current.paused:
        return False
    _upsert(store, name, {"paused": False, "paused_reason": None, "consecutive_failures": 0})
    return True


def set_next_run(store: Store, name: str, at: datetime | None) -> None:
    """Record when the scheduler will run the connector next (for ``hub status``)."""
    _upsert(store, name, {"next_run_at": at})


def read(store: Store, name: str) -> Health | None:
    """One connector's health, or None before its first run."""
    rows = read_all(store, [name])
    return rows.get(name)


def read_all(store: Store, names: list[str] | None = None) -> dict[str, Health]:
    """Every connector's health (or the named ones)."""
    h = m.connector_health
    stmt = sa.select(h)
    if names is not None:
        stmt = stmt.where(h.c.name.in_(names))
    with store.engine.connect() as conn:
        return {row["name"]: Health(**dict(row)) for row in conn.execute(stmt.order_by(h.c.name)).mappings()}
