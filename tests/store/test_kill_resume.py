"""Crash safety: a CSV sync killed with SIGKILL at any point resumes from its last committed page, and ends
with exactly the content of a sync that was never interrupted: nothing lost, nothing doubled."""

from __future__ import annotations

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.csv.config import CsvSourceConfig
from connectors.csv.source import CsvSource
from hub.store import Store, open_store
from hub.store import models as m
from hub.sync import sync_source

ORDERS = 30_000
CONTACTS = 6_000
CUSTOMERS = 7_000  # customers beyond CONTACTS are known only from their orders
TOTAL = ORDERS + CONTACTS
PAGE = 500
SOURCE = "shop"
# Orders first: most activities arrive before their person's profile, the harder case.
CONFIG: dict[str, Any] = {
    "type": "csv",
    "page_size": PAGE,
    "files": [{"kind": "orders", "path": "orders.csv"}, {"kind": "contacts", "path": "contacts.csv"}],
}
WAIT_SECONDS = 180.0

# Run in a separate process, so it can be killed for real. Logs each committed page as one JSON line.
CHILD = """
import json, sys
from pathlib import Path
from connectors.csv.config import CsvSourceConfig
from connectors.csv.source import CsvSource
from hub.store import open_store
from hub.sync import sync_source

url, folder, config, log_path = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
store = open_store(url)
with open(log_path, "a", encoding="utf-8") as log:
    def progress(stream, page, stats):
        log.write(json.dumps({"stream": stream, "new": stats.records_new, "unchanged": stats.records_unchanged,
                              "changed": stats.records_changed}) + "\\n")
        log.flush()
    sync_source(store, CsvSource(CsvSourceConfig.model_validate(config), "shop", folder), "csv", progress=progress)
"""


# ----------------------------------------------------------------------------------------------- the data


def order_id(n: int) -> str:
    return f"O{100_000 + n}"


def write_dataset(folder: Path) -> None:
    """30,000 orders by 7,000 customers (some by email only, in mixed case), and 6,000 of them as contacts."""
    rng = random.Random(20240501)
    with (folder / "contacts.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "email", "first_name", "last_name", "consent"])
        for i in range(CONTACTS):
            first, last = rng.choice(["Ann", "Bo", "Cy", "Dee"]), rng.choice(["Lee", "Ng", "Roe"])
            out.writerow([f"C{i}", f"customer{i}@example.com", first, last, rng.choice(["yes", "no", ""])])
    with (folder / "orders.csv").open("w", encoding="utf-8", newline="") as f:
        out = csv.writer(f)
        out.writerow(["id", "customer_id", "email", "occurred_at", "amount", "currency", "status"])
        for n in range(ORDERS):
            c = rng.randrange(CUSTOMERS)
            email = f"customer{c}@example.com" if rng.random() < 0.8 else f"Customer{c}@Example.COM"
            customer = "" if rng.random() < 0.05 else f"C{c}"
            placed = f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
            amount = f"{rng.randint(100, 99_999) / 100:.2f}"
            out.writerow([order_id(n), customer, email, placed, amount, "EUR", rng.choice(["paid", "refunded"])])


def csv_source(folder: Path) -> CsvSource:
    return CsvSource(CsvSourceConfig.model_validate(CONFIG), SOURCE, folder)


# ----------------------------------------------------------------------------------------------- observing


@dataclass(frozen=True)
class Progress:
    """Data rows of each file that the stored stream state says are committed."""

    orders: int
    contacts: int

    @property
    def total(self) -> int:
        return self.orders + self.contacts


def _committed_rows(state: dict[str, Any] | None, path: str, rows: int) -> int:
    if state is None:
        return 0
    current = state.get("current")
    if current is not None and current.get("path") == path:
        return int(current["row"])
    return rows if state.get("files", {}).get(path, {}).get("done") else 0


def progress(store: Store) -> Progress:
    return Progress(
        orders=_committed_rows(store.get_state(SOURCE, "orders"), "orders.csv", ORDERS),
        contacts=_committed_rows(store.get_state(SOURCE, "contacts"), "contacts.csv", CONTACTS),
    )


def select(store: Store, stmt: sa.Select[Any]) -> list[sa.Row[Any]]:
    with store.engine.connect() as conn:
        return list(conn.execute(stmt))


def assert_state_matches_records(store: Store, at: Progress) -> None:
    """Exactly the rows the state counts as committed are stored: no page without its state, or the reverse."""
    r, a = m.raw_record, m.activity
    stored: dict[str, set[str]] = {"order": set(), "contact": set()}
    for row in select(store, sa.select(r.c.object_type, r.c.external_id)):
        stored[row.object_type].add(row.external_id)
    assert stored["order"] == {order_id(n) for n in range(at.orders)}
    assert stored["contact"] == {f"C{i}" for i in range(at.contacts)}
    assert select(store, sa.select(sa.func.count()).select_from(a))[0][0] == at.orders


def content(store: Store) -> dict[str, Any]:
    """The store's content without row ids or timestamps (which legitimately differ between two syncs)."""
    r, i, p, a, pm = m.raw_record, m.identity, m.person, m.activity, m.person_merge
    keys: dict[int, set[str]] = {}
    identities = set()
    for row in select(store, sa.select(i)):
        keys.setdefault(row.person_id, set()).add(f"{row.source}:{row.external_id or '@' + str(row.email)}")
        identities.add((row.source, row.external_id, row.email, row.email_seen, row.consent, row.seen, row.deleted))
    name = {pid: frozenset(k) for pid, k in keys.items()}
    people = {
        name[row.id]: (row.email, row.first_name, row.last_name, row.consent, row.deleted)
        for row in select(store, sa.select(p).where(p.c.merged_into.is_(None)))
    }
    activities = {
        (row.source, row.type, row.external_id): (
            f"{Decimal(row.amount):.2f}",
            row.currency,
            row.person_external_id,
            row.person_email,
            name.get(row.person_id),
        )
        for row in select(store, sa.select(a))
    }
    raw = {(row.source, row.object_type, row.external_id): row.content_hash for row in select(store, sa.select(r))}
    counts = {
        "raw": len(select(store, sa.select(r.c.id))),
        "activities": len(select(store, sa.select(a.c.id))),
        "people": len(select(store, sa.select(p.c.id).where(p.c.merged_into.is_(None)))),
        "merged": len(select(store, sa.select(p.c.id).where(p.c.merged_into.is_not(None)))),
        "merges": len(select(store, sa.select(pm.c.id))),
        "identities": len(select(store, sa.select(i.c.id))),
    }
    return {"counts": counts, "raw": raw, "activities": activities, "people": people, "identities": identities}


def assert_same_content(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["counts"] == want["counts"]
    for part in ("raw", "activities", "people", "identities"):
        mine, theirs = got[part], want[part]
        if mine == theirs:
            continue
        items_mine = set(mine.items()) if isinstance(mine, dict) else set(mine)
        items_theirs = set(theirs.items()) if isinstance(theirs, dict) else set(theirs)
        missing, extra = sorted(items_theirs - items_mine, key=repr), sorted(items_mine - items_theirs, key=repr)
        pytest.fail(f"{part}: {len(missing)} missing, {len(extra)} extra; e.g. {missing[:3]} / {extra[:3]}")


# ----------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("exports")
    write_dataset(folder)
    return folder


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The content of a clean, uninterrupted sync."""
    store = open_store(f"sqlite:///{tmp_path_factory.mktemp('reference') / 'hub.db'}")
    try:
        result = sync_source(store, csv_source(dataset), "csv")
        assert (result.status, result.counts["records_new"], result.counts["skipped"]) == ("ok", TOTAL, 0)
        return content(store)
    finally:
        store.close()


# ----------------------------------------------------------------------------------------------- the child


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    log: Path
    stderr: Path

    def pages(self) -> Iterator[dict[str, Any]]:
        """The pages the child reported committed (a line cut short by the kill is ignored)."""
        for line in self.log.read_text(encoding="utf-8").splitlines():
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def start_child(tmp_path: Path, url: str, folder: Path, n: int) -> Child:
    script = tmp_path / "sync_child.py"
    script.write_text(CHILD, encoding="utf-8")
    log, stderr = tmp_path / f"child{n}.log", tmp_path / f"child{n}.err"
    log.touch()
    with stderr.open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), url, str(folder), json.dumps(CONFIG), str(log)],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return Child(proc, log, stderr)


def kill_when(store: Store, child: Child, reached: Callable[[Progress], bool]) -> None:
    """Poll the store until ``reached`` holds, then SIGKILL the child at once."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not reached(progress(store)):
        if child.proc.poll() is not None:
            pytest.fail(f"the sync exited ({child.proc.returncode}) before the kill point: {child.stderr.read_text()}")
        if time.monotonic() > deadline:
            child.proc.kill()
            pytest.fail(f"the sync made no progress to the kill point within {WAIT_SECONDS} s")
        time.sleep(0.005)
    os.kill(child.proc.pid, signal.SIGKILL)
    child.proc.wait(timeout=WAIT_SECONDS)
    assert child.proc.returncode == -signal.SIGKILL, "the sync finished before it could be killed"


# ----------------------------------------------------------------------------------------------- the test

KILL_POINTS: list[tuple[str, Callable[[Progress], bool]]] = [
    ("after the first page", lambda at: at.orders >= PAGE),
    ("halfway through the orders", lambda at: at.orders >= ORDERS // 2),
    ("in the contacts, the second stream", lambda at: at.contacts >= PAGE),
]


@pytest.mark.slow
def test_killed_sync_resumes_from_its_last_page_with_nothing_lost_or_doubled(
    store_url: str, dataset: Path, reference: dict[str, Any], tmp_path: Path
) -> None:
    store = open_store(store_url)  # migrated before the child starts, so the state can be watched at once
    try:
        killed_at: list[Progress] = []
        for n, (point, reached) in enumerate(KILL_POINTS):
            child = start_child(tmp_path, store_url, dataset, n)
            kill_when(store, child, reached)
            at = progress(store)
            assert reached(at), point
            assert_state_matches_records(store, at)
            # A restarted sync continues after the committed rows: it re-reads none of them. (The kill may
            # fall between a page's commit and its log line, so the log may lack the last page.)
            pages = list(child.pages())
            assert all(page["unchanged"] == page["changed"] == 0 for page in pages), point
            committed_by_child = at.total - (killed_at[-1].total if killed_at else 0)
            assert committed_by_child - PAGE <= sum(page["new"] for page in pages) <= committed_by_child, point
            killed_at.append(at)

        runs = select(store, sa.select(m.run.c.status, m.run.c.finished_at))
        assert [(row.status, row.finished_at) for row in runs] == [("running", None)] * len(KILL_POINTS)

        result = sync_source(store, csv_source(dataset), "csv")

        remaining = TOTAL - killed_at[-1].total
        assert 0 < remaining < TOTAL
        assert result.status == "ok"
        assert (result.counts["records"], result.counts["records_new"]) == (remaining, remaining)
        assert result.counts["records_unchanged"] == result.counts["records_changed"] == 0
        assert progress(store) == Progress(ORDERS, CONTACTS)
        assert_same_content(content(store), reference)
    finally:
        store.close()
