"""Shopify's conformance kit: paged passes and bulk backfills, the fewest requests a sync of a shop needs."""

from __future__ import annotations

import math
from typing import Any

from hub.conformance import ConformanceKit, Fault

from .settings import CUSTOMERS, ID_PAGE_SIZE, ORDERS

# The deletion check lists every customer id on each run here, so a trial sees deletions at once (the default
# is once a day).
EVERY_RUN = {"reconcile_every": "0s"}


def _pages(count: int, size: int) -> int:
    return max(1, math.ceil(count / size))


def full_requests(emulator: Any, variant: str) -> int:
    """Auto (a small shop pages): a count per stream (it decides bulk or pages), then 250 customers or 34 orders
    a page; the deletion check needs no listing after a first pass that saw every customer. Bulk: per stream,
    the current operation (a lost start is adopted), the start and the result's download, besides the polls."""
    customers, orders = len(emulator.data.customers.nodes), len(emulator.data.orders.nodes)
    if variant == "bulk":
        return 2 * 3  # per stream; the status polls (as many as the job takes) are counted apart
    return 1 + _pages(customers, CUSTOMERS.page_size) + 1 + _pages(orders, ORDERS.page_size)


def incremental_requests(emulator: Any, variant: str) -> int:
    """Nothing changed: one page per stream for recent changes, and every customer id for the deletion check."""
    return 2 + _pages(len(emulator.data.customers.nodes), ID_PAGE_SIZE)


def kit() -> ConformanceKit:
    """Shopify's kit."""
    return ConformanceKit(
        variants={"auto": EVERY_RUN, "bulk": {**EVERY_RUN, "backfill": "bulk"}},
        full_requests=full_requests,
        incremental_requests=incremental_requests,
        record_path="/admin/api/",
        broken_record=Fault("updatedAt", 12345),
        optional_field="firstName",
        kill_points={"bulk job running": "graphql BulkOperationStatus"},
        polling=frozenset({"graphql BulkOperationStatus"}),
        reread_limit=CUSTOMERS.page_size,
        speed=50.0,
    )
