"""The fault matrix, shared by the conformance tests and ``bench/conformance_trials.py``.

Each row injects one kind of trouble through the connector's sandbox while ``hub sync --full`` re-reads an
account the store already holds. The run must complete (retrying what is transient, skipping and counting a
broken record) or stop with one clear error line; nothing already stored may be lost; and once the fault is
gone the next sync must bring the store back to what it was.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hub.conformance import ConformanceKit
from tests.conformance.world import RequestTrigger, Snapshot, World

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d")

Faults = Callable[[ConformanceKit], list[dict[str, Any]] | None]


@dataclass(frozen=True)
class Row:
    """One kind of trouble: the faults to inject (None: not applicable to this connector), and whether the
    stored content may legitimately change (schema drift changes the raw payload, not the ids)."""

    name: str
    faults: Faults
    drift: bool = False
    mid_run_expiry: bool = False
    skips_a_record: bool = False  # the run must complete with the broken record skipped and counted


def _on_records(kit: ConformanceKit, **fault: Any) -> list[dict[str, Any]] | None:
    """The fault on the record listings, mid-run: the first listing request goes through (so a client that
    learns its rate limits from the first answer has learnt them, as it would have in a real run)."""
    if kit.record_path is None:
        return None
    return [{"path": kit.record_path, "skip": 1, **fault}]


ROWS: tuple[Row, ...] = (
    Row("429 storm with Retry-After", lambda k: _on_records(k, kind="429", count=6, retry_after=1)),
    Row("429 storm without Retry-After", lambda k: _on_records(k, kind="429", count=3, retry_after=None)),
    Row("5xx burst", lambda k: _on_records(k, kind="5xx", status=503, count=3)),
    Row("timeouts", lambda k: _on_records(k, kind="timeout", count=2, delay=0.3)),
    Row("truncated JSON", lambda k: _on_records(k, kind="truncated", count=2)),
    Row("malformed JSON", lambda k: _on_records(k, kind="malformed", count=1)),
    Row("a record with wrong types", lambda k: None if k.broken_record is None else _on_records(
        k, kind="wrong_type", field=k.broken_record.field, value=k.broken_record.value, count=1),
        skips_a_record=True),
    Row("a pagination cursor that repeats", lambda k: _on_records(k, kind="repeat", count=1)),
    TOKEN_EXPIRY := Row("token expiry mid-run", lambda k: [] if k.record_path is not None else None,
                        mid_run_expiry=True),
    Row("schema drift: an unknown field", lambda k: _on_records(k, kind="unknown_field", count=None), drift=True),
    Row("schema drift: a missing optional field", lambda k: None if k.optional_field is None else _on_records(
        k, kind="drop_field", field=k.optional_field, count=None), drift=True),
)


@dataclass(frozen=True)
class Outcome:
    """What one row did to one connector."""

    connector: str
    row: str
    applicable: bool
    completed: bool = False
    error: str | None = None
    error_lines: int = 0
    skipped: int = 0
    injected: int = 0
    requests: int = 0
    retried_statuses: int = 0
    lost: int = 0
    changed: int = 0
    recovered: bool = False
    statuses: dict[str, int] | None = None  # what the sandbox answered during the faulted run

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return asdict(self)


def copy_store(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (its WAL included), through SQLite's backup API."""
    target.unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def run_row(world: World, row: Row, baseline_db: Path, baseline: Snapshot) -> Outcome:
    """Inject ``row`` into ``world``'s sandbox during ``hub sync --full`` over a copy of the baseline store."""
    assert world.sandbox is not None
    faults = row.faults(world.kit)
    if faults is None:
        return Outcome(world.name, row.name, applicable=False)
    label = row.name.split(":")[0].replace(" ", "-")
    db = world.folder / f"fault-{label}-{len(list(world.folder.glob('fault-*.db')))}.db"
    copy_store(baseline_db, db)
    world.use_store(f"sqlite:///{db}")
    sandbox = world.sandbox
    sandbox.reset()  # the seeded account again: no fault, token or counter of an earlier row carries over
    for fault in faults:
        sandbox.inject(fault)
    trigger = None
    if row.mid_run_expiry:
        trigger = RequestTrigger(sandbox, lambda: sandbox.inject({"kind": "token_expiry"}), at=3)
    try:
        result = world.sync("--full")
    finally:
        if trigger is not None:
            trigger.remove()
    stats = sandbox.stats()
    sandbox.clear_faults()
    statuses = dict(stats["statuses"])
    after = world.snapshot()
    diff = baseline.differences(after)
    error = result.get("error")
    # The error lines the user sees, not the log lines (retries are logged as warnings).
    stderr_lines = [line for line in str(result.get("stderr", "")).splitlines()
                    if line.strip() and not LOG_LINE.match(line)]
    recovered = world.sync("--full")
    again = world.snapshot()
    final = baseline.differences(again)
    same = final["lost"] == final["extra"] == 0 and (row.drift or final["changed"] == 0)
    if row.drift:
        same = same and again.ids() == baseline.ids()
    return Outcome(
        connector=world.name,
        row=row.name,
        applicable=True,
        completed=result["exit_code"] == 0 and result["status"] in ("ok", "ok_with_skips"),
        error=error,
        error_lines=len(stderr_lines),
        skipped=int(result["counts"].get("skipped", 0)) if result.get("counts") else 0,
        injected=sum(stats["faults_injected"].values()),
        requests=int(stats["requests"]),
        retried_statuses=sum(n for s, n in stats["statuses"].items() if s in ("429", "500", "502", "503")),
        lost=diff["lost"] + _deleted_since(baseline, after),
        changed=diff["changed"],
        recovered=same and recovered["exit_code"] == 0,
        statuses=statuses,
    )


def _deleted_since(baseline: Snapshot, after: Snapshot) -> int:
    """Records live in the baseline that the faulted run marked deleted (a loss, though the row remains)."""
    return sum(1 for k, (_, deleted) in baseline.records.items()
               if not deleted and k in after.records and after.records[k][1])


def prepare_baseline(world: World) -> tuple[Path, Snapshot]:
    """Sync ``world`` fully into its own store once; that store, copied, is where every row starts."""
    db = world.folder / "baseline.db"
    world.use_store(f"sqlite:///{db}")
    result = world.sync()
    assert result["exit_code"] == 0, result
    kept = world.folder / "baseline-copy.db"
    copy_store(db, kept)
    shutil.copystat(db, kept)
    return kept, world.snapshot()
