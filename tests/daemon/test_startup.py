"""`hub run` runs what is due at start instead of waiting a whole interval, names the sources it never runs
(no schedule), and `hub status` shows every source's next run; a second start does not pull again what was
just pulled."""

from __future__ import annotations

import json
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hub.config.models import Schedule
from hub.daemon.schedule import plan

from ..cli_support import hub_env, run_hub
from .test_daemon import free_port, start, sync_runs, wait_for, write_workspace

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_a_source_never_synced_or_past_its_interval_is_due_and_a_fresh_one_is_not() -> None:
    hourly = Schedule(every="1h")
    assert plan(hourly, "UTC", None, NOW).due
    assert plan(hourly, "UTC", NOW - timedelta(minutes=61), NOW).due
    fresh = plan(hourly, "UTC", NOW - timedelta(minutes=20), NOW)
    assert not fresh.due and fresh.next_run == NOW + timedelta(minutes=40)
    assert plan(None, "UTC", None, NOW).next_run is None  # by hand only


def test_a_cron_source_is_due_when_a_run_was_missed_since_its_last_success() -> None:
    daily = Schedule(cron="0 3 * * *")
    assert plan(daily, "UTC", NOW - timedelta(hours=2), NOW).next_run == datetime(2026, 12, 7, 3, tzinfo=UTC)
    assert plan(daily, "UTC", NOW - timedelta(days=1), NOW).due  # the 03:00 run of today was missed


@pytest.mark.slow
def test_hub_run_on_a_fresh_store_syncs_within_seconds_and_names_unscheduled_sources(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, every="1h", broken=False)
    text = config.read_text(encoding="utf-8")
    by_hand = "  by_hand:\n    type: csv\n    files:\n      - {kind: contacts, path: exports/contacts.csv}\n"
    config.write_text(text + by_hand, encoding="utf-8")
    db = tmp_path / "hub.db"
    log = tmp_path / "daemon.log"
    started = time.monotonic()
    proc = start(config, free_port(), log=log)
    try:
        # An `every: 1h` source is pulled at start, not an hour later.
        wait_for(lambda: [r for r in sync_runs(db, "shop") if r[2] == "ok"], timeout=30)
        assert time.monotonic() - started < 30
        assert "by_hand" in log.read_text(encoding="utf-8")
        assert "only `hub sync` does" in log.read_text(encoding="utf-8")
        done = run_hub(["status", "--json", "--config", str(config)], cwd=tmp_path, env=hub_env())
        assert done.returncode == 0, done.stderr
        connectors = {c["name"]: c for c in json.loads(done.stdout)["sources"]}
        shop_next = datetime.fromisoformat(connectors["shop"]["next_run"])
        assert shop_next > datetime.now(UTC) + timedelta(minutes=50)  # the next one is an interval later
        assert connectors["by_hand"]["next_run"] is None and connectors["by_hand"]["next_text"] == "by hand"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
    assert sync_runs(db, "by_hand") == []
    # Started again right away, nothing is due: the source synced a moment ago is not pulled again.
    runs = len(sync_runs(db, "shop"))
    proc = start(config, free_port(), log=tmp_path / "again.log")
    try:
        wait_for(lambda: "jobs scheduled" in (tmp_path / "again.log").read_text(encoding="utf-8"), timeout=30)
        time.sleep(3)
        assert len(sync_runs(db, "shop")) == runs
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
