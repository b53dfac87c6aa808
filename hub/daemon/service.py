"""``hub run``: the scheduler, signals, config reload and the health/metrics endpoint.

- APScheduler 3.11 ``BlockingScheduler``: one job per enabled source on its schedule (``sync:NAME``, interval
  or cron, optional jitter), the daily sweep (``sweep``), and a config-file watch; every job has a stable id,
  ``coalesce``, ``max_instances=1`` and a misfire grace time.
- At start (and for a source a reload adds), a source that is due (never synced, or its last success is older
  than its interval, or a cron run was missed since) runs at once, the due ones a few seconds apart, instead of
  waiting a whole interval. Sources without a schedule are named in the log: they run only with ``hub sync``.
- SIGTERM / SIGINT: running syncs stop after the page they are on (committed with its checkpoint), then the
  process exits 0. A kill -9 loses nothing either: the store resumes from the last committed page.
- SIGHUP, or a change of the config file: the new file is validated first; an invalid one is rejected with
  its errors (one line each) and the running config stays.
- ``--http HOST:PORT`` serves ``/healthz`` (JSON; ``ok``, or ``degraded`` with the reasons: paused connectors,
  failing runs) and ``/metrics`` (Prometheus text).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.config.models import parse_duration
from hub.daemon import health
from hub.daemon import schedule as plans
from hub.daemon.pipeline import Pipeline
from hub.errors import ConfigErrors
from hub.locks import holder_name
from hub.process import this_process
from hub.stop import STOP_GRACE_S
from hub.store import Store

if TYPE_CHECKING:
    from apscheduler.schedulers.blocking import BlockingScheduler

    from hub.config.loader import LoadedConfig
    from hub.registry import BuildContext

logger = logging.getLogger(__name__)

WATCH_SECONDS = 5.0
# Sources due at start begin this far apart: each then holds its own lock, and their syncs do not all open
# their connections and hit the store in the same instant.
STARTUP_STAGGER_S = 3.0


@dataclass
class Daemon:
    """A running ``hub run``.

    Args:
        config_path: the config file (reloaded on SIGHUP or change).
        loaded: its validated content.
        store: the open store.
        context_for: builds a BuildContext from a config.
        http: ``(host, port)`` of the health endpoint, or None.
        load: validates a config file (raises ConfigErrors); injectable for tests.
    """

    config_path: Path
    loaded: LoadedConfig
    store: Store
    context_for: Callable[[LoadedConfig], BuildContext]
    http: tuple[str, int] | None = None
    load: Callable[[Path], LoadedConfig] | None = None
    pipeline: Pipeline = field(init=False)
    scheduler: BlockingScheduler = field(init=False)
    _server: ThreadingHTTPServer | None = field(init=False, default=None)
    _mtime: float = field(init=False, default=0.0)
    _running: threading.Event = field(init=False, default_factory=threading.Event)
    _watchdog: threading.Timer | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler

        self.pipeline = Pipeline(self.loaded, self.store, self.context_for, holder_name())
        self.scheduler = BlockingScheduler(
            timezone=self.loaded.model.timezone,
            executors={"default": ThreadPoolExecutor(max_workers=4)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self._mtime = self._file_mtime()

    # -- lifecycle

    def run(self) -> None:
        """Schedule the jobs and block until SIGTERM/SIGINT (then stop cleanly)."""
        from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_MISSED

        self._install_signals()
        self._schedule(self.loaded)
        self.scheduler.add_listener(self._job_done, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED)
        if self.http is not None:
            self._serve_http(*self.http)
        logger.info("hub run: %d jobs scheduled", len(self.scheduler.get_jobs()))
        self._running.set()
        try:
            self.scheduler.start()  # blocks until shutdown
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
            self._running.clear()
            self.pipeline.stop.set()
            if self._server is not None:
                self._server.shutdown()
            self._forget_next_runs()
            logger.info("hub run: stopped")

    def stop(self, *_: Any) -> None:
        """Ask running jobs to finish their page and the scheduler to exit."""
        if self.pipeline.stop.is_set():
            return
        logger.info("hub run: stopping (the current page is finished and committed first)")
        self.pipeline.stop.set()
        # wait=True lets running jobs finish; they check the stop event between pages and their waits end at
        # once, so this is quick. A job stuck in a request past the grace time does not hold the exit up.
        threading.Thread(target=lambda: self.scheduler.shutdown(wait=True), name="hub-shutdown", daemon=True).start()
        self._watchdog = threading.Timer(STOP_GRACE_S, self._exit_now)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _exit_now(self) -> None:
        """Still running after the grace time: close this process's runs as interrupted and exit 0.

        Safe at any instant (a kill -9 is): every page is committed with its checkpoint or not at all.
        """
        mine = [r.id for r in self.store.running_runs() if r.holder == this_process()]
        if mine:
            self.store.mark_runs_interrupted(mine)
        logger.warning("hub run: %d jobs still running %g s after the stop: exiting now; their runs resume next "
                       "time from the last committed page", len(mine), STOP_GRACE_S)
        logging.shutdown()
        os._exit(0)

    def _install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        if hasattr(signal, "SIGHUP"):
            signal.signal(signal.SIGHUP, lambda *_: self.reload())

    # -- jobs

    def _schedule(self, loaded: LoadedConfig) -> None:
        from apscheduler.triggers.cron import CronTrigger

        model = loaded.model
        grace = int(parse_duration(model.daemon.misfire_grace).total_seconds())
        wanted: set[str] = set()
        known = {job.id for job in self.scheduler.get_jobs()}
        due = self._due_at_start(loaded, known)
        for name, entry in model.sources.items():
            schedule = entry.schedule or model.daemon.default_schedule
            if not entry.enabled or schedule is None:
                continue
            job_id = f"sync:{name}"
            wanted.add(job_id)
            first = {"next_run_time": due[name]} if name in due else {}
            self.scheduler.add_job(self.pipeline.run_source, _trigger(schedule, model.timezone), args=[name],
                                   id=job_id, name=job_id, replace_existing=True, misfire_grace_time=grace, **first)
        wanted.add("sweep")
        sweep = CronTrigger.from_crontab(model.daemon.sweep, timezone=model.timezone)
        self.scheduler.add_job(self.pipeline.sweep, sweep, id="sweep", name="sweep", replace_existing=True,
                               misfire_grace_time=grace)
        if model.daemon.watch_config:
            wanted.add("watch-config")
            self.scheduler.add_job(self._watch, "interval", seconds=WATCH_SECONDS, id="watch-config",
                                   name="watch-config", replace_existing=True)
        for job in self.scheduler.get_jobs():
            if job.id not in wanted:
                job.remove()
        self._record_next_runs()

    def _due_at_start(self, loaded: LoadedConfig, known: set[str]) -> dict[str, datetime]:
        """When to run each new job's source at once (it is due), staggered; logs the sources left to `hub sync`."""
        manual = [n for n, e in loaded.model.sources.items()
                  if e.enabled and plans.source_schedule(loaded, n) is None and f"sync:{n}" not in known]
        if manual:
            logger.warning("sources without a schedule (and no daemon.default_schedule): %s; `hub run` never pulls "
                           "them, only `hub sync` does", ", ".join(manual))
        now = datetime.now(UTC)
        due = [name for name, p in plans.plans(loaded, self.store, now).items()
               if p.due and f"sync:{name}" not in known]
        for name in due:
            logger.info("source %s is due (never synced, or its schedule was missed since its last success): "
                        "it runs now", name)
        return {name: now + timedelta(seconds=i * STARTUP_STAGGER_S) for i, name in enumerate(due)}

    def _job_done(self, event: Any) -> None:
        # A job that ran has its next fire time now: keep `hub status` current without waiting for the watch job.
        if str(event.job_id).startswith("sync:"):
            job = self.scheduler.get_job(event.job_id)
            when = getattr(job, "next_run_time", None) if job is not None else None
            health.set_next_run(self.store, health.key("source", event.job_id[5:]),
                                when if isinstance(when, datetime) else None)

    def _forget_next_runs(self) -> None:
        # A stopped daemon runs nothing: `hub status` then shows the next run the schedule implies instead.
        try:
            for key, row in health.read_all(self.store).items():
                if key.startswith("source:") and row.next_run_at is not None:
                    health.set_next_run(self.store, key, None)
        except Exception:  # the store may be gone at exit; a stale time is all that is lost
            logger.debug("could not clear the next runs", exc_info=True)

    def _record_next_runs(self) -> None:
        for job in self.scheduler.get_jobs():
            if job.id.startswith("sync:"):
                when = getattr(job, "next_run_time", None)
                health.set_next_run(self.store, health.key("source", job.id[5:]),
                                    when if isinstance(when, datetime) else None)

    # -- reload

    def _file_mtime(self) -> float:
        try:
            return self.config_path.stat().st_mtime
        except OSError:
            return 0.0

    def _watch(self) -> None:
        mtime = self._file_mtime()
        if mtime and mtime != self._mtime:
            self._mtime = mtime
            self.reload()
        self._record_next_runs()

    def reload(self) -> bool:
        """Validate the config file again and switch to it; an invalid file is refused, the old config stays."""
        from hub.config.loader import load_config

        loader = self.load or load_config
        try:
            fresh = loader(self.config_path)
        except ConfigErrors as exc:
            for error in exc.errors:
                logger.error("config reload refused: %s", error)
            return False
        if fresh.model.store.url != self.loaded.model.store.url:
            logger.error("config reload refused: store.url changed (restart `hub run` to move the store)")
            return False
        self.loaded = fresh
        self.pipeline.config = fresh
        self._schedule(fresh)
        logger.info("config reloaded from %s", self.config_path)
        return True

    # -- health endpoint

    def healthz(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body) of ``/healthz``: 503 when the scheduler is not running, else 200 with the state."""
        if not self._running.is_set():
            return 503, {"status": "down", "reasons": ["the scheduler is not running"]}
        reasons = [
            f"{h.name} paused: {h.paused_reason}" if h.paused else f"{h.name}: {h.consecutive_failures} failed runs"
            for h in health.read_all(self.store).values()
            if h.paused or h.consecutive_failures
        ]
        return 200, {"status": "degraded" if reasons else "ok", "reasons": reasons}

    def _serve_http(self, host: str, port: int) -> None:
        daemon = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?")[0] == "/healthz":
                    status, body = daemon.healthz()
                    self._send(status, "application/json", json.dumps(body).encode())
                elif self.path.split("?")[0] == "/metrics":
                    self._send(200, "text/plain; version=0.0.4; charset=utf-8", daemon.pipeline.metrics.render())
                else:
                    self._send(404, "application/json", b'{"error": "not found: try /healthz or /metrics"}')

            def _send(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                logger.debug("http: " + format, *args)

        self._server = ThreadingHTTPServer((host, port), Handler)
        thread = threading.Thread(target=self._server.serve_forever, name="hub-http", daemon=True)
        thread.start()
        logger.info("health endpoint on http://%s:%d/healthz and /metrics", host, self._server.server_address[1])


def _trigger(schedule: Any, timezone: str) -> Any:
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    jitter = int(parse_duration(schedule.jitter).total_seconds()) if schedule.jitter else None
    if schedule.cron is not None:
        return CronTrigger.from_crontab(schedule.cron, timezone=timezone, jitter=jitter)
    return IntervalTrigger(seconds=parse_duration(schedule.every).total_seconds(), timezone=timezone, jitter=jitter)


def parse_http(value: str) -> tuple[str, int]:
    """``127.0.0.1:8080`` (or ``:8080``, loopback) as (host, port); ValueError otherwise."""
    host, _, port = value.rpartition(":")
    if not port.isdigit():
        raise ValueError(f"--http takes HOST:PORT, e.g. 127.0.0.1:9108, not {value!r}")
    return host or "127.0.0.1", int(port)
