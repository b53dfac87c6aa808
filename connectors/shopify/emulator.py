"""A stateful imitation of the Shopify GraphQL Admin API, for tests, ``hub demo`` and ``hub sandbox serve``.

Served at the vendor's paths: ``POST /admin/api/{version}/graphql.json`` with ``X-Shopify-Access-Token``. What
it imitates:

- **The schema.** Each document is validated against the official schema of the requested version when the
  specs are present (:mod:`.emulator_schema`; else the reduced schema of :mod:`.emulator_fallback`) and executed
  by graphql-core against that schema (:mod:`.emulator_graphql`): every field of it answers, from the seeded
  data where the shop holds or derives a value (:mod:`.emulator_data`, :mod:`.emulator_model`), else with
  Shopify's empty value. Errors come back as HTTP 200 with ``errors``, as Shopify answers.
- **Cost and throttling.** Requested cost computed before execution, actual cost after; a token bucket of the
  shop's plan (Standard: 2,000 points, 100 restored per second) takes the requested cost up front and refunds
  the difference; ``THROTTLED`` when the requested cost is not available; ``MAX_COST_EXCEEDED`` above 1,000.
  Every answer carries ``extensions.cost`` with ``throttleStatus``, its rates per real second of the
  compressed sandbox clock.
- **Search syntax** on ``query:`` (:mod:`.emulator_search`), cursor paging, every ``sortKey``.
- **Scopes.** Tokens carry scopes; a missing one is ``ACCESS_DENIED`` naming it; without ``read_all_orders``
  only the last 60 days of orders are visible.
- **Bulk operations**: ``bulkOperationRunQuery``, ``bulkOperationRunMutation`` and ``bulkOperationCancel``
  with their lifecycle (CREATED while queued, RUNNING with a growing ``objectCount``, then COMPLETED or
  FAILED) on the sandbox clock; one bulk query at a time before 2026-01 and five from then on, one bulk
  mutation (``OPERATION_IN_PROGRESS``, ``LIMIT_REACHED``); the JSONL result at a signed-looking URL served by
  this emulator (built from the request's URL), ungrouped children in versions from 2026-01 unless
  ``groupObjects``; ``stagedUploadsCreate`` with an upload target served here too.
- **Mutations** on customers: ``tagsAdd``/``tagsRemove``, ``customerCreate``, ``customerUpdate``,
  ``customerSet`` and ``customerDelete`` with Shopify's ``userErrors``; a change updates ``updatedAt``. Other
  mutations of the schema are refused with a message: answering them without their effect would lie.
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
from .emulator_call import Call
from .emulator_data import ShopData, gid, iso
from .emulator_graphql import QueryError, operation_of, parsed, root_fields
from .emulator_schema import serving_schema
from .settings import API_VERSION, TOKEN_HEADER, VERSION_HEADER

logger = logging.getLogger(__name__)

ALL_SCOPES = ("read_customers", "write_customers", "read_orders", "write_orders", "read_all_orders")
# Plan: (bucket size, restore rate per second). Shopify documents the restore rates (shopify.dev "GraphQL Admin
# API rate limits"); the bucket holds 20 s of restore on every plan the responses show.
PLANS = {
    "standard": (2000.0, 100.0),
    "advanced": (4000.0, 200.0),
    "plus": (20000.0, 1000.0),
    "enterprise": (40000.0, 2000.0),
}
KNOWN_VERSIONS = frozenset(
    {"2025-01", "2025-04", "2025-07", "2025-10", "2026-01", "2026-04", "2026-07", "2026-10", "unstable"}
)
# From this version on an app may run up to five bulk queries at once (shopify.dev "Perform bulk operations with
# the GraphQL Admin API"); before it, one of each kind.
CONCURRENT_BULK_FROM = "2026-01"
BULK_QUERIES_AT_ONCE = 5
_GRAPHQL_PATH = re.compile(r"^/admin/api/([^/]+)/graphql\.json$")
_RESULT_PATH = re.compile(r"^/bulk-operation-results/(\d+)-([0-9a-f]+)\.jsonl$")
UPLOAD_PATH = "/staged-uploads"
RESULT_RESOURCE = "bulk-operation-result"
UPLOAD_RESOURCE = "staged-upload"


@dataclass
class BulkJob:
    """One bulk operation and its precomputed result.

    The operation waits in Shopify's queue for ``latency`` (CREATED), then processes its objects at the
    emulator's bulk rate (RUNNING, ``objectCount`` growing), then ends.
    """

    number: int
    type: str
    query: str
    created_at: datetime
    started: float
    latency: float
    duration: float
    lines: bytes
    object_count: int
    root_count: int
    secret: str
    fail_code: str | None = None
    canceled_at: float | None = None

    def status(self, now: float) -> str:
        """The lifecycle status at vendor time ``now``."""
        if self.canceled_at is not None:
            return "CANCELED" if now >= self.canceled_at else "CANCELING"
        elapsed = now - self.started
        if elapsed < self.latency:
            return "CREATED"
        if elapsed < self.duration:
            return "RUNNING"
        return "FAILED" if self.fail_code else "COMPLETED"

    def progress(self, now: float) -> float:
        """The share of its objects processed at vendor time ``now``."""
        elapsed = now - self.started - self.latency
        work = self.duration - self.latency
        return 1.0 if work <= 0 or elapsed >= work else max(0.0, elapsed / work)


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
        bulk_rate: objects a bulk operation processes per vendor second once it runs.
        bulk_latency: vendor seconds a bulk operation waits in the queue (CREATED) before it runs.
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
        bulk_latency: float = 1.0,
        tokens: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if plan not in PLANS:
            raise ValueError(f"unknown plan {plan!r} (plans: {', '.join(PLANS)})")
        self.ctx = ctx
        self.plan = plan
        self.order_scale = order_scale
        self.bulk_rate = bulk_rate
        self.bulk_latency = bulk_latency
        self._seed_tokens = {k: frozenset(v) for k, v in (tokens or {SANDBOX_TOKEN: ALL_SCOPES}).items()}
        capacity, rate = PLANS[plan]
        self.bucket = TokenBucket(ctx.clock, capacity=capacity, restore_rate=rate)
        self._rng = ctx.rng("shopify")
        self.reset()
        # Build the pinned version's schema now: the first request of a served sandbox need not wait for it.
        serving_schema(API_VERSION)

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
        """Nothing expires: an Admin API access token of a custom app has no lifetime and no refresh token.

        (It dies only when the app is uninstalled, which :meth:`revoke_tokens` imitates.) The sandbox's
        ``token_expiry`` fault is therefore a no-op here, as a real expiry would be.
        """

    def revoke_tokens(self) -> None:
        """Revoke every token, as uninstalling the app does."""
        self.tokens.clear()

    def endpoint_name(self, request: httpx.Request) -> str | None:
        """``graphql <operationName>`` for GraphQL calls; the storage endpoints by name."""
        path = request.url.path
        if _GRAPHQL_PATH.match(path):
            body = _json_body(request)
            name = body.get("operationName") if body is not None else None
            return f"graphql {name}" if isinstance(name, str) and name else "graphql"
        if _RESULT_PATH.match(path):
            return f"GET {RESULT_RESOURCE}"
        if path == UPLOAD_PATH:
            return f"POST {UPLOAD_RESOURCE}"
        return None

    def resource_name(self, request: httpx.Request) -> str | None:
        """The root field(s) a GraphQL call asks for (``customers``; ``shop,currentAppInstallation``), or
        ``bulk-operation-result`` / ``staged-upload`` for the storage endpoints; None when unreadable."""
        path = request.url.path
        if _RESULT_PATH.match(path):
            return RESULT_RESOURCE
        if path == UPLOAD_PATH:
            return UPLOAD_RESOURCE
        if not _GRAPHQL_PATH.match(path):
            return None
        body = _json_body(request)
        document = body.get("query") if body is not None else None
        if not isinstance(document, str):
            return None
        name = body.get("operationName") if body is not None else None
        try:
            operation = operation_of(parsed(document), name if isinstance(name, str) and name else None)
        except QueryError:
            return None
        return ",".join(dict.fromkeys(root_fields(operation))) or None

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
        body = _json_body(request)
        if body is None or not isinstance(body.get("query"), str):
            return httpx.Response(
                400, json={"errors": {"query": "Required parameter missing or invalid"}}, headers=headers
            )
        operation = body.get("operationName")
        call = Call(self, version, scopes, _base(request), body.get("variables") or {})
        answer = call.run(body["query"], operation if isinstance(operation, str) and operation else None)
        return httpx.Response(200, json=answer, headers=headers)

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

    def start_job(
        self,
        kind: str,
        query: str,
        lines: bytes,
        objects: int,
        roots: int,
        fail: str | None,
        *,
        started: float | None = None,
    ) -> BulkJob:
        """Register a bulk operation whose result is ``lines``.

        Args:
            started: vendor time the start request arrived (default now): the time spent computing the result
                counts as the operation's own, so a large result does not make the operation last longer.
        """
        number = len(self.jobs) + 1
        code = fail or (self._fail_next.pop(0) if self._fail_next else None)
        job = BulkJob(
            number=number,
            type=kind,
            query=query,
            created_at=self.ctx.clock.now(),
            started=self.ctx.clock.monotonic() if started is None else started,
            latency=self.bulk_latency,
            duration=self.bulk_latency + objects / self.bulk_rate,
            lines=lines,
            object_count=objects,
            root_count=roots,
            secret=secrets.token_hex(16),
            fail_code=code,
        )
        self.jobs[number] = job
        self.stats.bulk_started[kind] += 1
        return job

    def running(self, kind: str) -> list[BulkJob]:
        """The operations of ``kind`` that are CREATED, RUNNING or CANCELING, oldest first."""
        now = self.ctx.clock.monotonic()
        return [
            j for j in self.jobs.values() if j.type == kind and j.status(now) in ("CREATED", "RUNNING", "CANCELING")
        ]

    def at_once(self, kind: str, version: str) -> int:
        """How many operations of ``kind`` may run at once in ``version``."""
        return BULK_QUERIES_AT_ONCE if kind == "QUERY" and version >= CONCURRENT_BULK_FROM else 1

    def cancel(self, job: BulkJob) -> None:
        """Start canceling ``job`` (CANCELING, then CANCELED a moment later)."""
        job.canceled_at = self.ctx.clock.monotonic() + min(0.5, job.latency)

    def job_node(self, job: BulkJob, base: str) -> dict[str, Any]:
        """The ``BulkOperation`` node of ``job`` now."""
        now = self.ctx.clock.monotonic()
        status = job.status(now)
        done = status in ("COMPLETED", "FAILED", "CANCELED")
        end = job.duration if job.canceled_at is None else job.canceled_at - job.started
        completed = job.created_at + timedelta(seconds=self.ctx.clock.real(end))
        progress = job.progress(now) if status != "FAILED" else 1.0
        has_result = status == "COMPLETED" and job.object_count > 0
        return {
            "_num": job.number,
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


# ---------------------------------------------------------------------------------------------- helpers


def _json_body(request: httpx.Request) -> dict[str, Any] | None:
    try:
        body = json.loads(request.content or b"{}")
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _base(request: httpx.Request) -> str:
    """Scheme and host of the request: links work in-process and behind the HTTP server alike."""
    return f"{request.url.scheme}://{request.url.netloc.decode('ascii')}"


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
