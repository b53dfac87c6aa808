"""Shopify connector benchmark against the emulator: paced full sync, incremental, bulk backfill, a kill during a
bulk operation, deletion check, and tag pushes through the push engine.

    nice python bench/shopify_sync.py                      # 20,000 customers, ~60,000 orders, speed 100
    nice python bench/shopify_sync.py --contacts 3000 --order-scale 1.0 --speed 50   # a quick look

The emulated shop runs the Standard plan (a 2,000-point bucket restored at 100 points per second) on a sandbox
clock compressed ``--speed`` times: at speed 100 the bucket restores 10,000 points per real second, and the
``throttleStatus`` the connector paces on says so. Points per second are reported in the vendor's seconds (wall
time x speed), so they compare directly with the plan's restore rate.

Scenarios:

full (pages)   ``backfill: pages``: every customer and order by paged queries, into a fresh SQLite store. Requests,
               THROTTLED answers, points used per vendor second against the restore rate.
incremental    after 1 % of customers and orders changed: requests and points against the full sync.
deletions      the periodic id reconciliation after 0.1 % of the customers were deleted.
full (bulk)    ``backfill: bulk`` into another store: one bulk operation per stream.
full (auto)    the default ``backfill: auto`` into a third store: what the connector decides per stream from the
               expected paged duration (logged), and how long the first sync takes.
kill           a child process syncing with ``backfill: bulk`` over real HTTP is SIGKILLed while its bulk
               operation runs; a second run resumes the same operation (no second one is started).
push           tags for --push people through the real push engine (reconcile, plan, sink); then the same push
               again, which must cost zero calls. Calls are read from the sandbox's ``/_sandbox/stats``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pydantic import SecretStr  # noqa: E402

from connectors.shopify import build_sink, build_source  # noqa: E402
from connectors.shopify.config import ShopifyDestinationConfig, ShopifySourceConfig  # noqa: E402
from connectors.shopify.emulator import PLANS, SANDBOX_TOKEN, ShopifyEmulator  # noqa: E402
from connectors.shopify.source import ShopifySource  # noqa: E402
from hub.config.models import PushConfig  # noqa: E402
from hub.push.plan import Targeting  # noqa: E402
from hub.push.service import PushOptions, push_destination  # noqa: E402
from hub.registry import BuildContext  # noqa: E402
from hub.sandbox.business import Business  # noqa: E402
from hub.sandbox.control import Sandbox  # noqa: E402
from hub.sandbox.emulator import EmulatorContext  # noqa: E402
from hub.sandbox.server import SandboxServers  # noqa: E402
from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402
from hub.sync import sync_source  # noqa: E402

BASE = "http://shopify.sandbox"
TOKEN_ENV = "env:SHOPIFY_TOKEN"
PREFIX = "hub:"


def context(transport: httpx.BaseTransport | None = None) -> BuildContext:
    transports = {"shopify": transport} if transport is not None else {}
    return BuildContext(resolve_secret=lambda _ref: SecretStr(SANDBOX_TOKEN), transports=transports)


def source(ctx: BuildContext, base: str = BASE, **entry: Any) -> ShopifySource:
    config = ShopifySourceConfig.model_validate(
        {"type": "shopify", "shop": "sandbox-shop", "token": TOKEN_ENV, "base_url": base, **entry}
    )
    return build_source(config, "shopify", ctx)


class Rig:
    """The emulator behind a Sandbox, reached in-process."""

    def __init__(self, emulator: ShopifyEmulator) -> None:
        self.emulator = emulator
        self.sandbox = Sandbox(emulator)
        self.transport = httpx.MockTransport(self.sandbox)
        self._control = httpx.Client(transport=self.transport, base_url=BASE)

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._control.get("/_sandbox/stats").json()
        return result

    def clear(self) -> None:
        self._control.delete("/_sandbox/stats")
        em = self.emulator.stats
        em.throttled, em.requested_points, em.actual_points = 0, 0.0, 0.0


def rest(rig: Rig) -> None:
    """Wait until the shop's bucket is full again: each scenario is a separate run, started on a rested shop."""
    bucket = rig.emulator.bucket
    bucket.clock.sleep(bucket.capacity / bucket.restore_rate)


def measured_sync(rig: Rig, store: Store, speed: float, **entry: Any) -> dict[str, Any]:
    """One sync through a fresh source; requests, THROTTLED answers, points and their rate."""
    rest(rig)
    rig.clear()
    src = source(context(rig.transport), **entry)
    started = time.perf_counter()
    result = sync_source(store, src, "shopify")
    wall = time.perf_counter() - started
    src.close()
    stats = rig.stats()
    em = rig.emulator.stats
    vendor_s = wall * speed
    return {
        "records": result.counts.get("records", 0),
        "deleted": result.counts.get("records_deleted", 0),
        "requests": stats["requests"],
        "endpoints": stats["endpoints"],
        "resources": stats.get("resources") or {},
        "throttled": em.throttled,
        "client_throttled": src.client.stats.throttled,
        "requested_points": em.requested_points,
        "actual_points": em.actual_points,
        "wall_s": wall,
        "vendor_s": vendor_s,
        "points_per_s": em.actual_points / vendor_s if vendor_s else 0.0,
    }


def show(label: str, figures: Mapping[str, Any], restore: float, capacity: float) -> None:
    print(f"\n{label}")
    print(
        f"  records {figures['records']:,}  requests {figures['requests']:,}  THROTTLED {figures['throttled']}"
        f"  wall {figures['wall_s']:.1f} s ({figures['vendor_s']:.0f} vendor s)"
    )
    budget = restore * figures["vendor_s"] + capacity
    print(
        f"  points: requested {figures['requested_points']:,.0f}, actual {figures['actual_points']:,.0f};"
        f" {figures['points_per_s']:.1f} points/s vs restore rate {restore:.0f}/s"
        f" ({figures['actual_points'] / budget:.0%} of the budget restore x time + bucket {capacity:.0f})"
    )
    print("  by operation: " + ", ".join(f"{k.removeprefix('graphql ')} {v}" for k, v in figures["endpoints"].items()))
    if figures.get("resources"):
        print("  by resource: " + ", ".join(f"{k} {v.get('requests', v)}" for k, v in figures["resources"].items()))


class _Decisions(logging.Handler):
    """Collects the connector's one-line backfill decision per stream while it is attached."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self._logger = logging.getLogger("connectors.shopify.source")
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.INFO)

    def emit(self, record: logging.LogRecord) -> None:
        if ": first sync " in record.getMessage():
            self.lines.append(record.getMessage())

    def finish(self) -> list[str]:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        self.close()
        return self.lines


# ---------------------------------------------------------------------------------------------- kill and resume


def child_sync(base: str, db: str) -> None:
    """The child process of the kill scenario: a bulk backfill over HTTP (it is killed during the wait)."""
    store = open_store(f"sqlite:///{db}")
    src = source(context(), base=base, backfill="bulk", bulk_poll_interval=0.05, streams=["customers"])
    sync_source(store, src, "shopify")


def kill_scenario(business: Business, args: argparse.Namespace, tmp: Path) -> None:
    ctx = EmulatorContext.create(business, speed=args.speed)
    # A slow bulk operation, so that the kill lands while it runs.
    emulator = ShopifyEmulator(ctx, order_scale=args.order_scale, bulk_rate=args.kill_bulk_rate)
    db = tmp / "kill.db"
    with SandboxServers({"shopify": Sandbox(emulator)}) as servers:
        base = servers.base_urls["shopify"]
        child = subprocess.Popen(
            [sys.executable, __file__, "--child-sync", base, str(db)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 120
        while not emulator.running("QUERY") and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.02)
        running = emulator.running("QUERY")
        job = running[0] if running else None
        time.sleep(0.3)  # the child is now polling the operation's status
        state_before = _state(db, "customers")
        child.send_signal(signal.SIGKILL)
        child.wait()
        print("\nkill during a bulk operation")
        status = job.status(ctx.clock.monotonic()) if job else "none"
        print(
            f"  child killed while bulk operation {job.number if job else '?'} was {status};"
            f" committed state: bulk_id={state_before.get('bulk_id')}"
        )
        store = open_store(f"sqlite:///{db}")
        started = time.perf_counter()
        src = source(context(), base=base, backfill="bulk", bulk_poll_interval=0.05, streams=["customers"])
        result = sync_source(store, src, "shopify")
        src.close()
        customers = len(emulator.data.customers.nodes)
        print(
            f"  resumed run: {result.counts.get('records', 0):,} customers of {customers:,} in"
            f" {time.perf_counter() - started:.1f} s; bulk queries started in all:"
            f" {emulator.stats.bulk_started['QUERY']} (1: the resumed run waited for the killed run's operation)"
        )
        store.close()


def _state(db: Path, stream: str) -> dict[str, Any]:
    engine = sa.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            row = conn.execute(
                sa.select(m.sync_state.c.state).where(m.sync_state.c.stream == stream)
            ).scalar_one_or_none()
    except sa.exc.OperationalError:
        row = None
    finally:
        engine.dispose()
    if isinstance(row, str):
        row = json.loads(row)
    return dict(row or {})


# ---------------------------------------------------------------------------------------------- push


def push_scenario(rig: Rig, store: Store, people: int, threshold: int) -> None:
    """A small push (batched tagsAdd), then a large one (bulk mutation), each repeated once with no change."""
    with store.engine.connect() as conn:
        ids = [
            int(r[0])
            for r in conn.execute(
                sa.select(m.identity.c.person_id)
                .where(m.identity.c.source == "shopify", m.identity.c.deleted.is_(False))
                .distinct()
                .order_by(m.identity.c.person_id)
                .limit(people)
            )
        ]
    config = ShopifyDestinationConfig.model_validate(
        {
            "type": "shopify",
            "shop": "sandbox-shop",
            "token": TOKEN_ENV,
            "base_url": BASE,
            "tag_prefix": PREFIX,
            "segments": ["vip"],
            "bulk_mutation_threshold": threshold,
            "bulk_poll_interval": 0.05,
        }
    )
    targeting = Targeting("shopify-tags", PREFIX, {"vip": f"{PREFIX}vip"}, source="shopify")
    small = ids[: max(1, threshold * 4 // 5)]
    done: set[int] = set()
    for members in (small, ids):
        _enter(store, [p for p in members if p not in done])
        adds = len(members) - len(done)
        done.update(members)
        mode = "bulk mutation" if adds >= threshold else "batched tagsAdd, 25 per call"
        for label in (f"push {adds:,} new tags ({mode})", "repeated push (nothing changed)"):
            _push_once(rig, store, config, targeting, label)


def _enter(store: Store, person_ids: list[int]) -> None:
    now = m.utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            sa.insert(m.segment_membership),
            [{"person_id": p, "segment": "vip", "entered_at": now, "exited_at": None, "held_out": False}
             for p in person_ids],
        )
        conn.execute(
            sa.insert(m.run).values(
                kind="segment", target="full", status="ok", started_at=now, finished_at=now, counts={}
            )
        )


def _push_once(rig: Rig, store: Store, config: ShopifyDestinationConfig, targeting: Targeting, label: str) -> None:
    rest(rig)
    rig.clear()
    sink = build_sink(config, "shopify-tags", context(rig.transport))
    started = time.perf_counter()
    _, result = push_destination(store, targeting, sink, PushConfig(), ["shopify"], PushOptions())
    wall = time.perf_counter() - started
    sink.close()
    stats = rig.stats()
    tagged = sum(1 for n in rig.emulator.data.customers.nodes.values() if f"{PREFIX}vip" in n["tags"])
    print(f"\n{label}")
    print(
        f"  added {result.added:,}, retry {result.retry}, skipped {sum(result.skipped.values())};"
        f" customers carrying {PREFIX}vip: {tagged:,}; calls {stats['requests']}, THROTTLED"
        f" {rig.emulator.stats.throttled}, in {wall:.1f} s"
    )
    if stats["endpoints"]:
        endpoints = stats["endpoints"].items()
        print("  by endpoint: " + ", ".join(f"{k.removeprefix('graphql ')} {v}" for k, v in endpoints))


def auto_scenario(rig: Rig, tmp: Path, speed: float, restore: float, capacity: float) -> None:
    """A first sync with the default ``backfill: auto``, with the connector's decision for each stream."""
    store = open_store(f"sqlite:///{tmp / 'auto.db'}")
    decisions = _Decisions()
    try:
        auto = measured_sync(rig, store, speed)
    finally:
        lines = decisions.finish()
        store.close()
    show("full sync (auto: bulk or pages from the expected paged duration)", auto, restore, capacity)
    for line in lines:
        print(f"  {line}")


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--contacts", type=int, default=23_700, help="people in the business (~85 %% are customers)")
    parser.add_argument("--order-scale", type=float, default=1.86, help="copies of each online order")
    parser.add_argument("--speed", type=float, default=100.0, help="sandbox clock compression")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--push", type=int, default=2000, help="people to tag in the push scenario")
    parser.add_argument("--bulk-threshold", type=int, default=500, help="customers from which a push goes in bulk")
    parser.add_argument("--kill-bulk-rate", type=float, default=40.0, help="objects/vendor s of the killed bulk")
    parser.add_argument("--skip-kill", action="store_true")
    parser.add_argument(
        "--first-sync",
        action="store_true",
        help="only the first sync with backfill: auto (e.g. --contacts 5000 --order-scale 1 --speed 1: the sandbox)",
    )
    parser.add_argument("--child-sync", nargs=2, metavar=("BASE_URL", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_sync:
        child_sync(*args.child_sync)
        return
    os.environ.setdefault("HUB_SPECS_DIR", str(ROOT.parent / "shared" / "specs"))
    capacity, restore = PLANS["standard"]
    started = time.perf_counter()
    business = Business.generate(args.contacts, args.seed)
    ctx = EmulatorContext.create(business, speed=args.speed)
    rig = Rig(ShopifyEmulator(ctx, order_scale=args.order_scale))
    data = rig.emulator.data
    print(
        f"shop: {len(data.customers.nodes):,} customers, {len(data.orders.nodes):,} orders; Standard plan"
        f" (bucket {capacity:.0f}, restore {restore:.0f} points/s) at speed {args.speed:g}"
        f" (built in {time.perf_counter() - started:.1f} s)"
    )
    with tempfile.TemporaryDirectory(prefix="hub-shopify-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.first_sync:
            auto_scenario(rig, tmp, args.speed, restore, capacity)
            return
        store = open_store(f"sqlite:///{tmp / 'pages.db'}")
        full = measured_sync(rig, store, args.speed, backfill="pages")
        show("full sync (pages)", full, restore, capacity)

        changes = rig.emulator.mutate(0.01, 0.0, random.Random(args.seed))
        time.sleep(1.1)  # the next pass's upper bound lies after the changes' second
        incremental = measured_sync(rig, store, args.speed)
        show(f"incremental after 1 % changes {changes}", incremental, restore, capacity)
        print(
            f"  incremental / full: requests {incremental['requests'] / full['requests']:.2%},"
            f" points {incremental['actual_points'] / full['actual_points']:.2%}"
        )

        deleted = rig.emulator.mutate(0.0, 0.001, random.Random(args.seed + 1))
        time.sleep(1.1)
        check = measured_sync(rig, store, args.speed, reconcile_every="1s", streams=["customer_deletions"])
        show(f"deletion check after {deleted['customers_deleted']} deletions", check, restore, capacity)

        push_scenario(rig, store, args.push, args.bulk_threshold)
        store.close()

        bulk_rig = Rig(ShopifyEmulator(ctx, order_scale=args.order_scale))
        bulk_store = open_store(f"sqlite:///{tmp / 'bulk.db'}")
        bulk = measured_sync(bulk_rig, bulk_store, args.speed, backfill="bulk", bulk_poll_interval=0.05)
        show("full sync (bulk operations)", bulk, restore, capacity)
        bulk_store.close()

        auto_scenario(Rig(ShopifyEmulator(ctx, order_scale=args.order_scale)), tmp, args.speed, restore, capacity)

        if not args.skip_kill:
            kill_scenario(business, args, tmp)


if __name__ == "__main__":
    main()
