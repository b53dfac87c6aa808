"""The Shopify destination: segment tags on customers, added by ``tagsAdd`` and removed by ``tagsRemove``.

Never ``customerUpdate(tags:)``: that replaces the whole list and would drop the tags the merchant or other apps
set. Each customer gets one ``tagsAdd`` with all its new tags and one ``tagsRemove`` with all its old ones;
up to 25 of these go as aliases of one document (10 points each). When a push touches at least
``bulk_mutation_threshold`` customers, the calls go as one bulk mutation per kind instead: the variables are
uploaded as JSONL to a staged upload target, and the result file answers line by line.

Per-record outcomes: a call without ``userErrors`` acknowledges its changes; ``userErrors`` skip them with
Shopify's message; a request that failed for good after retries (or a bulk operation that failed) leaves them
for a retry.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hub.contracts import Outcome, RemoteContact, TagChange, TagOp, TagResult
from hub.errors import TransientError
from hub.http import BodyCursorPaginator, HttpError, PageRequest
from hub.store.identity import normalize_email

from . import queries
from .bulk import BulkGone, BulkRunner, mutation_results
from .client import ShopifyClient
from .config import ShopifyDestinationConfig
from .settings import LOOKUP_BATCH, MAX_PAGE_SIZE, MAX_TAG_LENGTH, MAX_TAGS_PER_CALL, MUTATIONS_PER_REQUEST

logger = logging.getLogger(__name__)

_CUSTOMER_GID = re.compile(r"^gid://shopify/Customer/\d+$")
_OPS = {TagOp.ADD: "add", TagOp.REMOVE: "remove"}


@dataclass
class _Call:
    """One tagsAdd or tagsRemove on one customer, and the changes it carries."""

    op: str
    remote_id: str
    tags: list[str] = field(default_factory=list)
    changes: list[TagChange] = field(default_factory=list)


class ShopifySink:
    """A configured shop as a tag destination.

    Args:
        config: the validated entry.
        name: the entry's name.
        client: the shop's client.
        sleep: the sleep between bulk status checks.

    Attributes:
        batch_limits: ``tags_add``/``tags_remove``: customers per request (aliased mutations, one customer
            each); ``tags_per_call``: tags per customer and call.
    """

    def __init__(
        self,
        config: ShopifyDestinationConfig,
        name: str,
        client: ShopifyClient,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.name = name
        self.config = config
        self.client = client
        self.batch_limits: Mapping[str, int] = {
            "tags_add": MUTATIONS_PER_REQUEST,
            "tags_remove": MUTATIONS_PER_REQUEST,
            "tags_per_call": MAX_TAGS_PER_CALL,
        }
        self.bulk = BulkRunner(
            client,
            poll_interval=config.bulk_poll_interval,
            timeout=_duration(config.bulk_timeout),
            sleep=sleep,
        )

    # ------------------------------------------------------------------ reading

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        """The shop's customers for these emails, by the email as given (search on quoted ``email:``)."""
        wanted: dict[str, str] = {}
        for email in emails:
            key = normalize_email(email)
            if key is not None:
                wanted.setdefault(key, email)
        found: dict[str, RemoteContact] = {}
        keys = sorted(wanted)
        for start in range(0, len(keys), LOOKUP_BATCH):
            chunk = keys[start : start + LOOKUP_BATCH]
            search = queries.emails_query(chunk)
            for contact in self._customers("CustomersByEmail", queries.CUSTOMERS_BY_EMAIL, search, 2 * len(chunk)):
                key = normalize_email(contact.email)
                if key in wanted:
                    found[wanted[key]] = contact
        return found

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        """Every customer with a tag starting with ``prefix`` (a ``tag:`` prefix search, checked here again)."""
        search = queries.tag_prefix_query(prefix) or ""
        for contact in self._customers("CustomersByTag", queries.CUSTOMERS_BY_TAG, search, MAX_PAGE_SIZE):
            if any(t.startswith(prefix) for t in contact.tags):
                yield contact

    def ensure_tags(self, tags: Sequence[str]) -> None:
        """Nothing to create: a Shopify tag exists once a customer carries it."""

    def close(self) -> None:
        """Close the client."""
        self.client.close()

    def _customers(self, operation: str, document: str, search: str, first: int) -> Iterator[RemoteContact]:
        paginator = BodyCursorPaginator(
            "data.customers.pageInfo.endCursor",
            "variables.after",
            has_next_path="data.customers.pageInfo.hasNextPage",
            location="json",
        )
        size = min(first, MAX_PAGE_SIZE)
        while paginator.has_next:
            request = paginator.prepare(PageRequest("POST", "", json={"variables": {"first": size, "query": search}}))
            data, response = self.client.execute(operation, document, request.json["variables"])
            paginator.update(response)
            for node in (data.get("customers") or {}).get("nodes") or []:
                if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                    yield _contact(node)

    # ------------------------------------------------------------------ writing

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Apply the changes with as few calls as Shopify allows; one result per change.

        Raises:
            ConfigError: the token is rejected or lacks ``write_customers``.
        """
        if not changes:
            return []
        results: list[TagResult] = []
        calls = self._plan(changes, results)
        customers = {c.remote_id for c in calls}
        bulk = len(customers) >= self.config.bulk_mutation_threshold
        for op in ("remove", "add"):
            of_op = [c for c in calls if c.op == op]
            if not of_op:
                continue
            results.extend(self._bulk(op, of_op) if bulk else self._batched(of_op))
        return results

    def _plan(self, changes: Sequence[TagChange], results: list[TagResult]) -> list[_Call]:
        """Resolve remote ids, drop what Shopify cannot take, and group tags into calls."""
        missing = [c.email for c in changes if not c.remote_id and c.email]
        found = self.lookup(missing) if missing else {}
        latest: dict[tuple[str, str], TagChange] = {}
        for change in changes:
            remote = change.remote_id or (found[change.email].remote_id if change.email in found else None)
            reason = _rejection(change, remote)
            if reason is not None:
                results.append(TagResult(change, Outcome.SKIPPED, reason))
                continue
            assert remote is not None
            key = (remote, change.tag.casefold())  # Shopify compares tags without regard to case
            earlier = latest.get(key)
            if earlier is not None:
                results.append(TagResult(earlier, Outcome.SKIPPED, "superseded by a later change of the same tag"))
            latest[key] = change
        grouped: dict[tuple[str, str], _Call] = {}
        calls: list[_Call] = []
        for (remote, _tag), change in latest.items():
            op = _OPS[change.op]
            call = grouped.get((op, remote))
            if call is None or len(call.tags) >= MAX_TAGS_PER_CALL:
                call = _Call(op, remote)
                grouped[(op, remote)] = call
                calls.append(call)
            call.tags.append(change.tag)
            call.changes.append(change)
        return calls

    def _batched(self, calls: list[_Call]) -> list[TagResult]:
        results: list[TagResult] = []
        for start in range(0, len(calls), MUTATIONS_PER_REQUEST):
            chunk = calls[start : start + MUTATIONS_PER_REQUEST]
            document = queries.tags_batch([c.op for c in chunk])
            variables: dict[str, Any] = {}
            for i, call in enumerate(chunk):
                variables[f"id{i}"] = call.remote_id
                variables[f"tags{i}"] = call.tags
            try:
                data = self.client.graphql("TagsBatch", document, variables, cost_key=str(len(chunk)))
            except (TransientError, HttpError) as exc:
                logger.warning("%s: a batch of %d tag calls failed: %s", self.name, len(chunk), exc)
                results.extend(_all(chunk, Outcome.RETRY, str(exc)))
                continue
            for i, call in enumerate(chunk):
                results.extend(_outcome(call, data.get(f"c{i}")))
        return results

    def _bulk(self, op: str, calls: list[_Call]) -> list[TagResult]:
        lines = b"".join(json.dumps({"id": c.remote_id, "tags": c.tags}).encode() + b"\n" for c in calls)
        try:
            path = self._stage(lines)
            op_id = self.bulk.start_mutation(queries.TAGS_LINE[op], path)
            done = self.bulk.wait(op_id)
        except (TransientError, HttpError, BulkGone) as exc:
            logger.warning("%s: the bulk %s of %d customers failed: %s", self.name, op, len(calls), exc)
            return list(_all(calls, Outcome.RETRY, f"bulk mutation failed: {exc}"))
        answers: dict[int, Any] = {}
        if done.url:
            with tempfile.TemporaryFile() as result:
                self.client.download(done.url, result)
                for number, line in mutation_results(result):
                    answers[number] = (line.get("data") or {}).get(queries.TAGS_FIELD[op]) or {
                        "userErrors": [{"message": "; ".join(str(e.get("message")) for e in line.get("errors") or [])}]
                    }
        results: list[TagResult] = []
        for number, call in enumerate(calls):
            if number in answers:
                results.extend(_outcome(call, answers[number]))
            else:
                results.extend(_all([call], Outcome.RETRY, "the bulk mutation gave no result for this customer"))
        return results

    def _stage(self, content: bytes) -> str:
        """Upload bulk-mutation variables to a staged upload target; return the path bulkOperationRunMutation takes."""
        data = self.client.graphql(
            "StagedUploadCreate",
            queries.STAGED_UPLOAD,
            {
                "input": [
                    {
                        "resource": "BULK_MUTATION_VARIABLES",
                        "filename": "tags.jsonl",
                        "mimeType": "text/jsonl",
                        "httpMethod": "POST",
                    }
                ]
            },
        )
        payload = data.get("stagedUploadsCreate") or {}
        errors = payload.get("userErrors") or []
        targets = payload.get("stagedTargets") or []
        if errors or not targets:
            raise HttpError(f"stagedUploadsCreate refused: {errors or 'no target'}")
        target = targets[0]
        parameters = [p for p in target.get("parameters") or [] if isinstance(p, Mapping)]
        self.client.upload(str(target.get("url")), parameters, "tags.jsonl", content)
        key = next((p.get("value") for p in parameters if p.get("name") == "key"), None)
        if not key:
            raise HttpError("the staged upload target names no key")
        return str(key)


# ---------------------------------------------------------------------------------------------- helpers


def _contact(node: Mapping[str, Any]) -> RemoteContact:
    tags = node.get("tags")
    consent = node.get("emailMarketingConsent") or {}
    # Shopify lets anyone be tagged; only a customer whose data was erased on request is off limits.
    status = "redacted" if consent.get("marketingState") == "REDACTED" else None
    return RemoteContact(
        remote_id=str(node["id"]),
        email=node.get("email"),
        tags=frozenset(str(t) for t in tags) if isinstance(tags, list) else frozenset(),
        status=status,
    )


def _rejection(change: TagChange, remote: str | None) -> str | None:
    """Why Shopify cannot take this change, or None."""
    if remote is None:
        return "no such customer in the shop"
    if not _CUSTOMER_GID.match(remote):
        return f"not a Shopify customer id: {remote[:60]!r}"
    tag = change.tag
    if not tag.strip():
        return "an empty tag"
    if "," in tag:
        return "a Shopify tag cannot contain a comma (Shopify would split it into several tags)"
    if len(tag) > MAX_TAG_LENGTH:
        return f"a Shopify tag has at most {MAX_TAG_LENGTH} characters"
    return None


def _outcome(call: _Call, answer: Any) -> Iterator[TagResult]:
    payload = answer if isinstance(answer, Mapping) else {}
    errors = [e for e in payload.get("userErrors") or [] if isinstance(e, Mapping)]
    if errors:
        reason = "; ".join(str(e.get("message")) for e in errors)
        yield from _all([call], Outcome.SKIPPED, reason)
    elif not payload or payload.get("node") is None:
        yield from _all([call], Outcome.SKIPPED, "no such customer in the shop")
    else:
        yield from _all([call], Outcome.ACKNOWLEDGED, None)


def _all(calls: Sequence[_Call], outcome: Outcome, reason: str | None) -> Iterator[TagResult]:
    for call in calls:
        for change in call.changes:
            yield TagResult(change, outcome, reason)


def _duration(value: str) -> timedelta:
    from hub.config.models import parse_duration

    return parse_duration(value)
