"""The jobs the daemon runs: pull a source, then segments for the people who changed, then push; a daily sweep.

Each job takes the connector's lock in the store first (:mod:`hub.locks`), so ``hub sync`` by hand and a
second daemon never run the same connector at the same time, and a crashed holder's lock expires. Failures go
to the breaker (:mod:`hub.daemon.health`): a source failing ``failure_threshold`` times in a row, or with a
ConfigError, is paused while the other sources keep running. A stop request (SIGTERM) ends a sync after the page
it is on, which is committed with its checkpoint.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.config.models import parse_duration
from hub.daemon import health
from hub.daemon.metrics import Metrics
from hub.errors import ConfigError, HubError
from hub.http import counting_scope, scope_stats
from hub.locks import LockHeld, connector_lock
from hub.stop import stop_scope
from hub.store import Store

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig
    from hub.registry import BuildContext

logger = logging.getLogger(__name__)

SEGMENT_LOCK = "segment"


@dataclass
class Pipeline:
    """Everything a job needs; ``config`` is swapped in place when the daemon reloads its config file.

    Args:
        config: the current validated config.
        store: the open store.
        context_for: builds the connectors' BuildContext from a config (transports for sandboxes in tests).
        holder: this process's lock holder name.
        stop: set when the daemon is shutting down.
        metrics: the Prometheus metrics.
    """

    config: LoadedConfig
    store: Store
    context_for: Callable[[LoadedConfig], BuildContext]
    holder: str
    stop: threading.Event = field(default_factory=threading.Event)
    metrics: Metrics = field(default_factory=Metrics)
    _pipeline_lock: threading.Lock = field(default_factory=threading.Lock)
    _again: threading.Event = field(default_factory=threading.Event)

    @property
    def _ttl(self) -> Any:
        return parse_duration(self.config.model.daemon.lock_ttl)

    # -- sources

    def run_source(self, name: str) -> None:
        """One scheduled sync of ``name``, then segments and pushes when it changed anything."""
        key = health.key("source", name)
        current = health.read(self.store, key)
        if current is not None and current.paused:
            logger.info("source %s is paused (%s): skipped; `hub resume %s` lifts it", name, current.paused_reason,
                        name)
            return
        if self.stop.is_set():
            return
        started = time.perf_counter()
        changed = False
        try:
            changed = self._sync(name)
        except LockHeld as exc:
            logger.info("source %s: %s", name, exc)
            return
        except HubError as exc:
            self._failed("sync", name, key, exc, started)
            return
        except Exception as exc:  # a bug in a connector must not take the daemon down
            logger.exception("source %s: unexpected error", name)
            self._failed("sync", name, key, HubError(f"unexpected {type(exc).__name__}: {exc}"), started)
            return
        health.record_success(self.store, key)
        self.metrics.paused.labels(key).set(0)
        self._observe("sync", name, "ok", started)
        if changed and self.config.model.daemon.push_after_sync and not self.stop.is_set():
            self.segments_and_push(incremental=True)

    def _sync(self, name: str) -> bool:
        from hub.sync import build_source, sync_source

        loaded = self.config
        entry = loaded.model.sources[name]
        scope = f"source:{name}"
        with connector_lock(self.store, f"sync:{name}", ttl=self._ttl, holder=self.holder) as lock, \
                counting_scope(scope), stop_scope(self.stop):
            source = build_source(loaded, name, self.context_for(loaded))
            try:
                result = sync_source(self.store, source, entry.type, stop=self.stop,
                                     progress=lambda *_: lock.renew())
            finally:
                source.close()
                self.metrics.http_stats(name, scope_stats(scope))
        counts = result.counts
        self.metrics.records.labels(name).inc(counts.get("records", 0))
        self.metrics.skipped.labels(name).inc(counts.get("skipped", 0))
        if result.status == "failed":
            raise HubError(result.error or "sync failed")
        return any(counts.get(k, 0) for k in ("records_new", "records_changed", "records_deleted"))

    def _failed(self, kind: str, name: str, key: str, exc: HubError, started: float) -> None:
        threshold = self.config.model.daemon.failure_threshold
        state = health.record_failure(self.store, key, str(exc), threshold=threshold,
                                      config_error=isinstance(exc, ConfigError))
        self.metrics.paused.labels(key).set(1 if state.paused else 0)
        self._observe(kind, name, "config_error" if isinstance(exc, ConfigError) else "failed", started)
        if state.paused:
            logger.error("%s %s paused: %s", kind, name, state.paused_reason)
        else:
            logger.warning("%s %s failed (%d in a row): %s", kind, name, state.consecutive_failures, exc)

    def _observe(self, kind: str, target: str, status: str, started: float) -> None:
        self.metrics.runs.labels(kind, target, status).inc()
        self.metrics.duration.labels(kind, target).observe(time.perf_counter() - started)

    # -- segments and push

    def sweep(self) -> None:
        """The daily job: a full evaluation (time windows moved, models refit), then push."""
        self.segments_and_push(incremental=False)

    def segments_and_push(self, *, incremental: bool) -> None:
        """Re-evaluate (only the changed people when ``incremental``), queue webhook events, push every destination.

        One process at a time across the daemon's threads and other processes (the segment lock).
        """
        if not self._pipeline_lock.acquire(blocking=False):
            # Another job of this daemon is doing it, but its evaluation may have read the store before this
            # job's sync committed (syncs due at start finish close together): it runs once more when done.
            self._again.set()
            return
        try:
            self._again.clear()
            with connector_lock(self.store, SEGMENT_LOCK, ttl=self._ttl, holder=self.holder):
                self._evaluate(incremental)
                self._push_all()
                while self._again.is_set() and not self.stop.is_set():
                    self._again.clear()
                    self._evaluate(True)
                    self._push_all()
        except LockHeld as exc:
            logger.info("segments: %s", exc)
        except HubError as exc:
            logger.error("segments and push failed: %s", exc)
        finally:
            self._pipeline_lock.release()

    def _evaluate(self, incremental: bool) -> None:
        from segment_rules.configured import evaluate_configured, rules_folder

        if not rules_folder(self.config).exists():
            return
        started = time.perf_counter()
        result = evaluate_configured(self.store, self.config, changed_only=incremental)
        if result is None:
            return
        for change in result.segments:
            self.metrics.segment_size.labels(change.segment).set(change.size)
        self._observe("segment", "incremental" if result.incremental else "full", "ok", started)

    def _push_all(self) -> None:
        from hub.push.service import PushOptions, deliver_webhooks, push_configured
        from segment_rules.configured import load_configured_rules, rules_folder

        loaded = self.config
        model = loaded.model
        if not model.destinations or not rules_folder(loaded).exists():
            return
        rules = load_configured_rules(loaded)
        ctx = self.context_for(loaded)
        for name, entry in model.destinations.items():
            if not entry.enabled or self.stop.is_set():
                continue
            key = health.key("destination", name)
            current = health.read(self.store, key)
            if current is not None and current.paused:
                continue
            started = time.perf_counter()
            try:
                scope = f"destination:{name}"
                with connector_lock(self.store, f"push:{name}", ttl=self._ttl, holder=self.holder), \
                        counting_scope(scope):
                    try:
                        _, result = push_configured(self.store, loaded, name, ctx, rules, PushOptions())
                    finally:
                        self.metrics.http_stats(name, scope_stats(scope))
            except LockHeld as exc:
                logger.info("destination %s: %s", name, exc)
                continue
            except HubError as exc:
                self._failed("push", name, key, exc, started)
                continue
            health.record_success(self.store, key)
            for outcome in ("added", "removed", "retry", "failed", "skipped", "blocked"):
                self.metrics.push.labels(name, outcome).inc(result.counts().get(outcome, 0))
            self._observe("push", name, "ok", started)
        deliver_webhooks(self.store, model.push, loaded.resolve_secret)
