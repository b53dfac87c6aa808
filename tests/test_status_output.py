"""What `hub status`, `hub explain`, `hub segment` and `hub demo` print, at 80 columns, on the store the sandbox
demo filled; a dead run never shows as running; a config whose demo sandboxes stopped fails fast in one line."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from hub.demo import DEMO_SEGMENTS, demo_vendors
from hub.process import this_host
from hub.store import open_store

from .cli_support import all_output, hub_env, invoke, run_hub

pytestmark = pytest.mark.slow

WIDTH = {"COLUMNS": "80"}
AS_OF = "2026-11-01"  # the seeded business's "today"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    if demo_vendors() != list(DEMO_SEGMENTS):
        pytest.skip(f"the demo needs the {', '.join(DEMO_SEGMENTS)} connectors installed")
    folder = tmp_path_factory.mktemp("status") / "ws"
    result = invoke(["demo", "--dir", str(folder), "--contacts", "300"], env=WIDTH)
    assert result.exit_code == 0, all_output(result)
    return folder / "config.yaml", result.stdout


def fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, "\n".join(long)


def test_status_is_a_compact_table_that_fits_80_columns(demo: tuple[Path, str]) -> None:
    config, _ = demo
    result = invoke(["status", "--config", str(config)], env=WIDTH)
    assert result.exit_code == 0, all_output(result)
    fits(result.stdout)
    assert "…" not in result.stdout  # no header or cell cut short
    header = next(line for line in result.stdout.splitlines() if line.startswith("name"))
    assert header.split() == ["name", "kind", "state", "last", "run", "next", "run", "records"]
    rows = {line.split()[0]: line for line in result.stdout.splitlines() if line.split()[:1]}
    for name in ("hubspot", "shopify", "newsletter", "hubspot-tags", "shopify-tags", "newsletter-tags"):
        assert name in rows, result.stdout
    assert " ok " in rows["hubspot"] and "source" in rows["hubspot"]
    assert f"segments evaluated as of {AS_OF}" in result.stdout


def test_verbose_and_one_connector_show_details_that_fit_80_columns(demo: tuple[Path, str]) -> None:
    config, _ = demo
    verbose = invoke(["status", "--verbose", "--config", str(config)], env=WIDTH)
    assert verbose.exit_code == 0, all_output(verbose)
    fits(verbose.stdout)
    assert "…" not in verbose.stdout
    assert "Records" in verbose.stdout and "schedule" in verbose.stdout
    one = invoke(["status", "newsletter-tags", "--config", str(config)], env=WIDTH)
    assert one.exit_code == 0, all_output(one)
    fits(one.stdout)
    assert "last push" in one.stdout and "skipped" in one.stdout
    # A skip reason wraps at words in its own column, never one word per line.
    single = [line for line in one.stdout.splitlines() if len(line.split()) == 1]
    assert len(single) <= 2, one.stdout
    unknown = invoke(["status", "nope", "--config", str(config)])
    assert unknown.exit_code == 2 and "hubspot-tags" in unknown.stderr


def test_status_json_has_every_sources_schedule_and_next_run(demo: tuple[Path, str]) -> None:
    config, _ = demo
    data = json.loads(invoke(["status", "--json", "--config", str(config)]).stdout)
    sources = {s["name"]: s for s in data["sources"]}
    assert set(sources) == {"hubspot", "shopify", "newsletter"}
    for source in sources.values():
        assert source["next_run"] is not None, source  # the demo's config schedules every source
        assert source["details"]["schedule"].startswith("every ")
    assert {d["name"] for d in data["destinations"]} == {"hubspot-tags", "shopify-tags", "newsletter-tags"}
    assert data["segments_as_of"].startswith(AS_OF)


def leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    children = node.get("children") or []
    return [node] if not children else [leaf for c in children for leaf in leaves(c)]


def test_explain_is_text_with_the_failing_values_and_fits_80_columns(demo: tuple[Path, str]) -> None:
    config, stdout = demo
    who = re.search(r"hub explain (\S+) --config", stdout)
    assert who is not None, stdout
    result = invoke(["explain", who.group(1), "--config", str(config)], env=WIDTH)
    assert result.exit_code == 0, all_output(result)
    assert not result.stdout.lstrip().startswith("{")  # text by default; JSON only with --json
    fits(result.stdout)
    assert "Profiles" in result.stdout and f"as of {AS_OF}" in result.stdout
    data = json.loads(invoke(["explain", who.group(1), "--json", "--config", str(config)]).stdout)
    conditions = [leaf for s in data["segments"] for leaf in leaves(s["rule"])]
    assert conditions
    for leaf in conditions:
        if leaf["condition"].startswith("in segment"):
            continue
        # Every condition reads with the person's value, or says why there is none.
        assert leaf["reading"] != leaf["condition"], leaf
        assert leaf["reading"] in result.stdout.replace("\n", " ") or len(leaf["reading"]) > 60


def test_explain_says_why_a_value_is_missing(demo: tuple[Path, str]) -> None:
    config, _ = demo
    store = open_store(f"sqlite:///{config.parent / 'hub.db'}", upgrade=False)
    try:
        with store.engine.connect() as conn:
            email = conn.exec_driver_sql(
                "SELECT p.email FROM person p JOIN segment_membership s ON s.person_id = p.id "
                "WHERE s.segment = 'engaged-non-buyers' AND s.exited_at IS NULL AND p.email IS NOT NULL LIMIT 1"
            ).scalar_one()
    finally:
        store.close()
    result = invoke(["explain", str(email), "--config", str(config)], env=WIDTH)
    assert "no last_order_at (never ordered)" in result.stdout, result.stdout


def test_the_demo_prints_pull_then_segments_then_push_and_why_its_date_differs(demo: tuple[Path, str]) -> None:
    config, stdout = demo
    fits(stdout)
    pulled, segments, pushed = (stdout.index(s) for s in ("Pulled", "Segments (", "Tags pushed"))
    assert pulled < segments < pushed
    assert f"segments evaluated as of {AS_OF}" in stdout
    assert f"hub segment --as-of {AS_OF}" in stdout
    now = invoke(["segment", "--config", str(config)], env=WIDTH)
    assert now.exit_code == 0, all_output(now)
    assert re.search(r"segments evaluated as of \d{4}-\d\d-\d\d \d\d:\d\d UTC \(now\)", now.stdout), now.stdout
    # Back to the demo's date, so the other tests here see the demo's evaluation.
    again = invoke(["segment", "--as-of", AS_OF, "--config", str(config)])
    assert again.exit_code == 0 and f"segments evaluated as of {AS_OF}" in again.stdout


@pytest.mark.parametrize("args", [["push", "--dry-run"], ["sync"], ["check", "--online"]])
def test_a_config_whose_demo_sandboxes_stopped_fails_fast_in_one_line(demo: tuple[Path, str], args: list[str]
                                                                      ) -> None:
    config, _ = demo
    started = time.monotonic()
    done = run_hub([*args, "--config", str(config)], cwd=config.parent)
    assert time.monotonic() - started < 10  # no 15 s of connection retries
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "demo's sandboxes" in lines[0] and "hub demo --serve" in lines[0]
    assert "Traceback" not in done.stderr and "ConnectError" not in done.stderr


def test_a_run_whose_process_died_shows_as_interrupted(tmp_path: Path) -> None:
    from .daemon.test_daemon import write_workspace

    config = write_workspace(tmp_path, broken=False)
    assert invoke(["sync", "--config", str(config)]).exit_code == 0
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    store = open_store(f"sqlite:///{tmp_path / 'hub.db'}")
    try:
        store.start_run("sync", "shop", holder=f"{this_host()}:{child.pid}")  # as a killed `hub sync` leaves it
    finally:
        store.close()
    result = invoke(["status", "--config", str(config)], env=WIDTH)
    row = next(line for line in result.stdout.splitlines() if line.startswith("shop "))
    assert "interrupted" in row and "running" not in row
    data = json.loads(invoke(["status", "--json", "--config", str(config)]).stdout)
    assert [s["state"] for s in data["sources"]] == ["interrupted"]
    assert all(r["status"] != "running" for r in data["last_runs"])


def test_demo_serve_keeps_the_sandboxes_until_it_is_stopped(tmp_path: Path) -> None:
    if demo_vendors() != list(DEMO_SEGMENTS):
        pytest.skip(f"the demo needs the {', '.join(DEMO_SEGMENTS)} connectors installed")
    out = tmp_path / "demo.out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "demo", "--serve", "--dir", str(tmp_path / "ws"), "--contacts", "150"],
        cwd=tmp_path, env=hub_env(), stdout=out.open("wb"), stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while "serving until Ctrl-C" not in out.read_text(encoding="utf-8") and time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text(encoding="utf-8")
            time.sleep(0.5)
        config = tmp_path / "ws" / "config.yaml"
        done = run_hub(["push", "--dry-run", "--json", "--config", str(config)], cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["destinations"]) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
    assert code == 0
    stopped = run_hub(["push", "--dry-run", "--config", str(tmp_path / "ws" / "config.yaml")], cwd=tmp_path)
    assert stopped.returncode == 1 and "not running" in stopped.stderr
