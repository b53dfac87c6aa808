"""Every GraphQL document the connector can send validates against both shipped official schema versions.

The documents are taken from :mod:`connectors.shopify.queries` (the static ones, and the generated aliased tag
batches and bulk queries); the fixtures also check every document actually sent in the other tests. A document
one version rejects would fail against the live API of that version, so these tests fail too.
"""

from __future__ import annotations

import pytest

from connectors.shopify import queries
from connectors.shopify.emulator_fallback import fallback_schema
from connectors.shopify.emulator_graphql import parsed, requested_cost
from connectors.shopify.settings import (
    CUSTOMERS,
    MAX_PAGE_SIZE,
    MAX_QUERY_COST,
    MUTATIONS_PER_REQUEST,
    ORDERS,
    StreamSpec,
)

from .schemas import VERSIONS, errors_for, require_schema

STATIC = {
    name: getattr(queries, name)
    for name in (
        "CUSTOMERS_PAGE",
        "ORDERS_PAGE",
        "ORDER_LINE_ITEMS_PAGE",
        "CUSTOMER_IDS_PAGE",
        "CUSTOMERS_COUNT",
        "ORDERS_COUNT",
        "SHOP_CHECK",
        "BULK_RUN_QUERY",
        "BULK_RUN_MUTATION",
        "BULK_STATUS",
        "CURRENT_BULK",
        "STAGED_UPLOAD",
        "CUSTOMERS_BY_EMAIL",
        "CUSTOMERS_BY_TAG",
    )
}
GENERATED = {
    "tags batch (add)": queries.tags_batch(["add"]),
    "tags batch (mixed, full)": queries.tags_batch(["add", "remove"] * (MUTATIONS_PER_REQUEST // 2) + ["add"]),
    "tags line add": queries.TAGS_LINE["add"],
    "tags line remove": queries.TAGS_LINE["remove"],
    "bulk customers": queries.bulk_query("customers", None),
    "bulk orders windowed": queries.bulk_query(
        "orders", "updated_at:>='2026-01-01T00:00:00Z' AND updated_at:<='2026-02-01T00:00:00Z'"
    ),
}
DOCUMENTS = {**STATIC, **GENERATED}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_document_validates_against_the_official_schema(version: str, name: str) -> None:
    schema = require_schema(version)
    assert errors_for(schema, DOCUMENTS[name]) == []


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_every_document_validates_against_the_sandbox_schema_used_without_the_specs(name: str) -> None:
    # Without $HUB_SPECS_DIR the emulator serves its own reduced schema: the connector must still work there.
    assert errors_for(fallback_schema(), DOCUMENTS[name]) == []


@pytest.mark.parametrize("version", VERSIONS)
def test_the_check_is_able_to_fail(version: str) -> None:
    schema = require_schema(version)
    wrong_field = queries.CUSTOMERS_PAGE.replace("firstName", "givenName")
    wrong_sort = queries.CUSTOMERS_PAGE.replace("sortKey: UPDATED_AT", "sortKey: PROCESSED_AT")
    assert any("givenName" in e for e in errors_for(schema, wrong_field))
    assert errors_for(schema, wrong_sort)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("spec", [CUSTOMERS, ORDERS], ids=lambda s: s.name)
def test_page_queries_request_no_more_than_the_single_query_limit(version: str, spec: StreamSpec) -> None:
    schema = require_schema(version)
    document = parsed(queries.page_query(spec.root))
    cost = requested_cost(schema, document, None, {"first": spec.page_size})
    assert cost <= MAX_QUERY_COST
    # One node more per page would not fit, or the page is the API's maximum: the page size is not wasteful.
    assert spec.page_size == MAX_PAGE_SIZE or requested_cost(
        schema, document, None, {"first": spec.page_size + 1}
    ) > MAX_QUERY_COST
    # The connector's estimate of a page's cost (its backfill decision) is what the shop will ask for.
    assert spec.page_cost == cost


@pytest.mark.parametrize("version", VERSIONS)
def test_a_full_tags_batch_stays_far_below_the_limit(version: str) -> None:
    schema = require_schema(version)
    variables = {f"id{i}": "gid://shopify/Customer/1" for i in range(MUTATIONS_PER_REQUEST)}
    cost = requested_cost(schema, parsed(GENERATED["tags batch (mixed, full)"]), None, variables)
    assert cost == 10 * MUTATIONS_PER_REQUEST <= MAX_QUERY_COST / 2
