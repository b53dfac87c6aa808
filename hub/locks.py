"""One run of a connector at a time, across processes: the CLI and the daemon never sync the same source together.

The lock is a row in the store (``connector_lock``) with an expiry, so it works the same on SQLite and
PostgreSQL. A long run renews it as it goes (every committed page calls :meth:`ConnectorLock.renew`, which only
writes once half the time-to-live has passed). A holder that crashed or was killed on this host is replaced at
once (the row names its host and pid); one on another host, when its lock expires.

Run rows name their process too: :func:`close_dead_runs` marks the runs such a crash left ``running`` as
``interrupted``.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from hub.errors import HubError
from hub.process import is_dead_here, this_host, this_process
from hub.store import Store

logger = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(minutes=10)


class LockHeld(HubError):
    """Another process runs this connector right now."""


def holder_name() -> str:
    """This process, as lock rows name it: host, pid and a random part (pids are reused)."""
    return f"{this_process()}:{uuid.uuid4().hex[:8]}"


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
    if not store.acquire_lock(name, who, ttl) and not _take_from_dead(store, name, who, ttl):
        raise LockHeld(f"{name} is running in another process (try again when it has finished)")
    lock = ConnectorLock(store, name, who, ttl)
    try:
        yield lock
    finally:
        store.release_lock(name, who)


def _take_from_dead(store: Store, name: str, who: str, ttl: timedelta) -> bool:
    current = store.lock_holder(name)
    if current is None or not is_dead_here(current):
        return False
    if not store.take_over_lock(name, current, who, ttl):
        return False  # another process replaced it first
    logger.info("%s: its holder %s is gone (killed or crashed): lock taken over", name, current)
    return True


# The lock each kind of run holds while it runs (see the CLI and the daemon).
_RUN_LOCKS = {"sync": "sync:{}", "push": "push:{}", "reconcile": "push:{}"}


def close_dead_runs(store: Store) -> int:
    """Mark as ``interrupted`` the runs left ``running`` by a process that is gone; how many.

    A run is gone when its process is a dead one of this host, or when it belongs to another host (or to a
    version that did not record its process) and nobody holds its connector's lock any more (the holder's lock
    expired without being renewed). Runs without a lock of their own (segment evaluations) are judged by their
    process only.
    """
    held = store.live_lock_holders()
    gone: list[int] = []
    for run in store.running_runs():
        if is_dead_here(run.holder):
            gone.append(run.id)
            continue
        pattern = _RUN_LOCKS.get(run.kind)
        if pattern is None or (run.holder is not None and run.holder.split(":", 1)[0] == this_host()):
            continue  # a live process of this host, or a run no lock tells about
        holder = held.get(pattern.format(run.target))
        if holder is None or (run.holder is not None and not holder.startswith(run.holder + ":")):
            gone.append(run.id)
    if gone:
        store.mark_runs_interrupted(gone)
        logger.info("%d runs left running by a process that is gone were marked interrupted", len(gone))
    return len(gone)
