"""Segmentation benchmark: features + RFM + CLV scoring + 20 rule segments on a large synthetic store.

    python bench/segment_bench.py --people 1000000 --activities 10000000                 # SQLite
    python bench/segment_bench.py --people 1000000 --activities 10000000 \\
        --url postgresql+psycopg://postgres@127.0.0.1:5432/test                          # PostgreSQL

The store is filled directly with bulk inserts (people, one identity each, and activities: orders with skewed
amounts, email opens and clicks, sessions), so the figures measure segmentation, not loading. Then it runs one
full evaluation (features, scores, segments) and an incremental one after ``--changed`` people get a new
order, and prints wall and CPU seconds per step and the peak RSS. ``--duckdb`` runs the same feature
aggregation in DuckDB (a dev-only dependency) over the same rows, for a reference ratio from the same run.
A PostgreSQL run uses a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402
from segment_rules.engine import evaluate  # noqa: E402
from segment_rules.ruleset import RuleSet, load_rules  # noqa: E402

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)
BATCH = 100_000
TYPES = ("order", "email_open", "email_click", "session")
TYPE_SHARE = (0.25, 0.45, 0.1, 0.2)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(label: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    print(f"{label:<34} {time.perf_counter() - wall:8.2f} s wall {time.process_time() - cpu:8.2f} s CPU "
          f"(peak RSS {peak_rss_mb():,.0f} MB)")
    return out


def _stamps(base: np.datetime64, days: np.ndarray) -> np.ndarray:
    """``base - days`` as microsecond timestamps (what ``timedelta(days=...)`` rounds to)."""
    return base - np.round(days * 86_400_000_000).astype("timedelta64[us]")


def _text(stamps: np.ndarray, sqlite: bool) -> list[str]:
    # The text SQLAlchemy's SQLite DateTime stores (naive UTC, microseconds always), or an ISO literal for COPY.
    out = np.datetime_as_string(stamps, unit="us")
    return [v.replace("T", " ") if sqlite else v + "+00" for v in out.tolist()]


def _people(people: int, created: str) -> Iterator[tuple[Any, ...]]:
    for i in range(1, people + 1):
        yield i, f"p{i}@bench.example", created


def _activity_rows(
    start: int, owner: np.ndarray, kind: np.ndarray, when: list[str], amount: np.ndarray, updated: str
) -> Iterator[tuple[Any, ...]]:
    for j, (pid, k, at, value) in enumerate(zip(owner.tolist(), kind.tolist(), when, amount.tolist(), strict=True)):
        order = k == 0
        yield pid, TYPES[k], str(start + j), at, value if order else None, "EUR" if order else None, updated


ACTIVITY_INDEXES = ("ix_activity_person_type_time", "ix_activity_type_time")


def fill(store: Store, people: int, activities: int, seed: int) -> None:
    """People with one identity each, and activities of skewed types, times and amounts.

    Rows go in through the driver (``executemany`` on SQLite, ``COPY`` on PostgreSQL) with the secondary
    activity indexes dropped and rebuilt afterwards, as a bulk load would do, so filling 10 M rows takes
    minutes rather than an hour; the rows are the same as inserting them one by one.
    """
    rng = np.random.default_rng(seed)
    sqlite = store.engine.dialect.name == "sqlite"
    base = np.datetime64(AS_OF.replace(tzinfo=None), "us")
    created = _text(np.array([base - np.timedelta64(1095, "D")]), sqlite)[0]
    updated = _text(np.array([base]), sqlite)[0]
    raw = store.engine.raw_connection()
    try:
        cur = raw.cursor()
        if sqlite:
            # The store drives SQLite transactions itself (the driver is in autocommit): one explicit transaction.
            cur.execute("BEGIN IMMEDIATE")
        for name in ACTIVITY_INDEXES:
            cur.execute(f"DROP INDEX {name}")
        load = _sqlite_load if sqlite else _pg_load
        load(cur, "person (id, email, consent, deleted, created_at, changed_at)",
             ((i, e, "granted", False, c, c) for i, e, c in _people(people, created)))
        load(cur, "identity (person_id, source, external_id, email, consent, seen, deleted, created_at, updated_at)",
             ((i, "bench", str(i), e, "granted", True, False, c, c) for i, e, c in _people(people, created)))
        # Activity owners follow a skewed distribution: a few people do a lot, many do little.
        for start in range(0, activities, BATCH):
            n = min(BATCH, activities - start)
            owner = np.minimum((rng.pareto(1.2, n) * people / 20).astype(np.int64) % people + 1, people)
            kind = rng.choice(len(TYPES), n, p=TYPE_SHARE)
            when = _text(_stamps(base, rng.uniform(0, 1095, n)), sqlite)
            amount = np.round(rng.lognormal(3.5, 0.8, n), 2)
            rows = ((pid, "bench", t, ext, at, value, cur_, None, False, up)
                    for pid, t, ext, at, value, cur_, up in _activity_rows(start, owner, kind, when, amount, updated))
            load(cur, "activity (person_id, source, type, external_id, occurred_at, amount, currency, attributes, "
                 "deleted, updated_at)", rows)
        _recreate_indexes(cur)
        if sqlite:
            cur.execute("COMMIT")
        else:
            raw.commit()
            settle(raw.driver_connection)  # the psycopg connection: the pool's proxy keeps attributes to itself
    finally:
        raw.close()


def settle(raw: Any) -> None:
    """PostgreSQL (``raw``: a psycopg connection) after a bulk load: VACUUM, then CHECKPOINT.

    The first pass over freshly copied rows sets their hint bits, dirtying and writing every page again, and
    autovacuum and checkpoints would run in the middle of the timed evaluation. A store filled by syncs over
    time is past all that; so is this one, once settled.
    """
    raw.autocommit = True
    with raw.cursor() as cur:
        for table in ("person", "identity", "activity"):
            cur.execute(f"VACUUM ANALYZE {table}")
        cur.execute("CHECKPOINT")
    raw.autocommit = False


def _sqlite_load(cur: Any, target: str, rows: Iterator[tuple[Any, ...]]) -> None:
    batch = list(rows)
    if batch:
        marks = ", ".join("?" * len(batch[0]))
        cur.executemany(f"INSERT INTO {target} VALUES ({marks})", batch)


def _pg_load(cur: Any, target: str, rows: Iterator[tuple[Any, ...]]) -> None:
    with cur.copy(f"COPY {target} FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def _recreate_indexes(cur: Any) -> None:
    for index in m.activity.indexes:
        if index.name in ACTIVITY_INDEXES:
            columns = ", ".join(c.name for c in index.columns)
            cur.execute(f"CREATE INDEX {index.name} ON activity ({columns})")
    cur.execute("ANALYZE")


def twenty_segments(folder: Path) -> RuleSet:
    """The shipped example rules (18 segments) plus two event-window segments: 20 in all."""
    for item in (ROOT / "segment_rules").glob("*.yaml"):
        shutil.copy(item, folder / item.name)
    (folder / "x_engaged_buyers.yaml").write_text(
        "segment: engaged-buyers\nrule:\n  all:\n    - orders_90d: {gte: 1}\n    - email_opens_90d: {gte: 3}\n",
        encoding="utf-8",
    )
    (folder / "x_window.yaml").write_text(
        "segment: big-spenders-90d\nrule:\n  event: order\n  within: 90d\n  sum: {gte: 200}\n", encoding="utf-8"
    )
    return load_rules(folder)


def change(store: Store, count: int, people: int, seed: int) -> list[int]:
    """``count`` people place a new order (their changed_at moves, as a sync would do)."""
    rng = np.random.default_rng(seed + 1)
    ids = sorted({int(i) for i in rng.choice(people, count, replace=False) + 1})
    now = m.utcnow()
    with store.engine.begin() as conn:
        conn.execute(sa.insert(m.activity), [
            {"person_id": i, "source": "bench", "type": "order", "external_id": f"new-{i}",
             "occurred_at": AS_OF - timedelta(hours=1), "amount": 99.0, "currency": "EUR", "attributes": None,
             "deleted": False, "updated_at": now} for i in ids
        ])
        conn.execute(sa.update(m.person).where(m.person.c.id.in_(ids)).values(changed_at=now))
    return ids


def duckdb_reference(store_url: str | None, sqlite_path: Path | None) -> None:
    """The same GROUP BY aggregation in DuckDB over the SQLite file (a reference, in the same run)."""
    try:
        import duckdb
    except ImportError:
        print("duckdb not installed (pip install -e '.[bench]'): no reference figure")
        return
    if sqlite_path is None:
        print("duckdb reference runs on the SQLite store only")
        return
    import csv
    import sqlite3

    # DuckDB's SQLite scanner is a download this machine cannot make: go through a CSV copy of the rows
    # (not timed), then load it into DuckDB's own table, so the timed part is the aggregation alone.
    csv_path = sqlite_path.with_suffix(".csv")
    with sqlite3.connect(sqlite_path) as src, csv_path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["person_id", "type", "t", "amount"])
        writer.writerows(src.execute("SELECT person_id, type, occurred_at, amount FROM activity"))
    con = duckdb.connect()
    con.execute(f"CREATE TABLE a AS SELECT person_id, type, CAST(t AS TIMESTAMP) AS t, CAST(amount AS DOUBLE) "
                f"AS amount FROM read_csv('{csv_path}', header=true)")
    cut = {d: (AS_OF - timedelta(days=d)).replace(tzinfo=None) for d in (30, 90, 365)}
    windows = ", ".join(
        f"sum(CASE WHEN type='{t}' AND t >= TIMESTAMP '{cut[d]}' THEN 1 ELSE 0 END)"
        for t in TYPES for d in cut
    )
    query = (f"SELECT person_id, sum(CASE WHEN type='order' THEN 1 ELSE 0 END), "
             f"sum(CASE WHEN type='order' THEN amount END), max(CASE WHEN type='order' THEN t END), "
             f"min(CASE WHEN type='order' THEN t END), {windows} FROM a GROUP BY person_id")
    timed("duckdb: the same aggregation", lambda: con.execute(query).fetchall())


def open_bench_store(url: str | None, tmp: Path, schema: str | None = None) -> tuple[Store, Path | None, Any]:
    if url is None:
        path = tmp / "bench.db"
        return open_store(f"sqlite:///{path}"), path, None
    keep = schema is not None
    schema = schema or f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return open_store(scoped.render_as_string(hide_password=False)), None, None if keep else (admin, schema)


def forget_results(store: Store) -> None:
    """Remove what an earlier run computed, so the run starts as the first one on a filled store does."""
    with store.engine.begin() as conn:
        for table in (m.segment_membership, m.segment_run, m.person_score, m.person_feature, m.model_artifact):
            conn.execute(sa.delete(table))
        conn.execute(sa.delete(m.activity).where(m.activity.c.external_id.like("new-%")))
    raw = store.engine.raw_connection()
    try:
        settle(raw.driver_connection)
    finally:
        raw.close()


def is_filled(store: Store) -> bool:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(m.person.c.id).limit(1)).first() is not None


def drop(cleanup: Any) -> None:
    if cleanup is None:
        return
    admin, schema = cleanup
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    admin.dispose()


def main(argv: Iterator[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=1_000_000)
    parser.add_argument("--activities", type=int, default=10_000_000)
    parser.add_argument("--changed", type=int, default=1_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--url", default=os.environ.get("HUB_BENCH_DATABASE_URL"), help="PostgreSQL URL")
    parser.add_argument("--duckdb", action="store_true", help="also run the DuckDB reference (SQLite only)")
    parser.add_argument("--template", type=Path, help="SQLite only: a filled store to copy (made there if missing)")
    parser.add_argument("--schema", help="PostgreSQL only: run in this schema, kept afterwards (filled if empty); "
                        "a rerun starts from the previous run's memberships")
    args = parser.parse_args(list(argv) if argv is not None else None)
    print(f"{args.people:,} people, {args.activities:,} activities, backend "
          f"{'postgresql' if args.url else 'sqlite'}, {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory(prefix="hub-segment-bench-") as tmp_name:
        tmp = Path(tmp_name)
        store, sqlite_path, cleanup = open_bench_store(args.url, tmp, args.schema)
        try:
            if args.schema is not None and args.url and is_filled(store):
                forget_results(store)
                print(f"reusing the filled schema {args.schema} (results of earlier runs removed)")
            elif args.template is not None and sqlite_path is not None and args.template.exists():
                store.close()
                shutil.copyfile(args.template, sqlite_path)
                store = open_store(f"sqlite:///{sqlite_path}")
                print(f"copied the filled store {args.template}")
            else:
                timed("fill (not part of the figure)", fill, store, args.people, args.activities, args.seed)
                if args.template is not None and sqlite_path is not None:
                    shutil.copyfile(sqlite_path, args.template)
            rules_dir = tmp / "rules"
            rules_dir.mkdir()
            rules = twenty_segments(rules_dir)
            print(f"{len(rules.segments)} segments")
            full = timed("full evaluation", evaluate, store, rules, as_of=AS_OF)
            print("  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in full.timings.items()))
            ids = change(store, args.changed, args.people, args.seed)
            inc = timed(f"incremental ({len(ids):,} changed people)", evaluate, store, rules, as_of=AS_OF,
                        person_ids=ids)
            print("  steps: " + ", ".join(f"{k} {v:.2f} s" for k, v in inc.timings.items()))
            if args.duckdb:
                duckdb_reference(args.url, sqlite_path)
        finally:
            store.close()
            drop(cleanup)


if __name__ == "__main__":
    main()
