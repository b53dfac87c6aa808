"""One run of a connector at a time, across processes: the CLI and the daemon never sync the same source together.

The lock is a row in the store (``connector_lock``) with an expiry, so it works the same on SQLite and
PostgreSQL and a crashed holder's lock simply runs out. A long run renews it as it goes (every committed page
calls :meth:`ConnectorLock.renew`, which only writes once half the time-to-live has passed).
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from hub.errors import HubError
from hub.store import Store

DEFAULT_TTL = timedelta(minutes=10)


class LockHeld(HubError):
    """Another process runs this connector right now."""


def holder_name() -> str:
    """This process, as lock rows name it: host, pid and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class ConnectorLock:
    """A held lock; :meth:`renew` keeps it while the run lasts."""

    def __init__(self, store: Store, name: str, holder: str, ttl: timedelta) -> None:
        self.store = store
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self._renewed = time.monotonic()
        self._guard = threading.Lock()

    def renew(self) -> None:
        """Extend the lock when half its time-to-live has passed (cheap to call after every page)."""
        with self._guard:
            if time.monotonic() - self._renewed < self.ttl.total_seconds() / 2:
                return
            if not self.store.acquire_lock(self.name, self.holder, self.ttl):
                raise LockHeld(f"lost the lock on {self.name} (it expired and another process took it)")
            self._renewed = time.monotonic()


@contextmanager
def connector_lock(store: Store, name: str, *, ttl: timedelta = DEFAULT_TTL, holder: str | None = None
                   ) -> Iterator[ConnectorLock]:
    """Hold the lock ``name`` for the block, or raise :class:`LockHeld` at once when another process has it."""
    who = holder or holder_name()
    if not store.acquire_lock(name, who, ttl):
        raise LockHeld(f"{name} is running in another process (try again when it has finished)")
    lock = ConnectorLock(store, name, who, ttl)
    try:
        yield lock
    finally:
        store.release_lock(name, who)
