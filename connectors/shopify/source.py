"""The Shopify source: customers and orders, incremental by ``updated_at``, and a periodic deletion check.

Stream state of ``customers`` and ``orders``::

    {"since": "2026-11-30T10:55:00+00:00",   # lower bound of the next pass (None: from the beginning)
     "until": "2026-12-01T11:00:00+00:00",   # upper bound of the pass in progress (None: no pass running)
     "cursor": "eyJsYXN0X2lkIjo...",         # position in that pass, after the last committed page
     "bulk_id": "gid://shopify/BulkOperation/1", "bulk_done": 4000}   # backfill job and its committed roots

A pass lists ``updated_at:>='since' AND updated_at:<='until'`` sorted by ``UPDATED_AT``, 250 customers or 34
orders a page, and commits the cursor with every page. When it ends, the next pass starts ``overlap`` before
``until``, so a record Shopify indexed late is read again rather than missed. A first sync whose paged read
would take long at the shop's restore rate (:func:`plan_backfill`) starts a bulk operation instead; its id is
committed before the wait, so a run killed meanwhile resumes the same job, and ``bulk_done`` counts the
result's root nodes already committed.

``customer_deletions`` finds deleted customers, which Shopify reports nowhere: every ``reconcile_every`` it
lists every customer id and marks the ids it knew but no longer finds. Its state holds the known ids
(:mod:`.idset`); they grow with every customer the ``customers`` stream reads.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from hub.contracts import Page, Record, Stream
from hub.errors import ConfigError, SkippableRecordError
from hub.http import BodyCursorPaginator, PageRequest

from . import idset, queries
from .bulk import BulkGone, BulkNode, BulkRunner, grouped_nodes
from .client import QueryCostError, ShopifyClient
from .config import ShopifySourceConfig
from .records import customer_record, deleted_customer, order_record, parse_time
from .settings import (
    ALL_ORDERS_SCOPE,
    DELETIONS_STREAM,
    ID_PAGE_SIZE,
    INCREMENTAL_STREAMS,
    INITIAL_RESTORE_RATE,
    ORDERS,
    SOURCE_SCOPES,
    StreamSpec,
)

logger = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Records per committed page when reading a bulk result (a local file: no request per page).
BULK_PAGE_RECORDS = 1000
CUSTOMER_GID = "gid://shopify/Customer/"
# A page error message for the run report, at most this many per page.
_MAX_PAGE_ERRORS = 20


@dataclass
class PassState:
    """The state of an incremental stream (see the module docstring)."""

    since: str | None = None
    until: str | None = None
    cursor: str | None = None
    bulk_id: str | None = None
    bulk_done: int = 0
    bulk_restarted: bool = False

    @classmethod
    def load(cls, state: Mapping[str, Any] | None) -> PassState:
        """From a stored state; anything unreadable starts over (the store upserts, nothing doubles)."""
        if not isinstance(state, Mapping):
            return cls()
        known = {k: state.get(k) for k in cls.__dataclass_fields__}
        try:
            loaded = cls(**{k: v for k, v in known.items() if v is not None})
            loaded.bulk_done = int(loaded.bulk_done)
        except (TypeError, ValueError):
            logger.warning("unreadable stream state %r: starting over", dict(state))
            return cls()
        return loaded

    def dump(self) -> dict[str, Any]:
        """A fresh JSON-able copy (the store may hold it until the page commits)."""
        return asdict(self)

    def finish(self, overlap: timedelta) -> None:
        """The pass in progress ended: the next one starts ``overlap`` before its upper bound."""
        until = parse_time(self.until)
        self.since = (until - overlap).isoformat() if until is not None else None
        self.until = self.cursor = self.bulk_id = None
        self.bulk_done = 0
        self.bulk_restarted = False


@dataclass
class Tracker:
    """What the ``customers`` stream saw in this run, for the deletion check that runs after it.

    Attributes:
        seen: numeric ids of the customers read.
        complete_at: set when a pass from the very beginning ran whole in this run: ``seen`` then lists every
            customer as of that time.
    """

    seen: set[int] = field(default_factory=set)
    complete_at: datetime | None = None


class ShopifySource:
    """A configured Shopify shop as a source.

    Args:
        config: the validated entry.
        name: the entry's name.
        client: the shop's client.
        clock: the current time (UTC); the upper bound of each pass.
        sleep: the sleep between bulk status checks.
    """

    def __init__(
        self,
        config: ShopifySourceConfig,
        name: str,
        client: ShopifyClient,
        *,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.tracker = Tracker()
        self.bulk = BulkRunner(
            client, poll_interval=config.bulk_poll_interval, timeout=config.duration("bulk_timeout"), sleep=sleep
        )

    def streams(self) -> list[Stream]:
        """The configured streams, customers first (the deletion check uses what they saw)."""
        chosen: list[Stream] = [
            IncrementalStream(spec, self) for spec in INCREMENTAL_STREAMS if spec.name in self.config.streams
        ]
        if DELETIONS_STREAM in self.config.streams:
            chosen.append(DeletionStream(self))
        return chosen

    def check(self) -> None:
        """Reach the shop and check the token's scopes.

        Raises:
            ConfigError: the token is rejected, or lacks a scope a configured stream needs.
        """
        data = self.client.graphql("ShopCheck", queries.SHOP_CHECK)
        granted = granted_scopes(data)
        wanted = [s for s in SOURCE_SCOPES if s != ORDERS.scope or ORDERS.name in self.config.streams]
        require_scopes(granted, wanted, self.client.shop)
        if ORDERS.name in self.config.streams and not has_scope(granted, ALL_ORDERS_SCOPE):
            logger.warning(
                "%s: the token lacks %s: Shopify shows only the last 60 days of orders", self.name, ALL_ORDERS_SCOPE
            )

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    def start_date(self) -> datetime | None:
        """The configured ``start_date``, as the first pass's lower bound."""
        if not self.config.start_date:
            return None
        parsed = parse_time(self.config.start_date) or parse_time(self.config.start_date + "T00:00:00+00:00")
        if parsed is None:
            raise ConfigError(f"start_date is not an ISO 8601 date: {self.config.start_date!r}", field="start_date")
        return parsed

    def now(self) -> datetime:
        """The current time in whole seconds (Shopify's timestamps have no fractions)."""
        return self.clock().astimezone(UTC).replace(microsecond=0)


class IncrementalStream:
    """``customers`` or ``orders``: paged passes over ``updated_at`` windows, or a bulk backfill."""

    def __init__(self, spec: StreamSpec, source: ShopifySource) -> None:
        self.name = spec.name
        self.spec = spec
        self.source = source
        self.client = source.client
        self.overlap = source.config.duration("overlap")

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield pages after ``state``: a pass in progress is resumed, else a new one starts."""
        st = PassState.load(None if full else state)
        from_start = st.since is None and st.cursor is None and st.bulk_done == 0
        where = f"{self.source.name}/{self.name}"
        if st.until is None:
            st.until = self.source.now().isoformat()
            start = self.source.start_date()
            if st.since is None and start is not None:
                st.since, from_start = start.isoformat(), False
                logger.info("%s: first sync from start_date %s, by pages", where, st.since)
            elif st.since is not None:
                logger.info("%s: incremental pass of changes since %s, by pages", where, st.since)
            if st.since is None and self._backfill_by_bulk():
                st.bulk_id = self.source.bulk.start_query(self._bulk_query(st))
                yield Page([], st.dump())  # the job id is committed before the long wait
        elif st.bulk_id is not None:
            logger.info("%s: resuming bulk operation %s (%d records committed)", where, st.bulk_id, st.bulk_done)
        else:
            logger.info("%s: resuming the pass up to %s at its last committed page", where, st.until)
        until = parse_time(st.until)
        if st.bulk_id is not None:
            yield from self._bulk_pages(st)
        if st.until is not None:
            yield from self._pages(st)
        if from_start and self.spec.name == "customers" and until is not None:
            self.source.tracker.complete_at = until

    # ------------------------------------------------------------------ backfill

    def _backfill_by_bulk(self) -> bool:
        where = f"{self.source.name}/{self.name}"
        mode = self.source.config.backfill
        if mode != "auto":
            how = "a bulk operation" if mode == "bulk" else "pages"
            logger.info("%s: first sync by %s (backfill: %s)", where, how, mode)
            return mode == "bulk"
        operation, document = queries.COUNT_QUERIES[self.spec.count_root]
        data = self.client.graphql(operation, document, {})
        count = data.get(self.spec.count_root) or {}
        plan = plan_backfill(
            int(count.get("count") or 0),
            self.spec,
            self.client.stats.last_status,
            bulk_threshold=self.source.config.bulk_threshold,
            max_paged=self.source.config.duration("max_paged_backfill"),
            at_least=count.get("precision") == "AT_LEAST",
        )
        logger.info("%s: first sync %s", where, plan.describe())
        return plan.bulk

    def _bulk_query(self, st: PassState) -> str:
        return queries.bulk_query(self.spec.root, queries.updated_window(parse_time(st.since), parse_time(st.until)))

    def _bulk_pages(self, st: PassState) -> Iterator[Page]:
        assert st.bulk_id is not None
        try:
            op = self.source.bulk.wait(st.bulk_id)
        except BulkGone as gone:
            logger.warning("%s/%s: %s", self.source.name, self.name, gone)
            st.bulk_id, st.bulk_done = None, 0
            if st.bulk_restarted:
                logger.warning("%s/%s: reading page by page instead", self.source.name, self.name)
                return
            st.bulk_id, st.bulk_restarted = self.source.bulk.start_query(self._bulk_query(st)), True
            yield Page([], st.dump())
            yield from self._bulk_pages(st)
            return
        with tempfile.TemporaryFile() as result:
            if op.url:
                self.client.download(op.url, result)
            yield from self._bulk_result(st, grouped_nodes(result))

    def _bulk_result(self, st: PassState, nodes: Iterator[BulkNode]) -> Iterator[Page]:
        done = st.bulk_done
        batch = _Batch()
        for index, item in enumerate(nodes, 1):
            if index <= done:
                continue
            if item.node is None:
                batch.skip(item.error or "unreadable result line")
            else:
                batch.add(partial(self._record, item.node, item.children))
            if len(batch.records) + batch.skipped >= BULK_PAGE_RECORDS:
                st.bulk_done = index
                self._track(batch.records)
                yield batch.page(st.dump())
                batch = _Batch()
        st.finish(self.overlap)
        self._track(batch.records)
        yield batch.page(st.dump())

    # ------------------------------------------------------------------ paged passes

    def _pages(self, st: PassState) -> Iterator[Page]:
        root = self.spec.root
        search = queries.updated_window(parse_time(st.since), parse_time(st.until))
        paginator = BodyCursorPaginator(
            f"data.{root}.pageInfo.endCursor",
            "variables.after",
            has_next_path=f"data.{root}.pageInfo.hasNextPage",
            location="json",
        )
        paginator.set_state({"cursor": st.cursor})
        first = self.spec.page_size
        document = queries.page_query(root)
        operation = "CustomersPage" if root == "customers" else "OrdersPage"
        while paginator.has_next:
            request = paginator.prepare(PageRequest("POST", "", json={"variables": {"first": first, "query": search}}))
            try:
                data, response = self.client.execute(operation, document, request.json["variables"])
            except QueryCostError as exc:
                first = _smaller_page(first, exc)
                continue
            paginator.update(response)
            connection = data.get(root) or {}
            batch = _Batch()
            for node in connection.get("nodes") or []:
                batch.add(partial(self._record, node, None))
            st.cursor = paginator.get_state()["cursor"]
            if not paginator.has_next:
                st.finish(self.overlap)
            self._track(batch.records)
            yield batch.page(st.dump())

    def _record(self, node: Any, children: list[dict[str, Any]] | None) -> Record:
        if not isinstance(node, Mapping):
            raise SkippableRecordError(f"{self.spec.object_type} node is not an object")
        if self.spec.root == "customers":
            return customer_record(node)
        if children is None:
            children = self._line_items(node)
        return order_record(node, children)

    def _line_items(self, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The order's line items; those past the first page come from follow-up queries."""
        connection = order.get("lineItems") or {}
        items = [dict(li) for li in connection.get("nodes") or [] if isinstance(li, Mapping)]
        info = connection.get("pageInfo") or {}
        while info.get("hasNextPage") and info.get("endCursor") and isinstance(order.get("id"), str):
            data = self.client.graphql(
                "OrderLineItems", queries.ORDER_LINE_ITEMS_PAGE, {"id": order["id"], "after": info["endCursor"]}
            )
            more = (data.get("node") or {}).get("lineItems") or {}
            items.extend(dict(li) for li in more.get("nodes") or [] if isinstance(li, Mapping))
            info = more.get("pageInfo") or {}
        return items

    def _track(self, records: list[Record]) -> None:
        if self.spec.root != "customers":
            return
        seen = self.source.tracker.seen
        for r in records:
            number = idset.numeric_id(r.external_id)
            if number is not None:
                seen.add(number)


class DeletionStream:
    """``customer_deletions``: every ``reconcile_every``, the customers known before but listed no more."""

    name = DELETIONS_STREAM

    def __init__(self, source: ShopifySource) -> None:
        self.source = source
        self.client = source.client
        self.every = source.config.duration("reconcile_every")

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield deletion records when a check is due; otherwise just remember the customers seen."""
        st = {} if full or not isinstance(state, Mapping) else dict(state)
        tracker = self.source.tracker
        if tracker.complete_at is not None:  # the customers stream just listed everyone
            yield Page([], _deletion_state(tracker.seen, tracker.complete_at))
            return
        known = _known(st) | tracker.seen
        last = parse_time(st.get("reconciled_at"))
        now = self.source.now()
        if last is not None and now - last < self.every:
            if tracker.seen:
                yield Page([], _deletion_state(known, last))
            return
        listing = self._all_ids()
        gone = sorted(known - listing) if last is not None or known else []
        if gone:
            logger.info("%s: %d customers deleted in the shop", self.source.name, len(gone))
        # Until the last page commits, a resumed run repeats this check (re-marking a deletion changes nothing).
        pending = _deletion_state(known, last)
        for start in range(0, len(gone), ID_PAGE_SIZE):
            chunk = gone[start : start + ID_PAGE_SIZE]
            yield Page([deleted_customer(f"{CUSTOMER_GID}{n}") for n in chunk], pending)
        yield Page([], _deletion_state(listing, now))

    def _all_ids(self) -> set[int]:
        paginator = BodyCursorPaginator(
            "data.customers.pageInfo.endCursor",
            "variables.after",
            has_next_path="data.customers.pageInfo.hasNextPage",
            location="json",
        )
        ids: set[int] = set()
        while paginator.has_next:
            request = paginator.prepare(PageRequest("POST", "", json={"variables": {"first": ID_PAGE_SIZE}}))
            data, response = self.client.execute("CustomerIds", queries.CUSTOMER_IDS_PAGE, request.json["variables"])
            paginator.update(response)
            for node in (data.get("customers") or {}).get("nodes") or []:
                number = idset.numeric_id(str((node or {}).get("id", "")))
                if number is not None:
                    ids.add(number)
        return ids


# ---------------------------------------------------------------------------------------------- helpers


class _Batch:
    """Records of one page, with the nodes that could not be used counted and a few of their messages kept."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self.skipped = 0
        self.errors: list[str] = []

    def add(self, build: Callable[[], Record]) -> None:
        try:
            self.records.append(build())
        except SkippableRecordError as exc:
            self.skip(str(exc))

    def skip(self, message: str) -> None:
        self.skipped += 1
        if len(self.errors) < _MAX_PAGE_ERRORS:
            self.errors.append(message)

    def page(self, state: dict[str, Any]) -> Page:
        return Page(self.records, state, skipped=self.skipped, errors=self.errors)


@dataclass(frozen=True)
class BackfillPlan:
    """How a first sync reads everything, and why (see :func:`plan_backfill`)."""

    bulk: bool
    objects: int
    at_least: bool
    root: str
    pages: int
    points: float
    seconds: float
    restore_rate: float
    available: float
    reason: str

    def describe(self) -> str:
        """One log line: the choice, the estimate it was made on, and the rule that decided."""
        how = "by a bulk operation" if self.bulk else "by pages"
        count = f"at least {self.objects:,}" if self.at_least else f"{self.objects:,}"
        return (
            f"{how}: {count} {self.root}; paging needs {self.pages:,} pages x"
            f" {self.points / max(self.pages, 1):,.0f} points = {self.points:,.0f} points, {self.available:,.0f}"
            f" available and {self.restore_rate:,.0f} restored per second: about {self.seconds:,.0f} s; {self.reason}"
        )


def plan_backfill(
    objects: int,
    spec: StreamSpec,
    throttle: Mapping[str, float],
    *,
    bulk_threshold: int,
    max_paged: timedelta,
    at_least: bool = False,
) -> BackfillPlan:
    """Whether a first sync of ``objects`` nodes should run a bulk operation rather than pages.

    Paging is paced by the shop's cost bucket: ``objects / page_size`` pages of ``page_cost`` requested points
    each, of which the bucket holds ``available`` now and restores ``restoreRate`` per second, so the paged read
    takes about ``(pages x page_cost - available) / restoreRate`` seconds (requested costs: the pacer waits for
    them before each page). A bulk operation costs a few requests however large the shop, but waits in
    Shopify's queue and is polled: paging wins only while it is short. So: a bulk operation when the estimate
    exceeds ``max_paged``, or from ``bulk_threshold`` objects on whatever it says.

    Args:
        objects: the shop's count of the stream's nodes.
        spec: the stream (page size and page cost).
        throttle: the last ``throttleStatus`` (``available``, ``maximum``, ``rate``); without one the old
            Standard restore rate of 50 points per second is assumed.
        bulk_threshold: the object count from which a bulk operation is used anyway.
        max_paged: the longest paged read that is preferred to a bulk operation.
        at_least: the count is a lower bound (``precision: AT_LEAST``: Shopify counts up to 10,000 by default).
    """
    pages = max(1, math.ceil(objects / spec.page_size))
    points = float(pages * spec.page_cost)
    rate = float(throttle.get("rate") or INITIAL_RESTORE_RATE)
    available = float(throttle.get("available", throttle.get("maximum", 0.0)))
    seconds = max(points - available, 0.0) / rate
    limit = max_paged.total_seconds()
    if objects >= bulk_threshold:
        bulk, reason = True, f"at least bulk_threshold ({bulk_threshold:,}) objects"
    elif seconds > limit:
        bulk, reason = True, f"longer than max_paged_backfill ({limit:g} s)"
    else:
        bulk, reason = False, f"within max_paged_backfill ({limit:g} s)"
    return BackfillPlan(bulk, objects, at_least, spec.root, pages, points, seconds, rate, available, reason)


def _smaller_page(first: int, exc: QueryCostError) -> int:
    """A page size whose requested cost fits the single-query limit, judged from the refused one."""
    if first <= 1 or exc.cost <= 0:
        raise exc
    smaller = max(1, min(first - 1, int(first * exc.max_cost / exc.cost)))
    logger.warning(
        "a page of %d asked for %.0f points (limit %.0f): pages of %d", first, exc.cost, exc.max_cost, smaller
    )
    return smaller


def _known(state: Mapping[str, Any]) -> set[int]:
    text = state.get("known")
    if not isinstance(text, str):
        return set()
    try:
        return idset.decode(text)
    except ValueError:
        logger.warning("unreadable known-customer set in the state: the next check starts afresh")
        return set()


def _deletion_state(known: set[int], reconciled_at: datetime | None) -> dict[str, Any]:
    return {"known": idset.encode(known), "reconciled_at": reconciled_at.isoformat() if reconciled_at else None}


def granted_scopes(data: Mapping[str, Any]) -> set[str]:
    """The scope handles in a ShopCheck answer."""
    installation = data.get("currentAppInstallation") or {}
    return {str(s.get("handle")) for s in installation.get("accessScopes") or [] if isinstance(s, Mapping)}


def has_scope(granted: set[str], scope: str) -> bool:
    """Whether ``scope`` is granted (a ``write_`` scope implies its ``read_`` scope)."""
    return scope in granted or (scope.startswith("read_") and "write_" + scope[5:] in granted)


def require_scopes(granted: set[str], wanted: list[str], shop: str) -> None:
    """Raise a ConfigError naming every scope of ``wanted`` that is not granted."""
    missing = [s for s in wanted if not has_scope(granted, s)]
    if missing:
        raise ConfigError(
            f"the access token of {shop} lacks the scope(s) {', '.join(missing)}: add them to the custom app's"
            " Admin API access scopes and install the app again"
        )
