"""The HubSpot sink: segment tags on contacts, as a multiple-checkbox property or as static lists.

HubSpot has no contact tags, so a destination entry picks one of two mechanisms (``mode``):

- ``property`` (:class:`PropertyTags`): one multiple-checkbox contact property (``hub_segments``) whose options
  are the tags. The property is created with its options if missing and options are added as segments
  appear. A write replaces the whole value, so every write reads the contact's current value first and
  changes only the tags of the change set: values others set survive. 100 contacts per read and per write.
- ``lists`` (:class:`ListTags`): one static (``MANUAL``) list per tag, named by the tag, written with
  ``add-and-remove`` by HubSpot record id, 100 ids per call.

Per-record outcomes come from HubSpot's answers: a 207 batch names the failed ids, the list endpoint names the
missing ones; a 400 batch is split in halves until the bad record is found. Nothing is sent for no changes.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from hub.contracts import Outcome, RemoteContact, TagChange, TagOp, TagResult
from hub.errors import ConfigError, HubError, TransientError
from hub.http import HttpError, RetryPolicy
from hub.redact import redact

from .client import JSON, BatchResult, HubSpotClient
from .settings import BATCH_LIMIT, CONTACTS, LIST_MEMBERSHIP_BATCH, SEARCH_PAGE_SIZE, TAG_SEPARATOR

if TYPE_CHECKING:
    from hub.registry import BuildContext

    from .config import HubSpotDestinationConfig

logger = logging.getLogger(__name__)

# Batch error categories that will not succeed on a retry.
_PERMANENT = frozenset({"OBJECT_NOT_FOUND", "VALIDATION_ERROR", "INVALID_EMAIL", "OBJECT_ALREADY_EXISTS"})


def split_tags(value: Any) -> frozenset[str]:
    """The options of a multiple-checkbox value (``"a;b"``)."""
    if not isinstance(value, str):
        return frozenset()
    return frozenset(v.strip() for v in value.split(TAG_SEPARATOR) if v.strip())


def _key(email: str | None) -> str | None:
    return email.strip().lower() if email else None


@dataclass
class _Plan:
    """The changes for one contact: what to add and remove, and the changes to answer."""

    add: set[str] = field(default_factory=set)
    remove: set[str] = field(default_factory=set)
    changes: list[TagChange] = field(default_factory=list)


def _results(changes: Iterable[TagChange], outcome: Outcome, reason: str | None = None) -> list[TagResult]:
    return [TagResult(c, outcome, reason) for c in changes]


def _failure(exc: HubError) -> Outcome:
    return Outcome.RETRY if isinstance(exc, TransientError) else Outcome.SKIPPED


def _failed_ids(errors: Sequence[JSON]) -> dict[str, JSON]:
    """Record ids named by a 207's errors (``context.ids`` or the ``objectWriteTraceId`` we sent)."""
    out: dict[str, JSON] = {}
    for error in errors:
        context = error.get("context")
        if not isinstance(context, Mapping):
            continue
        for key in ("ids", "objectWriteTraceId", "id"):
            for value in context.get(key) or ():
                out[str(value)] = error
    return out


def _reason(error: Mapping[str, Any]) -> str:
    return redact(f"{error.get('category', 'ERROR')}: {error.get('message', '')}".strip())


class TagMechanism(Protocol):
    """How tags are stored on HubSpot contacts (a property or lists)."""

    def lookup_properties(self) -> list[str]:
        """Contact properties a lookup must read to know the tags."""
        ...

    def tags_of(self, contacts: Sequence[JSON]) -> dict[str, frozenset[str]]:
        """The tags of contacts just read by id."""
        ...

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        """Every contact holding a tag that starts with ``prefix``."""
        ...

    def ensure(self, tags: Sequence[str]) -> None:
        """Make the tags usable (property options, lists)."""
        ...

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Apply changes whose ``remote_id`` is known."""
        ...


class PropertyTags:
    """Tags as the options of one multiple-checkbox contact property."""

    def __init__(self, client: HubSpotClient, config: HubSpotDestinationConfig) -> None:
        self._client = client
        self.property = config.property
        self._label = config.property_label
        self._group = config.property_group
        self._options: dict[str, JSON] | None = None  # value -> option, as last read or written

    def lookup_properties(self) -> list[str]:
        return [self.property]

    def tags_of(self, contacts: Sequence[JSON]) -> dict[str, frozenset[str]]:
        return {str(c.get("id")): split_tags((c.get("properties") or {}).get(self.property)) for c in contacts}

    def _definition(self) -> JSON | None:
        found = self._client.get_property(CONTACTS, self.property)
        if found is not None:
            if found.get("type") != "enumeration" or found.get("fieldType") != "checkbox":
                raise ConfigError(
                    f"HubSpot contact property {self.property!r} exists but is not a multiple checkbox"
                    f" (type {found.get('type')}, field type {found.get('fieldType')}): pick another property name"
                )
            self._options = {str(o.get("value")): o for o in found.get("options") or () if isinstance(o, dict)}
        return found

    def ensure(self, tags: Sequence[str]) -> None:
        wanted = [t for t in dict.fromkeys(tags) if t]
        if not wanted or (self._options is not None and all(t in self._options for t in wanted)):
            return
        if self._definition() is None:
            created = self._client.create_property(
                CONTACTS,
                {
                    "name": self.property,
                    "label": self._label,
                    "groupName": self._group,
                    "type": "enumeration",
                    "fieldType": "checkbox",
                    "description": "Segments Audience Hub assigns; the hub only changes options with its prefix",
                    "options": [_option(t, i) for i, t in enumerate(wanted)],
                },
            )
            self._options = {str(o.get("value")): o for o in created.get("options") or () if isinstance(o, dict)}
            return
        assert self._options is not None  # _definition() read them
        missing = [t for t in wanted if t not in self._options]
        if missing:
            # PATCH replaces the option list: send every existing option (others' included) plus the new ones.
            kept = [_option_input(o) for o in self._options.values()]
            added = [_option(t, len(kept) + i) for i, t in enumerate(missing)]
            updated = self._client.set_property_options(CONTACTS, self.property, [*kept, *added])
            self._options = {str(o.get("value")): o for o in updated.get("options") or () if isinstance(o, dict)}

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        if self._definition() is None or self._options is None:
            return
        owned = sorted(v for v in self._options if v.startswith(prefix))
        if not owned:
            return
        last = 0
        while True:
            filters: list[JSON] = [
                {"propertyName": self.property, "operator": "IN", "values": owned},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(last)},
            ]
            page = self._client.search(CONTACTS, filters, ["email", self.property])
            for contact in page.results:
                props = contact.get("properties") or {}
                yield RemoteContact(str(contact.get("id")), props.get("email"), split_tags(props.get(self.property)))
            ids = [int(c["id"]) for c in page.results if str(c.get("id", "")).isdigit()]
            if len(page.results) < SEARCH_PAGE_SIZE or len(page.results) >= page.total or not ids or max(ids) <= last:
                return
            last = max(ids)

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        plans: dict[str, _Plan] = defaultdict(_Plan)
        for change in changes:
            plan = plans[str(change.remote_id)]
            (plan.add if change.op is TagOp.ADD else plan.remove).add(change.tag)
            plan.changes.append(change)
        try:
            self.ensure(sorted({t for p in plans.values() for t in p.add}))
        except (TransientError, HttpError) as exc:
            return _results(changes, _failure(exc), f"could not prepare the property options: {exc}")
        results: list[TagResult] = []
        ids = list(plans)
        for start in range(0, len(ids), BATCH_LIMIT):
            chunk = {i: plans[i] for i in ids[start : start + BATCH_LIMIT]}
            results.extend(self._apply_chunk(chunk))
        return results

    def _apply_chunk(self, plans: dict[str, _Plan]) -> list[TagResult]:
        changes = [c for p in plans.values() for c in p.changes]
        try:
            current = self._client.batch_read(CONTACTS, list(plans), [self.property])
        except (TransientError, HttpError) as exc:
            return _results(changes, _failure(exc), f"could not read the current tags: {exc}")
        results: list[TagResult] = []
        values = self.tags_of(current.results)
        missing = _failed_ids(current.errors)
        inputs: list[JSON] = []
        for contact_id, plan in plans.items():
            if contact_id not in values:
                reason = _reason(missing[contact_id]) if contact_id in missing else "no such HubSpot contact"
                results.extend(_results(plan.changes, Outcome.SKIPPED, reason))
                continue
            before = values[contact_id]
            after = (before - plan.remove) | plan.add
            if after == before:
                results.extend(_results(plan.changes, Outcome.ACKNOWLEDGED))  # already as wanted: no write
                continue
            value = TAG_SEPARATOR.join(sorted(after))
            inputs.append({"id": contact_id, "objectWriteTraceId": contact_id, "properties": {self.property: value}})
        if inputs:
            results.extend(self._write(inputs, plans))
        return results

    def _write(self, inputs: list[JSON], plans: Mapping[str, _Plan]) -> list[TagResult]:
        changes = [c for i in inputs for c in plans[i["id"]].changes]
        try:
            answer = self._client.batch_update(CONTACTS, inputs)
        except TransientError as exc:
            return _results(changes, Outcome.RETRY, str(exc))
        except HttpError as exc:
            if len(inputs) > 1:  # one bad record fails a whole batch: halve until it is alone
                middle = len(inputs) // 2
                return self._write(inputs[:middle], plans) + self._write(inputs[middle:], plans)
            return _results(changes, Outcome.SKIPPED, exc.body or str(exc))
        return _batch_outcomes(inputs, answer, plans)


def _batch_outcomes(inputs: Sequence[JSON], answer: BatchResult, plans: Mapping[str, _Plan]) -> list[TagResult]:
    done = {str(r.get("id")) for r in answer.results}
    failed = _failed_ids(answer.errors)
    results: list[TagResult] = []
    for item in inputs:
        contact_id = item["id"]
        plan = plans[contact_id]
        if contact_id in failed:
            error = failed[contact_id]
            outcome = Outcome.SKIPPED if error.get("category") in _PERMANENT else Outcome.RETRY
            results.extend(_results(plan.changes, outcome, _reason(error)))
        elif contact_id in done:
            results.extend(_results(plan.changes, Outcome.ACKNOWLEDGED))
        else:  # neither confirmed nor refused: do not count it as written
            results.extend(_results(plan.changes, Outcome.RETRY, "HubSpot did not confirm this record"))
    return results


def _option(value: str, order: int) -> JSON:
    return {"label": value, "value": value, "hidden": False, "displayOrder": order}


def _option_input(option: Mapping[str, Any]) -> JSON:
    keys = ("label", "value", "hidden", "displayOrder", "description")
    return {k: option[k] for k in keys if option.get(k) is not None}


class ListTags:
    """Tags as static (MANUAL) contact lists, one per tag, named by the tag."""

    def __init__(self, client: HubSpotClient, config: HubSpotDestinationConfig) -> None:
        self._client = client
        self._prefix = config.tag_prefix
        self._lists: dict[str, JSON] = {}  # tag (lowercase: HubSpot list names are case-insensitive) -> list
        self._by_id: dict[str, str] | None = None  # list id -> tag, for the hub's lists

    def lookup_properties(self) -> list[str]:
        return []

    def tags_of(self, contacts: Sequence[JSON]) -> dict[str, frozenset[str]]:
        ids = [str(c.get("id")) for c in contacts if c.get("id") is not None]
        if not ids:
            return {}
        names = self._hub_lists()
        memberships = self._client.memberships_of(ids)
        return {i: frozenset(names[x] for x in memberships.get(i, ()) if x in names) for i in ids}

    def _hub_lists(self) -> dict[str, str]:
        if self._by_id is None:
            self._by_id = {
                str(found["listId"]): str(found["name"])
                for found in self._client.search_lists(self._prefix)
                if str(found.get("name", "")).startswith(self._prefix)
            }
        return self._by_id

    def ensure(self, tags: Sequence[str]) -> None:
        for tag in dict.fromkeys(tags):
            if tag and tag.lower() not in self._lists:
                found = self._client.list_by_name(tag) or self._client.create_list(tag)
                self._lists[tag.lower()] = found
                if self._by_id is not None:
                    self._by_id[str(found.get("listId"))] = tag

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        tags: dict[str, set[str]] = defaultdict(set)
        for found in self._client.search_lists(prefix):
            name = str(found.get("name", ""))
            if not name.startswith(prefix):
                continue
            for ids in self._client.membership_pages(str(found["listId"])):
                for record_id in ids:
                    tags[record_id].add(name)
        if not tags:
            return
        emails = self._client.batch_read(CONTACTS, list(tags), ["email"])
        for contact in emails.results:
            contact_id = str(contact.get("id"))
            email = (contact.get("properties") or {}).get("email")
            yield RemoteContact(contact_id, email, frozenset(tags.get(contact_id, ())))

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        by_tag: dict[str, list[TagChange]] = defaultdict(list)
        for change in changes:
            by_tag[change.tag].append(change)
        results: list[TagResult] = []
        for tag, group in by_tag.items():
            try:
                self.ensure([tag])
            except (TransientError, HttpError) as exc:
                results.extend(_results(group, _failure(exc), f"could not find or create list {tag!r}: {exc}"))
                continue
            found = self._lists[tag.lower()]
            if found.get("processingType") not in ("MANUAL", "SNAPSHOT"):
                reason = f"HubSpot list {tag!r} is an active ({found.get('processingType')}) list: it cannot be written"
                results.extend(_results(group, Outcome.SKIPPED, reason))
                continue
            results.extend(self._apply_list(str(found["listId"]), group))
        return results

    def _apply_list(self, list_id: str, changes: Sequence[TagChange]) -> list[TagResult]:
        adds = [c for c in changes if c.op is TagOp.ADD]
        removes = [c for c in changes if c.op is TagOp.REMOVE]
        results: list[TagResult] = []
        while adds or removes:
            add, adds = adds[:LIST_MEMBERSHIP_BATCH], adds[LIST_MEMBERSHIP_BATCH:]
            remove, removes = removes[:LIST_MEMBERSHIP_BATCH], removes[LIST_MEMBERSHIP_BATCH:]
            try:
                answer = self._client.update_memberships(
                    list_id, [str(c.remote_id) for c in add], [str(c.remote_id) for c in remove]
                )
            except (TransientError, HttpError) as exc:
                results.extend(_results([*add, *remove], _failure(exc), str(exc)))
                continue
            missing = {str(i) for i in answer.get("recordIdsMissing") or ()}
            for change in (*add, *remove):
                if str(change.remote_id) in missing:
                    results.append(TagResult(change, Outcome.SKIPPED, "no such HubSpot contact"))
                else:
                    results.append(TagResult(change, Outcome.ACKNOWLEDGED))
        return results


class HubSpotSink:
    """A configured HubSpot destination (the :class:`~hub.contracts.Sink` contract).

    Args:
        config: the validated entry.
        name: the entry's name.
        ctx: the build context.
        retry: the retry policy (tests pass a fast one).
    """

    def __init__(
        self, config: HubSpotDestinationConfig, name: str, ctx: BuildContext, *, retry: RetryPolicy | None = None
    ) -> None:
        self.name = name
        self.config = config
        self.client = HubSpotClient.build(config, ctx, base_url=config.base_url, retry=retry)
        self.mechanism: TagMechanism = (
            PropertyTags(self.client, config) if config.mode == "property" else ListTags(self.client, config)
        )
        self.batch_limits: Mapping[str, int] = {
            "lookup": BATCH_LIMIT,
            "tags_read": BATCH_LIMIT,
            "tags_write": BATCH_LIMIT if config.mode == "property" else LIST_MEMBERSHIP_BATCH,
        }

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        """Contacts by email (batch read with ``idProperty: email``, 100 per call); missing ones are absent."""
        wanted = {k: e for e in emails if (k := _key(e))}
        if not wanted:
            return {}
        found = self.client.batch_read(
            CONTACTS, list(dict.fromkeys(wanted)), ["email", *self.mechanism.lookup_properties()], id_property="email"
        )
        tags = self.mechanism.tags_of(found.results)
        out: dict[str, RemoteContact] = {}
        for contact in found.results:
            email = (contact.get("properties") or {}).get("email")
            key = _key(email)
            if key in wanted:
                contact_id = str(contact.get("id"))
                out[wanted[key]] = RemoteContact(contact_id, email, tags.get(contact_id, frozenset()))
        return out

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        """Every contact holding a tag that starts with ``prefix``."""
        return self.mechanism.read_tags(prefix)

    def ensure_tags(self, tags: Sequence[str]) -> None:
        """Create the property options or lists these tags need (nothing is sent for an empty list)."""
        self.mechanism.ensure(tags)

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        """Apply the changes; one result per change. No changes, no calls."""
        if not changes:
            return []
        results: list[TagResult] = []
        known = [c for c in changes if c.remote_id]
        unknown = [c for c in changes if not c.remote_id]
        if unknown:
            found, failed = self._resolve(unknown)
            known += found
            results += failed
        return results + self.mechanism.apply(known)

    def _resolve(self, changes: Sequence[TagChange]) -> tuple[list[TagChange], list[TagResult]]:
        """Changes without a HubSpot id get one by email lookup; the others are answered here."""
        emails = [c.email for c in changes if c.email]
        try:
            contacts = self.lookup(emails) if emails else {}
        except (TransientError, HttpError) as exc:
            return [], _results(changes, _failure(exc), f"could not look the contacts up: {exc}")
        found: list[TagChange] = []
        failed: list[TagResult] = []
        for change in changes:
            contact = contacts.get(change.email or "")
            if contact is None:
                failed.append(TagResult(change, Outcome.SKIPPED, "no HubSpot contact with this email"))
            else:
                found.append(TagChange(change.op, change.tag, change.person_id, change.email, contact.remote_id))
        return found, failed

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()
