"""The tag sink: tagsAdd/tagsRemove only, per-record outcomes from userErrors, bulk mutations for large pushes,
and the real push engine end to end (tags appear, a repeated push costs zero calls, only owned tags go)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connectors.shopify.settings import MUTATIONS_PER_REQUEST
from hub.config.models import PushConfig
from hub.contracts import Outcome, TagChange, TagOp, TagResult
from hub.errors import ConfigError
from hub.push.plan import Targeting
from hub.push.service import PushOptions, push_destination
from hub.store import Store
from hub.store import models as m
from hub.sync import sync_source

from .conftest import BASE_URL, ShopifyRig

MISSING = "gid://shopify/Customer/1"


def customers(rig: ShopifyRig, n: int) -> list[dict[str, Any]]:
    data = rig.emulator.data.customers
    return [data.nodes[k] for k in data.by_id[:n]]


def add(node: dict[str, Any], tag: str = "hub:vip", person: int = 1) -> TagChange:
    return TagChange(TagOp.ADD, tag, person, node.get("email"), node["id"])


def outcomes(results: list[TagResult]) -> dict[str, list[tuple[str, str | None]]]:
    out: dict[str, list[tuple[str, str | None]]] = {}
    for r in results:
        out.setdefault(r.outcome.value, []).append((r.change.remote_id or "", r.reason))
    return out


# ----------------------------------------------------------------------------------------------- batched calls


def test_tags_are_added_by_aliased_tags_add_batches_keeping_other_tags(rig: ShopifyRig) -> None:
    nodes = customers(rig, 30)
    before = {n["id"]: set(n["tags"]) for n in nodes}
    results = rig.sink().apply([add(n) for n in nodes])
    assert {r.outcome for r in results} == {Outcome.ACKNOWLEDGED} and len(results) == 30
    assert rig.stats()["endpoints"] == {"graphql TagsBatch": math.ceil(30 / MUTATIONS_PER_REQUEST)}
    for n in nodes:
        assert set(n["tags"]) == before[n["id"]] | {"hub:vip"}


def test_removal_takes_only_the_named_tags(rig: ShopifyRig) -> None:
    node = customers(rig, 1)[0]
    sink = rig.sink()
    sink.apply([add(node, "hub:a"), add(node, "hub:b"), add(node, "merchant-tag")])
    removal = TagChange(TagOp.REMOVE, "hub:a", 1, node["email"], node["id"])
    assert sink.apply([removal])[0].outcome is Outcome.ACKNOWLEDGED
    assert "hub:a" not in node["tags"] and {"hub:b", "merchant-tag"} <= set(node["tags"])
    sent = [body for body in _documents(rig) if "TagsBatch" in body]
    assert sent and all("customerUpdate" not in body for body in sent)


def _documents(rig: ShopifyRig) -> list[str]:
    import json

    return [json.loads(req.content)["query"] for req, _ in rig.exchanges if req.url.path.endswith("graphql.json")]


def test_user_errors_skip_their_record_only(rig: ShopifyRig) -> None:
    nodes = customers(rig, 3)
    changes = [add(nodes[0]), TagChange(TagOp.ADD, "hub:vip", 9, "gone@example.com", MISSING), add(nodes[1]),
               add(nodes[2], "x" * 300)]
    got = outcomes(rig.sink().apply(changes))
    assert sorted(got["acknowledged"]) == sorted([(nodes[0]["id"], None), (nodes[1]["id"], None)])
    assert (MISSING, "Customer does not exist") in got["skipped"]
    assert any("too long" in (reason or "") or "255" in (reason or "") for _, reason in got["skipped"])
    assert rig.calls() == 1


def test_changes_shopify_cannot_take_are_skipped_without_a_call(rig: ShopifyRig) -> None:
    node = customers(rig, 1)[0]
    changes = [
        add(node, "hub:a,b"),
        add(node, " "),
        TagChange(TagOp.ADD, "hub:vip", 2, None, "gid://shopify/Order/5"),
        TagChange(TagOp.ADD, "hub:vip", 3, "nobody@nowhere.example", None),
    ]
    got = outcomes(rig.sink().apply(changes))
    assert "acknowledged" not in got and len(got["skipped"]) == 4
    assert set(rig.stats()["endpoints"]) <= {"graphql CustomersByEmail"}  # the lookup only


def test_a_change_without_an_id_is_found_by_email(rig: ShopifyRig) -> None:
    node = customers(rig, 1)[0]
    change = TagChange(TagOp.ADD, "hub:vip", 1, f"  {node['email'].upper()} ", None)
    assert rig.sink().apply([change])[0].outcome is Outcome.ACKNOWLEDGED
    assert "hub:vip" in node["tags"]


def test_transient_failures_are_retry_results_not_exceptions(rig: ShopifyRig) -> None:
    nodes = customers(rig, 2)
    httpx.Client(transport=rig.transport).post(f"{BASE_URL}/_sandbox/faults", json={"kind": "5xx", "count": None,
                                                                                     "status": 503})
    results = rig.sink().apply([add(n) for n in nodes])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert all("hub:vip" not in n["tags"] for n in nodes)


def test_missing_write_scope_is_a_config_error_naming_it(rig: ShopifyRig) -> None:
    node = customers(rig, 1)[0]
    with pytest.raises(ConfigError, match="write_customers"):
        rig.sink(token="shpat_readonly").apply([add(node)])


# ----------------------------------------------------------------------------------------------- bulk mutation


def test_a_large_push_goes_as_one_bulk_mutation_per_kind(rig: ShopifyRig) -> None:
    nodes = customers(rig, 12)
    sink = rig.sink(bulk_mutation_threshold=10)
    changes = [add(n) for n in nodes] + [TagChange(TagOp.ADD, "hub:vip", 99, None, MISSING)]
    got = outcomes(sink.apply(changes))
    assert len(got["acknowledged"]) == 12
    assert got["skipped"] == [(MISSING, "Customer does not exist")]
    assert all("hub:vip" in n["tags"] for n in nodes)
    endpoints = rig.stats()["endpoints"]
    assert "graphql TagsBatch" not in endpoints
    assert endpoints["graphql BulkMutationRun"] == 1 and endpoints["POST staged-upload"] == 1
    assert endpoints["GET bulk-operation-result"] == 1
    assert rig.emulator.stats.bulk_started["MUTATION"] == 1
    removals = [TagChange(TagOp.REMOVE, "hub:vip", 1, None, n["id"]) for n in nodes]
    assert {r.outcome for r in sink.apply(removals)} == {Outcome.ACKNOWLEDGED}
    assert all("hub:vip" not in n["tags"] for n in nodes)


def test_a_failed_bulk_mutation_leaves_every_change_for_a_retry(rig: ShopifyRig) -> None:
    nodes = customers(rig, 12)
    rig.emulator.fail_next_bulk()
    results = rig.sink(bulk_mutation_threshold=10).apply([add(n) for n in nodes])
    assert {r.outcome for r in results} == {Outcome.RETRY}


# ----------------------------------------------------------------------------------------------- reading


def test_lookup_and_read_tags(rig: ShopifyRig) -> None:
    nodes = customers(rig, 3)
    sink = rig.sink()
    sink.apply([add(nodes[0]), add(nodes[1], "hubspot-imported")])
    found = sink.lookup([nodes[0]["email"].upper(), nodes[2]["email"], "nobody@nowhere.example"])
    assert {c.remote_id for c in found.values()} == {nodes[0]["id"], nodes[2]["id"]}
    tagged = list(sink.read_tags("hub:"))
    assert [c.remote_id for c in tagged] == [nodes[0]["id"]]  # "hubspot-imported" does not start with "hub:"


# ----------------------------------------------------------------------------------------------- push engine


def _segment(store: Store, person_ids: list[int], segment: str = "vip") -> None:
    sm = m.segment_membership
    now = m.utcnow()
    with store.engine.begin() as conn:
        conn.execute(sa.update(sm).where(sm.c.segment == segment, sm.c.exited_at.is_(None),
                                         sm.c.person_id.not_in(person_ids)).values(exited_at=now))
        open_ = set(conn.execute(sa.select(sm.c.person_id).where(sm.c.segment == segment,
                                                                 sm.c.exited_at.is_(None))).scalars())
        new = [{"person_id": p, "segment": segment, "entered_at": now, "exited_at": None, "held_out": False}
               for p in person_ids if p not in open_]
        if new:
            conn.execute(sa.insert(sm), new)
    store.finish_run(store.start_run("segment", "full"), "ok", {})


def _people(store: Store, n: int) -> list[int]:
    i = m.identity
    with store.engine.connect() as conn:
        return [int(p) for p in conn.execute(sa.select(i.c.person_id).where(i.c.source == "shopify").distinct()
                                             .order_by(i.c.person_id).limit(n)).scalars()]


TARGET = Targeting("shopify-tags", "hub:", {"vip": "hub:vip"}, source="shopify")


def _push(store: Store, rig: ShopifyRig, **sink: Any) -> Any:
    config = PushConfig(max_removal_share=1.0)
    return push_destination(store, TARGET, rig.sink(**sink), config, ["shopify"], PushOptions())[1]


def test_the_push_engine_tags_customers_and_a_repeated_push_costs_nothing(
    store: Store, rig_factory: Callable[..., ShopifyRig]
) -> None:
    rig = rig_factory()
    sync_source(store, rig.source(), "shopify")
    members = _people(store, 40)
    _segment(store, members)
    rig.clear_stats()
    result = _push(store, rig)
    assert result.added == 40 and result.retry == 0
    tagged = [n for n in rig.emulator.data.customers.nodes.values() if "hub:vip" in n["tags"]]
    assert len(tagged) == 40
    assert rig.stats()["endpoints"]["graphql TagsBatch"] == math.ceil(40 / MUTATIONS_PER_REQUEST)
    rig.clear_stats()
    again = _push(store, rig)
    assert again.added == 0 and rig.calls() == 0
    # Ten leave: only the hub's tag goes; the merchant's own tags stay.
    merchant = {n["id"]: {t for t in n["tags"] if t != "hub:vip"} for n in tagged}
    _segment(store, members[10:])
    rig.clear_stats()
    left = _push(store, rig)
    assert left.removed == 10
    assert sum(1 for n in rig.emulator.data.customers.nodes.values() if "hub:vip" in n["tags"]) == 30
    for n in tagged:
        assert merchant[n["id"]] <= set(n["tags"])


def test_a_lost_ledger_reconciles_from_the_shop_without_resending(
    store: Store, rig_factory: Callable[..., ShopifyRig]
) -> None:
    rig = rig_factory()
    sync_source(store, rig.source(), "shopify")
    _segment(store, _people(store, 30))
    assert _push(store, rig, bulk_mutation_threshold=20).added == 30  # in bulk
    with store.engine.begin() as conn:
        conn.execute(sa.delete(m.push_ledger))
        conn.execute(sa.delete(m.run).where(m.run.c.kind == "reconcile"))
    rig.clear_stats()
    result = _push(store, rig)
    assert result.adopted == 30 and result.added == 0
    assert set(rig.stats()["endpoints"]) == {"graphql CustomersByTag"}
