"""CSV load throughput: an N-row orders export (plus its contacts) into the store, beside what parsing alone and
the database alone cost, on SQLite and (with --postgres) PostgreSQL, in one run.

    python bench/csv_load.py                                   # 1M orders + 200k contacts, SQLite
    python bench/csv_load.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
    python bench/csv_load.py --orders 100000 --baseline-repo /tmp/repo_before.py   # also time an older writer

Phases (each in a fresh subprocess, so every figure has its own peak RSS and nothing is warm but the OS cache):

parse     the CSV source's streams (hashing, csv parsing, a Record per row, pages of 5000), no store;
floor     the same files read with csv.reader and inserted with plain executemany into bare tables (text columns,
          no index, one transaction per 5000 rows): what the database alone costs for these rows;
sync      ``hub.sync.sync_source`` into a fresh store (a new SQLite file, or a new PostgreSQL schema);
resync    the same again, incrementally: both files are unchanged, so both are skipped by their hash;
full      ``full=True``: every row parsed and hashed again, every hash found unchanged, nothing written.

CPU is the benchmark process's own (user + system). On PostgreSQL the server's backends are timed too when the
server runs on this machine (read from /proc), and shown as "+ server". The files are written once into --out and
reused while their parameters match.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import gen_orders_csv as gen  # noqa: E402  (a sibling script, not a package)

PAGE = 5_000  # the CSV source's default page size, used for the floor's transactions too
PG_ENV = "HUB_BENCH_DATABASE_URL"


@dataclass
class Figure:
    """One measured phase."""

    phase: str
    backend: str
    rows: int
    wall: float
    cpu: float
    rss_mb: float
    server_cpu: float | None = None
    db_wall: float | None = None  # time spent in the database driver (statements, COPY, commits)
    db_cpu: float | None = None
    commit_wall: float | None = None  # of db_wall, in commits
    counts: dict[str, int] | None = None

    @property
    def rate(self) -> float:
        return self.rows / self.wall if self.wall else 0.0


# ----------------------------------------------------------------------------------------------- the files


def ensure_files(out: Path, orders: int, contacts: int, seed: int) -> None:
    """Write orders.csv and contacts.csv into ``out`` unless the ones there were written with these parameters."""
    manifest = out / "manifest.json"
    wanted = {"orders": orders, "contacts": contacts, "seed": seed, "style": "iso"}
    files_there = (out / "orders.csv").is_file() and (out / "contacts.csv").is_file()
    if manifest.is_file() and files_there and json.loads(manifest.read_text()) == wanted:
        print(f"reusing {orders:,} orders and {contacts:,} contacts in {out}")
        return
    import random

    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rng = random.Random(seed)
    gen.write_contacts(out / "contacts.csv", contacts, rng, "iso")
    gen.write_orders(out / "orders.csv", orders, contacts, rng, "iso")
    manifest.write_text(json.dumps(wanted))
    print(f"wrote {orders:,} orders and {contacts:,} contacts to {out} in {time.perf_counter() - started:.1f} s")


def csv_source(out: Path, page_size: int | None = None) -> Any:
    from connectors.csv.config import CsvSourceConfig
    from connectors.csv.source import CsvSource

    config = gen.source_config("iso")
    if page_size is not None:
        config["page_size"] = page_size
    return CsvSource(CsvSourceConfig.model_validate(config), "bench", out)


# ----------------------------------------------------------------------------------------------- databases


def sqlite_url(work: Path, name: str) -> str:
    return f"sqlite:///{work / name}"


def remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def pg_schema_url(base: str, schema: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False)


def pg_admin(base: str, sql: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(base)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


class ServerCpu:
    """CPU seconds of the PostgreSQL backends an engine opened, when the server runs on this machine."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.start: dict[int, float] = {}
        self.ok = True

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cur:
                cur.execute("SELECT pg_backend_pid()")
                pid = int(cur.fetchone()[0])
            ticks = _proc_cpu(pid)
            if ticks is None:
                self.ok = False
            else:
                self.start[pid] = ticks

        sa.event.listen(engine, "connect", on_connect)

    def seconds(self) -> float | None:
        """CPU used by those backends so far (call before the engine closes its connections)."""
        if not self.ok or not self.start:
            return None
        total = 0.0
        for pid, start in self.start.items():
            now = _proc_cpu(pid)
            if now is None:
                return None
            total += now - start
        return total


def _proc_cpu(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class DriverClock:
    """Wall and CPU seconds spent inside the database driver: statements, COPY and commits.

    It wraps the engine's dialect (and the store's COPY helper), so the time of whatever runs between
    those calls (parsing, hashing, identity resolution, building rows) is the phase's time minus this.
    """

    def __init__(self, engine: Any) -> None:
        self.wall = self.cpu = self.commit_wall = 0.0
        dialect = engine.dialect
        for name in ("do_execute", "do_executemany", "do_execute_no_params"):
            setattr(dialect, name, self._timed(getattr(dialect, name)))
        dialect.do_commit = self._timed(dialect.do_commit, commit=True)
        try:
            from hub.store import bulk
        except ImportError:  # an older hub without the bulk helpers
            return
        copy = getattr(bulk.PostgresBulk, "_copy", None)
        if copy is not None:
            bulk.PostgresBulk._copy = self._timed(copy)  # type: ignore[method-assign]

    def _timed(self, fn: Any, commit: bool = False) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            wall, cpu = time.perf_counter(), time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                spent = time.perf_counter() - wall
                self.wall += spent
                self.cpu += time.process_time() - cpu
                if commit:
                    self.commit_wall += spent

        return timed


# ----------------------------------------------------------------------------------------------- phases (child)


@contextmanager
def measured() -> Iterator[dict[str, float]]:
    result: dict[str, float] = {}
    wall, cpu = time.perf_counter(), time.process_time()
    yield result
    result["wall"] = time.perf_counter() - wall
    result["cpu"] = time.process_time() - cpu


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def phase_parse(out: Path) -> Figure:
    source = csv_source(out)
    rows = 0
    with measured() as t:
        for stream in source.streams():
            for page in stream.read(None):
                rows += len(page.records) + page.skipped
    return Figure("parse", "-", rows, t["wall"], t["cpu"], peak_rss_mb())


def phase_floor(out: Path, url: str) -> Figure:
    """csv.reader + executemany into bare text tables, a commit every PAGE rows."""
    import sqlalchemy as sa

    from hub.store.engine import create_engine

    engine = create_engine(url)
    server = ServerCpu(engine) if engine.dialect.name == "postgresql" else None
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    rows = 0
    try:
        driver = DriverClock(engine)
        with measured() as t:
            for name in ("contacts", "orders"):
                with (out / f"{name}.csv").open(encoding="utf-8", newline="") as f:
                    reader = csv.reader(f)
                    header = next(reader)
                    cols = ", ".join(f"c{i} TEXT" for i in range(len(header)))
                    table = f"floor_{name}"
                    with engine.begin() as conn:
                        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
                        conn.exec_driver_sql(f"CREATE TABLE {table} ({cols})")
                    sql = f"INSERT INTO {table} VALUES ({', '.join([mark] * len(header))})"
                    for batch in _batches(reader, PAGE):
                        with engine.begin() as conn:
                            conn.exec_driver_sql(sql, batch)
                        rows += len(batch)
        server_cpu = server.seconds() if server is not None else None
        with engine.begin() as conn:
            for name in ("contacts", "orders"):
                conn.execute(sa.text(f"DROP TABLE floor_{name}"))
    finally:
        engine.dispose()
    backend = engine.dialect.name
    return Figure(
        "floor", backend, rows, t["wall"], t["cpu"], peak_rss_mb(), server_cpu,
        db_wall=driver.wall, db_cpu=driver.cpu, commit_wall=driver.commit_wall,
    )


def _batches(reader: Iterator[list[str]], size: int) -> Iterator[list[tuple[str, ...]]]:
    batch: list[tuple[str, ...]] = []
    for row in reader:
        batch.append(tuple(row))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def phase_sync(out: Path, url: str, phase: str, repo_file: Path | None, page_size: int | None) -> Figure:
    from hub.store import open_store
    from hub.sync import sync_source

    store = open_store(url)
    label = "hub"
    if repo_file is not None:
        store = _baseline_store(repo_file, store)
        label = "baseline"
    backend = store.engine.dialect.name
    server = ServerCpu(store.engine) if backend == "postgresql" else None
    store.engine.dispose()  # so the timed phase opens (and times) its own connections
    driver = DriverClock(store.engine)
    source = csv_source(out, page_size)
    try:
        with measured() as t:
            result = sync_source(store, source, "csv", full=phase == "full")
        server_cpu = server.seconds() if server is not None else None
    finally:
        store.close()
    counts = dict(result.counts)
    rows = counts.get("records", 0) + counts.get("skipped", 0)
    if phase == "resync":  # nothing is read: count the rows that were skipped by their file hash
        rows = _file_rows(out)
    return Figure(
        f"{phase}:{label}", backend, rows, t["wall"], t["cpu"], peak_rss_mb(), server_cpu,
        db_wall=driver.wall, db_cpu=driver.cpu, commit_wall=driver.commit_wall, counts=counts,
    )


def _baseline_store(repo_file: Path, store: Any) -> Any:
    """The Store class of another version of hub/store/repo.py, on the same engine (schema already migrated)."""
    spec = importlib.util.spec_from_file_location("bench_baseline_repo", repo_file)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module.Store(store.engine)


def _file_rows(out: Path) -> int:
    total = 0
    for name in ("contacts", "orders"):
        with (out / f"{name}.csv").open("rb") as f:
            total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b"")) - 1
    return total


def child(args: argparse.Namespace) -> None:
    if args.phase == "parse":
        figure = phase_parse(args.out)
    elif args.phase == "floor":
        figure = phase_floor(args.out, args.url)
    else:
        figure = phase_sync(args.out, args.url, args.phase, args.repo, args.page_size)
    print(json.dumps(asdict(figure)))


# ----------------------------------------------------------------------------------------------- the run (parent)


def run_child(out: Path, phase: str, url: str = "", repo: Path | None = None, page_size: int | None = None) -> Figure:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", phase, "--out", str(out), "--url", url]
    if repo is not None:
        cmd += ["--repo", str(repo)]
    if page_size is not None:
        cmd += ["--page-size", str(page_size)]
    done = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True)
    figure = Figure(**json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"  {figure.phase:14s} {figure.backend:10s} {figure.wall:8.2f} s wall  {_cpu(figure)}", flush=True)
    return figure


def _cpu(f: Figure) -> str:
    text = f"{f.cpu:7.2f} s CPU"
    if f.server_cpu is not None:
        text += f" + {f.server_cpu:.2f} server"
    return text


def backend_run(
    out: Path, work: Path, backend: str, base: str, baseline: Path | None, page_size: int | None
) -> list[Figure]:
    """floor, sync, resync and full on one backend (and the baseline writer's sync, if given)."""
    figures: list[Figure] = []
    runs: list[tuple[str | None, Path | None]] = [("hub", None)]
    if baseline is not None:
        runs.insert(0, ("baseline", baseline))
    if backend == "sqlite":
        floor_db = work / "bench-floor.db"
        remove_sqlite(floor_db)
        figures.append(run_child(out, "floor", sqlite_url(work, floor_db.name)))
        remove_sqlite(floor_db)
        for label, repo in runs:
            db = work / f"bench-{label}.db"
            remove_sqlite(db)
            url = sqlite_url(work, db.name)
            figures.append(run_child(out, "sync", url, repo, page_size))
            if repo is None:
                figures.append(run_child(out, "resync", url, None, page_size))
                figures.append(run_child(out, "full", url, None, page_size))
            size = sum(Path(f"{db}{s}").stat().st_size for s in ("", "-wal") if Path(f"{db}{s}").exists())
            print(f"  store file {db.name}: {size / 1e6:,.0f} MB")
            remove_sqlite(db)
        return figures
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    pg_admin(base, f'CREATE SCHEMA "{schema}"')
    try:
        figures.append(run_child(out, "floor", pg_schema_url(base, schema)))
    finally:
        pg_admin(base, f'DROP SCHEMA "{schema}" CASCADE')
    for label, repo in runs:
        schema = f"bench_{label}_{uuid.uuid4().hex[:8]}"
        pg_admin(base, f'CREATE SCHEMA "{schema}"')
        url = pg_schema_url(base, schema)
        try:
            figures.append(run_child(out, "sync", url, repo, page_size))
            if repo is None:
                figures.append(run_child(out, "resync", url, None, page_size))
                figures.append(run_child(out, "full", url, None, page_size))
        finally:
            pg_admin(base, f'DROP SCHEMA "{schema}" CASCADE')
    return figures


def report(figures: list[Figure]) -> None:
    parse = next(f for f in figures if f.phase == "parse")
    floors = {f.backend: f for f in figures if f.phase == "floor"}
    print()
    head = f"{'phase':16s} {'backend':10s} {'rows':>10s} {'rows/s':>10s} {'wall s':>8s} {'CPU s':>16s} {'peak RSS':>9s}"
    print(head + f" {'/ floor':>8s} {'/ parse':>8s}")
    for f in figures:
        cpu = f"{f.cpu:.2f}" + (f" + {f.server_cpu:.2f}" if f.server_cpu is not None else "")
        floor = floors.get(f.backend)
        vs_floor = f"{f.wall / floor.wall:7.2f}x" if floor is not None and f.phase != "floor" else ""
        vs_parse = f"{f.wall / parse.wall:7.2f}x" if f is not parse else ""
        print(
            f"{f.phase:16s} {f.backend:10s} {f.rows:>10,} {f.rate:>10,.0f} {f.wall:>8.2f} {cpu:>16s} "
            f"{f.rss_mb:>6.0f} MB {vs_floor:>8s} {vs_parse:>8s}"
        )
    print("\ntime inside the database driver (statements, COPY, commits) and outside it (Python):")
    for f in figures:
        if f.db_wall is None or f.phase == "parse":
            continue
        commits = f" ({f.commit_wall:.2f} s of it committing)" if f.commit_wall else ""
        print(
            f"  {f.phase:14s} {f.backend:10s} driver {f.db_wall:7.2f} s wall / {f.db_cpu or 0:6.2f} s CPU{commits}; "
            f"outside {f.wall - f.db_wall:7.2f} s wall / {f.cpu - (f.db_cpu or 0):6.2f} s CPU"
        )
    base = {f.backend: f for f in figures if f.phase == "sync:baseline"}
    for f in figures:
        if f.phase == "sync:hub" and f.backend in base:
            b = base[f.backend]
            print(
                f"sync on {f.backend}: {b.wall / f.wall:.2f}x faster than the baseline writer by wall time, "
                f"{b.cpu / f.cpu:.2f}x by CPU time"
            )
    print("(ratios are wall-time ratios within this run: x times the floor's or the parse's time)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=1_000_000, help="order rows (default 1,000,000)")
    parser.add_argument("--contacts", type=int, default=None, help="contacts (default: orders / 5)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=BENCH / "out", help="where the CSV files are written and kept")
    parser.add_argument("--work", type=Path, default=None, help="where the SQLite stores go (default: --out)")
    parser.add_argument("--postgres", default=os.environ.get(PG_ENV), help=f"PostgreSQL URL (default ${PG_ENV})")
    parser.add_argument("--no-sqlite", action="store_true", help="only PostgreSQL")
    parser.add_argument("--baseline-repo", type=Path, default=None, help="another hub/store/repo.py to time beside")
    parser.add_argument("--page-size", type=int, default=None, help="the source's page_size (default: its 5000)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        args.phase = args.child
        child(args)
        return
    contacts = args.contacts or max(1, args.orders // 5)
    out: Path = args.out.resolve()
    work: Path = (args.work or args.out).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ensure_files(out, args.orders, contacts, args.seed)
    figures = [run_child(out, "parse")]
    backends: list[tuple[str, str]] = [] if args.no_sqlite else [("sqlite", "")]
    if args.postgres:
        backends.append(("postgresql", args.postgres))
    for backend, base in backends:
        figures += backend_run(out, work, backend, base, args.baseline_repo, args.page_size)
    report(figures)
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(f) for f in figures], indent=1))


if __name__ == "__main__":
    main()
