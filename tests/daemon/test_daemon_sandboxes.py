"""`hub run` against the served HubSpot, Shopify and Mailchimp sandboxes: scheduled cycles pull, segment and push
until the tags converge; a vendor that starts refusing its token pauses only its source; two daemons share one
store without running a connector at once; SIGTERM stops both cleanly."""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from ruamel.yaml import YAML

from hub.daemon import health
from hub.demo import DEMO_SEGMENTS, SandboxDemo, demo_vendors, prepare_sandbox_demo
from hub.store import models as m
from hub.store import open_store

from ..cli_support import hub_env
from .test_daemon import free_port, get, start, sync_runs, wait_for

pytestmark = pytest.mark.slow

SOURCES = ("hubspot", "shopify", "newsletter")


@pytest.fixture
def sandboxes(tmp_path: Path) -> Iterator[SandboxDemo]:
    if demo_vendors() != list(DEMO_SEGMENTS):
        pytest.skip(f"needs the {', '.join(DEMO_SEGMENTS)} connectors installed")
    workspace = prepare_sandbox_demo(tmp_path / "ws", contacts=300, seed=5)
    yaml = YAML(typ="safe", pure=True)
    config = yaml.load(workspace.config.read_text(encoding="utf-8"))
    config["logging"] = {"level": "INFO"}
    config["daemon"] = {"failure_threshold": 3, "lock_ttl": "30s", "watch_config": False}
    for entry in config["sources"].values():
        entry["schedule"] = {"every": "2s"}
    with workspace.config.open("w", encoding="utf-8") as handle:
        yaml.dump(config, handle)
    try:
        yield workspace
    finally:
        workspace.close()


def push_runs(db: Path) -> list[dict[str, Any]]:
    """Every push run so far, oldest first (the store summary keeps only the latest per destination)."""
    store = open_store(f"sqlite:///{db}", upgrade=False)
    try:
        with store.engine.connect() as conn:
            r = m.run
            return [dict(row) for row in conn.execute(
                sa.select(r.c.target, r.c.status, r.c.counts).where(r.c.kind == "push").order_by(r.c.id)).mappings()]
    finally:
        store.close()


def dry_run(config: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "hub.cli", "push", "--dry-run", "--json", "--config", str(config)],
        cwd=config.parent, env=hub_env(), capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_daemons_converge_pause_a_failing_vendor_alone_and_stop_cleanly(sandboxes: SandboxDemo) -> None:
    config = sandboxes.config
    db = config.parent / "hub.db"
    port = free_port()
    first = start(config, port, log=config.parent / "a.log")
    port2 = free_port()
    second = start(config, port2, log=config.parent / "b.log")
    try:
        # Several cycles of every source, and a push to every destination.
        for source in SOURCES:
            wait_for(lambda s=source: len([r for r in sync_runs(db, s) if r[2] == "ok"]) >= 3, timeout=120)
        wait_for(lambda: len({r["target"] for r in push_runs(db) if r["status"] == "ok"}) == 3, timeout=60)
        # Only finished runs have counts: the next push may already be running. The first push of each destination
        # adds the tags; later ones find nothing to change.
        assert sum((r["counts"] or {}).get("added", 0) for r in push_runs(db) if r["status"] == "ok") > 0

        # Converged: what the destinations acknowledged is what the segments want, so a plan has no change.
        plans = dry_run(config)["destinations"]
        assert len(plans) == 3
        for item in plans:
            assert item["result"]["added"] == 0 and item["result"]["removed"] == 0, item

        # Shopify starts refusing the token (the app was uninstalled): its source pauses at once, the others
        # keep running.
        sandboxes.servers.sandboxes["shopify"].emulator.revoke_tokens()  # type: ignore[attr-defined]
        store = open_store(f"sqlite:///{db}", upgrade=False)
        try:
            paused = wait_for(lambda: (h := health.read(store, "source:shopify")) and h.paused and h, timeout=60)
            assert paused.paused_reason
            for other in ("hubspot", "newsletter"):
                state = health.read(store, f"source:{other}")
                assert state is not None and not state.paused
        finally:
            store.close()
        counts = {s: len(sync_runs(db, s)) for s in ("hubspot", "newsletter", "shopify")}
        for other in ("hubspot", "newsletter"):
            wait_for(lambda o=other: len(sync_runs(db, o)) > counts[o] + 1, timeout=60)
        assert len(sync_runs(db, "shopify")) <= counts["shopify"] + 1  # at most the run already under way

        status, body = get(f"http://127.0.0.1:{port}/healthz")
        data = json.loads(body)
        assert status == 200 and data["status"] == "degraded"
        assert any("source:shopify" in r for r in data["reasons"]) and not any(
            "source:hubspot" in r or "source:newsletter" in r for r in data["reasons"]
        )
        texts = []
        for p in (port, port2):
            status, metrics = get(f"http://127.0.0.1:{p}/metrics")
            assert status == 200
            texts.append(metrics.decode())
        assert any('hub_runs_total{kind="sync",status="ok",target="hubspot"}' in t for t in texts)
        # API calls are counted per connector from the HTTP core, whatever thread sent them; the two daemons
        # share the work, so the counts are summed over both.
        for connector in ("hubspot", "newsletter", "shopify"):
            prefix = f'hub_api_requests_total{{connector="{connector}"}}'
            total = sum(float(x.split()[-1]) for t in texts for x in t.splitlines() if x.startswith(prefix))
            assert total > 0, connector
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        codes = [proc.wait(timeout=15) for proc in (first, second)]
    assert codes == [0, 0]
    assert time.monotonic() - stopped < 10

    for source in SOURCES:
        runs = sorted((s, f) for s, f, _ in sync_runs(db, source) if f is not None)
        for (_, end), (begin, _) in itertools.pairwise(runs):
            assert begin >= end, f"two syncs of {source} overlapped"
