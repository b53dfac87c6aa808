"""Two ``hub sync`` processes and a daemon on one store (SQLite and PostgreSQL): no connector runs twice at once,
no "database is locked" reaches the user, and the store ends as one uninterrupted sync leaves it."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conformance.trials import output
from tests.conformance.world import configure, connectors_with, open_world, runs, snapshot, wait_for

DAEMON_SECONDS = 6.0


@pytest.mark.parametrize("connector", connectors_with())
def test_two_syncs_and_a_daemon_never_run_a_connector_twice_at_once(
    connector: str, store_url: str, tmp_path: Path
) -> None:
    with open_world(connector, tmp_path) as world:
        reference_url = world.fresh_store("reference")
        assert world.sync()["status"] == "ok"
        reference = snapshot(reference_url)
        world.use_store(store_url)
        configure(world, sources={world.source: {**world.settings["sources"][world.source],
                                                 "schedule": {"every": "1s"}}})
        daemon = world.popen("run")
        syncs = [world.popen("sync", world.source) for _ in range(2)]
        procs: list[subprocess.Popen[str]] = [daemon, *syncs]
        try:
            for proc in syncs:
                proc.wait(timeout=180)
            wait_for(lambda: sum(r["status"] == "ok" for r in runs(store_url)) >= 3, 120,
                     "the daemon did not sync on its schedule")
            time.sleep(DAEMON_SECONDS / 3)
            daemon.send_signal(signal.SIGTERM)
            assert daemon.wait(timeout=15) == 0, output(daemon)[-3000:]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        texts = [output(p) for p in procs]
        for proc, text in zip(syncs, texts[1:], strict=True):
            assert proc.returncode == 0 or "running in another process" in text, text[-3000:]
        for text in texts:
            assert "database is locked" not in text.lower(), text[-3000:]
            assert "Traceback" not in text, text[-3000:]
        rows = runs(store_url)
        assert all(r["status"] != "running" for r in rows), rows
        spans = sorted((r["started_at"], r["finished_at"]) for r in rows)
        for (_, finished), (started, _) in itertools.pairwise(spans):
            assert started >= finished, spans  # one run of this source at a time
        assert snapshot(store_url).differences(reference) == {"lost": 0, "extra": 0, "changed": 0}
