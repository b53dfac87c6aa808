"""What ``hub status`` shows per connector: one row each (state, last run, next run, records) and the details
``--verbose`` or ``hub status NAME`` adds (schedule, failures, errors, push counts, skip reasons).

The state comes from the latest run row (a run whose process is gone was closed as ``interrupted`` when the
store was opened, see :func:`hub.locks.close_dead_runs`) and the daemon's health row (paused). The next run is
the one a running daemon recorded, else the one the schedule implies from the last success.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from hub.daemon import health
from hub.daemon import schedule as plans
from hub.store import models as m

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig
    from hub.store import Store

_PUSH_COUNTS = ("added", "removed", "retry", "failed", "blocked", "drift")


@dataclass(frozen=True)
class ConnectorStatus:
    """One source or destination as ``hub status`` shows it.

    Args:
        name: its name in the config.
        kind: ``source`` or ``destination``.
        type: its connector type (hubspot, csv, ...).
        state: ok, failed (any failed status: the details name it), paused, running, interrupted, stopped,
            never run or disabled.
        last_run_at: when its latest run started (a sync for a source, a push for a destination).
        last_status: that run's status.
        next_run: when it runs next under ``hub run`` (None: by hand, or after syncs for a destination).
        next_text: the next run in words when it is not a time (``due``, ``by hand``, ``after syncs``).
        records: records in the store (a source) or tags changed by the last push (a destination).
        details: label and text pairs for the detailed view.
    """

    name: str
    kind: str
    type: str
    state: str
    last_run_at: datetime | None
    last_status: str | None
    next_run: datetime | None
    next_text: str
    records: str
    details: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view (the details as a mapping)."""
        out: dict[str, Any] = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in vars(self).items()
                               if k != "details"}
        out["details"] = {label: text for label, text in self.details if label}
        return out


def connector_statuses(loaded: LoadedConfig, store: Store, summary: Any, now: datetime | None = None
                       ) -> list[ConnectorStatus]:
    """Every source, then every destination, of the config."""
    at = now or m.utcnow()
    tz = ZoneInfo(loaded.model.timezone)
    data = summary.as_dict()
    runs = {(r["kind"], r["target"]): r for r in summary.last_runs}
    rows = health.read_all(store)
    records = _records_by_source(data.get("raw_records") or {})
    done = plans.last_successes(store)
    model = loaded.model
    out = [_source(loaded, name, runs.get(("sync", name)), rows.get(health.key("source", name)), records.get(name, {}),
                   done.get(name), at, tz) for name in model.sources]
    out += [_destination(loaded, name, runs.get(("push", name)), rows.get(health.key("destination", name)), tz)
            for name in model.destinations]
    return out


def _records_by_source(raw: Mapping[str, int]) -> dict[str, dict[str, int]]:
    by_source: dict[str, dict[str, int]] = {}
    for key, n in raw.items():
        source, _, kind = str(key).partition("/")
        by_source.setdefault(source, {})[kind] = int(n)
    return by_source


def _state(enabled: bool, row: health.Health | None, run: Mapping[str, Any] | None) -> str:
    if not enabled:
        return "disabled"
    if row is not None and row.paused:
        return "paused"
    if run is None:
        return "never run"
    status = str(run.get("status"))
    if status in ("ok", "ok_with_skips"):
        return "ok"
    # config_error, transient_error, failed, ...: the detailed view says which, and the error.
    return status if status in ("running", "stopped", "interrupted") else "failed"


def _source(loaded: LoadedConfig, name: str, run: Mapping[str, Any] | None, row: health.Health | None,
            kinds: Mapping[str, int], last_success: datetime | None, now: datetime, tz: tzinfo
            ) -> ConnectorStatus:
    entry = loaded.model.sources[name]
    schedule = plans.source_schedule(loaded, name)
    plan = plans.plan(schedule, loaded.model.timezone, last_success, now)
    recorded = row.next_run_at if row is not None else None
    # A live daemon keeps its next run recorded; one in the past is a daemon that stopped (or is late).
    next_run = recorded if recorded is not None and recorded > now else plan.next_run
    if not entry.enabled:
        next_run, next_text = None, "disabled"
    elif schedule is None:
        next_text = "by hand"
    elif plan.due and next_run == plan.next_run:
        next_text = "due"
    else:
        next_text = ""
    details = [
        ("schedule", plans.describe(schedule) + ("" if schedule else " (`hub sync` only; no schedule)")),
        ("last success", local_time(last_success, tz) or "never"),
        ("records", ", ".join(f"{n:,} {kind}" for kind, n in sorted(kinds.items())) or "none"),
    ]
    details += _health_details(row, run, tz)
    return ConnectorStatus(name, "source", entry.type, _state(entry.enabled, row, run),
                           _started(run), _run_status(run), next_run, next_text, f"{sum(kinds.values()):,}", details)


def _destination(loaded: LoadedConfig, name: str, run: Mapping[str, Any] | None, row: health.Health | None,
                 tz: tzinfo) -> ConnectorStatus:
    entry = loaded.model.destinations[name]
    counts = (run or {}).get("counts") or {}
    daemon = loaded.model.daemon
    next_text = "disabled" if not entry.enabled else "after syncs" if daemon.push_after_sync else "daily sweep"
    tags = f"+{int(counts.get('added', 0)):,} -{int(counts.get('removed', 0)):,}" if run else ""
    details = [("last push", ", ".join(f"{int(counts.get(k, 0)):,} {k}" for k in _PUSH_COUNTS) if run else "never")]
    skipped = [f"{n:,} {k.split(':', 1)[1]}" for k, n in sorted(counts.items()) if k.startswith("skipped:")]
    details += [("skipped" if i == 0 else "", line) for i, line in enumerate(skipped)]
    details += _health_details(row, run, tz)
    return ConnectorStatus(name, "destination", entry.type, _state(entry.enabled, row, run), _started(run),
                           _run_status(run), None, next_text, tags, details)


def _health_details(row: health.Health | None, run: Mapping[str, Any] | None, tz: tzinfo) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if run is not None:
        out.append(("last run", f"{run.get('status')} ({local_time(run.get('started_at'), tz)} to "
                                f"{local_time(run.get('finished_at'), tz) or 'now'})"))
        if run.get("error"):
            out.append(("run error", str(run["error"])))
    if row is not None and (row.paused or row.consecutive_failures):
        out.append(("failures", f"{row.consecutive_failures} in a row"))
    if row is not None and row.paused:
        out.append(("paused", f"{row.paused_reason or ''} (`hub resume NAME` lifts it)"))
    elif row is not None and row.last_error and row.consecutive_failures:
        out.append(("last error", row.last_error))
    return out


def _started(run: Mapping[str, Any] | None) -> datetime | None:
    value = (run or {}).get("started_at")
    return value if isinstance(value, datetime) else None


def _run_status(run: Mapping[str, Any] | None) -> str | None:
    return None if run is None else str(run.get("status"))


def local_time(value: Any, tz: tzinfo, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A stored (UTC) time in the config's time zone; empty for None."""
    return value.astimezone(tz).strftime(fmt) if isinstance(value, datetime) else ""


def find(statuses: Sequence[ConnectorStatus], name: str) -> ConnectorStatus | None:
    """The status of the connector ``name`` (``source:NAME`` and ``destination:NAME`` work too)."""
    bare = name.split(":", 1)[1] if name.startswith(("source:", "destination:")) else name
    kind = name.split(":", 1)[0] if bare != name else None
    return next((s for s in statuses if s.name == bare and (kind is None or s.kind == kind)), None)
