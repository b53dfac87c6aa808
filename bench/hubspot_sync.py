"""HubSpot against its emulator: full sync, incremental, the 10,000-result cap, deletions, and tag pushes.

    nice python bench/hubspot_sync.py                         # 20,000 contacts, starter tier, real time
    nice python bench/hubspot_sync.py --speed 5               # the same, the rate-limit windows 5x faster
    nice python bench/hubspot_sync.py --burst 190             # the professional/enterprise rate
    nice python bench/hubspot_sync.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test

The emulator runs in-process behind the sandbox (the same code ``hub sandbox serve`` exposes over HTTP), with its
rate limits on: ``--burst`` requests per 10-second window (default: the tier's, 100 for free/starter), CRM search
5 per second, the daily cap. ``--speed`` compresses the sandbox clock: a 10-second window then lasts 10/speed
real seconds, and the ``X-HubSpot-RateLimit-*`` headers report the compressed window, so the connector's pacer
follows it. The allowed rate is therefore ``burst / 10 * speed`` requests per real second.

Scenarios, in order, on one store and one emulated account (the connector's per-account pacer is shared by
every source and sink built from the one build context, as in a real run):

1. full sync of the contacts stream (then the deals stream, reported apart): requests, 429s, wall time, and the
   wall time against ``requests / allowed rate``;
2. 1 % of the contacts change and 0.2 % are deleted: the incremental sync's requests, against the full sync's,
   and whether every deletion is marked in the store;
3. 12,000 contacts stamped with one identical last-modified time (a bulk import): the incremental completes,
   every contact read exactly once;
4. pushes through the push engine (``hub.push.service.push_destination``) to a property destination and a
   lists destination: calls per push (counted by the sandbox), tags on the emulated contacts, and a repeated
   push (nothing changed) costing zero calls.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.hubspot.config import HubSpotDestinationConfig, HubSpotSourceConfig  # noqa: E402
from connectors.hubspot.emulator import SANDBOX_TOKEN, HubSpotEmulator  # noqa: E402
from connectors.hubspot.settings import BURST_LIMITS, BURST_WINDOW_S, SEARCH_PAGE_SIZE  # noqa: E402
from connectors.hubspot.sink import HubSpotSink, split_tags  # noqa: E402
from connectors.hubspot.source import HubSpotSource  # noqa: E402
from hub.config.models import PushConfig  # noqa: E402
from hub.push.plan import targeting_for  # noqa: E402
from hub.push.service import PushOptions, push_destination  # noqa: E402
from hub.registry import BuildContext  # noqa: E402
from hub.sandbox.business import Business  # noqa: E402
from hub.sandbox.control import Sandbox  # noqa: E402
from hub.sandbox.emulator import EmulatorContext  # noqa: E402
from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402
from hub.sync import sync_source  # noqa: E402

BASE_URL = "http://hubspot.sandbox"
SOURCE = "crm"
SEGMENT = "vip"
# About 71 % of the synthetic business's people are HubSpot contacts; generate a little more and trim.
HUBSPOT_SHARE = 0.70
CAP_CONTACTS = 12_000


@dataclass
class Bench:
    """The emulator, its sandbox, a build context pointing at it, and the store."""

    emulator: HubSpotEmulator
    sandbox: Sandbox
    ctx: BuildContext
    store: Store
    tier: str
    rate: float  # allowed requests per real second (burst window)

    def stats(self) -> dict[str, Any]:
        return self.sandbox.stats()

    def source(self, **entry: Any) -> HubSpotSource:
        config = HubSpotSourceConfig.model_validate(
            {"type": "hubspot", "base_url": BASE_URL, "token": "env:HUBSPOT_TOKEN", "tier": self.tier, **entry}
        )
        return HubSpotSource(config, SOURCE, self.ctx)

    def sink(self, name: str, mode: str) -> tuple[HubSpotSink, Any]:
        config = HubSpotDestinationConfig.model_validate(
            {
                "type": "hubspot",
                "base_url": BASE_URL,
                "token": "env:HUBSPOT_TOKEN",
                "tier": self.tier,
                "mode": mode,
                "segments": [SEGMENT],
                "source": SOURCE,
            }
        )
        return HubSpotSink(config, name, self.ctx), targeting_for(name, config, {SEGMENT: SEGMENT}, {})


@contextmanager
def measured(bench: Bench) -> Iterator[dict[str, Any]]:
    """Zeroes the sandbox counters; afterwards the dict holds requests, 429s, endpoints and wall seconds."""
    bench.sandbox.reset_stats()
    out: dict[str, Any] = {}
    started = time.perf_counter()
    yield out
    out["wall"] = time.perf_counter() - started
    stats = bench.stats()
    out.update(requests=stats["requests"], throttled=stats["rate_limited"], endpoints=stats["endpoints"])


def sync(bench: Bench, **entry: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    source = bench.source(**entry)
    try:
        with measured(bench) as figures:
            result = sync_source(bench.store, source, "hubspot")
    finally:
        source.close()
    return figures, result.as_dict()


def line(label: str, text: str) -> None:
    print(f"  {label:<34} {text}")


def window_floor(requests: int, burst: int, window_real: float) -> float:
    """The least time ``requests`` can take under a sliding window: full windows after the first burst."""
    return max(0, math.ceil(requests / burst) - 1) * window_real


def deleted_identities(store: Store) -> int:
    i = m.identity
    with store.engine.connect() as conn:
        query = sa.select(sa.func.count()).where(i.c.source == SOURCE, i.c.deleted.is_(True))
        return int(conn.execute(query).scalar_one())


def person_ids(store: Store) -> dict[int, int]:
    i = m.identity
    with store.engine.connect() as conn:
        query = sa.select(i.c.person_id, i.c.external_id).where(i.c.source == SOURCE, i.c.deleted.is_(False))
        return {int(p): int(e) for p, e in conn.execute(query)}


def acknowledged(store: Store, destination: str) -> set[int]:
    """The contact ids the ledger records as carrying the tag."""
    pl = m.push_ledger
    with store.engine.connect() as conn:
        query = sa.select(pl.c.remote_id).where(pl.c.destination == destination, pl.c.state == "present")
        return {int(r) for r in conn.execute(query).scalars()}


def set_members(store: Store, people: list[int]) -> None:
    now = m.utcnow()
    rows = [
        {"person_id": p, "segment": SEGMENT, "entered_at": now, "exited_at": None, "held_out": False} for p in people
    ]
    with store.engine.begin() as conn:
        conn.execute(sa.insert(m.segment_membership), rows)
    store.finish_run(store.start_run("segment", "full"), "ok", {})


def full_sync(bench: Bench, contacts: int) -> int:
    print(f"1. full sync: {contacts:,} contacts, {bench.rate:.1f} requests/s allowed (burst window)")
    figures, result = sync(bench, streams=["contacts"], properties=["customer_tier", "loyalty_points"])
    requests = figures["requests"]
    bound = math.ceil(contacts / 100) + 10
    expected = requests / bench.rate
    burst = bench.emulator.burst.limit
    floor = window_floor(requests, burst, BURST_WINDOW_S / bench.sandbox.emulator.ctx.clock.speed)
    line("records", f"{result['streams']['contacts']['records']:,}")
    verdict = "OK" if requests <= bound else "OVER"
    line("requests", f"{requests} (bound ceil({contacts:,}/100) + 10 = {bound}) {verdict}")
    line("429 answers", str(figures["throttled"]))
    line("wall time", f"{figures['wall']:.2f} s")
    line("requests / allowed rate", f"{expected:.2f} s -> wall/expected = {figures['wall'] / expected:.3f}")
    line("sliding-window floor", f"{floor:.2f} s -> wall/floor = {figures['wall'] / floor:.3f}" if floor else "n/a")
    deals, _ = sync(bench, streams=["deals"])
    records = len(bench.emulator.account.deals.rows)
    line("deals stream (apart)", f"{records:,} deals in {deals['requests']} requests, {deals['throttled']} 429s, "
         f"{deals['wall']:.2f} s ({dict((k.split(' ', 1)[1], v) for k, v in deals['endpoints'].items())})")
    return int(requests)


def incremental(bench: Bench, full_requests: int) -> None:
    print("2. incremental after 1 % of the contacts changed and 0.2 % were deleted")
    changed = bench.emulator.mutate(0.01, 0.002, bench.emulator.ctx.rng("bench-mutate"))
    time.sleep(bench.emulator.search_lag.total_seconds() + 0.5)  # let the search index catch up
    before = deleted_identities(bench.store)
    figures, result = sync(bench, streams=["contacts"], properties=["customer_tier", "loyalty_points"])
    requests = figures["requests"]
    stream = result["streams"]["contacts"]
    line("contacts changed / deleted", f"{changed['contacts_changed']} / {changed['contacts_deleted']}")
    line("records read", f"{stream['records']}")
    share = requests / full_requests
    line("requests", f"{requests} = {share:.2%} of the full sync's {full_requests} "
         f"(bound 2 % + constant: {math.ceil(0.02 * full_requests)} + c)")
    line("by endpoint", str({k.split(" ", 1)[1]: v for k, v in figures["endpoints"].items()}))
    line("429 answers", str(figures["throttled"]))
    line("wall time", f"{figures['wall']:.2f} s")
    marked = deleted_identities(bench.store) - before
    ok = "OK" if marked == changed["contacts_deleted"] else "MISSING"
    line("deletions marked in the store", f"{marked} of {changed['contacts_deleted']} {ok}")


def identical_timestamps(bench: Bench) -> None:
    print(f"3. {CAP_CONTACTS:,} contacts stamped with one identical lastmodifieddate (the 10,000-result cap)")
    ids = bench.emulator.touch(CAP_CONTACTS)
    time.sleep(bench.emulator.search_lag.total_seconds() + 0.5)
    figures, result = sync(bench, streams=["contacts"], detect_deleted=False)
    searches = figures["endpoints"].get("POST /crm/v3/objects/contacts/search", 0)
    read = result["streams"]["contacts"]["records"]
    # The window also holds the contacts scenario 2 changed: they are still inside the lookback.
    line("completed", f"{result['status']}, {read:,} records read ({len(ids):,} touched + those still in the lookback)")
    line("search requests", f"{searches} (ceil({read:,}/{SEARCH_PAGE_SIZE}) = {math.ceil(read / SEARCH_PAGE_SIZE)})")
    line("429 answers", str(figures["throttled"]))
    line("wall time", f"{figures['wall']:.2f} s ({searches / 5:.1f} s at 5 searches/s)")


def pushes(bench: Bench, members: int) -> None:
    print(f"4. tag pushes through the push engine: {members:,} people enter segment {SEGMENT!r}")
    people = person_ids(bench.store)
    chosen = sorted(people)[:members]
    set_members(bench.store, chosen)
    contacts = bench.emulator.account.contacts.rows
    for name, mode in (("hubspot-tags", "property"), ("hubspot-lists", "lists")):
        runs = []
        for _ in range(2):
            sink, targeting = bench.sink(name, mode)
            try:
                with measured(bench) as figures:
                    _, result = push_destination(bench.store, targeting, sink, PushConfig(), [SOURCE], PushOptions())
            finally:
                sink.close()
            runs.append((figures, result))
        (first, result), (second, again) = runs
        tag = f"hub:{SEGMENT}"
        ledger = acknowledged(bench.store, name)
        if mode == "property":
            holding = {c for c in ledger if tag in split_tags(contacts[c].properties.get("hub_segments"))}
            minimum = 2 * math.ceil(members / 100)  # read (to merge others' values) + write, per 100
        else:
            found = [x for x in bench.emulator.account.lists.values() if x.name == tag]
            holding = {c for c in ledger if found and c in found[0].members}
            minimum = math.ceil(members / 100)  # one add-and-remove per 100 record ids
        setup = first["requests"] - minimum
        line(f"{mode}: first push", f"{result.added:,} added in {first['requests']} calls ({minimum} batch calls "
             f"+ {setup} to reconcile and create the {'property' if mode == 'property' else 'list'}), "
             f"{first['throttled']} 429s, {first['wall']:.2f} s")
        line(f"{mode}: tags on emulated contacts", f"{len(holding):,} of the {len(ledger):,} the ledger acknowledged")
        line(f"{mode}: repeated push", f"{second['requests']} calls, {again.added} added, {again.removed} removed")


def run(bench: Bench, contacts: int, members: int) -> None:
    full = full_sync(bench, contacts)
    incremental(bench, full)
    identical_timestamps(bench)
    pushes(bench, members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contacts", type=int, default=20_000)
    parser.add_argument("--tier", default="starter", choices=sorted(BURST_LIMITS))
    parser.add_argument("--burst", type=int, default=None, help="requests per 10 s (default: the tier's)")
    parser.add_argument("--speed", type=float, default=1.0, help="sandbox clock compression (1: real time)")
    parser.add_argument("--members", type=int, default=2_000, help="people entering the pushed segment")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--url", default=os.environ.get("HUB_BENCH_DATABASE_URL"), help="PostgreSQL URL")
    args = parser.parse_args()
    if args.contacts < CAP_CONTACTS:
        parser.error(f"--contacts must be at least {CAP_CONTACTS:,} (the identical-timestamp scenario)")

    started = time.perf_counter()
    business = Business.generate(math.ceil(args.contacts / HUBSPOT_SHARE), seed=args.seed)
    ctx = EmulatorContext.create(business, speed=args.speed)
    emulator = HubSpotEmulator(ctx, tier=args.tier, burst_limit=args.burst)
    emulator.keep_contacts(args.contacts)
    contacts = len(emulator.account.contacts.rows)
    sandbox = Sandbox(emulator)
    build = BuildContext(
        resolve_secret=lambda _ref: SecretStr(SANDBOX_TOKEN), transports={"hubspot": httpx.MockTransport(sandbox)}
    )
    rate = emulator.burst.limit / BURST_WINDOW_S * args.speed
    print(f"emulated account ready in {time.perf_counter() - started:.1f} s: {contacts:,} contacts, "
          f"{len(emulator.account.deals.rows):,} deals; tier {args.tier}, burst {emulator.burst.limit}/10 s, "
          f"speed {args.speed:g}")
    with tempfile.TemporaryDirectory(prefix="hub-hubspot-bench-") as tmp:
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
            store = open_store(f"sqlite:///{Path(tmp) / 'hub.db'}")
        print(f"store: {store.engine.dialect.name}")
        try:
            run(Bench(emulator, sandbox, build, store, args.tier, rate), contacts, args.members)
        finally:
            store.close()
            if cleanup:
                with cleanup[0].begin() as conn:
                    conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{cleanup[1]}" CASCADE')


if __name__ == "__main__":
    main()
