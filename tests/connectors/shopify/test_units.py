"""Parsers and builders without a shop: search strings (against the emulator's parser, property-tested), the id
set encoding, record mapping of bad payloads, error mapping of GraphQL answers, the cost refund, the backfill
decision and the bulk status polling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from connectors.shopify import idset, queries
from connectors.shopify.bulk import BulkRunner
from connectors.shopify.client import QueryCostError, ShopifyClient
from connectors.shopify.config import shop_handle
from connectors.shopify.emulator_search import And, Not, Or, Term, parse, render, time_bounds
from connectors.shopify.records import customer_record, order_record
from connectors.shopify.settings import CUSTOMERS, ORDERS
from connectors.shopify.source import _smaller_page, plan_backfill, require_scopes
from hub.errors import ConfigError, SkippableRecordError, TransientError
from hub.http import Pacer, RetryPolicy, TokenBucket

# ----------------------------------------------------------------------------------------------- search strings

_WORD = st.text(alphabet="abcxyz019@._-:()\\*", min_size=1, max_size=12).filter(
    lambda w: w not in ("AND", "OR", "NOT") and not w.startswith("-")
)
_TERMS = st.builds(
    lambda field, op, value, quoted: Term(field, op if field else "=", value, quoted=quoted),
    st.sampled_from([None, "email", "tag", "updated_at"]),
    st.sampled_from(["=", "<", "<=", ">", ">="]),
    _WORD,
    st.booleans(),
)
_TREES = st.recursive(
    _TERMS,
    lambda inner: st.one_of(
        st.builds(Not, inner),
        st.builds(lambda c: And(tuple(c)), st.lists(inner, min_size=2, max_size=3)),
        st.builds(lambda c: Or(tuple(c)), st.lists(inner, min_size=2, max_size=3)),
    ),
    max_leaves=6,
)


@settings(max_examples=200, deadline=None)
@given(_TREES)
def test_rendered_search_trees_parse_back(tree: Any) -> None:
    assert parse(render(tree)) == tree


@given(st.lists(st.emails(), min_size=1, max_size=5))
def test_an_email_lookup_is_one_exact_phrase_per_address(emails: list[str]) -> None:
    tree = parse(queries.emails_query(emails))
    terms = tree.children if isinstance(tree, Or) else (tree,)
    assert [(t.field, t.quoted, t.value) for t in terms] == [("email", True, e) for e in emails]  # type: ignore[union-attr]


@given(st.text(alphabet="abc:()\\-_", min_size=1, max_size=10))
def test_a_tag_prefix_query_is_a_prefix_term_on_tag(prefix: str) -> None:
    text = queries.tag_prefix_query(prefix)
    assert text is not None
    assert parse(text) == Term("tag", "=", prefix, prefix=True)


def test_a_prefix_the_syntax_cannot_say_lists_everyone() -> None:
    assert queries.tag_prefix_query("hub vip") is None
    assert queries.tag_prefix_query('hub"') is None


@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC)),
    st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
)
def test_an_updated_window_bounds_both_ends_in_whole_seconds(since: datetime, span: timedelta) -> None:
    until = since + span
    low, high = time_bounds(parse(queries.updated_window(since, until) or ""), "updated_at")
    assert low == since.replace(microsecond=0) and high == until.replace(microsecond=0)
    assert queries.updated_window(None, None) is None


# ----------------------------------------------------------------------------------------------- id sets


@given(st.sets(st.integers(min_value=0, max_value=2**53)))
def test_id_sets_round_trip(ids: set[int]) -> None:
    assert idset.decode(idset.encode(ids)) == ids


def test_id_sets_are_compact_and_garbage_is_refused() -> None:
    ids = {6_100_000_000_000 + 8 * k for k in range(20_000)}
    assert len(idset.encode(ids)) < 2 * 20_000
    with pytest.raises(ValueError):
        idset.decode("not base64 at all!")
    assert idset.numeric_id("gid://shopify/Customer/42") == 42
    assert idset.numeric_id("gid://shopify/Customer/x") is None


# ----------------------------------------------------------------------------------------------- records

ORDER = {
    "id": "gid://shopify/Order/1",
    "processedAt": "2026-01-02T10:00:00Z",
    "updatedAt": "2026-01-03T10:00:00Z",
    "cancelledAt": None,
    "displayFinancialStatus": "PARTIALLY_REFUNDED",
    "customer": {"id": "gid://shopify/Customer/9"},
    "totalPriceSet": {"shopMoney": {"amount": "10.50", "currencyCode": "EUR"},
                      "presentmentMoney": {"amount": "11.90", "currencyCode": "USD"}},
    "totalRefundedSet": {"shopMoney": {"amount": "2.00", "currencyCode": "EUR"}},
}


def test_an_order_carries_both_currencies_and_its_refund() -> None:
    record = order_record(ORDER, [{"quantity": 2, "product": {"productType": "Tea"}}, {"quantity": 1, "product": None}])
    activity = record.activities[0]
    assert (str(activity.amount), activity.currency) == ("10.50", "EUR")
    attrs = activity.attributes
    assert (attrs["presentment_amount"], attrs["presentment_currency"]) == ("11.90", "USD")
    assert attrs["refunded_amount"] == "2.00" and attrs["refunded"] is False
    assert attrs["product_types"] == ["Tea"] and attrs["items"] == 3
    assert activity.person_external_id == "gid://shopify/Customer/9"


@pytest.mark.parametrize(
    "change",
    [
        {"id": "12"},
        {"processedAt": "yesterday", "createdAt": None},
        {"totalPriceSet": {"shopMoney": {"amount": "NaN", "currencyCode": "EUR"}}},
        {"totalPriceSet": {"shopMoney": {"amount": "1.00", "currencyCode": None}}},
    ],
)
def test_an_unusable_order_is_skippable(change: dict[str, Any]) -> None:
    with pytest.raises(SkippableRecordError):
        order_record({**ORDER, **change}, [])


def test_a_cancelled_or_voided_order_is_marked_cancelled() -> None:
    assert order_record({**ORDER, "cancelledAt": "2026-01-04T00:00:00Z"}, []).activities[0].attributes["cancelled"]
    assert order_record({**ORDER, "displayFinancialStatus": "VOIDED"}, []).activities[0].attributes["cancelled"]


def test_a_customer_needs_an_id_and_a_valid_update_time() -> None:
    with pytest.raises(SkippableRecordError):
        customer_record({"id": None, "updatedAt": "2026-01-01T00:00:00Z"})
    with pytest.raises(SkippableRecordError):
        customer_record({"id": "gid://shopify/Customer/1", "updatedAt": "2026-13-01"})
    record = customer_record({"id": "gid://shopify/Customer/1", "updatedAt": "2026-01-01T00:00:00Z", "tags": None,
                              "emailMarketingConsent": {"marketingState": "NOT_SUBSCRIBED"}})
    assert record.person is not None and record.person.properties["tags"] == []


# ----------------------------------------------------------------------------------------------- config, scopes


@pytest.mark.parametrize("value", ["Example-Store", "example-store.myshopify.com", "https://example-store.myshopify.com/admin/"])
def test_shop_handles(value: str) -> None:
    assert shop_handle(value) == "example-store"


def test_a_custom_domain_is_not_a_shop() -> None:
    with pytest.raises(ValueError):
        shop_handle("shop.example.com")


def test_a_write_scope_implies_its_read_scope() -> None:
    require_scopes({"write_customers", "read_orders"}, ["read_customers", "read_orders"], "x")
    with pytest.raises(ConfigError, match="read_orders"):
        require_scopes({"write_customers"}, ["read_customers", "read_orders"], "x")


# ----------------------------------------------------------------------------------------------- client errors


def _client(answer: httpx.Response) -> tuple[ShopifyClient, Pacer]:
    pacer = Pacer.single(TokenBucket(1000.0, 50.0))
    client = ShopifyClient("s", SecretStr("shpat_t"), "2026-07", base="http://s.test", pacer=pacer,
                           transport=httpx.MockTransport(lambda _r: answer), retry=RetryPolicy(max_attempts=1))
    return client, pacer


def _cost(requested: float, actual: float | None, available: float) -> dict[str, Any]:
    return {"cost": {"requestedQueryCost": requested, "actualQueryCost": actual,
                     "throttleStatus": {"maximumAvailable": 2000.0, "currentlyAvailable": available,
                                        "restoreRate": 100.0}}}


def test_throttled_waits_exactly_for_the_missing_points() -> None:
    client, _ = _client(httpx.Response(200, json={"errors": [{"message": "Throttled",
                                                              "extensions": {"code": "THROTTLED"}}],
                                                  "extensions": _cost(500, None, 100)}))
    with pytest.raises(TransientError) as exc:
        client.graphql("Q", "{ shop { name } }")
    assert exc.value.retry_after == pytest.approx(4.0, abs=0.02)
    assert client.stats.throttled == 1


def test_access_denied_names_the_scope() -> None:
    client, _ = _client(httpx.Response(200, json={"errors": [{"message": "Access denied for orders field.",
                                                              "extensions": {"code": "ACCESS_DENIED",
                                                                             "requiredAccess": "`read_orders`"}}]}))
    with pytest.raises(ConfigError, match="read_orders"):
        client.graphql("Q", "{ orders(first: 1) { nodes { id } } }")


def test_max_cost_gives_a_smaller_page() -> None:
    client, _ = _client(httpx.Response(200, json={"errors": [{"message": "too dear", "extensions": {
        "code": "MAX_COST_EXCEEDED", "cost": 1502, "maxCost": 1000}}]}))
    with pytest.raises(QueryCostError) as exc:
        client.graphql("Q", "{ shop { name } }")
    assert _smaller_page(250, exc.value) == 166
    with pytest.raises(QueryCostError):
        _smaller_page(1, exc.value)


def test_the_pacer_learns_the_bucket_and_gets_back_points_a_failed_call_never_cost() -> None:
    ok, pacer = _client(httpx.Response(200, json={"data": {"shop": {"name": "x"}}, "extensions": _cost(1, 1, 1500)}))
    ok.graphql("Q", "{ shop { name } }")
    bucket = pacer.snapshot()["buckets"]["default"]
    assert (bucket["capacity"], bucket["refill_per_s"]) == (2000.0, 100.0)
    assert bucket["tokens"] == pytest.approx(1500, abs=1)
    failing, pacer = _client(httpx.Response(503, json={"errors": "Service Unavailable"}))
    with pytest.raises(TransientError):
        failing.graphql("Q", "{ shop { name } }")
    assert pacer.snapshot()["buckets"]["default"]["tokens"] == pytest.approx(1000, abs=1)


# ----------------------------------------------------------------------------------------------- backfill decision

STANDARD = {"available": 2000.0, "maximum": 2000.0, "rate": 100.0}


def test_a_shop_whose_paged_backfill_takes_long_goes_by_bulk_operation() -> None:
    # The 5,000-person sandbox: 4,245 customers are 17 pages of 752 points, about 108 s at 100 points per second.
    plan = plan_backfill(4245, CUSTOMERS, STANDARD, bulk_threshold=10_000, max_paged=timedelta(seconds=30))
    assert plan.bulk and plan.pages == 17 and plan.points == 17 * CUSTOMERS.page_cost
    assert plan.seconds == pytest.approx((17 * 752 - 2000) / 100)
    assert "bulk operation" in plan.describe() and "max_paged_backfill" in plan.describe()


def test_a_count_at_its_limit_is_said_to_be_a_lower_bound() -> None:
    plan = plan_backfill(10_000, ORDERS, STANDARD, bulk_threshold=10_000, max_paged=timedelta(hours=9), at_least=True)
    assert plan.bulk and "at least 10,000 orders" in plan.describe() and "bulk_threshold" in plan.describe()


def test_a_tiny_shop_pages() -> None:
    plan = plan_backfill(300, CUSTOMERS, STANDARD, bulk_threshold=10_000, max_paged=timedelta(seconds=30))
    assert not plan.bulk and plan.seconds == 0.0  # two pages fit in the bucket
    assert plan.describe().startswith("by pages")


@given(
    objects=st.integers(0, 200_000),
    rate=st.sampled_from([50.0, 100.0, 200.0, 1000.0, 2000.0, 100_000.0]),
    available=st.floats(0, 40_000),
    limit=st.integers(1, 600),
)
def test_the_decision_follows_the_expected_paged_duration(
    objects: int, rate: float, available: float, limit: int
) -> None:
    throttle = {"available": available, "maximum": max(available, 2000.0), "rate": rate}
    for spec in (CUSTOMERS, ORDERS):
        plan = plan_backfill(objects, spec, throttle, bulk_threshold=10**9, max_paged=timedelta(seconds=limit))
        pages = max(1, -(-objects // spec.page_size))
        expected = max(pages * spec.page_cost - available, 0) / rate
        assert plan.seconds == pytest.approx(expected)
        assert plan.bulk == (expected > limit)
        # A faster plan never turns a paged backfill into a bulk one.
        faster = plan_backfill(objects, spec, {**throttle, "rate": rate * 2}, bulk_threshold=10**9,
                               max_paged=timedelta(seconds=limit))
        assert not faster.bulk or plan.bulk
        # The threshold still forces a bulk operation, whatever paging would take.
        forced = plan_backfill(objects, spec, throttle, bulk_threshold=max(objects, 1), max_paged=timedelta(days=1))
        assert forced.bulk == (objects >= max(objects, 1))


def test_without_a_throttle_status_the_old_standard_rate_is_assumed() -> None:
    plan = plan_backfill(2500, CUSTOMERS, {}, bulk_threshold=10_000, max_paged=timedelta(seconds=30))
    assert plan.restore_rate == 50.0 and plan.available == 0.0
    assert plan.seconds == pytest.approx(10 * 752 / 50) and plan.bulk


# ----------------------------------------------------------------------------------------------- bulk polling


class _Statuses:
    """A client whose bulk operation runs for ``checks`` status checks, then completes."""

    def __init__(self, checks: int) -> None:
        self.left = checks

    def graphql(self, operation: str, _document: str, variables: Any = None) -> dict[str, Any]:
        assert operation == "BulkOperationStatus"
        self.left -= 1
        status = "RUNNING" if self.left >= 0 else "COMPLETED"
        return {"node": {"id": variables["id"], "status": status, "objectCount": "5", "url": "http://s/x"}}


@pytest.mark.parametrize(("checks", "interval"), [(0, 1.0), (3, 1.0), (25, 1.0), (25, 0.5), (14, 8.0)])
def test_bulk_status_is_checked_each_interval_ten_times_then_every_five_seconds(checks: int, interval: float) -> None:
    waits: list[float] = []
    runner = BulkRunner(_Statuses(checks), poll_interval=interval, sleep=waits.append)  # type: ignore[arg-type]
    assert runner.wait("gid://shopify/BulkOperation/1").status == "COMPLETED"
    assert len(waits) == checks
    assert waits[:10] == [interval] * min(checks, 10)
    assert waits[10:] == [max(interval, 5.0)] * max(checks - 10, 0)
