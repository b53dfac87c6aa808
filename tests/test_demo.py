"""``hub demo`` with the vendor sandboxes: pull from three tools, resolve people across them, segment, push."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hub.demo import DEMO_SEGMENTS, demo_vendors, people_by_source_count
from hub.store import open_store

from .cli_support import all_output, invoke, run_hub

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if demo_vendors() != list(DEMO_SEGMENTS):
        pytest.skip(f"the demo needs the {', '.join(DEMO_SEGMENTS)} connectors installed")
    folder = tmp_path_factory.mktemp("demo")
    result = invoke(["demo", "--dir", str(folder / "ws"), "--contacts", "400"])
    assert result.exit_code == 0, all_output(result)
    return folder / "ws", result.stdout


def test_the_demo_pulls_every_vendor_and_resolves_people_across_them(demo: tuple[Path, str]) -> None:
    workspace, _ = demo
    done = run_hub(["status", "--json", "--config", str(workspace / "config.yaml")], cwd=workspace)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    vendors = {s.split("/")[0] for s in summary["raw_records"]}
    assert len(vendors) == 3, summary["raw_records"]
    assert all(n > 0 for n in summary["identities"].values())
    # People overlap across the tools, so there are fewer people than profiles.
    assert summary["people"] < sum(summary["identities"].values())
    store = open_store(f"sqlite:///{workspace / 'hub.db'}", upgrade=False)
    try:
        overlap = people_by_source_count(store)
    finally:
        store.close()
    assert overlap.get(3, 0) > 0 and overlap.get(2, 0) > 0, overlap  # the seeded overlap was found
    assert sum(overlap.values()) == summary["people"]
    assert summary["activities"].get("order", 0) > 0


def test_the_demo_pushed_tags_to_every_destination(demo: tuple[Path, str]) -> None:
    workspace, stdout = demo
    done = run_hub(["status", "--json", "--config", str(workspace / "config.yaml")], cwd=workspace)
    pushes = {r["target"]: r for r in json.loads(done.stdout)["last_runs"] if r["kind"] == "push"}
    assert len(pushes) == 3, pushes
    for target, run in pushes.items():
        assert run["status"] == "ok", run
        assert run["counts"].get("added", 0) > 0, (target, run)
        assert run["counts"].get("failed", 0) == 0, (target, run)
    assert "Sandbox API requests" in stdout


def test_the_demo_keeps_sandbox_credentials_in_owner_only_files(demo: tuple[Path, str]) -> None:
    workspace, stdout = demo
    config = (workspace / "config.yaml").read_text(encoding="utf-8")
    files = sorted((workspace / "secrets").iterdir())
    assert len(files) >= 3
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        value = path.read_text(encoding="utf-8")
        assert value not in config and value not in stdout
        assert f"file:secrets/{path.name}" in config
