"""Bulk operations: start one, wait for it, and read its JSONL result.

Lifecycle: ``CREATED`` -> ``RUNNING`` -> ``COMPLETED`` (a result URL, valid seven days) or ``FAILED`` /
``CANCELED`` / ``EXPIRED``. Before 2026-01 only one bulk query (and one bulk mutation) runs per shop and app at
a time; from 2026-01 on, five bulk queries may. So before a query starts, the app's most recent operation is
looked at: if it still runs our very query, it is ours (a start whose answer was lost) and is adopted rather
than started twice. A start refused with ``OPERATION_IN_PROGRESS`` or ``LIMIT_REACHED`` waits for the
operation that is running.

Status checks come every ``poll_interval`` (one second by default) for the first ten, then every five
seconds, as Shopify's CLI polls: a job of a few seconds is read as soon as it completes, and a long one costs
a point every five seconds.

The JSONL result has one line per node; nodes of nested connections are lines of their own carrying
``__parentId``. Newer API versions no longer promise that children follow their parent, so
:func:`grouped_nodes` reads the file twice: once to gather children by parent, once to yield each root with
its children, in file order (the order a resumed run counts its progress in).
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import IO, Any

from hub.errors import ConfigError, TransientError
from hub.stop import current as current_stop
from hub.stop import wait as stop_wait

from . import queries
from .client import ShopifyClient
from .settings import BULK_POLL_FAST_CHECKS, BULK_POLL_REGULAR_S

logger = logging.getLogger(__name__)

RUNNING = frozenset({"CREATED", "RUNNING", "CANCELING"})
_START_ATTEMPTS = 5


class BulkGone(Exception):
    """The operation cannot give a result (failed, canceled, expired, or unknown to the shop)."""

    def __init__(self, op_id: str, status: str, error_code: str | None = None) -> None:
        super().__init__(f"bulk operation {op_id} is {status}" + (f" ({error_code})" if error_code else ""))
        self.op_id = op_id
        self.status = status
        self.error_code = error_code


@dataclass(frozen=True)
class BulkOperation:
    """A bulk operation's status as Shopify reports it."""

    id: str
    status: str
    error_code: str | None = None
    url: str | None = None
    object_count: int = 0
    root_object_count: int = 0
    query: str | None = None

    @classmethod
    def from_node(cls, node: Mapping[str, Any]) -> BulkOperation:
        """From a ``BulkOperation`` node."""
        return cls(
            id=str(node.get("id")),
            status=str(node.get("status")),
            error_code=node.get("errorCode"),
            url=node.get("url"),
            object_count=int(node.get("objectCount") or 0),
            root_object_count=int(node.get("rootObjectCount") or 0),
            query=node.get("query"),
        )


@dataclass
class BulkNode:
    """One root node of a result with its children, or the error of a line that could not be read."""

    node: dict[str, Any] | None
    children: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


class BulkRunner:
    """Starts and waits for bulk operations of one shop.

    Args:
        client: the shop's client.
        poll_interval: seconds between the first ten status checks; later ones come every 5 s (or this, if
            longer).
        timeout: how long :meth:`wait` waits before giving up (the operation keeps running).
        sleep: the sleep function (tests pass a fast one).
        monotonic: the clock measuring the timeout.
    """

    def __init__(
        self,
        client: ShopifyClient,
        *,
        poll_interval: float = 1.0,
        timeout: timedelta = timedelta(hours=6),
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.poll_interval = poll_interval
        self.timeout = timeout
        self._sleep = sleep
        self._monotonic = monotonic

    def start_query(self, query: str) -> str:
        """Start a bulk query (or adopt the identical one already running); return its id."""
        current = self._current("QUERY")
        if current is not None and current.status in RUNNING and _same_query(current.query, query):
            logger.info("bulk operation %s already runs this query: resuming it", current.id)
            return current.id
        return self._start("QUERY", query, lambda: self._run("BulkQueryRun", queries.BULK_RUN_QUERY, {"query": query}))

    def start_mutation(self, mutation: str, staged_path: str) -> str:
        """Start a bulk mutation over the uploaded variables at ``staged_path``; return its id."""
        variables = {"mutation": mutation, "path": staged_path}
        return self._start("MUTATION", None, lambda: self._run("BulkMutationRun", queries.BULK_RUN_MUTATION, variables))

    def status(self, op_id: str) -> BulkOperation | None:
        """The operation's current status (None when the shop does not know it)."""
        data = self.client.graphql("BulkOperationStatus", queries.BULK_STATUS, {"id": op_id})
        node = data.get("node")
        return BulkOperation.from_node(node) if isinstance(node, Mapping) and node.get("id") else None

    def wait(self, op_id: str) -> BulkOperation:
        """Poll until the operation completes.

        Raises:
            BulkGone: it failed, was canceled, expired or is unknown.
            ConfigError: it failed for lack of access.
            TransientError: still running after ``timeout`` (its id stays valid for the next run).
        """
        started = self._monotonic()
        deadline = started + self.timeout.total_seconds()
        checks = 0
        while True:
            op = self.status(op_id)
            if op is None:
                raise BulkGone(op_id, "unknown")
            if op.status == "COMPLETED":
                logger.info(
                    "bulk operation %s completed: %d objects, waited %.1f s over %d status checks",
                    op_id,
                    op.object_count,
                    self._monotonic() - started,
                    checks + 1,
                )
                return op
            if op.status not in RUNNING:
                if op.error_code == "ACCESS_DENIED":
                    raise ConfigError(f"bulk operation {op_id} failed: the app lacks an access scope its query needs")
                raise BulkGone(op_id, op.status, op.error_code)
            checks += 1
            interval = self._interval(checks)
            if self._monotonic() + interval > deadline:
                raise TransientError(
                    f"bulk operation {op_id} is still {op.status} after {self.timeout}; the next run resumes it"
                )
            stop_wait(self._sleep, interval, current_stop())  # a stop request ends the wait at once

    def _interval(self, checks: int) -> float:
        """The wait after the ``checks``-th status check: short at first, then Shopify CLI's five seconds."""
        if checks <= BULK_POLL_FAST_CHECKS:
            return self.poll_interval
        return max(self.poll_interval, BULK_POLL_REGULAR_S)

    def _run(self, operation: str, document: str, variables: Mapping[str, Any]) -> Mapping[str, Any]:
        data = self.client.graphql(operation, document, variables)
        payload = next((v for v in data.values() if isinstance(v, Mapping)), {})
        return payload

    def _start(self, kind: str, query: str | None, run: Callable[[], Mapping[str, Any]]) -> str:
        for _ in range(_START_ATTEMPTS):
            payload = run()
            op = payload.get("bulkOperation")
            errors = [e for e in payload.get("userErrors") or [] if isinstance(e, Mapping)]
            if isinstance(op, Mapping) and op.get("id") and not errors:
                logger.info("bulk %s operation %s started", kind.lower(), op["id"])
                return str(op["id"])
            codes = {str(e.get("code")) for e in errors}
            if not codes & {"OPERATION_IN_PROGRESS", "LIMIT_REACHED"}:
                text = "; ".join(str(e.get("message")) for e in errors) or "no operation and no reason"
                raise ConfigError(f"Shopify refused to start a bulk {kind.lower()}: {text}")
            current = self._current(kind)
            if current is None or current.status not in RUNNING:
                continue  # it ended meanwhile: try again
            if query is not None and _same_query(current.query, query):
                logger.info("bulk operation %s already runs this query: resuming it", current.id)
                return current.id
            logger.info("another bulk %s (%s) is running: waiting for it", kind.lower(), current.id)
            with contextlib.suppress(BulkGone):
                self.wait(current.id)
        raise TransientError(f"could not start a bulk {kind.lower()}: another one kept running")

    def _current(self, kind: str) -> BulkOperation | None:
        data = self.client.graphql("CurrentBulkOperation", queries.CURRENT_BULK, {"type": kind})
        node = data.get("currentBulkOperation")
        return BulkOperation.from_node(node) if isinstance(node, Mapping) and node.get("id") else None


def grouped_nodes(lines: IO[bytes]) -> Iterator[BulkNode]:
    """The root nodes of a bulk query result with their children, in file order (see the module docstring)."""
    children: dict[str, list[dict[str, Any]]] = {}
    lines.seek(0)
    for raw in lines:
        if b'"__parentId"' not in raw:
            continue
        obj = _line(raw)
        if isinstance(obj, dict) and isinstance(obj.get("__parentId"), str):
            children.setdefault(obj.pop("__parentId"), []).append(obj)
    lines.seek(0)
    for number, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        obj = _line(raw)
        if not isinstance(obj, dict):
            yield BulkNode(None, error=f"result line {number}: not a JSON object")
        elif "__parentId" not in obj:
            yield BulkNode(obj, children.pop(str(obj.get("id")), []))


def mutation_results(lines: IO[bytes]) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(__lineNumber, line)`` of a bulk mutation's result (the line number of the uploaded variables)."""
    lines.seek(0)
    for raw in lines:
        obj = _line(raw)
        if isinstance(obj, dict) and isinstance(obj.get("__lineNumber"), int):
            yield obj["__lineNumber"], obj


def _line(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _same_query(a: str | None, b: str) -> bool:
    return a is not None and " ".join(a.split()) == " ".join(b.split())
