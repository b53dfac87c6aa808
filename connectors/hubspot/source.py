"""The HubSpot source: contacts and deals, a full listing first, then incremental search, with a checkpoint
after every page.

Stream state (one per stream, committed with each page)::

    {"phase": "list",     "until_ms": T, "after": "12345"}        # first sync, listing position
    {"phase": "search",   "cursor_ms": C, "since_ms": S, "until_ms": T, "last_id": 4711}
    {"phase": "archived", "cursor_ms": C, "since_ms": S, "until_ms": T, "after": "9001"}
    {"phase": "idle",     "cursor_ms": T}                          # between runs

- **First sync** lists every record (``GET /crm/v3/objects/{type}``, 100 per page, ``after`` cursor). ``until_ms``
  is the time the listing started: anything changed while it ran is picked up by the next run.
- **Incremental runs** search the window ``[cursor - lookback, now]`` on the last-modified property, sorted by
  ``hs_object_id`` and keyed on it: each page is a fresh query for ``hs_object_id > last id``. The 10,000-result
  cap of one query therefore never applies, however many records share one timestamp, and the checkpoint is
  just the last id. The lookback covers the search index's lag behind writes.
- **Deletions**: an incremental run then lists the archived records and marks those archived inside the
  window deleted.

A crash anywhere resumes from the stored state at the next page: nothing is lost, nothing is read twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from hub.contracts import Page, Record
from hub.errors import PaginationLoopError, SkippableRecordError
from hub.http import BodyCursorPaginator, RetryPolicy

from .client import JSON, HubSpotClient
from .mapping import StageBook, contact_record, deal_records, epoch_ms, parse_time
from .settings import CONTACTS, DEALS, SEARCH_PAGE_SIZE, STREAMS, StreamSpec

if TYPE_CHECKING:
    from hub.registry import BuildContext

    from .config import HubSpotSourceConfig

logger = logging.getLogger(__name__)

# Bad-record messages kept per page for the run report; the rest are only counted.
MAX_ERRORS_PER_PAGE = 20
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Checkpoint:
    """A stream's position; see the module docstring for the phases."""

    phase: str = "list"
    cursor_ms: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    after: str | None = None
    last_id: int = 0

    @classmethod
    def load(cls, state: Mapping[str, Any] | None) -> Checkpoint:
        """The checkpoint in a stored state (a fresh one for None or a state this version cannot read)."""
        if not state or state.get("phase") not in ("list", "search", "archived", "idle"):
            return cls()
        known = {k: state[k] for k in cls.__dataclass_fields__ if k in state}
        try:
            loaded = cls(**known)
            int(loaded.last_id)
        except (TypeError, ValueError):
            logger.warning("unreadable HubSpot stream state %r: starting over with a full listing", dict(state))
            return cls()
        if loaded.phase != "list" and loaded.cursor_ms is None:
            return cls()
        return loaded

    def dump(self) -> dict[str, Any]:
        """The state to store: JSON-able, without the fields the phase does not use."""
        return {k: v for k, v in asdict(self).items() if v is not None and not (k == "last_id" and v == 0)}


class Mapper(Protocol):
    """Turns one page of payloads into records (extra calls, such as associations, are the mapper's)."""

    def properties(self) -> list[str]:
        """The properties to request."""
        ...

    def records(self, payload: JSON, *, incremental: bool) -> list[Record]:
        """The records of one payload; SkippableRecordError for an unusable one."""
        ...

    def prepare(self, page: list[JSON]) -> None:
        """Fetch what the page's records need before :meth:`records` (one call per page at most)."""
        ...


class ContactMapper:
    """Contacts: the segmentation's properties plus the configured (or every) custom property."""

    def __init__(self, client: HubSpotClient, spec: StreamSpec, custom: Sequence[str], all_custom: bool) -> None:
        self._client = client
        self._spec = spec
        self._custom = list(custom)
        self._all_custom = all_custom
        self._resolved: list[str] | None = None

    def properties(self) -> list[str]:
        return [*self._spec.properties, *self._custom_properties()]

    def _custom_properties(self) -> list[str]:
        if self._resolved is None:
            self._resolved = self._discover() if (self._custom or self._all_custom) else []
        return self._resolved

    def _discover(self) -> list[str]:
        known = {str(p.get("name")): p for p in self._client.properties(self._spec.object_type)}
        missing = [name for name in self._custom if name not in known]
        if missing:
            logger.warning("HubSpot has no contact propert(ies) %s: not pulled (check the names)", ", ".join(missing))
        wanted = [name for name in self._custom if name in known]
        if self._all_custom:
            wanted += sorted(n for n, p in known.items() if not p.get("hubspotDefined") and not p.get("archived"))
        return [n for n in dict.fromkeys(wanted) if n not in self._spec.properties]

    def prepare(self, page: list[JSON]) -> None:
        return None

    def records(self, payload: JSON, *, incremental: bool) -> list[Record]:
        return [contact_record(payload, self._custom_properties())]


class DealMapper:
    """Deals: stage outcomes from the pipelines API, contacts from v4 associations (one batch per page)."""

    def __init__(self, client: HubSpotClient, spec: StreamSpec, currency: str | None) -> None:
        self._client = client
        self._spec = spec
        self._currency = currency
        self._stages: StageBook | None = None
        self._contacts: dict[str, list[str]] = {}

    def properties(self) -> list[str]:
        return list(self._spec.properties)

    def prepare(self, page: list[JSON]) -> None:
        if self._stages is None:
            self._stages = StageBook.from_pipelines(self._client.pipelines(self._spec.object_type))
        ids = [str(p["id"]) for p in page if p.get("id") is not None]
        self._contacts = self._client.associations(self._spec.object_type, CONTACTS, ids) if ids else {}

    def records(self, payload: JSON, *, incremental: bool) -> list[Record]:
        assert self._stages is not None  # prepare() ran
        contacts = self._contacts.get(str(payload.get("id")), [])
        return deal_records(payload, self._stages, contacts, currency=self._currency, tombstone=incremental)


class ObjectStream:
    """One CRM object type, resumable page by page (see the module docstring).

    Args:
        spec: the stream's row of the stream table.
        client: the account's client.
        mapper: payloads -> records.
        lookback: how far before the previous run's end each incremental window starts.
        detect_deleted: list archived records on incremental runs.
        start: ignore records last changed before this on the first sync.
        clock: the current time (injectable for tests).
    """

    def __init__(
        self,
        spec: StreamSpec,
        client: HubSpotClient,
        mapper: Mapper,
        *,
        lookback: timedelta,
        detect_deleted: bool = True,
        start: datetime | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.name = spec.name
        self.spec = spec
        self._client = client
        self._mapper = mapper
        self._lookback_ms = int(lookback.total_seconds() * 1000)
        self._detect_deleted = detect_deleted
        self._start = start
        self._clock = clock

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Pages after ``state``: the rest of a listing, or an incremental run (see the module docstring)."""
        point = Checkpoint.load(None if full else state)
        if point.phase == "list":
            yield from self._listing(point)
            return
        if point.phase == "idle":
            assert point.cursor_ms is not None  # Checkpoint.load
            since = point.cursor_ms - self._lookback_ms
            point = Checkpoint("search", point.cursor_ms, since, max(self._now_ms(), since), last_id=0)
        if point.phase == "search":
            for page in self._search(point):
                yield page
                point = Checkpoint.load(page.state)
        if point.phase == "archived":
            yield from self._archived(point)

    def _now_ms(self) -> int:
        return epoch_ms(self._clock())

    # ------------------------------------------------------------------ first sync

    def _listing(self, point: Checkpoint) -> Iterator[Page]:
        until = point.until_ms if point.until_ms is not None else self._now_ms()
        paginator = _resume(point.after)
        for results in self._client.list_pages(self.spec.object_type, self._mapper.properties(), paginator):
            page = self._page(results, incremental=False, keep=self._after_start)
            cursor = paginator.get_state()["cursor"]
            done = not paginator.has_next
            after = Checkpoint("idle", until) if done else Checkpoint("list", until_ms=until, after=cursor)
            page.state = after.dump()
            yield page

    def _after_start(self, payload: JSON) -> bool:
        if self._start is None:
            return True
        try:
            changed = parse_time(payload.get("updatedAt"))
        except ValueError:
            return True  # the mapper reports it
        return changed is None or changed >= self._start

    # ------------------------------------------------------------------ incremental

    def _search(self, point: Checkpoint) -> Iterator[Page]:
        assert point.since_ms is not None and point.until_ms is not None
        cursor = self.spec.cursor_property
        while True:
            filters = [
                {"propertyName": cursor, "operator": "GTE", "value": str(point.since_ms)},
                {"propertyName": cursor, "operator": "LTE", "value": str(point.until_ms)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(point.last_id)},
            ]
            found = self._client.search(self.spec.object_type, filters, self._mapper.properties())
            page = self._page(found.results, incremental=True)
            last = max((i for r in found.results if (i := _numeric_id(r)) is not None), default=None)
            if found.results and (last is None or last <= point.last_id):
                raise PaginationLoopError(
                    f"HubSpot {self.name} search returned no id above {point.last_id}: stopping to avoid a loop"
                )
            done = len(found.results) >= found.total or len(found.results) < SEARCH_PAGE_SIZE
            if done:
                point = self._after_search(point)
            else:
                assert last is not None
                point = replace(point, last_id=last)
            page.state = point.dump()
            yield page
            if done:
                return

    def _after_search(self, point: Checkpoint) -> Checkpoint:
        if self._detect_deleted:
            return replace(point, phase="archived", last_id=0, after=None)
        assert point.until_ms is not None
        return Checkpoint("idle", point.until_ms)

    def _archived(self, point: Checkpoint) -> Iterator[Page]:
        assert point.since_ms is not None and point.until_ms is not None
        since = point.since_ms
        paginator = _resume(point.after)
        pages = self._client.list_pages(self.spec.object_type, self._mapper.properties(), paginator, archived=True)
        for results in pages:
            recent = [r for r in results if _archived_since(r, since)]
            page = self._page(recent, incremental=True)
            done = not paginator.has_next
            after = paginator.get_state()["cursor"]
            page.state = (Checkpoint("idle", point.until_ms) if done else replace(point, after=after)).dump()
            yield page

    # ------------------------------------------------------------------ mapping

    def _page(self, results: list[JSON], *, incremental: bool, keep: Callable[[JSON], bool] | None = None) -> Page:
        kept = [r for r in results if keep is None or keep(r)]
        page = Page(records=[], state=None)
        if kept:
            self._mapper.prepare(kept)
        for payload in kept:
            try:
                page.records.extend(self._mapper.records(payload, incremental=incremental))
            except SkippableRecordError as exc:
                page.skipped += 1
                if len(page.errors) < MAX_ERRORS_PER_PAGE:
                    page.errors.append(f"{self.name}: {exc}")
        return page


def _resume(after: str | None) -> BodyCursorPaginator:
    paginator = BodyCursorPaginator("paging.next.after", "after")
    paginator.set_state({"cursor": after} if after else {})
    return paginator


def _numeric_id(payload: JSON) -> int | None:
    try:
        return int(str(payload.get("id")))
    except ValueError:
        return None


def _archived_since(payload: JSON, since_ms: int) -> bool:
    try:
        at = parse_time(payload.get("archivedAt"))
    except ValueError:
        return True  # the mapper reports what it can
    return at is None or epoch_ms(at) >= since_ms


class HubSpotSource:
    """A configured HubSpot source (one account): the contacts and deals streams.

    Args:
        config: the validated entry.
        name: the entry's name.
        ctx: the build context (secrets, the in-process transport, the account's shared pacer).
        retry: the retry policy (tests pass a fast one).
        clock: the current time, for the incremental windows (tests pass a fake one).
    """

    def __init__(
        self,
        config: HubSpotSourceConfig,
        name: str,
        ctx: BuildContext,
        *,
        retry: RetryPolicy | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.name = name
        self.config = config
        self.client = HubSpotClient.build(
            config,
            ctx,
            base_url=config.base_url,
            retry=retry,
            daily_reserve=config.daily_reserve,
            clock=lambda: clock().timestamp(),
        )
        start = parse_time(config.start_date) if config.start_date else None
        self._streams: list[ObjectStream] = []
        for spec in STREAMS:
            if spec.name not in config.streams:
                continue
            mapper: Mapper = (
                ContactMapper(self.client, spec, config.properties, config.all_custom_properties)
                if spec.name == CONTACTS
                else DealMapper(self.client, spec, config.currency)
            )
            self._streams.append(
                ObjectStream(
                    spec,
                    self.client,
                    mapper,
                    lookback=config.lookback_delta(),
                    detect_deleted=config.detect_deleted,
                    start=start,
                    clock=clock,
                )
            )

    def streams(self) -> list[ObjectStream]:
        """The configured streams, contacts before deals (deals link to contacts)."""
        return list(self._streams)

    def check(self) -> None:
        """Read one record of each stream (and the deal pipelines): ConfigError names a missing scope."""
        for stream in self._streams:
            self.client.check(stream.spec.object_type)
            if stream.name == DEALS:
                self.client.pipelines(DEALS)

    def close(self) -> None:
        """Close the HTTP client."""
        self.client.close()


__all__ = ["Checkpoint", "ContactMapper", "DealMapper", "HubSpotSource", "ObjectStream"]
