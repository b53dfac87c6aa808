"""End-to-end syncs into a real store through ``hub.sync.sync_source``, against the emulator in-process: first
sync by pages and by bulk operation, incremental passes, resume after a kill (paged and during a bulk
operation), pacing and THROTTLED, scopes, deletions, bad payloads."""

from __future__ import annotations

import json
import logging
import math
import random
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.shopify import build_source
from connectors.shopify.config import ShopifySourceConfig
from connectors.shopify.settings import CUSTOMERS, ORDER_LINE_ITEMS, ORDERS
from hub.contracts import Consent
from hub.errors import ConfigError
from hub.store import Store
from hub.store import models as m
from hub.sync import sync_source

from ...support import Crash, crash_after
from .conftest import BASE_URL, ShopifyRig


def graphql_calls(rig: ShopifyRig, operation: str, start: int = 0) -> list[dict[str, Any]]:
    """The variables of every call of ``operation`` recorded since exchange ``start``."""
    out = []
    for request, _ in rig.exchanges[start:]:
        if request.url.path.endswith("/graphql.json"):
            body = json.loads(request.content)
            if body.get("operationName") == operation:
                out.append(body.get("variables") or {})
    return out


def rows(store: Store, table: sa.Table, *where: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(sa.select(table).where(*where)).mappings())


def follow_ups(rig: ShopifyRig) -> int:
    return sum(1 for n in rig.emulator.data.orders.nodes.values() if len(n["lineItems"]) > ORDER_LINE_ITEMS)


# ----------------------------------------------------------------------------------------------- first sync


def test_first_sync_by_pages_pulls_everything_with_one_request_per_page(store: Store, rig: ShopifyRig) -> None:
    customers = len(rig.emulator.data.customers.nodes)
    orders = len(rig.emulator.data.orders.nodes)
    states: list[dict[str, Any]] = []
    result = sync_source(store, rig.source(backfill="pages"), "shopify",
                         progress=lambda s, page, _st: states.append(dict(page.state or {})))
    streams = result.as_dict()["streams"]
    assert streams["customers"]["records"] == customers
    assert streams["orders"]["records"] == orders
    assert result.counts["activities_unlinked"] == 0
    endpoints = rig.stats()["endpoints"]
    assert endpoints["graphql CustomersPage"] == math.ceil(customers / CUSTOMERS.page_size)
    assert endpoints["graphql OrdersPage"] == math.ceil(orders / ORDERS.page_size)
    assert endpoints.get("graphql OrderLineItems", 0) == follow_ups(rig)
    assert rig.emulator.stats.throttled == 0
    # A checkpoint per page: every page but the last of a pass carries its cursor.
    assert streams["orders"]["pages"] == math.ceil(orders / ORDERS.page_size)
    assert sum(1 for s in states if s.get("cursor")) >= streams["orders"]["pages"] - 1
    pages = graphql_calls(rig, "CustomersPage")
    assert all(v["first"] == CUSTOMERS.page_size and v["query"].startswith("updated_at:<=") for v in pages)


def test_the_sandbox_counts_requests_by_the_root_field_they_ask_for(store: Store, rig: ShopifyRig) -> None:
    sync_source(store, rig.source(backfill="pages"), "shopify")
    stats = rig.stats()
    endpoints, resources = stats["endpoints"], stats["resources"]
    pages = endpoints["graphql CustomersPage"] + endpoints.get("graphql CustomerIds", 0)
    assert resources["customers"] == {"requests": pages, "statuses": {"200": pages}}
    assert resources["orders"]["requests"] == endpoints["graphql OrdersPage"]
    assert resources.get("node", {}).get("requests", 0) == endpoints.get("graphql OrderLineItems", 0)
    assert sum(r["requests"] for r in resources.values()) == stats["requests"]


def test_customers_and_orders_are_mapped_with_money_consent_and_products(store: Store, rig: ShopifyRig) -> None:
    sync_source(store, rig.source(backfill="pages"), "shopify")
    data = rig.emulator.data
    node = next(n for n in data.customers.nodes.values() if n["defaultAddress"]["city"] and n["tags"])
    identity = rows(store, m.identity, m.identity.c.external_id == node["id"])[0]
    assert identity["email_seen"] == node["email"]
    assert identity["first_name"] == node["firstName"]
    props = identity["properties"]
    assert (props["country"], props["region"], props["city"]) == (
        node["defaultAddress"]["countryCodeV2"], node["defaultAddress"]["province"], node["defaultAddress"]["city"])
    assert props["tags"] == sorted(node["tags"])
    assert props["state"] == node["state"].lower()
    expected = {"SUBSCRIBED": Consent.GRANTED, "UNSUBSCRIBED": Consent.DENIED, "INVALID": Consent.UNDELIVERABLE,
                "PENDING": Consent.PENDING}.get(node["emailMarketingConsent"]["marketingState"], Consent.UNKNOWN)
    assert identity["consent"] == expected.value
    multi = next(n for n in data.orders.nodes.values() if len(n["lineItems"]) > ORDER_LINE_ITEMS)
    refunded = next(n for n in data.orders.nodes.values() if n["displayFinancialStatus"] == "REFUNDED")
    for order in (multi, refunded):
        activity = rows(store, m.activity, m.activity.c.external_id == order["id"])[0]
        assert activity["type"] == "order"
        assert activity["amount"] == Decimal(order["totalPriceSet"]["shopMoney"]["amount"])
        assert activity["currency"] == order["totalPriceSet"]["shopMoney"]["currencyCode"]
        attrs = activity["attributes"]
        assert attrs["presentment_amount"] == order["totalPriceSet"]["presentmentMoney"]["amount"]
        assert attrs["presentment_currency"] == order["totalPriceSet"]["presentmentMoney"]["currencyCode"]
        assert attrs["product_types"] == sorted({li["product"]["productType"] for li in order["lineItems"]})
        assert attrs["items"] == sum(li["quantity"] for li in order["lineItems"])
        assert attrs["cancelled"] is (order["cancelledAt"] is not None)
        customer = rows(store, m.identity, m.identity.c.external_id == data.customers.nodes[order["_customer"]]["id"])
        assert activity["person_id"] == customer[0]["person_id"]
    refunded_row = rows(store, m.activity, m.activity.c.external_id == refunded["id"])[0]
    assert refunded_row["attributes"]["refunded"] is True
    assert refunded_row["attributes"]["financial_status"] == "refunded"


@pytest.mark.parametrize("version", ["2025-01", "2026-07"])
def test_first_sync_by_bulk_operation_gives_the_same_records(
    store: Store, rig_factory: Callable[..., ShopifyRig], version: str
) -> None:
    rig = rig_factory()
    result = sync_source(store, rig.source(backfill="bulk", api_version=version), "shopify")
    data = rig.emulator.data
    assert result.as_dict()["streams"]["orders"]["records"] == len(data.orders.nodes)
    assert result.as_dict()["streams"]["customers"]["records"] == len(data.customers.nodes)
    assert rig.emulator.stats.bulk_started["QUERY"] == 2  # one per stream, one after the other
    endpoints = rig.stats()["endpoints"]
    assert "graphql OrdersPage" not in endpoints and "graphql CustomersPage" not in endpoints
    multi = next(n for n in data.orders.nodes.values() if len(n["lineItems"]) > ORDER_LINE_ITEMS)
    attrs = rows(store, m.activity, m.activity.c.external_id == multi["id"])[0]["attributes"]
    assert attrs["product_types"] == sorted({li["product"]["productType"] for li in multi["lineItems"]})
    for stream in ("customers", "orders"):
        state = store.get_state("shopify", stream) or {}
        assert state["bulk_id"] is None and state["since"] is not None  # the next run is incremental


def test_auto_backfill_uses_bulk_only_for_a_large_shop(store: Store, rig_factory: Callable[..., ShopifyRig]) -> None:
    small = rig_factory()
    sync_source(store, small.source(streams=["customers"]), "shopify")
    assert small.emulator.stats.bulk_started["QUERY"] == 0
    large = rig_factory()
    sync_source(store, large.source(streams=["customers"], bulk_threshold=100), "shopify", full=True)
    assert large.emulator.stats.bulk_started["QUERY"] == 1


def test_auto_backfill_goes_by_bulk_where_paging_would_take_long_and_says_why(
    store: Store, rig_factory: Callable[..., ShopifyRig], caplog: pytest.LogCaptureFixture
) -> None:
    # At speed 10 the shop restores 1,000 points per real second: the two customer pages fit in the bucket, the
    # 23 order pages (988 points each) would take about 20 s.
    rig = rig_factory(speed=10.0)
    caplog.set_level(logging.INFO, logger="connectors.shopify.source")
    result = sync_source(store, rig.source(max_paged_backfill="5s"), "shopify")
    data = rig.emulator.data
    assert result.counts["records"] == len(data.customers.nodes) + len(data.orders.nodes)
    assert rig.emulator.stats.bulk_started["QUERY"] == 1
    endpoints = rig.stats()["endpoints"]
    assert endpoints["graphql CustomersPage"] == math.ceil(len(data.customers.nodes) / CUSTOMERS.page_size)
    assert "graphql OrdersPage" not in endpoints and endpoints["graphql BulkQueryRun"] == 1
    decisions = [r.getMessage() for r in caplog.records if ": first sync " in r.getMessage()]
    assert len(decisions) == 2  # one line per stream
    assert decisions[0].startswith("shopify/customers: first sync by pages")
    assert decisions[1].startswith("shopify/orders: first sync by a bulk operation")
    assert f"{len(data.orders.nodes):,} orders" in decisions[1] and "max_paged_backfill (5 s)" in decisions[1]


def test_without_the_official_schemas_the_sandbox_serves_its_own(
    store: Store, monkeypatch: pytest.MonkeyPatch, tmp_path: Any, rig_factory: Callable[..., ShopifyRig]
) -> None:
    monkeypatch.setenv("HUB_SPECS_DIR", str(tmp_path))  # no Shopify schema there
    rig = rig_factory()
    data = rig.emulator.data
    paged = sync_source(store, rig.source(backfill="pages"), "shopify")
    assert paged.counts["records"] == len(data.customers.nodes) + len(data.orders.nodes)
    bulk = sync_source(store, rig.source(backfill="bulk"), "shopify", full=True)
    assert bulk.counts["records"] == paged.counts["records"]
    refused = rig.graphql("{ customers(first: 1) { nodes { id givenName } } }")
    assert "reduced schema" in refused["errors"][0]["message"]
    counted = rig.graphql("{ customers(first: 1, sortKey: ID) { nodes { id numberOfOrders } } }")
    first = data.customers.nodes[data.customers.by_id[0]]
    assert counted["data"]["customers"]["nodes"] == [{"id": first["id"], "numberOfOrders": str(first["_orders"])}]


# ----------------------------------------------------------------------------------------------- incremental


def test_incremental_reads_only_what_changed(store: Store, rig: ShopifyRig) -> None:
    sync_source(store, rig.source(backfill="pages"), "shopify")
    rig.time.advance(3600)
    changed = rig.emulator.mutate(0.02, 0.0, random.Random(5))
    rig.time.advance(60)
    start = len(rig.exchanges)
    rig.clear_stats()
    result = sync_source(store, rig.source(), "shopify")
    streams = result.as_dict()["streams"]
    assert streams["customers"]["records"] == changed["customers_changed"]
    assert streams["orders"]["records"] == changed["orders_changed"]
    assert streams["customers"]["records_changed"] == changed["customers_changed"]
    pages = graphql_calls(rig, "CustomersPage", start)
    assert len(pages) == 1
    assert pages[0]["query"].startswith("updated_at:>='") and " AND updated_at:<='" in pages[0]["query"]
    assert rig.calls() == 2  # one page of customers, one of orders


def test_nothing_changed_costs_one_request_per_stream(store: Store, rig: ShopifyRig) -> None:
    sync_source(store, rig.source(), "shopify")
    rig.time.advance(3600)
    rig.clear_stats()
    result = sync_source(store, rig.source(), "shopify")
    assert result.counts["records"] == 0
    assert rig.stats()["endpoints"] == {"graphql CustomersPage": 1, "graphql OrdersPage": 1}


# ----------------------------------------------------------------------------------------------- resume


def test_a_paged_pass_killed_midway_resumes_at_its_cursor(store: Store, rig: ShopifyRig) -> None:
    with pytest.raises(Crash):
        sync_source(store, rig.source(backfill="pages", streams=["orders"]), "shopify", progress=crash_after(3))
    state = store.get_state("shopify", "orders") or {}
    assert state["cursor"] and state["until"]
    start = len(rig.exchanges)
    result = sync_source(store, rig.fresh().source(backfill="pages", streams=["orders"]), "shopify")
    calls = graphql_calls(rig, "OrdersPage", start)
    assert calls[0]["after"] == state["cursor"]
    total = len(rig.emulator.data.orders.nodes)
    assert result.counts["records"] == total - 3 * ORDERS.page_size
    with store.engine.connect() as conn:
        stored = conn.execute(sa.select(sa.func.count()).select_from(m.activity)).scalar_one()
    assert stored == total


def test_a_kill_during_a_bulk_operation_resumes_the_same_job(
    store: Store, rig_factory: Callable[..., ShopifyRig]
) -> None:
    rig = rig_factory(speed=1.0, bulk_rate=50.0)  # about 11 s of (real) bulk time: the kill lands while it runs
    with pytest.raises(Crash):
        # The first committed page holds the job id, before the wait.
        sync_source(store, rig.source(backfill="bulk", streams=["customers"]), "shopify", progress=crash_after(1))
    state = store.get_state("shopify", "customers") or {}
    job = state["bulk_id"]
    assert job and [j.number for j in rig.emulator.running("QUERY")] == [int(job.rsplit("/", 1)[1])]
    # The process restarts (a fresh pacer and client), the shop does not; the job ends meanwhile.
    ended = rig.emulator.jobs[int(job.rsplit("/", 1)[1])]
    ended.latency = ended.duration = 0.0
    start = len(rig.exchanges)
    result = sync_source(store, rig.fresh().source(backfill="bulk", streams=["customers"]), "shopify")
    assert rig.emulator.stats.bulk_started["QUERY"] == 1
    assert {v["id"] for v in graphql_calls(rig, "BulkOperationStatus", start)} == {job}
    assert not graphql_calls(rig, "BulkQueryRun", start)
    assert result.counts["records"] == len(rig.emulator.data.customers.nodes)


def test_a_start_whose_answer_was_lost_adopts_the_running_identical_job(
    store: Store, rig_factory: Callable[..., ShopifyRig]
) -> None:
    rig = rig_factory(speed=1.0, bulk_rate=50.0)
    source = rig.source(backfill="bulk", streams=["customers"])
    first = source.bulk.start_query(source.streams()[0]._bulk_query(_pass_state(rig)))  # type: ignore[attr-defined]
    again = source.bulk.start_query(source.streams()[0]._bulk_query(_pass_state(rig)))  # type: ignore[attr-defined]
    assert again == first
    assert rig.emulator.stats.bulk_started["QUERY"] == 1


def _pass_state(rig: ShopifyRig) -> Any:
    from connectors.shopify.source import PassState

    return PassState(until=rig.time.now.isoformat())


def test_a_failed_bulk_operation_is_started_again_once_then_pages_take_over(
    store: Store, rig: ShopifyRig
) -> None:
    rig.emulator.fail_next_bulk()
    rig.emulator.fail_next_bulk()
    result = sync_source(store, rig.source(backfill="bulk", streams=["customers"]), "shopify")
    assert rig.emulator.stats.bulk_started["QUERY"] == 2
    assert result.counts["records"] == len(rig.emulator.data.customers.nodes)
    assert rig.stats()["endpoints"]["graphql CustomersPage"] >= 1


# ----------------------------------------------------------------------------------------------- pacing


def test_pacing_keeps_a_full_sync_free_of_throttled_answers(
    store: Store, rig_factory: Callable[..., ShopifyRig]
) -> None:
    rig = rig_factory(speed=100.0)  # the bucket matters: 10,000 points per real second
    sync_source(store, rig.source(backfill="pages"), "shopify")
    assert rig.emulator.stats.throttled == 0
    assert rig.emulator.stats.requested_points > 2 * 2000  # more than the bucket holds: pacing had work to do


def test_throttled_is_a_wait_not_a_failure(store: Store, rig_factory: Callable[..., ShopifyRig]) -> None:
    # Slow enough that the emptied bucket is still short when the first query arrives (at 20x it refilled in
    # the second a loaded machine can take to get there, and nothing was throttled).
    rig = rig_factory(speed=5.0)
    source = rig.source(backfill="pages", streams=["customers"])
    rig.emulator.drain(2000)  # another app process emptied the bucket; this process's pacer does not know
    result = sync_source(store, source, "shopify")
    assert rig.emulator.stats.throttled >= 1
    assert source.client.stats.throttled == rig.emulator.stats.throttled
    assert result.status == "ok"
    assert result.counts["records"] == len(rig.emulator.data.customers.nodes)
    # The pacer learned the shop's real bucket from throttleStatus.
    bucket = source.client.pacer.snapshot()["buckets"]["default"]
    assert bucket["capacity"] == 2000.0 and bucket["refill_per_s"] == 100.0 * 5


# ----------------------------------------------------------------------------------------------- scopes, auth


def test_missing_scopes_are_a_config_error_naming_them(rig: ShopifyRig) -> None:
    rig.emulator.add_token("shpat_none", [])
    with pytest.raises(ConfigError, match="read_orders") as exc:
        rig.source(token="shpat_readonly").check()
    assert "read_customers" not in str(exc.value)
    with pytest.raises(ConfigError, match="read_customers, read_orders"):
        rig.source(token="shpat_none").check()
    rig.source(token="shpat_readonly", streams=["customers"]).check()  # enough for what is configured
    rig.source().check()


def test_a_stream_without_its_scope_fails_with_a_config_error(store: Store, rig: ShopifyRig) -> None:
    with pytest.raises(ConfigError, match="read_orders"):
        sync_source(store, rig.source(token="shpat_readonly", backfill="pages", streams=["orders"]), "shopify")


def test_a_wrong_token_is_a_config_error_and_never_shown(
    store: Store, rig: ShopifyRig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    config = ShopifySourceConfig.model_validate(
        {"type": "shopify", "shop": "sandbox-shop", "token": "env:SHOPIFY_BAD", "base_url": BASE_URL}
    )
    source = build_source(config, "shopify", rig.context())
    with pytest.raises(ConfigError, match="401") as exc:
        source.check()
    assert "shpat_x" not in str(exc.value) and "shpat_x" not in caplog.text
    source.close()


# ----------------------------------------------------------------------------------------------- deletions, bad data


def test_deleted_customers_are_found_by_the_periodic_id_check(store: Store, rig: ShopifyRig) -> None:
    sync_source(store, rig.source(reconcile_every="1h"), "shopify")
    rig.time.advance(600)
    gone = rig.emulator.mutate(0.0, 0.05, random.Random(2))["customers_deleted"]
    assert gone > 0
    rig.clear_stats()
    quiet = sync_source(store, rig.source(reconcile_every="1h"), "shopify")
    assert quiet.counts["records_deleted"] == 0  # not due yet
    assert "graphql CustomerIds" not in rig.stats()["endpoints"]
    rig.time.advance(3600)
    result = sync_source(store, rig.source(reconcile_every="1h"), "shopify")
    assert result.counts["records_deleted"] == gone
    deleted = rows(store, m.identity, m.identity.c.source == "shopify", m.identity.c.deleted.is_(True))
    assert len(deleted) == gone
    live = {n["id"] for n in rig.emulator.data.customers.nodes.values()}
    assert not {d["external_id"] for d in deleted} & live
    rig.time.advance(7200)
    again = sync_source(store, rig.source(reconcile_every="1h"), "shopify")
    assert again.counts["records_deleted"] == 0  # known deletions are not reported twice


def test_a_bad_payload_is_skipped_and_counted_and_the_run_goes_on(store: Store, rig: ShopifyRig) -> None:
    order = next(iter(rig.emulator.data.orders.nodes.values()))
    order["totalPriceSet"] = {"shopMoney": {"amount": "twelve", "currencyCode": "EUR"}}
    result = sync_source(store, rig.source(backfill="pages"), "shopify")
    assert result.status == "ok_with_skips"
    assert result.counts["skipped"] == 1
    assert result.counts["activities_written"] == len(rig.emulator.data.orders.nodes) - 1
    assert any(order["id"] in e for e in result.errors)
