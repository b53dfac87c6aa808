"""Export benchmark: `hub export` of N people (CSV, JSON Lines, Parquet) with rows/s and peak memory.

    python bench/export_bench.py                                  # 200,000 people, SQLite
    python bench/export_bench.py --people 1000000                 # the big run
    python bench/export_bench.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test    # PostgreSQL

The store is filled directly (people with an identity, features, scores and two segment stays each; not part of
the figures). Each export then runs as a real ``hub export ... --out FILE`` process, and its wall and CPU seconds
and peak RSS come from that child alone (``wait4``). The floor is the same command on an empty segment: the
imports, the config and the store's start-up; rows/s is over the wall time above it, and the RSS above it is what
the rows cost. Streaming shows as a peak that stays put when ``--people`` grows tenfold.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402

BATCH = 50_000
NOW = datetime(2026, 11, 1, tzinfo=UTC)
SEGMENTS = ("champions", "lapsed", "loyal", "vip")
RUNS = [  # (label, hub export arguments)
    ("floor: an empty segment", ["segment", "empty"]),
    ("segment champions, CSV", ["segment", "champions", "--csv"]),
    ("people, CSV", ["people", "--csv"]),
    ("people, JSON Lines", ["people", "--json"]),
    ("scores, CSV", ["scores", "--csv"]),
    ("scores, Parquet", ["scores", "--parquet"]),
]


def _batches(rows: Iterator[tuple[Any, ...]]) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) == BATCH:
            yield batch
            batch = []
    if batch:
        yield batch


def _load(cur: Any, sqlite: bool, target: str, rows: Iterator[tuple[Any, ...]]) -> None:
    if not sqlite:
        with cur.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return
    for batch in _batches(rows):
        marks = ", ".join("?" * len(batch[0]))
        cur.executemany(f"INSERT INTO {target} VALUES ({marks})", batch)


def fill(store: Store, people: int) -> None:
    """``people`` people, each with an identity, a feature row, a score row and two open segment stays."""
    sqlite = store.engine.dialect.name == "sqlite"
    now: Any = NOW.replace(tzinfo=None).isoformat(" ") if sqlite else NOW
    ids = range(1, people + 1)
    features = [c for c in m.person_feature.columns if c.name not in ("person_id", "as_of")]
    given = {"orders": lambda i: i % 9, "order_days": lambda i: i % 9, "monetary": lambda i: round(i % 997 * 3.7, 2),
             "first_order_at": lambda i: now, "last_order_at": lambda i: now, "country": lambda i: "DE"}
    default = {c.name: None if c.nullable else 0 for c in features}
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if sqlite:
            cur.execute("BEGIN IMMEDIATE")
        _load(cur, sqlite, "person (id, email, first_name, last_name, phone, consent, deleted, created_at, changed_at)",
              ((i, f"person{i}@bench.example", f"First{i}", f"Last{i}", f"+49 30 {i:07d}",
                "objected" if i % 100 == 0 else "granted", False, now, now) for i in ids))
        _load(cur, sqlite, "identity (person_id, source, external_id, email, consent, seen, deleted, created_at, "
              "updated_at)", ((i, "shop", f"C{i:08d}", f"person{i}@bench.example", "granted", True, False, now, now)
                              for i in ids))
        _load(cur, sqlite, f"person_feature (person_id, as_of, {', '.join(c.name for c in features)})",
              ((i, now, *(given[c.name](i) if c.name in given else default[c.name] for c in features)) for i in ids))
        _load(cur, sqlite, "person_score (person_id, scored_at, rfm_r, rfm_f, rfm_m, rfm_score, rfm_segment, clv, "
              "clv_percentile, clv_simple, expected_orders, churn_probability, cluster)",
              ((i, now, 3, 4, 5, "345", "loyal", i % 500 * 1.5, i % 100, i % 300 * 2.0, 1.5, (i % 97) / 97, None)
               for i in ids))
        _load(cur, sqlite, "segment_membership (person_id, segment, entered_at, exited_at, held_out)",
              ((i, SEGMENTS[(i + k) % len(SEGMENTS)], now, None, i % 20 == 0) for i in ids for k in (0, 1)))
        _load(cur, sqlite, "segment_run (segment, evaluated_at, size, entered, exited, held_out)",
              iter([(name, now, 0, 0, 0, 0) for name in (*SEGMENTS, "empty")]))
        cur.execute("ANALYZE")
        if sqlite:
            cur.execute("COMMIT")
        else:
            raw.commit()
    finally:
        raw.close()


def run_export(args: list[str], config: Path, out: Path) -> tuple[int, float, float, float, int]:
    """(rows, wall s, CPU s, peak RSS MB, bytes written) of one ``hub export`` process."""
    hub = Path(sys.executable).with_name("hub")
    cmd = [str(hub) if hub.exists() else "hub", "export", *args, "--config", str(config), "--out", str(out)]
    started = time.perf_counter()
    # Its output is one line ("wrote 1,234 people to FILE") and its errors a few: the pipes cannot fill up.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not every child's
    wall = time.perf_counter() - started
    assert proc.stdout is not None and proc.stderr is not None
    said, errors = proc.stdout.read().decode(), proc.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"hub export {' '.join(args)} failed: {errors}")
    rows = int(said.split()[1].replace(",", ""))
    return rows, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out.stat().st_size


def open_bench_store(url: str | None, tmp: Path) -> tuple[Store, str, Any]:
    if url is None:
        store_url = f"sqlite:///{tmp / 'bench.db'}"
        return open_store(store_url), store_url, None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )
    return open_store(scoped), scoped, (admin, schema)


def drop(cleanup: Any) -> None:
    if cleanup is not None:
        admin, schema = cleanup
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        admin.dispose()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200_000)
    parser.add_argument("--url", default=os.environ.get("HUB_BENCH_DATABASE_URL"), help="PostgreSQL URL")
    args = parser.parse_args(argv)
    backend = "postgresql" if args.url else "sqlite"
    print(f"{args.people:,} people, backend {backend}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="hub-export-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store, url, cleanup = open_bench_store(args.url, tmp)
        try:
            started = time.perf_counter()
            fill(store, args.people)
            store.close()
            print(f"fill (not part of the figures): {time.perf_counter() - started:.1f} s")
            config = tmp / "config.yaml"
            config.write_text(f"version: 1\nstore:\n  url: {url!r}\n", encoding="utf-8")
            # rows/s over the time above the floor (start-up is the same for 10 rows or 10 million).
            print("| export | rows | rows/s | wall | CPU | peak RSS | output |\n|---|---|---|---|---|---|---|")
            floor = 0.0
            for label, export_args in RUNS:
                out = tmp / f"out-{export_args[0]}"
                rows, wall, cpu, rss, size = run_export(export_args, config, out)
                floor = floor or wall
                rate = f"{rows / max(wall - floor, 1e-3):,.0f}" if rows else ""
                print(f"| {label} | {rows:,} | {rate} | {wall:.2f} s | {cpu:.2f} s | {rss:,.0f} MB | "
                      f"{size / 1e6:,.1f} MB |")
                out.unlink()
        finally:
            store.close()
            drop(cleanup)


if __name__ == "__main__":
    main()
