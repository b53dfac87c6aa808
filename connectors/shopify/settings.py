"""Shopify constants: the pinned API version, the documented limits, and the table of streams.

Nothing here does I/O; ``config.py`` and the emulator import it freely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VENDOR = "shopify"

# The newest stable version the shipped schemas cover. Shopify supports each version for about twelve months and
# serves the oldest supported one to clients asking for an older one, so this needs a bump once a year.
API_VERSION = "2026-07"
API_VERSION_RE = re.compile(r"^(\d{4}-(01|04|07|10)|unstable)$")
SHOP_HANDLE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
SHOP_DOMAIN_SUFFIX = ".myshopify.com"

TOKEN_HEADER = "X-Shopify-Access-Token"
VERSION_HEADER = "X-Shopify-API-Version"

# Cost model (shopify.dev "GraphQL Admin API rate limits"): a single query may not request more than 1,000
# points, a connection page holds at most 250 nodes. The bucket numbers are only the first guess before the
# first response: ``throttleStatus`` tells the plan's real size and restore rate, and the pacer follows it.
MAX_QUERY_COST = 1000.0
MAX_PAGE_SIZE = 250
INITIAL_BUCKET = 1000.0
INITIAL_RESTORE_RATE = 50.0
# Requested cost assumed for an operation never sent before (the most a query can cost).
UNKNOWN_QUERY_COST = MAX_QUERY_COST
# Attempts per GraphQL call: a THROTTLED answer waits exactly the time the bucket needs, so a few suffice.
GRAPHQL_ATTEMPTS = 8

# Scopes (shopify.dev access scopes). A write scope implies the read scope of the same resource.
SOURCE_SCOPES = ("read_customers", "read_orders")
SINK_SCOPES = ("write_customers",)
# Without it only the last 60 days of orders are visible: a backfill of the history needs it.
ALL_ORDERS_SCOPE = "read_all_orders"

# Bulk operations: results stay downloadable for seven days. Status checks follow Shopify's own CLI
# (Shopify/cli, bulk-operations/watch-bulk-operation.ts): every second for the first ten checks, so a job of a
# few seconds is read as soon as it is done, then every five seconds. A check costs one point.
BULK_RESULT_DAYS = 7
BULK_POLL_FAST_CHECKS = 10
BULK_POLL_REGULAR_S = 5.0
# Backfill: a first sync whose paged read would take longer than this goes by bulk operation instead (see
# source.plan_backfill). Below it, paging costs no more time than a bulk operation's queueing and polling.
MAX_PAGED_BACKFILL = "30s"

# Push: one tagsAdd/tagsRemove per customer; several are sent as aliases of one document. Each mutation field
# costs 10 points, so 25 stay far below the single-query limit. An input list holds at most 250 items.
MUTATIONS_PER_REQUEST = 25
MAX_TAGS_PER_CALL = 250
MAX_TAG_LENGTH = 255
LOOKUP_BATCH = 50


@dataclass(frozen=True)
class StreamSpec:
    """One incremental stream: what it lists, how it pages, and the scope it needs.

    Args:
        name: the stream name (``hub sync --stream``).
        object_type: the store's object type of its records.
        root: the GraphQL connection it lists (``customers``, ``orders``).
        count_root: the count query telling whether a backfill is large (``customersCount``).
        page_size: nodes per page; with the query's node cost it keeps the requested cost under 1,000 points.
        page_cost: the requested cost of a full page (Shopify's cost model applied to the page query; the
            contract tests compute it from the official schema): what the backfill estimate paces by.
        scope: the access scope it needs.
    """

    name: str
    object_type: str
    root: str
    count_root: str
    page_size: int
    page_cost: int
    scope: str


# A customer node requests 3 points (see queries.CUSTOMERS_PAGE): 2 + 250 x 3 = 752 a page.
CUSTOMERS = StreamSpec("customers", "customer", "customers", "customersCount", 250, 752, "read_customers")
# An order node requests 29 points (see queries.ORDERS_PAGE): 34 of them fit under the 1,000-point limit, 988 a page.
ORDERS = StreamSpec("orders", "order", "orders", "ordersCount", 34, 988, "read_orders")
INCREMENTAL_STREAMS = (CUSTOMERS, ORDERS)
DELETIONS_STREAM = "customer_deletions"
STREAM_NAMES = (CUSTOMERS.name, ORDERS.name, DELETIONS_STREAM)

# Line items fetched with each order; an order with more gets the rest by a follow-up query. Ten cover all but a
# few orders in a thousand of a typical shop, so follow-ups stay rare without shrinking the page much.
ORDER_LINE_ITEMS = 10
ID_PAGE_SIZE = 250


def graphql_path(api_version: str) -> str:
    """The GraphQL Admin endpoint's path for ``api_version``."""
    return f"/admin/api/{api_version}/graphql.json"
