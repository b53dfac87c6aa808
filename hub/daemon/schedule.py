"""When a source is due: its schedule against its last successful sync.

``hub run`` runs at start what is due (a source never synced, or whose last success is older than its interval,
or for a cron schedule, one that missed a run since), instead of waiting a whole interval; ``hub status`` shows
the next run the same way when no daemon has recorded one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from hub.config.models import parse_duration
from hub.store import models as m

if TYPE_CHECKING:
    from hub.config.loader import LoadedConfig
    from hub.config.models import Schedule
    from hub.store import Store

# Statuses of a sync run that count as a success for scheduling (it pulled up to its end).
_SUCCESS = ("ok", "ok_with_skips")


@dataclass(frozen=True)
class Plan:
    """A source's schedule state at one instant.

    Args:
        schedule: its schedule (its own, or ``daemon.default_schedule``), or None (it runs only by hand).
        last_success: when its last successful sync finished, or None.
        next_run: when the schedule says it runs next, or None without a schedule.
        due: the next run is now or past (``hub run`` runs it at start).
    """

    schedule: Schedule | None
    last_success: datetime | None
    next_run: datetime | None
    due: bool


def source_schedule(loaded: LoadedConfig, name: str) -> Schedule | None:
    """The schedule ``hub run`` uses for a source: its own, else the daemon's default (None: by hand only)."""
    entry = loaded.model.sources[name]
    return entry.schedule or loaded.model.daemon.default_schedule


def describe(schedule: Schedule | None) -> str:
    """``every 1h`` or ``cron 0 * * * *`` (``by hand`` without a schedule)."""
    if schedule is None:
        return "by hand"
    return f"every {schedule.every}" if schedule.every is not None else f"cron {schedule.cron}"


def last_successes(store: Store) -> dict[str, datetime]:
    """When each source's last successful sync finished (by source name)."""
    r = m.run
    stmt = (sa.select(r.c.target, sa.func.max(r.c.finished_at))
            .where(r.c.kind == "sync", r.c.status.in_(_SUCCESS)).group_by(r.c.target))
    with store.engine.connect() as conn:
        return {target: _aware(at) for target, at in conn.execute(stmt) if at is not None}


def next_after(schedule: Schedule, timezone: str, last: datetime) -> datetime:
    """The first run the schedule wants after ``last``: an interval later, or the cron's next fire time."""
    if schedule.every is not None:
        return last + parse_duration(schedule.every)
    from apscheduler.triggers.cron import CronTrigger

    assert schedule.cron is not None  # validated: exactly one of every/cron
    trigger = CronTrigger.from_crontab(schedule.cron, timezone=timezone)
    fire: Any = trigger.get_next_fire_time(None, last + timedelta(seconds=1))
    return fire if isinstance(fire, datetime) else last + timedelta(days=366)


def plan(schedule: Schedule | None, timezone: str, last_success: datetime | None, now: datetime) -> Plan:
    """Due now, and the next run, of a source with ``schedule`` whose last success was ``last_success``."""
    if schedule is None:
        return Plan(None, last_success, None, False)
    if last_success is None:
        return Plan(schedule, None, now, True)  # never synced: the first pull should not wait an interval
    upcoming = next_after(schedule, timezone, last_success)
    return Plan(schedule, last_success, max(upcoming, now), upcoming <= now)


def plans(loaded: LoadedConfig, store: Store, now: datetime | None = None) -> dict[str, Plan]:
    """Every enabled source's plan at ``now`` (default: the current time)."""
    at = now or m.utcnow()
    done = last_successes(store)
    return {name: plan(source_schedule(loaded, name), loaded.model.timezone, done.get(name), at)
            for name, entry in loaded.model.sources.items() if entry.enabled}


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; the store writes UTC.
    from datetime import UTC

    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
