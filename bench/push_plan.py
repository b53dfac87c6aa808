"""Push planning benchmark: 100,000 tag changes planned and applied through an in-memory destination.

    python bench/push_plan.py --people 100000
    python bench/push_plan.py --people 100000 --url postgresql+psycopg://postgres@127.0.0.1:5432/test

Fills a store with people linked to a source (their record ids address the destination's contacts), puts them
all in one segment, and times: the dry-run plan of the first push (100,000 additions), the push itself through
a destination that takes 100 changes per call (the calls must be ceil(changes / 100)), a repeated push (no
change: zero calls), and a push after 1 % left the segment. The destination answers instantly, so the figures
are the engine's own cost.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hub.config.models import PushConfig  # noqa: E402
from hub.contracts import Outcome, RemoteContact, TagChange, TagOp, TagResult  # noqa: E402
from hub.push.plan import Targeting  # noqa: E402
from hub.push.service import PushOptions, push_destination  # noqa: E402
from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402

BATCH = 100
SEGMENT = "vip"
TAG = "hub:vip"


@dataclass
class CountingSink:
    """Answers every change at once, in batches of BATCH, and counts the calls."""

    name: str = "bench"
    batch_limits: Mapping[str, int] = field(default_factory=lambda: {"add": BATCH, "remove": BATCH})
    calls: int = 0

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        return {}

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        return iter(())

    def ensure_tags(self, tags: Sequence[str]) -> None:
        pass

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        for op in (TagOp.ADD, TagOp.REMOVE):
            self.calls += math.ceil(sum(1 for c in changes if c.op is op) / BATCH)
        return [TagResult(c, Outcome.ACKNOWLEDGED) for c in changes]

    def close(self) -> None:
        pass


def fill(store: Store, n: int) -> list[int]:
    now = m.utcnow()
    with store.engine.begin() as conn:
        for start in range(0, n, 50_000):
            ids = range(start + 1, min(start + 50_000, n) + 1)
            conn.execute(sa.insert(m.person), [{"id": i, "email": f"p{i}@bench.example", "consent": "granted",
                                                "deleted": False, "created_at": now, "changed_at": now} for i in ids])
            conn.execute(sa.insert(m.identity), [
                {"person_id": i, "source": "crm", "external_id": f"c{i}", "email": f"p{i}@bench.example",
                 "consent": "granted", "seen": True, "deleted": False, "created_at": now, "updated_at": now}
                for i in ids])
            conn.execute(sa.insert(m.segment_membership), [
                {"person_id": i, "segment": SEGMENT, "entered_at": now, "exited_at": None, "held_out": False}
                for i in ids])
        for kind, target in (("sync", "crm"), ("segment", "full")):
            conn.execute(sa.insert(m.run).values(kind=kind, target=target, status="ok", started_at=now,
                                                 finished_at=now, counts={}))
    return list(range(1, n + 1))


def timed(label: str, fn: Any) -> Any:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    print(f"{label:<44} {time.perf_counter() - wall:7.2f} s wall {time.process_time() - cpu:7.2f} s CPU")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--url", default=os.environ.get("HUB_BENCH_DATABASE_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hub-push-bench-") as tmp:
        cleanup = None
        if args.url:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            admin = sa.create_engine(args.url)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
            url = sa.make_url(args.url).update_query_dict({"options": f"-csearch_path={schema}"})
            store = open_store(url.render_as_string(hide_password=False))
            cleanup = (admin, schema)
        else:
            store = open_store(f"sqlite:///{Path(tmp) / 'bench.db'}")
        try:
            run(store, args.people)
        finally:
            store.close()
            if cleanup:
                with cleanup[0].begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{cleanup[1]}" CASCADE')


def run(store: Store, n: int) -> None:
    print(f"{n:,} people, backend {store.engine.dialect.name}")
    ids = fill(store, n)
    targeting = Targeting("bench", "hub:", {SEGMENT: TAG}, source="crm")
    config = PushConfig(max_removal_share=1.0)
    sink = CountingSink()

    def push(dry: bool = False) -> Any:
        return push_destination(store, targeting, sink, config, ["crm"], PushOptions(dry_run=dry))

    plan, _ = timed(f"dry-run plan ({n:,} additions)", lambda: push(dry=True))
    print(f"  planned {len(plan.adds):,} additions, {sink.calls} calls made")
    _, result = timed(f"push ({n:,} additions)", push)
    print(f"  {result.added:,} added in {sink.calls:,} calls (minimum {math.ceil(n / BATCH):,})")
    before = sink.calls
    timed("repeated push (nothing changed)", push)
    print(f"  {sink.calls - before} calls")
    leaving = ids[: n // 100]
    sm = m.segment_membership
    with store.engine.begin() as conn:
        conn.execute(sa.update(sm).where(sm.c.person_id.in_(leaving)).values(exited_at=m.utcnow()))
    before = sink.calls
    _, result = timed(f"push after 1 % left ({len(leaving):,} removals)", push)
    print(f"  {result.removed:,} removed in {sink.calls - before} calls (minimum {math.ceil(len(leaving) / BATCH)})")


if __name__ == "__main__":
    main()
