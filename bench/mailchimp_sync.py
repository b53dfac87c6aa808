"""Mailchimp benchmark: the connector's done-when figures against the sandbox emulator, in-process.

    nice python bench/mailchimp_sync.py                      # ~50,000 members, realistic latency
    nice python bench/mailchimp_sync.py --contacts 8000      # a quick run

Scenarios (each prints requests from the sandbox's own statistics, 429s, wall time):

1. full sync of every member and all email engagement with the 10 connections Mailchimp allows, into a fresh
   SQLite store through ``hub.sync.sync_source``;
2. the same full sync with one connection, into another store (the comparison);
3. an incremental sync after 1 % of the members changed (some unsubscribe, some open the latest campaign):
   requests against the full sync's;
4. tags through the real push engine (``hub.push``), the destination linked to the Mailchimp source: 2,000
   additions on one tag, a repeated push with no change, 2,000 removals (``--force``: taking a tag from every
   holder trips the mass-removal guard on purpose), and the unsubscribed members of the segment, which must
   never get the tag nor change status.

The emulator holds each connection for a simulated latency (``--latency`` seconds per request plus
``--per-item`` seconds per item in the answer: 0.05 s + 0.2 ms, so a page of 1,000 members takes 0.25 s,
about what Mailchimp takes), so concurrency matters the way it does against the real API. Python's GIL is
shared by the emulator, the connector and the store here, so CPU-bound parts do not overlap: the speed-up is
a lower bound of what separate machines see.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.mailchimp import CONNECTOR  # noqa: E402
from connectors.mailchimp.config import MailchimpDestinationConfig, MailchimpSourceConfig  # noqa: E402
from connectors.mailchimp.emulator import SANDBOX_API_KEY, Latency, MailchimpEmulator  # noqa: E402
from connectors.mailchimp.ids import member_key, subscriber_hash  # noqa: E402
from connectors.mailchimp.sink import MailchimpSink  # noqa: E402
from hub.config.models import PushConfig  # noqa: E402
from hub.push.plan import Targeting  # noqa: E402
from hub.push.service import PushOptions, push_destination  # noqa: E402
from hub.registry import BuildContext  # noqa: E402
from hub.sandbox.business import Business  # noqa: E402
from hub.sandbox.control import Sandbox  # noqa: E402
from hub.sandbox.emulator import EmulatorContext  # noqa: E402
from hub.store import Store, open_store  # noqa: E402
from hub.store import models as m  # noqa: E402
from hub.sync import sync_source  # noqa: E402
from tests.support import set_members  # noqa: E402

SOURCE = "newsletter"
DESTINATION = "newsletter-tags"
TAG = "hub:vip"
UPDATE = "POST /lists/{list_id}/segments/{segment_id}"


def context(sandbox: Sandbox) -> BuildContext:
    """A fresh run: its own account pacer, the emulator in-process."""
    return BuildContext(
        resolve_secret=lambda _ref: SecretStr(SANDBOX_API_KEY),
        transports={"mailchimp": httpx.MockTransport(sandbox)},
    )


def source(sandbox: Sandbox, connections: int) -> Any:
    assert CONNECTOR.build_source is not None
    entry = MailchimpSourceConfig.model_validate(
        {"type": "mailchimp", "api_key": "env:MAILCHIMP_API_KEY", "connections": connections}
    )
    return CONNECTOR.build_source(entry, SOURCE, context(sandbox))


def sink(sandbox: Sandbox, list_id: str) -> MailchimpSink:
    assert CONNECTOR.build_sink is not None
    entry = MailchimpDestinationConfig.model_validate(
        {"type": "mailchimp", "api_key": "env:MAILCHIMP_API_KEY", "list_id": list_id, "source": SOURCE}
    )
    built = CONNECTOR.build_sink(entry, DESTINATION, context(sandbox))
    assert isinstance(built, MailchimpSink)
    return built


def run_sync(store: Store, sandbox: Sandbox, connections: int) -> dict[str, Any]:
    sandbox.reset_stats()
    built = source(sandbox, connections)
    started = time.perf_counter()
    try:
        result = sync_source(store, built, "mailchimp")
    finally:
        built.close()
    seconds = time.perf_counter() - started
    stats = sandbox.stats()
    streams = result.as_dict()["streams"]
    return {
        "seconds": seconds,
        "requests": stats["requests"],
        "rate_limited": stats["rate_limited"],
        "max_in_flight": stats["max_in_flight"],
        "members": streams.get("members", {}).get("records", 0),
        "activities": sum(s.get("activities_written", 0) for s in streams.values()),
        "status": result.status,
    }


def people_of(store: Store, list_id: str, emails: Sequence[str]) -> list[int]:
    keys = [member_key(list_id, subscriber_hash(e)) for e in emails]
    i = m.identity
    found: dict[str, int] = {}
    with store.engine.connect() as conn:
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            found.update(
                conn.execute(sa.select(i.c.external_id, i.c.person_id).where(i.c.external_id.in_(chunk))).all()
            )
    return [int(found[k]) for k in keys]


def push(store: Store, sandbox: Sandbox, list_id: str, *, force: bool = False) -> dict[str, Any]:
    sandbox.reset_stats()
    targeting = Targeting(DESTINATION, "hub:", {"vip": TAG}, source=SOURCE)
    built = sink(sandbox, list_id)
    started = time.perf_counter()
    try:
        _plan, result = push_destination(store, targeting, built, PushConfig(), [SOURCE], PushOptions(force=force))
    finally:
        built.close()
    stats = sandbox.stats()
    return {
        "seconds": time.perf_counter() - started,
        "requests": stats["requests"],
        "updates": stats["endpoints"].get(UPDATE, 0),
        "endpoints": stats["endpoints"],
        "added": result.added,
        "removed": result.removed,
        "skipped": dict(result.skipped),
    }


def show(title: str, figures: dict[str, Any]) -> None:
    shown = ", ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in figures.items())
    print(f"{title}: {shown}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=67_500, help="people in the business (~76 %% are members)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--per-item", type=float, default=0.0002, help="seconds per item in an answer")
    parser.add_argument("--changes", type=int, default=2000, help="tag changes in the push scenario")
    parser.add_argument("--skip-single", action="store_true", help="leave out the one-connection run")
    args = parser.parse_args()

    started = time.perf_counter()
    business = Business.generate(args.contacts, args.seed)
    latency = Latency(args.latency, args.per_item)
    emulator = MailchimpEmulator(EmulatorContext.create(business), latency=latency)
    sandbox = Sandbox(emulator)
    members = emulator.data.members.values()
    live = sum(x.status != "archived" for x in members)
    print(f"business: {args.contacts} people, {live} live members, {len(emulator.data.campaigns)} campaigns, "
          f"{business.email.event_kind.size} email events (built in {time.perf_counter() - started:.1f} s); "
          f"latency {latency.base_s} s + {latency.per_item_s * 1000:.1f} ms per item", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(f"sqlite:///{tmp}/ten.db")
        full = run_sync(store, sandbox, 10)
        show("full sync, 10 connections", full)
        if not args.skip_single:
            single_store = open_store(f"sqlite:///{tmp}/one.db")
            emulator.reset()
            single = run_sync(single_store, sandbox, 1)
            single_store.close()
            show("full sync, 1 connection", single)
            print(f"  speed-up {single['seconds'] / full['seconds']:.2f}x, requests {full['requests']} vs "
                  f"{single['requests']}", flush=True)  # fmt: skip

        counts = sandbox.mutate(0.01, 0.0, seed=7)
        incremental = run_sync(store, sandbox, 10)
        share = incremental["requests"] / full["requests"]
        show(f"incremental after 1 % changes {counts}", incremental)
        print(f"  {incremental['requests']} requests = {share:.2%} of the full sync's {full['requests']}", flush=True)

        by_order = sorted(members, key=lambda x: x.order)
        taggable = [x.email for x in by_order if x.status == "subscribed"][: args.changes]
        unsubscribed = [x.email for x in by_order if x.status in ("unsubscribed", "cleaned")][:200]
        before = {h: x.status for h, x in emulator.data.members.items()}
        set_members(store, "vip", people_of(store, emulator.list_id, taggable + unsubscribed))
        first = push(store, sandbox, emulator.list_id)
        show(f"push: {len(taggable)} additions + {len(unsubscribed)} unsubscribed/cleaned in the segment", first)
        repeated = push(store, sandbox, emulator.list_id)
        show("push again, nothing changed", repeated)
        set_members(store, "vip", [])
        removal = push(store, sandbox, emulator.list_id, force=True)
        show(f"push: {len(taggable)} removals (--force)", removal)
        segment = emulator.data.segment_by_name(TAG)
        holders = segment.members if segment is not None else set()
        wrong = sum(emulator.data.members[h].status != "subscribed" for h in holders)
        changed = sum(before[h] != x.status for h, x in emulator.data.members.items() if h in before)
        print(f"  unsubscribed/cleaned tagged: {wrong}; statuses the hub changed: {changed}",
              flush=True)  # fmt: skip
        limit = math.ceil(len(taggable) / 500)
        print(f"  segment calls: add {first['updates']} (limit {limit}), repeated {repeated['requests']} requests, "
              f"remove {removal['updates']} (limit {limit})", flush=True)  # fmt: skip
        store.close()


if __name__ == "__main__":
    main()
