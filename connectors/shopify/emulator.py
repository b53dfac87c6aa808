"""A stateful imitation of the Shopify GraphQL Admin API, for tests, ``hub demo`` and ``hub sandbox serve``.

Served at the vendor's paths: ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. What
it imitates:

- **Validation.** Each document is validated against the official schema of the requested version when the
  specs are present (:mod:`.emulator_schema`), then compiled against the emulated subset
  (:mod:`.emulator_graphql`); errors come back as HTTP 200 with ``errors``, as Shopify answers.
- **Cost and throttling.** Requested cost computed before execution, actual cost after; a token bucket of the
  shop's plan (Standard: 2,000 points, 100 restored per second) takes the requested cost up front and refunds
  the difference; ``THROTTLED`` when the requested cost is not available; ``MAX_COST_EXCEEDED`` above 1,000.
  Every answer carries ``extensions.cost`` with ``throttleStatus``, its rates per real second of the
  compressed sandbox clock.
- **Search syntax** on ``query:`` (:mod:`.emulator_search`), cursor paging (keyset cursors), ``sortKey``.
- **Scopes.** Tokens carry scopes; a missing one is ``ACCESS_DENIED`` naming it; without ``read_all_orders``
  only the last 60 days of orders are visible.
- **Bulk operations**: ``bulkOperationRunQuery`` and ``bulkOperationRunMutation`` with their lifecycle
  (CREATED, RUNNING, COMPLETED or FAILED) on the sandbox clock, one of each kind at a time
  (``OPERATION_IN_PROGRESS``), the JSONL result at a signed-looking URL served by this emulator (built from
  the request's URL), ungrouped children in versions from 2026-01 unless ``groupObjects``;
  ``stagedUploadsCreate`` with an upload target served here too.
- **Tags**: ``tagsAdd``/``tagsRemove`` with ``userErrors``; a tag change updates the customer's ``updatedAt``.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import logging
import random
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx

from hub.sandbox.emulator import EmulatorContext
from hub.sandbox.ratelimit import TokenBucket

from . import SANDBOX_TOKEN
from . import emulator_graphql as gql
from .emulator_data import (
    CUSTOMER_DEFAULT,
    CUSTOMER_FIELDS,
    ORDER_DEFAULT,
    ORDER_FIELDS,
    Resource,
    ShopData,
    encode_cursor,
    gid,
    iso,
    number_of,
)
from .emulator_schema import validation_errors
from .emulator_search import SearchSyntaxError, matcher, parse, time_bounds
from .settings import MAX_PAGE_SIZE, MAX_QUERY_COST, TOKEN_HEADER, VERSION_HEADER

logger = logging.getLogger(__name__)

ALL_SCOPES = ("read_customers", "write_customers", "read_orders", "write_orders", "read_all_orders")
# Plan: (bucket size, restore rate per second). Shopify documents the restore rates; the bucket holds 20 s of
# restore on every plan the responses show.
PLANS = {
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
}
KNOWN_VERSIONS = frozenset(
    {"2025-01", "2025-04", "2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10", "unstable"}
)
# From this version on, bulk query results no longer list children right after their parent by default.
UNGROUPED_FROM = "2026-01"
RECENT_ORDERS = timedelta(days=60)
COUNT_LIMIT = 10_000
BULK_MAX_CONNECTIONS = 5
BULK_MAX_DEPTH = 2
_GRAPHQL_PATH = re.compile(r"^/admin/api/([^/]+)/graphql\.json$")
_RESULT_PATH = re.compile(r"^/bulk-operation-results/(\d+)-([0-9a-f]+)\.jsonl$")
UPLOAD_PATH = "/staged-uploads"
_ACCESS_DOC = "https://shopify.dev/api/usage/access-scopes"


@dataclass
class BulkJob:
    """One bulk operation and its precomputed result."""

    number: int
    type: str
    query: str
    created_at: datetime
    started: float
    duration: float
    lines: bytes
    object_count: int
    root_count: int
    secret: str
    fail_code: str | None = None

    def status(self, now: float) -> str:
        """The lifecycle status at vendor time ``now``."""
        elapsed = now - self.started
        if elapsed < min(0.5, self.duration / 2):
            return "CREATED"
        if elapsed < self.duration:
            return "RUNNING"
        return "FAILED" if self.fail_code else "COMPLETED"


@dataclass
class EmulatorStats:
    """What the emulator served, beyond the Sandbox's request counts (for tests and the benchmark)."""

    throttled: int = 0
    requested_points: float = 0.0
    actual_points: float = 0.0
    bulk_started: dict[str, int] = field(default_factory=lambda: {"QUERY": 0, "MUTATION": 0})


class ShopifyEmulator:
    """The emulated shop of the seeded business.

    Args:
        ctx: the emulator context (business, compressed clock, seed).
        plan: ``standard``, ``advanced``, ``plus`` or ``enterprise`` (bucket size and restore rate).
        order_scale: copies of each online order (> 1 for a larger shop, see :mod:`.emulator_data`).
        bulk_rate: objects a bulk operation processes per vendor second.
        tokens: access token -> scopes (default: ``shpat_sandbox`` with every scope).
    """

    vendor = "shopify"

    def __init__(
        self,
        ctx: EmulatorContext,
        *,
        plan: str = "standard",
        order_scale: float = 1.0,
        bulk_rate: float = 2000.0,
        tokens: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r} (plans: {', '.join(PLANS)})")
        self.ctx = ctx
        self.plan = plan
        self.order_scale = order_scale
        self.bulk_rate = bulk_rate
        self._seed_tokens = {k: frozenset(v) for k, v in (tokens or {SANDBOX_TOKEN: ALL_SCOPES}).items()}
        capacity, rate = PLANS[plan]
        self.bucket = TokenBucket(ctx.clock, capacity=capacity, restore_rate=rate)
        self._rng = ctx.rng("shopify")
        self.reset()

    # ------------------------------------------------------------------ Emulator protocol

    def reset(self) -> None:
        """Back to the seeded shop: data, tokens, bulk operations, uploads, the cost bucket, statistics."""
        self.data = ShopData.build(self.ctx.business, order_scale=self.order_scale, seed=self.ctx.seed)
        self.tokens: dict[str, frozenset[str]] = dict(self._seed_tokens)
        self.jobs: dict[int, BulkJob] = {}
        self.uploads: dict[str, bytes] = {}
        self.stats = EmulatorStats()
        self.bucket.reset()
        self._fail_next: list[str] = []

    def mutate(self, fraction: float, delete_fraction: float, rng: random.Random) -> dict[str, int]:
        """Change customers and orders (consent, city, tags; refunds) and delete customers without orders."""
        return self.data.mutate(fraction, delete_fraction, rng, self.ctx.clock.now())

    def expire_tokens(self) -> None:
        """Revoke every token (an Admin API token does not expire; it dies when the app is uninstalled)."""
        self.tokens.clear()

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """``graphql <operationName>`` for GraphQL calls; the storage endpoints by name."""
        path = request.url.path
        if _GRAPHQL_PATH.match(path):
            try:
                body = json.loads(request.content or b"{}")
            except ValueError:
                return "graphql"
            name = body.get("operationName") if isinstance(body, dict) else None
            return f"graphql {name}" if name else "graphql"
        if _RESULT_PATH.match(path):
            return "GET bulk-operation-result"
        if path == UPLOAD_PATH:
            return "POST staged-upload"
        return None

    def error_response(self, request: httpx.Request, status: int, message: str) -> httpx.Response:
        """Shopify's error body for injected faults."""
        return httpx.Response(status, json={"errors": message})

    # ------------------------------------------------------------------ test hooks

    def add_token(self, token: str, scopes: Iterable[str]) -> None:
        """Accept ``token`` with ``scopes`` (a custom app installed with fewer scopes)."""
        self.tokens[token] = frozenset(scopes)
        self._seed_tokens[token] = frozenset(scopes)

    def fail_next_bulk(self, error_code: str = "INTERNAL_SERVER_ERROR") -> None:
        """Make the next bulk operation end ``FAILED`` with ``error_code``."""
        self._fail_next.append(error_code)

    def drain(self, points: float) -> None:
        """Spend ``points`` of the bucket, as another process of the same app would."""
        self.bucket.hit(min(points, self.bucket.status().available))

    # ------------------------------------------------------------------ HTTP

    def handle(self, request: httpx.Request) -> httpx.Response:
        """Answer one request."""
        path = request.url.path
        match = _GRAPHQL_PATH.match(path)
        if match and request.method == "POST":
            return self._graphql(request, match.group(1))
        result = _RESULT_PATH.match(path)
        if result and request.method == "GET":
            return self._result(int(result.group(1)), result.group(2))
        if path == UPLOAD_PATH and request.method == "POST":
            return self._upload(request)
        return httpx.Response(404, json={"errors": "Not Found"})

    def _graphql(self, request: httpx.Request, version: str) -> httpx.Response:
        scopes = self.tokens.get(request.headers.get(TOKEN_HEADER, ""))
        if scopes is None:
            return httpx.Response(
                401, json={"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}
            )
        if version not in KNOWN_VERSIONS:
            return httpx.Response(404, json={"errors": "Not Found"})
        headers = {VERSION_HEADER: version, "X-Request-Id": secrets.token_hex(8)}
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("query"), str):
            return httpx.Response(
                400, json={"errors": {"query": "Required parameter missing or invalid"}}, headers=headers
            )
        call = _Call(self, version, scopes, _base(request), body.get("variables") or {})
        return httpx.Response(200, json=call.run(body["query"], body.get("operationName")), headers=headers)

    def _result(self, number: int, secret: str) -> httpx.Response:
        job = self.jobs.get(number)
        if job is None or not secrets.compare_digest(job.secret, secret):
            return httpx.Response(403, text="<Error><Code>AccessDenied</Code></Error>")
        return httpx.Response(200, content=job.lines, headers={"Content-Type": "application/jsonl"})

    def _upload(self, request: httpx.Request) -> httpx.Response:
        form = _multipart(request)
        key = form.get("key")
        content = form.get("file")
        if not isinstance(key, str) or not isinstance(content, bytes):
            return httpx.Response(400, text="<Error><Code>InvalidArgument</Code></Error>")
        self.uploads[key] = content
        return httpx.Response(201, text=f"<PostResponse><Key>{key}</Key></PostResponse>")

    # ------------------------------------------------------------------ bulk operations

    def start_job(self, kind: str, query: str, lines: bytes, objects: int, roots: int, fail: str | None) -> BulkJob:
        """Register a bulk operation whose result is ``lines``."""
        number = len(self.jobs) + 1
        code = fail or (self._fail_next.pop(0) if self._fail_next else None)
        job = BulkJob(
            number=number,
            type=kind,
            query=query,
            created_at=self.ctx.clock.now(),
            started=self.ctx.clock.monotonic(),
            duration=1.0 + objects / self.bulk_rate,
            lines=lines,
            object_count=objects,
            root_count=roots,
            secret=secrets.token_hex(16),
            fail_code=code,
        )
        self.jobs[number] = job
        self.stats.bulk_started[kind] += 1
        return job

    def running(self, kind: str) -> BulkJob | None:
        """The operation of ``kind`` that is CREATED or RUNNING, if any."""
        now = self.ctx.clock.monotonic()
        for job in self.jobs.values():
            if job.type == kind and job.status(now) in ("CREATED", "RUNNING"):
                return job
        return None

    def job_node(self, job: BulkJob, base: str) -> dict[str, Any]:
        """The ``BulkOperation`` node of ``job`` now."""
        status = job.status(self.ctx.clock.monotonic())
        done = status in ("COMPLETED", "FAILED")
        completed = job.created_at + timedelta(seconds=self.ctx.clock.real(job.duration))
        progress = 1.0 if done else max(0.0, (self.ctx.clock.monotonic() - job.started) / job.duration)
        has_result = status == "COMPLETED" and job.object_count > 0
        return {
            "id": gid("BulkOperation", job.number),
            "status": status,
            "errorCode": job.fail_code if status == "FAILED" else None,
            "createdAt": iso(job.created_at),
            "completedAt": iso(completed) if done else None,
            "objectCount": str(int(job.object_count * progress)),
            "rootObjectCount": str(int(job.root_count * progress)),
            "fileSize": str(len(job.lines)) if has_result else None,
            "url": f"{base}/bulk-operation-results/{job.number}-{job.secret}.jsonl" if has_result else None,
            "partialDataUrl": None,
            "query": job.query,
            "type": job.type,
        }


class _Call:
    """One GraphQL request: validation, cost, throttling, execution."""

    def __init__(
        self, emulator: ShopifyEmulator, version: str, scopes: frozenset[str], base: str, variables: Any
    ) -> None:
        self.em = emulator
        self.version = version
        self.scopes = scopes
        self.base = base
        self.variables = variables if isinstance(variables, dict) else {}
        self.warnings: list[dict[str, Any]] = []
        self.bulk = False

    def run(self, document: str, operation_name: str | None) -> dict[str, Any]:
        problems = validation_errors(self.version, document)
        if problems:
            return {"errors": [{"message": m, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}} for m in problems]}
        try:
            op = gql.compile_operation(document, operation_name)
            variables = gql.coerce_variables(op, self.variables)
            requested = gql.requested_cost(op.fields, variables)
        except gql.QueryError as exc:
            return {"errors": [exc.error]}
        if requested > MAX_QUERY_COST:
            return {
                "errors": [
                    {
                        "message": f"Query cost is {requested}, which exceeds the single query max cost limit"
                        f" ({MAX_QUERY_COST:.0f}). See https://shopify.dev/concepts/about-apis/rate-limits for more"
                        " information on how the cost of a query is calculated. To query larger amounts of data"
                        " with fewer limits, bulk operations should be used instead.",
                        "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST},
                    }
                ],
                "extensions": {"cost": self._cost(requested, None, self.em.bucket.status())},
            }
        decision = self.em.bucket.hit(requested)
        if not decision.allowed:
            self.em.stats.throttled += 1
            return {
                "errors": [
                    {
                        "message": "Throttled",
                        "extensions": {
                            "code": "THROTTLED",
                            "documentation": "https://shopify.dev/api/usage/rate-limits",
                        },
                    }
                ],
                "extensions": {"cost": self._cost(requested, None, decision)},
            }
        try:
            data, actual = gql.Executor(self.resolvers()).run(op, variables, {})
        except gql.QueryError as exc:
            status = self.em.bucket.refund(requested)
            return {"errors": [exc.error], "data": None, "extensions": {"cost": self._cost(requested, 0, status)}}
        status = self.em.bucket.refund(max(requested - actual, 0))
        self.em.stats.requested_points += requested
        self.em.stats.actual_points += actual
        extensions: dict[str, Any] = {"cost": self._cost(requested, actual, status)}
        if self.warnings:
            extensions["search"] = self.warnings
        return {"data": data, "extensions": extensions}

    def _cost(self, requested: float, actual: float | None, status: Any) -> dict[str, Any]:
        return {
            "requestedQueryCost": requested,
            "actualQueryCost": actual,
            "throttleStatus": {
                "maximumAvailable": status.capacity,
                "currentlyAvailable": round(status.available, 3),
                "restoreRate": status.restore_rate,
            },
        }

    # ------------------------------------------------------------------ resolvers

    def resolvers(self) -> dict[tuple[str, str], gql.Resolver]:
        return {
            ("QueryRoot", "customers"): lambda _o, a: self._list(self.em.data.customers, a, "customers"),
            ("QueryRoot", "orders"): lambda _o, a: self._list(self.em.data.orders, a, "orders"),
            ("QueryRoot", "customersCount"): lambda _o, a: self._count(self.em.data.customers, a, "customersCount"),
            ("QueryRoot", "ordersCount"): lambda _o, a: self._count(self.em.data.orders, a, "ordersCount"),
            ("QueryRoot", "node"): lambda _o, a: self._node(str(a.get("id"))),
            ("QueryRoot", "shop"): lambda _o, _a: self._shop(),
            ("QueryRoot", "currentAppInstallation"): lambda _o, _a: {
                "accessScopes": [{"handle": s, "description": s.replace("_", " ")} for s in sorted(self.scopes)]
            },
            ("QueryRoot", "currentBulkOperation"): lambda _o, a: self._current(str(a.get("type") or "QUERY")),
            ("Order", "customer"): lambda o, _a: self.em.data.customers.nodes.get(o.get("_customer", 0)),
            ("Order", "lineItems"): lambda o, a: self._line_items(o, a),
            ("Mutation", "tagsAdd"): lambda _o, a: self._tags(a, add=True),
            ("Mutation", "tagsRemove"): lambda _o, a: self._tags(a, add=False),
            ("Mutation", "bulkOperationRunQuery"): lambda _o, a: self._run_query(a),
            ("Mutation", "bulkOperationRunMutation"): lambda _o, a: self._run_mutation(a),
            ("Mutation", "stagedUploadsCreate"): lambda _o, a: self._staged(a),
        }

    def _require(self, scope: str, field_name: str) -> None:
        if scope in self.scopes or (scope.startswith("read_") and "write_" + scope[5:] in self.scopes):
            return
        raise gql.QueryError(
            f"Access denied for {field_name} field. Required access: `{scope}` access scope.",
            code="ACCESS_DENIED",
            documentation=_ACCESS_DOC,
            requiredAccess=f"`{scope}` access scope.",
        )

    def _list(self, resource: Resource, args: Mapping[str, Any], name: str) -> gql.Connection:
        self._require("read_customers" if name == "customers" else "read_orders", name)
        first = args.get("first")
        if not self.bulk:
            if first is None:
                raise gql.QueryError("you must provide one of first or last", code="BAD_REQUEST")
            if not isinstance(first, int) or not 0 <= first <= MAX_PAGE_SIZE:
                raise gql.QueryError(f"first must be between 0 and {MAX_PAGE_SIZE}", code="BAD_REQUEST")
        keep = self._filter(resource, name, args.get("query"))
        tree = self._parsed(args.get("query"))
        field_name = "updated_at"
        low, high = time_bounds(tree, field_name)
        sort = str(args.get("sortKey") or "ID")
        if sort not in ("ID", "UPDATED_AT", "RELEVANCE"):
            raise gql.QueryError(f"The sandbox does not emulate sortKey {sort} on {name}", code="argumentNotAccepted")
        limit = None if self.bulk else int(first or 0)
        items: list[Mapping[str, Any]] = []
        cursors: list[str] = []
        more = False
        for node, cursor in resource.scan(sort, args.get("after"), low if sort == "UPDATED_AT" else None):
            if sort == "UPDATED_AT" and high is not None and node["updatedAt"] > iso(high):
                break
            if not keep(node):
                continue
            if limit is not None and len(items) >= limit:
                more = True
                break
            items.append(node)
            cursors.append(cursor)
        return gql.Connection(items, cursors, has_next=more, has_previous=bool(args.get("after")))

    def _parsed(self, query: Any) -> Any:
        try:
            return parse(str(query)) if query else None
        except SearchSyntaxError:
            return None

    def _filter(self, resource: Resource, name: str, query: Any) -> Any:
        fields, default = (
            (CUSTOMER_FIELDS, CUSTOMER_DEFAULT) if resource.kind == "Customer" else (ORDER_FIELDS, ORDER_DEFAULT)
        )
        try:
            tree = parse(str(query)) if query else None
        except SearchSyntaxError as exc:
            self.warnings.append({"path": [name], "query": str(query), "warnings": [{"message": str(exc)}]})
            tree = None
        predicate, unknown = matcher(tree, fields, default)
        if unknown:
            self.warnings.append(
                {
                    "path": [name],
                    "query": str(query),
                    "warnings": [{"field": f, "message": "Invalid search field for this query."} for f in unknown],
                }
            )
        if resource.kind == "Order" and "read_all_orders" not in self.scopes:
            horizon = iso(self.em.ctx.clock.now() - RECENT_ORDERS)
            return lambda n: n["processedAt"] >= horizon and predicate(n)
        return predicate

    def _count(self, resource: Resource, args: Mapping[str, Any], name: str) -> dict[str, Any]:
        self._require("read_customers" if resource.kind == "Customer" else "read_orders", name)
        keep = self._filter(resource, name, args.get("query"))
        total = 0
        for node in resource.nodes.values():
            if keep(node):
                total += 1
                if total > COUNT_LIMIT:
                    return {"count": COUNT_LIMIT, "precision": "AT_LEAST"}
        return {"count": total, "precision": "EXACT"}

    def _node(self, global_id: str) -> tuple[str, Mapping[str, Any]] | None:
        kind = global_id.split("/")[3] if global_id.count("/") >= 4 else ""
        number = number_of(global_id, kind)
        if number is None:
            raise gql.QueryError(f"Invalid global id '{global_id}'", code="argumentLiteralsIncompatible")
        if kind == "Customer":
            self._require("read_customers", "node")
            found = self.em.data.customers.nodes.get(number)
        elif kind == "Order":
            self._require("read_orders", "node")
            found = self.em.data.orders.nodes.get(number)
        elif kind == "BulkOperation":
            job = self.em.jobs.get(number)
            found = self.em.job_node(job, self.base) if job else None
        else:
            found = None
        return (kind, found) if found is not None else None

    def _line_items(self, order: Mapping[str, Any], args: Mapping[str, Any]) -> gql.Connection:
        items = list(order.get("lineItems") or [])
        start = 0
        if args.get("after"):
            from .emulator_data import decode_cursor

            position = decode_cursor(str(args["after"]))
            start = position[0] + 1 if position else 0
        if self.bulk:
            page = list(range(start, len(items)))
        else:
            page = list(range(start, min(len(items), start + int(args.get("first") or 0))))
        return gql.Connection(
            [items[i] for i in page],
            [encode_cursor(i, i) for i in page],
            has_next=bool(page) and page[-1] + 1 < len(items),
            has_previous=start > 0,
        )

    def _shop(self) -> dict[str, Any]:
        return {
            "id": gid("Shop", 1),
            "name": "Sandbox Shop",
            "myshopifyDomain": "sandbox-shop.myshopify.com",
            "currencyCode": self.em.ctx.business.currency,
            "ianaTimezone": "Europe/Berlin",
            "plan": {
                "displayName": self.em.plan.title(),
                "partnerDevelopment": False,
                "shopifyPlus": self.em.plan == "plus",
            },
        }

    def _current(self, kind: str) -> dict[str, Any] | None:
        jobs = [j for j in self.em.jobs.values() if j.type == kind]
        return self.em.job_node(jobs[-1], self.base) if jobs else None

    # ------------------------------------------------------------------ mutations

    def _tags(self, args: Mapping[str, Any], *, add: bool) -> dict[str, Any]:
        global_id = str(args.get("id"))
        kind = global_id.split("/")[3] if global_id.count("/") >= 4 else ""
        number = number_of(global_id, kind)
        if number is None:
            raise gql.QueryError(f"Invalid global id '{global_id}'", code="argumentLiteralsIncompatible")
        if kind not in ("Customer", "Order"):
            return {"node": None, "userErrors": [{"field": ["id"], "message": "Resource not found"}]}
        self._require("write_customers" if kind == "Customer" else "write_orders", "tagsAdd" if add else "tagsRemove")
        resource = self.em.data.customers if kind == "Customer" else self.em.data.orders
        node = resource.nodes.get(number)
        if node is None:
            return {"node": None, "userErrors": [{"field": ["id"], "message": f"{kind} does not exist"}]}
        tags = _tag_list(args.get("tags"))
        if any(len(t) > 255 for t in tags):
            return {
                "node": (kind, node),
                "userErrors": [{"field": ["tags"], "message": "Tags is too long (maximum is 255 characters)"}],
            }
        current = {t.casefold() for t in node.get("tags") or []}
        if add and len(current | {t.casefold() for t in tags}) > 250:
            return {"node": (kind, node), "userErrors": [{"field": ["tags"], "message": "Tags cannot exceed 250"}]}
        self.em.data.change_tags(number, tags, add=add, now=self.em.ctx.clock.now())
        return {"node": (kind, node), "userErrors": []}

    def _run_query(self, args: Mapping[str, Any]) -> dict[str, Any]:
        query = str(args.get("query") or "")
        running = self.em.running("QUERY")
        if running is not None:
            return _in_progress("query", running)
        problems = validation_errors(self.version, query)
        try:
            if problems:
                raise gql.QueryError("; ".join(problems))
            op = gql.compile_operation(query)
            if op.kind != "query":
                raise gql.QueryError("Bulk queries must be queries")
            count, depth = gql.connection_depth(op.fields)
            roots = [f for f in op.fields if f.ftype.kind == "connection"]
            if not roots or len(roots) != len(op.fields):
                raise gql.QueryError(
                    "Bulk queries must contain at least one connection, and no top-level node or nodes"
                )
            if count > BULK_MAX_CONNECTIONS or depth > BULK_MAX_DEPTH:
                raise gql.QueryError(
                    f"Bulk queries support up to {BULK_MAX_CONNECTIONS} connections, nested at most"
                    f" {BULK_MAX_DEPTH} levels deep"
                )
        except gql.QueryError as exc:
            return _bulk_refused("INVALID", f"Invalid bulk query: {exc}")
        grouped = bool(args.get("groupObjects")) or self.version < UNGROUPED_FROM
        lines, objects, root_count, fail = self._bulk_lines(op, grouped)
        job = self.em.start_job("QUERY", query, lines, objects, root_count, fail)
        return {"bulkOperation": self.em.job_node(job, self.base), "userErrors": []}

    def _bulk_lines(self, op: gql.Operation, grouped: bool) -> tuple[bytes, int, int, str | None]:
        """Execute a bulk query over everything; its JSONL lines, object and root counts, and a failure code."""
        self.bulk = True
        try:
            data, _ = gql.Executor(self.resolvers()).run(op, {}, {})
        except gql.QueryError as exc:
            code = (exc.error.get("extensions") or {}).get("code")
            return b"", 0, 0, "ACCESS_DENIED" if code == "ACCESS_DENIED" else "INTERNAL_SERVER_ERROR"
        finally:
            self.bulk = False
        lines: list[bytes] = []
        later: list[bytes] = []
        root_count = 0
        for plan in op.fields:
            selection = gql.node_selection(plan) or []
            for node in _connection_nodes(data.get(plan.key)):
                root_count += 1
                children: list[bytes] = []
                lines.append(_flatten(node, selection, None, children))
                (lines if grouped else later).extend(children)
        # Ungrouped: children after all roots, the last parent's first, so no reader can rely on adjacency.
        lines.extend(reversed(later))
        return b"".join(lines), len(lines), root_count, None

    def _run_mutation(self, args: Mapping[str, Any]) -> dict[str, Any]:
        running = self.em.running("MUTATION")
        if running is not None:
            return _in_progress("mutation", running)
        path = str(args.get("stagedUploadPath") or "")
        content = self.em.uploads.get(path)
        if content is None:
            return _bulk_refused("INVALID", "The staged upload path is invalid or the file has not been uploaded.")
        mutation = str(args.get("mutation") or "")
        problems = validation_errors(self.version, mutation)
        try:
            if problems:
                raise gql.QueryError("; ".join(problems))
            op = gql.compile_operation(mutation)
            if op.kind != "mutation" or len(op.fields) != 1:
                raise gql.QueryError("A bulk mutation runs exactly one mutation field")
        except gql.QueryError as exc:
            return _bulk_refused("INVALID", f"Invalid bulk mutation: {exc}")
        out: list[bytes] = []
        for number, raw in enumerate(content.splitlines()):
            out.append(self._mutation_line(op, raw, number))
        job = self.em.start_job("MUTATION", mutation, b"".join(out), len(out), len(out), None)
        return {"bulkOperation": self.em.job_node(job, self.base), "userErrors": []}

    def _mutation_line(self, op: gql.Operation, raw: bytes, number: int) -> bytes:
        line: dict[str, Any]
        try:
            variables = json.loads(raw)
            data, _ = gql.Executor(self.resolvers()).run(op, gql.coerce_variables(op, variables), {})
            line = {"data": data}
        except ValueError:
            line = {"errors": [{"message": "Invalid JSON on this line"}]}
        except gql.QueryError as exc:
            line = {"errors": [exc.error]}
        line["__lineNumber"] = number
        return json.dumps(line).encode() + b"\n"

    def _staged(self, args: Mapping[str, Any]) -> dict[str, Any]:
        targets = []
        errors = []
        for item in args.get("input") or []:
            if not isinstance(item, Mapping) or item.get("resource") != "BULK_MUTATION_VARIABLES":
                errors.append(
                    {"field": ["input"], "message": "The sandbox only emulates BULK_MUTATION_VARIABLES uploads"}
                )
                continue
            key = f"tmp/sandbox-shop/bulk/{secrets.token_hex(8)}/{item.get('filename') or 'upload.jsonl'}"
            url = f"{self.base}{UPLOAD_PATH}"
            targets.append(
                {
                    "url": url,
                    "resourceUrl": f"{url}/{key}",
                    "parameters": [
                        {"name": "Content-Type", "value": str(item.get("mimeType") or "text/jsonl")},
                        {"name": "success_action_status", "value": "201"},
                        {"name": "acl", "value": "private"},
                        {"name": "key", "value": key},
                        {"name": "x-goog-algorithm", "value": "GOOG4-RSA-SHA256"},
                        {"name": "x-goog-credential", "value": f"sandbox-{secrets.token_hex(6)}"},
                        {"name": "x-goog-signature", "value": secrets.token_hex(32)},
                        {"name": "policy", "value": secrets.token_urlsafe(24)},
                    ],
                }
            )
        return {"stagedTargets": targets, "userErrors": errors}


# ---------------------------------------------------------------------------------------------- helpers


def _base(request: httpx.Request) -> str:
    """Scheme and host of the request: links work in-process and behind the HTTP server alike."""
    return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"


def _in_progress(kind: str, job: BulkJob) -> dict[str, Any]:
    running = gid("BulkOperation", job.number)
    return _bulk_refused(
        "OPERATION_IN_PROGRESS", f"A bulk {kind} operation for this app and shop is already in progress: {running}."
    )


def _bulk_refused(code: str, message: str) -> dict[str, Any]:
    return {"bulkOperation": None, "userErrors": [{"field": ["query"], "message": message, "code": code}]}


def _tag_list(value: Any) -> list[str]:
    """Tags as Shopify reads them: a list, or one comma-separated string; every item is split on commas too."""
    items = value if isinstance(value, list) else [value] if isinstance(value, str) else []
    return [t.strip() for item in items for t in str(item).split(",") if t.strip()]


def _connection_nodes(rendered: Any) -> list[dict[str, Any]]:
    if not isinstance(rendered, dict):
        return []
    if isinstance(rendered.get("nodes"), list):
        return list(rendered["nodes"])
    return [e["node"] for e in rendered.get("edges") or [] if isinstance(e, dict) and isinstance(e.get("node"), dict)]


def _flatten(node: dict[str, Any], selection: list[gql.FieldPlan], parent: str | None, children: list[bytes]) -> bytes:
    """The JSONL line of ``node`` without its nested connections, whose nodes go to ``children`` (``__parentId``)."""
    line = dict(node)
    nested: list[tuple[list[dict[str, Any]], list[gql.FieldPlan]]] = []
    for plan in selection:
        if plan.ftype.kind == "connection" and plan.key in line:
            nested.append((_connection_nodes(line.pop(plan.key)), gql.node_selection(plan) or []))
    if parent is not None:
        line["__parentId"] = parent
    for items, inner in nested:
        for child in items:
            grandchildren: list[bytes] = []
            children.append(_flatten(child, inner, str(node.get("id")), grandchildren))
            children.extend(grandchildren)
    return json.dumps(line, separators=(",", ":")).encode() + b"\n"


def _multipart(request: httpx.Request) -> dict[str, str | bytes]:
    """The fields of a multipart/form-data body (text fields as str, the file as bytes)."""
    header = request.headers.get("content-type", "")
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + header.encode() + b"\r\n\r\n" + request.content
    )
    out: dict[str, str | bytes] = {}
    if not message.is_multipart():
        return out
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        if not isinstance(name, str) or not isinstance(payload, bytes):
            continue
        out[name] = payload if part.get_filename() else payload.decode("utf-8", "replace")
    return out
