"""The push side of every connector with a sink: the dry-run plan is the executed plan, a repeated push makes no
call, tags set by hand stay, and a push killed mid-way then resumed leaves the vendor equal to the ledger."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr

from hub.contracts import Sink, TagChange, TagOp
from hub.registry import BuildContext
from hub.store import models as m
from hub.store import open_store
from tests.conformance.world import RequestTrigger, World, business, configure, connectors_with, open_world

FOREIGN_TAG = "set-by-hand"
RULE = """\
segment: {name}
description: conformance trial segment
tag: {name}
destinations: [{destination}]
rule:
  email: {{contains: "{letter}"}}
"""


def write_rules(world: World, letters: dict[str, str]) -> None:
    folder = Path(world.settings["segments"]["rules_dir"])
    folder.mkdir(parents=True, exist_ok=True)
    for name, letter in letters.items():
        (folder / f"{name}.yaml").write_text(
            RULE.format(name=name, destination=world.destination, letter=letter), encoding="utf-8")


def segment(world: World) -> None:
    result = world.invoke("segment", "--as-of", business(world.kit.contacts).as_of.isoformat(), "--json")
    assert result.exit_code == 0, result.output


def push(world: World, *extra: str) -> dict[str, Any]:
    result = world.invoke("push", world.destination or "", "--json", *extra)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    return dict(data["destinations"][0])


def build_sink(world: World) -> Sink:
    spec = world.spec
    assert spec.build_sink is not None and spec.destination_config is not None and world.destination
    entry = spec.destination_config.model_validate(world.settings["destinations"][world.destination])
    ctx = BuildContext(resolve_secret=lambda ref: SecretStr(world.secrets[ref]), base_dir=world.folder)
    return spec.build_sink(entry, world.destination, ctx)


def vendor_tags(world: World, prefix: str) -> dict[str, frozenset[str]]:
    """Tags starting with ``prefix`` that the vendor holds, by remote id, read by a new sink (a sink is built
    per run and may cache what it read)."""
    time.sleep(world.kit.index_lag_s)  # tag read-backs may go through the vendor's search index
    sink = build_sink(world)
    try:
        return {c.remote_id: c.tags for c in sink.read_tags(prefix)}
    finally:
        sink.close()


def prefixed(tags: dict[str, frozenset[str]], prefix: str) -> set[tuple[str, str]]:
    return {(remote, t) for remote, held in tags.items() for t in held if t.startswith(prefix)}


def ledger_tags(world: World) -> set[tuple[str, str]]:
    """(remote id, tag) the ledger says the vendor holds."""
    store = open_store(world.store_url)
    try:
        with store.engine.connect() as conn:
            pl = m.push_ledger
            rows = conn.execute(sa.select(pl.c.remote_id, pl.c.tag).where(
                pl.c.destination == world.destination, pl.c.state == "present"))
            return {(str(r.remote_id), str(r.tag)) for r in rows}
    finally:
        store.close()


def emails(world: World, count: int) -> list[str]:
    store = open_store(world.store_url)
    try:
        with store.engine.connect() as conn:
            found = conn.execute(sa.select(m.person.c.email).where(m.person.c.email.is_not(None))
                                 .order_by(m.person.c.id).limit(count)).scalars()
            return [str(e) for e in found]
    finally:
        store.close()


@pytest.fixture
def pushed(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[World, Sink]]:
    with open_world(request.param, tmp_path, destination=True) as world:
        assert world.destination is not None, f"{request.param}: its sandbox entries name no destination"
        assert world.sync()["status"] == "ok"
        write_rules(world, {"conformance-a": "a", "conformance-b": "e"})
        segment(world)
        sink = build_sink(world)
        try:
            yield world, sink
        finally:
            sink.close()


@pytest.mark.parametrize("pushed", connectors_with("sink"), indirect=True)
def test_plan_equals_execution_a_repeat_is_free_and_hand_set_tags_stay(pushed: tuple[World, Sink]) -> None:
    world, sink = pushed
    prefix = world.settings["destinations"][world.destination].get("tag_prefix", "hub:")
    # Three contacts that can take tags (not archived, unsubscribed or cleaned).
    hand = dict(list({e: c for e, c in sink.lookup(emails(world, 30)).items() if c.status is None}.items())[:3])
    assert hand, "no contact of the store is in the destination"
    sink.ensure_tags([FOREIGN_TAG])
    marked = sink.apply([TagChange(TagOp.ADD, FOREIGN_TAG, 0, c.email, c.remote_id) for c in hand.values()])
    assert all(r.outcome == "acknowledged" for r in marked), [r for r in marked if r.outcome != "acknowledged"]

    planned = push(world, "--dry-run")["plan"]
    assert world.sandbox is not None
    world.sandbox.reset_stats()
    done = push(world)
    executed = done["result"]
    adds = sum(t["add"] for t in planned["tags"].values()) if "tags" in planned else planned.get("adds")
    assert adds, planned
    assert executed["added"] == adds and executed["removed"] == 0, (planned, executed)
    assert executed.get("failed", 0) == 0 and executed.get("retry", 0) == 0, executed

    world.sandbox.reset_stats()
    again = push(world)["result"]
    assert (again["added"], again["removed"]) == (0, 0)
    assert world.requests() == 0, world.stats()["endpoints"]  # nothing changed: no call at all

    held = prefixed(vendor_tags(world, prefix), prefix)
    assert held == ledger_tags(world) and held
    everything = vendor_tags(world, "")
    assert all(FOREIGN_TAG in everything.get(c.remote_id, ()) for c in hand.values())  # never touched


@pytest.mark.parametrize("pushed", connectors_with("sink"), indirect=True)
def test_a_push_killed_mid_way_then_resumed_leaves_the_vendor_equal_to_the_ledger(
    pushed: tuple[World, Sink]
) -> None:
    world, _ = pushed
    assert world.sandbox is not None
    configure(world, push={"max_removal_share": 1.0})  # the trial moves most people on purpose
    prefix = world.settings["destinations"][world.destination].get("tag_prefix", "hub:")
    world.sandbox.reset_stats()
    push(world)
    first_requests = world.requests()
    write_rules(world, {"conformance-a": "o", "conformance-b": "i"})  # people enter and leave both segments
    segment(world)
    killed = 0
    for seed in (5, 6):
        rng = random.Random(seed)
        proc = world.popen("push", world.destination or "")
        timer = threading.Timer(0.01, proc.kill)
        trigger = RequestTrigger(world.sandbox, timer.start, at=rng.randint(1, max(1, first_requests // 2)))
        try:
            killed += proc.wait(timeout=120) == -9
        finally:
            trigger.remove()
        resumed = push(world)["result"]
        assert resumed.get("failed", 0) == 0, resumed
        held = prefixed(vendor_tags(world, prefix), prefix)
        assert held == ledger_tags(world), (seed, resumed)
        write_rules(world, {"conformance-a": "a", "conformance-b": "e"} if seed % 2 else
                    {"conformance-a": "o", "conformance-b": "i"})
        segment(world)
    assert killed, "no kill landed while a push was running"
