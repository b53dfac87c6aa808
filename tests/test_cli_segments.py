"""The segmentation commands: demo evaluates, `hub segment`, `hub explain`, `hub check` on rules, `hub model clv`,
`hub suggest segments`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.redact import clear_secrets

from .cli_support import all_output, invoke

AS_OF = "2026-11-01"  # the seeded business's "today"


@pytest.fixture(autouse=True)
def _in_tmp(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_CONFIG", raising=False)
    yield
    clear_secrets()


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    result = invoke(["demo", "--csv", "--dir", "demo", "--contacts", "600"])
    assert result.exit_code == 0, all_output(result)
    return tmp_path / "demo" / "config.yaml"


def test_demo_evaluates_the_example_segments(demo: Path) -> None:
    result = invoke(["segment", "--json", "--as-of", AS_OF, "--config", str(demo)])
    assert result.exit_code == 0, all_output(result)
    data = json.loads(result.stdout)
    sizes = {s["segment"]: s["size"] for s in data["segments"]}
    assert {"champions", "lapsed", "vip", "churn-risk", "engaged-non-buyers"} <= set(sizes)
    assert all(s["entered"] == 0 and s["exited"] == 0 for s in data["segments"])  # same as the demo's evaluation
    # RFM tiers partition the buyers: every tier is used, none is everyone.
    tiers = [n for n in sizes if n in {"champions", "loyal", "at-risk", "hibernating", "lost", "need-attention"}]
    assert all(0 < sizes[n] < data["people"] for n in tiers)
    assert data["scores"]["bgnbd"]["params"]["r"] > 0


def test_explain_shows_each_segment_rule_with_the_persons_values(demo: Path) -> None:
    status = json.loads(invoke(["status", "--json", "--config", str(demo)]).stdout)
    who = status["sample_email"]
    result = invoke(["explain", who, "--json", "--config", str(demo)])
    assert result.exit_code == 0, all_output(result)
    data = json.loads(result.stdout)
    segments = {s["segment"]: s for s in data["segments"]}
    assert set(segments) >= {"lapsed", "vip"}
    for seg in segments.values():
        assert seg["member"] == seg["stored_member"]  # the explanation is the evaluation's own SQL
        if seg["rule"]["condition"] == "all of":
            assert seg["rule"]["holds"] == all(c["holds"] for c in seg["rule"]["children"])
    text = invoke(["explain", who, "--config", str(demo)])
    assert "Segments" in text.stdout and ("yes" in text.stdout or "no" in text.stdout)


def test_check_reports_rule_errors_with_file_and_line(demo: Path) -> None:
    (demo.parent / "segment_rules" / "broken.yaml").write_text(
        "segment: broken\nrule:\n  all:\n    - spend_356d: {gte: 1}\n", encoding="utf-8"
    )
    result = invoke(["check", "--config", str(demo)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        # Relative to the current folder, as the config's own name prints (not to the config's folder).
        "demo/segment_rules/broken.yaml:4:7: rule.all[0].spend_356d: unknown field (did you mean 'spend_365d'?)"
    ]
    assert "Traceback" not in all_output(result)
    segment = invoke(["segment", "--config", str(demo)])
    assert segment.exit_code == 2 and "broken.yaml:4:7" in segment.stderr


def test_check_strict_fails_on_quality_warnings(demo: Path) -> None:
    relaxed = invoke(["check", "--config", str(demo)])
    assert relaxed.exit_code == 0, all_output(relaxed)
    (demo.parent / "segment_rules" / "nobody.yaml").write_text(
        "segment: nobody\nrule: {orders: {gte: 100000}}\n", encoding="utf-8"
    )
    assert invoke(["segment", "--as-of", AS_OF, "--config", str(demo)]).exit_code == 0
    strict = invoke(["check", "--strict", "--config", str(demo)])
    assert strict.exit_code == 1
    assert "segment quality: nobody: empty: no one matches the rule" in strict.stderr


def test_model_clv_reports_parameters_and_a_holdout_check(demo: Path) -> None:
    result = invoke(["model", "clv", "--json", "--as-of", AS_OF, "--holdout-days", "180", "--config", str(demo)])
    assert result.exit_code == 0, all_output(result)
    report = json.loads(result.stdout)
    assert set(report["bgnbd"]["params"]) == {"r", "alpha", "a", "b"}
    assert report["bgnbd"]["log_likelihood"] < 0
    assert report["repeat_purchases"]["actual"] > 0 and report["repeat_purchases"]["predicted"] > 0
    assert report["calibration_end"].startswith("2026-05-05")


def test_suggest_segments_writes_rule_files_outside_the_rules_folder(demo: Path) -> None:
    rules_before = sorted(p.name for p in (demo.parent / "segment_rules").iterdir())
    result = invoke(["suggest", "segments", "--as-of", AS_OF, "--config", str(demo)])
    assert result.exit_code == 0, all_output(result)
    written = sorted((demo.parent / "segment_suggestions").glob("*.yaml"))
    assert written and "cluster 1:" in result.stdout
    assert sorted(p.name for p in (demo.parent / "segment_rules").iterdir()) == rules_before
    again = invoke(["suggest", "segments", "--as-of", AS_OF, "--config", str(demo)])
    assert again.exit_code == 2 and "--overwrite" in again.stderr  # never overwrites silently
    assert "Traceback" not in all_output(again)


def test_segment_changed_re_evaluates_only_who_changed_and_says_when_nobody_did(demo: Path) -> None:
    args = ["segment", "--changed", "--json", "--as-of", AS_OF, "--config", str(demo)]
    nobody = invoke(args)
    assert nobody.exit_code == 0, all_output(nobody)
    assert json.loads(nobody.stdout) == {"incremental": True, "people": 0, "segments": []}
    assert "nothing to re-evaluate" in invoke(args[:2] + args[3:]).stdout
    exports = demo.parent / "exports" / "orders.csv"
    lines = exports.read_text(encoding="utf-8").splitlines()
    header, first = lines[0].split(","), lines[1].split(",")
    first[header.index("id")] = "O-new-1"
    exports.write_text("\n".join([*lines, ",".join(first)]) + "\n", encoding="utf-8")
    assert invoke(["sync", "--config", str(demo)]).exit_code == 0
    changed = json.loads(invoke(args).stdout)
    assert changed["incremental"] is True and changed["segments"]  # one person re-evaluated, sizes reported


def test_segment_with_an_empty_rules_folder_says_so_in_one_line(demo: Path) -> None:
    empty = demo.parent / "no_rules"
    empty.mkdir()
    text = demo.read_text(encoding="utf-8")
    assert "\nsegments:" not in text  # the demo uses the default folder: point it at the empty one
    demo.write_text(text + "segments:\n  rules_dir: no_rules\n", encoding="utf-8")
    result = invoke(["segment", "--as-of", AS_OF, "--config", str(demo)])
    assert result.exit_code == 2, all_output(result)
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [f"error: {Path('demo/no_rules')}: no segment rules here (no .yaml file defines a segment): "
                     "`hub init` writes the example rules, or set segments.rules_dir to your rules folder"]
    assert "Traceback" not in all_output(result) and "SQL" not in all_output(result)
