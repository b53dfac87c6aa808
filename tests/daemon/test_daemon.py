"""`hub run` as a real process: scheduled cycles, the breaker, clean SIGTERM, /healthz and /metrics, config
reload, and two daemons on one store never running a connector at once."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from hub.daemon import health
from hub.sandbox.business import Business
from hub.store import models as m
from hub.store import open_store

from ..cli_support import ROOT

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_workspace(folder: Path, *, every: str = "1s", broken: bool = True) -> Path:
    Business.generate(150, 3).write_csv_exports(folder / "exports")
    broken_source = (
        "  till:\n    type: csv\n    schedule: {every: 1s}\n    files:\n"
        "      - {kind: orders, path: exports/missing.csv}\n"
    ) if broken else ""
    config = folder / "config.yaml"
    config.write_text(
        "version: 1\nstore: {url: sqlite:///hub.db}\n"
        "daemon: {failure_threshold: 2, sweep: '0 3 * * *', lock_ttl: 30s}\n"
        "sources:\n"
        f"  shop:\n    type: csv\n    schedule: {{every: {every}}}\n    page_size: 200\n    files:\n"
        "      - {kind: contacts, path: exports/contacts.csv}\n"
        "      - {kind: orders, path: exports/orders.csv}\n"
        f"{broken_source}",
        encoding="utf-8",
    )
    return config


def start(config: Path, port: int, *, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HUB_LOG_LEVEL": "INFO"}
    env.pop("HUB_CONFIG", None)
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run", "--config", str(config), "--http", f"127.0.0.1:{port}",
         "--log-format", "json"],
        cwd=config.parent, env=env, stdout=subprocess.DEVNULL, stderr=log.open("wb"),
    )


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()


def wait_for(condition: Callable[[], Any], timeout: float = 60.0, step: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = condition()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")


def sync_runs(db: Path, target: str) -> list[tuple[Any, Any, str]]:
    store = open_store(f"sqlite:///{db}", upgrade=False)
    try:
        with store.engine.connect() as conn:
            r = m.run
            return [(row.started_at, row.finished_at, row.status) for row in conn.execute(
                sa.select(r.c.started_at, r.c.finished_at, r.c.status)
                .where(r.c.kind == "sync", r.c.target == target).order_by(r.c.id))]
    finally:
        store.close()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path, int]]:
    config = write_workspace(tmp_path)
    port = free_port()
    proc = start(config, port, log=tmp_path / "daemon.log")
    yield proc, config, port
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_cycles_breaker_health_metrics_and_a_clean_stop(daemon: tuple[subprocess.Popen[bytes], Path, int]) -> None:
    proc, config, port = daemon
    db = config.parent / "hub.db"
    # Several cycles of the good source run; the broken one is paused at once (its file is missing: a config
    # error), and the good one keeps running.
    wait_for(lambda: len([r for r in sync_runs(db, "shop") if r[2] == "ok"]) >= 3)
    store = open_store(f"sqlite:///{db}", upgrade=False)
    try:
        till = wait_for(lambda: (h := health.read(store, "source:till")) and h.paused and h)
        assert "configuration problem" in (till.paused_reason or "")
        shop = health.read(store, "source:shop")
        assert shop is not None and not shop.paused and shop.last_success_at is not None
    finally:
        store.close()
    status, body = get(f"http://127.0.0.1:{port}/healthz")
    assert status == 200
    data = json.loads(body)
    assert data["status"] == "degraded" and any("source:till paused" in r for r in data["reasons"])
    status, metrics = get(f"http://127.0.0.1:{port}/metrics")
    text = metrics.decode()
    assert status == 200 and 'hub_runs_total{kind="sync",status="ok",target="shop"}' in text
    assert 'hub_connector_paused{name="source:till"} 1.0' in text
    runs_before = len(sync_runs(db, "till"))
    time.sleep(2.5)
    assert len(sync_runs(db, "till")) == runs_before  # paused: not run again
    # SIGTERM: the current page is finished, and the process exits 0 well within 10 s.
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    assert proc.wait(timeout=10) == 0
    assert time.monotonic() - started < 10
    assert all(finished is not None for _, finished, _ in sync_runs(db, "shop"))  # no run left open


def test_an_invalid_config_reload_is_refused_and_a_valid_one_taken(
    daemon: tuple[subprocess.Popen[bytes], Path, int], tmp_path: Path
) -> None:
    proc, config, port = daemon
    wait_for(lambda: get(f"http://127.0.0.1:{port}/healthz")[0] == 200)
    good = config.read_text(encoding="utf-8")
    config.write_text(good.replace("failure_threshold: 2", "failure_treshold: 2"), encoding="utf-8")
    log = tmp_path / "daemon.log"
    wait_for(lambda: "config reload refused" in log.read_text(encoding="utf-8"), timeout=20)
    assert "failure_treshold: unknown field (did you mean 'failure_threshold'?)" in log.read_text(encoding="utf-8")
    assert proc.poll() is None  # still running on the old config
    config.write_text(good.replace("till:", "till2:"), encoding="utf-8")
    wait_for(lambda: "config reloaded" in log.read_text(encoding="utf-8"), timeout=20)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_two_daemons_on_one_store_never_sync_a_source_at_once(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, every="1s", broken=False)
    first = start(config, free_port(), log=tmp_path / "a.log")
    second = start(config, free_port(), log=tmp_path / "b.log")
    try:
        db = tmp_path / "hub.db"
        wait_for(lambda: len([r for r in sync_runs(db, "shop") if r[1] is not None]) >= 6, timeout=90)
    finally:
        for proc in (first, second):
            proc.send_signal(signal.SIGTERM)
        for proc in (first, second):
            assert proc.wait(timeout=15) == 0
    runs = [(s, f) for s, f, _ in sync_runs(tmp_path / "hub.db", "shop") if f is not None]
    runs.sort()
    for (_, end), (start_next, _) in itertools.pairwise(runs):
        assert start_next >= end, "two syncs of one source overlapped"
    a, b = ((tmp_path / n).read_text(encoding="utf-8") for n in ("a.log", "b.log"))
    # Both daemons really worked this source: the lock was contended (and respected), or each took turns.
    took_turns = all('"logger": "hub.sync"' in log for log in (a, b))
    assert "is running in another process" in a + b or took_turns
