"""The Mailchimp source: audience members and email engagement, incremental and resumable per page.

``members`` state, per audience and per kind (``members``; ``archived``, Mailchimp's deleted members, which
the default listing leaves out)::

    {"lists": {"a1b2c3d4e5": {"members": {"cursor": {"at": "2026-11-01T08:00:00+00:00", "ids": ["..."]}},
                              "archived": {"slices": [{"lo": null, "hi": null, "at": ..., "ids": [...],
                                                       "skip": 0, "done": false}], "prev": null}}}}

A finished sync leaves a ``cursor`` (the newest ``last_changed`` seen and the ids at that second); a sync in
progress holds ``slices`` (see :mod:`.paging`). A first sync of a large audience is split into up to
``connections`` slices by ``last_changed`` that are read in parallel.

``email_activity`` state::

    {"newest_send": "2026-10-20T09:00:00+00:00",
     "campaigns": {"c0ffee1234": {"send_time": ..., "cursor": "2026-10-22T17:03:11+00:00",
                                  "pass": {"phase": "activity", "since": ..., "offset": 2000,
                                           "max_at": ..., "started": ...}}}}

Each run lists the campaigns sent within ``activity_window`` of the newest send (every campaign on the first
run), and reads each one's email activity since its cursor, then its unsubscribes; campaigns run in parallel.
``newest_send`` moves only with the run's last page, once every listed campaign is read: a run that stops
half-way lists the same campaigns again and resumes each one where its ``pass`` stopped.
A campaign's new cursor is the newest activity seen, capped at the server time when its pass started, so
activity recorded during the pass is read again next time rather than lost.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import httpx

from hub.contracts import Page, Record, Stream
from hub.errors import SkippableRecordError
from hub.http import OffsetPaginator

from . import settings
from .client import MailchimpClient, server_time
from .config import MailchimpSourceConfig
from .mapping import CampaignInfo, activity_record, member_record, unsubscribe_record
from .paging import LastChangedPaginator, format_time, parse_time
from .parallel import Chain, run_chains

logger = logging.getLogger(__name__)

MEMBER_KINDS = ("members", "archived")


@dataclass
class _Step:
    """One page of one chain: its records, what was skipped, and the chain's position after it."""

    records: list[Record]
    position: dict[str, Any]
    skipped: int = 0
    errors: list[str] = field(default_factory=list)


class _Audiences:
    """The audience ids to pull: the configured ones, else every audience of the account (asked once)."""

    def __init__(self, client: MailchimpClient, configured: Sequence[str]) -> None:
        self._client = client
        self._configured = list(configured)
        self._lock = threading.Lock()
        self._found: list[str] | None = None

    def ids(self) -> list[str]:
        with self._lock:
            if self._configured:
                return list(self._configured)
            if self._found is None:
                self._found = sorted(str(a["id"]) for a in self._client.audiences() if a.get("id"))
            return list(self._found)

    @property
    def configured(self) -> list[str]:
        return list(self._configured)


class MailchimpSource:
    """One Mailchimp account as a source.

    Args:
        config: the validated entry.
        name: the entry's name.
        client: the account's client.
    """

    def __init__(self, config: MailchimpSourceConfig, name: str, client: MailchimpClient) -> None:
        self.name = name
        self.config = config
        self.client = client
        self._audiences = _Audiences(client, config.list_ids)

    def streams(self) -> list[Stream]:
        """The configured streams, members first (activities then find their people)."""
        built: dict[str, Stream] = {
            settings.MEMBERS.name: MembersStream(self.config, self.client, self._audiences),
            settings.EMAIL_ACTIVITY.name: EmailActivityStream(self.config, self.client, self._audiences),
        }
        return [built[s.name] for s in settings.STREAMS if s.name in self.config.streams]

    def check(self) -> None:
        """Test the credentials and every configured audience (ConfigError on a bad key or a wrong id)."""
        self.client.ping()
        for list_id in self.config.list_ids:
            self.client.audience(list_id)

    def close(self) -> None:
        """Close the client."""
        self.client.close()


# ----------------------------------------------------------------------------------------------- members


class MembersStream:
    """Audience members by ``last_changed`` keyset, archived members as deleted records."""

    name = settings.MEMBERS.name

    def __init__(self, config: MailchimpSourceConfig, client: MailchimpClient, audiences: _Audiences) -> None:
        self.config = config
        self.client = client
        self.audiences = audiences

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield a page per request, each with the state that resumes right after it."""
        lists = self.audiences.ids()
        stored = {} if full or not isinstance(state, Mapping) else dict(state.get("lists") or {})
        progress = {
            list_id: {kind: self._plan(list_id, kind, _get(stored, list_id, kind)) for kind in MEMBER_KINDS}
            for list_id in lists
        }
        chains = [
            Chain((list_id, kind, index), self._pages(list_id, kind, slice_state))
            for list_id in lists
            for kind in MEMBER_KINDS
            for index, slice_state in enumerate(progress[list_id][kind]["slices"])
            if not slice_state.get("done")
        ]
        if not chains:
            yield Page([], _members_state(progress))
            return
        for key, step in run_chains(chains, self.config.connections):
            list_id, kind, index = cast(tuple[str, str, int], key)
            progress[list_id][kind]["slices"][index] = step.position
            yield Page(step.records, _members_state(progress), step.skipped, step.errors)

    def _plan(self, list_id: str, kind: str, stored: Mapping[str, Any]) -> dict[str, Any]:
        """The slices of (audience, kind) for this run: resumed, after a cursor, or a fresh split."""
        slices = stored.get("slices")
        if isinstance(slices, list) and slices:
            return {"slices": [dict(s) for s in slices], "prev": stored.get("prev")}
        cursor = stored.get("cursor")
        if isinstance(cursor, Mapping) and cursor.get("at"):
            at = parse_time(cursor["at"])
            lookback = self.config.lookback_delta
            start = LastChangedPaginator(
                self.config.page_size,
                at=at - lookback if at and lookback else at,
                seen=frozenset() if lookback else frozenset(cursor.get("ids") or ()),
            )
            return {"slices": [start.get_state()], "prev": dict(cursor)}
        lo = parse_time(self.config.start_date) if self.config.start_date else None
        bounds = self._split(list_id, lo) if kind == "members" else []
        edges: list[datetime | None] = [lo, *bounds, None]
        states = [
            LastChangedPaginator(self.config.page_size, lo=a, hi=b).get_state() for a, b in itertools.pairwise(edges)
        ]
        return {"slices": states, "prev": None}

    def _split(self, list_id: str, lo: datetime | None) -> list[datetime]:
        """``last_changed`` boundaries that cut a first sync into parallel slices of similar size."""
        if self.config.connections < 2:
            return []
        total = self.client.member_count(list_id)
        pages = -(-total // self.config.page_size)
        parts = min(self.config.connections, pages // settings.SLICE_MIN_PAGES)
        if parts < 2 or lo is not None:
            return []  # small audiences gain nothing; with a start date the counts do not apply
        offsets = [total * i // parts for i in range(1, parts)]
        probes = [Chain(offset, self._probe(list_id, offset)) for offset in offsets]
        found = {key: at for key, at in run_chains(probes, self.config.connections) if at is not None}
        bounds = sorted(set(found.values()))
        logger.info("mailchimp: audience %s: first sync in %d parallel slices", list_id, len(bounds) + 1)
        return bounds

    def _probe(self, list_id: str, offset: int) -> Iterator[datetime | None]:
        members = self.client.member_probe(list_id, offset).get("members") or []
        yield parse_time(members[0].get("last_changed")) if members and isinstance(members[0], dict) else None

    def _pages(self, list_id: str, kind: str, slice_state: Mapping[str, Any]) -> Iterator[_Step]:
        """One slice's pages (runs in a worker thread)."""
        pager = LastChangedPaginator(self.config.page_size)
        pager.set_state(slice_state)
        params: dict[str, Any] = {"fields": ",".join(settings.MEMBER_FIELDS)}
        if kind == "archived":
            params["status"] = "archived"
        for _response in self.client.pages(self.client.members_path(list_id), pager, **params):
            step = _Step([], pager.get_state())
            for member in pager.kept:
                _add(step, member_record, list_id, member)
            for member in pager.malformed:
                step.skipped += 1
                step.errors.append(f"audience {list_id}: member {member.get('id')!r} without a valid last_changed")
            yield step


def _get(stored: Mapping[str, Any], list_id: str, kind: str) -> Mapping[str, Any]:
    entry = stored.get(list_id)
    value = entry.get(kind) if isinstance(entry, Mapping) else None
    return value if isinstance(value, Mapping) else {}


def _members_state(progress: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """The stream state: finished (audience, kind) pairs collapse to a cursor."""
    out: dict[str, Any] = {}
    for list_id, kinds in progress.items():
        out[list_id] = {kind: _collapse(plan) for kind, plan in kinds.items()}
    return {"lists": out}


def _collapse(plan: Mapping[str, Any]) -> dict[str, Any]:
    slices: list[Mapping[str, Any]] = plan["slices"]
    if not all(s.get("done") for s in slices):
        return {"slices": [dict(s) for s in slices], "prev": plan.get("prev")}
    # The newest position over the slices, never behind the cursor the run started from.
    candidates = [s for s in (*slices, plan.get("prev") or {}) if s.get("at")]
    if not candidates:
        return {"cursor": {"at": None, "ids": []}}
    newest = max(parse_time(s["at"]) or datetime.min.replace(tzinfo=UTC) for s in candidates)
    ids = sorted({i for s in candidates if parse_time(s["at"]) == newest for i in s.get("ids") or ()})
    return {"cursor": {"at": format_time(newest), "ids": ids}}


# ----------------------------------------------------------------------------------------------- activity


class EmailActivityStream:
    """Opens, clicks and bounces (email activity reports) and unsubscribes, per campaign."""

    name = settings.EMAIL_ACTIVITY.name

    def __init__(self, config: MailchimpSourceConfig, client: MailchimpClient, audiences: _Audiences) -> None:
        self.config = config
        self.client = client
        self.audiences = audiences

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        """Yield a page per report request, each with the state that resumes right after it."""
        stored = {} if full or not isinstance(state, Mapping) else state
        known = stored.get("campaigns")
        known = known if isinstance(known, Mapping) else {}
        committed = parse_time(stored.get("newest_send"))
        campaigns, listing = self._campaigns(committed)
        newest = max([c.send_time for c in campaigns] + ([committed] if committed else []), default=None)
        positions: dict[str, dict[str, Any]] = {
            c.id: dict(known.get(c.id) or {"send_time": format_time(c.send_time), "cursor": None, "pass": None})
            for c in campaigns
        }

        def snapshot(finished: bool) -> dict[str, Any]:
            # The listing's watermark moves only once every campaign of this run is read: a run that stops
            # half-way lists the same campaigns again, so none that had not been started is left behind.
            mark = newest if finished else committed
            return {
                "newest_send": format_time(mark) if mark else None,
                "campaigns": {k: dict(v) for k, v in positions.items()},
            }

        first = True
        chains = [Chain(c.id, self._pages(c, positions[c.id])) for c in campaigns]
        for key, step in run_chains(chains, self.config.connections):
            positions[str(key)] = step.position
            if first:  # problems of the campaign listing travel with the first page
                step.skipped += listing.skipped
                step.errors[:0] = listing.errors
                first = False
            yield Page(step.records, snapshot(False), step.skipped, step.errors)
        if first:
            yield Page([], snapshot(True), listing.skipped, listing.errors)
        else:
            yield Page([], snapshot(True))

    def _campaigns(self, newest: datetime | None) -> tuple[list[CampaignInfo], _Step]:
        """The sent campaigns to read this run, and what was wrong with the listing."""
        since = newest - self.config.activity_window_delta if newest else parse_time(self.config.start_date)
        lists = set(self.audiences.configured)
        pager = OffsetPaginator(
            self.config.page_size, limit_param="count", records_path="campaigns", total_path="total_items"
        )
        found: list[CampaignInfo] = []
        problems = _Step([], {})
        params = {
            "status": "sent",
            "sort_field": "send_time",
            "sort_dir": "ASC",
            "since_send_time": format_time(since) if since else None,
            "fields": ",".join(settings.CAMPAIGN_FIELDS),
        }
        for response in self.client.pages(self.client.campaigns_path(), pager, **params):
            for payload in _items(response, "campaigns"):
                try:
                    campaign = CampaignInfo.from_payload(payload)
                except SkippableRecordError as exc:
                    problems.skipped += 1
                    problems.errors.append(str(exc))
                    continue
                if not lists or campaign.list_id in lists:
                    found.append(campaign)
        return found, problems

    def _pages(self, campaign: CampaignInfo, position: Mapping[str, Any]) -> Iterator[_Step]:
        """One campaign's report pages: email activity, then unsubscribes (runs in a worker thread)."""
        run = dict(position.get("pass") or self._new_pass(campaign, position))
        if run["phase"] == "activity":
            pager = OffsetPaginator(
                self.config.page_size,
                limit_param="count",
                records_path="emails",
                total_path="total_items",
                start=int(run["offset"]),
            )
            path = self.client.email_activity_path(campaign.id)
            fields = ",".join(settings.ACTIVITY_FIELDS)
            for response in self.client.pages(path, pager, since=run["since"], fields=fields):
                step = _Step([], {})
                run["started"] = run.get("started") or format_time(server_time(response) or datetime.now(UTC))
                for entry in _items(response, "emails"):
                    _add_activity(step, campaign, entry)
                latest = max((r.updated_at for r in step.records if r.updated_at), default=None)
                run["max_at"] = _later(run.get("max_at"), latest)
                run["offset"] = pager.offset
                if not pager.has_next:
                    run.update(phase="unsubscribes", offset=0)
                step.position = self._position(campaign, position, run)
                yield step
        pager = OffsetPaginator(
            self.config.page_size,
            limit_param="count",
            records_path="unsubscribes",
            total_path="total_items",
            start=int(run["offset"]),
        )
        fields = ",".join(settings.UNSUBSCRIBE_FIELDS)
        for response in self.client.pages(self.client.unsubscribed_path(campaign.id), pager, fields=fields):
            step = _Step([], {})
            for entry in _items(response, "unsubscribes"):
                _add(step, unsubscribe_record, campaign, entry)
            run["offset"] = pager.offset
            step.position = self._position(campaign, position, run, finished=not pager.has_next)
            yield step

    def _new_pass(self, campaign: CampaignInfo, position: Mapping[str, Any]) -> dict[str, Any]:
        cursor = parse_time(position.get("cursor"))
        since = (cursor - self.config.lookback_delta if cursor else campaign.send_time) - settings.TIE_OVERLAP
        return {"phase": "activity", "since": format_time(since), "offset": 0, "max_at": None, "started": None}

    @staticmethod
    def _position(
        campaign: CampaignInfo, position: Mapping[str, Any], run: Mapping[str, Any], *, finished: bool = False
    ) -> dict[str, Any]:
        out = {"send_time": format_time(campaign.send_time), "cursor": position.get("cursor"), "pass": dict(run)}
        if finished:
            floor = parse_time(position.get("cursor")) or campaign.send_time
            seen, started = parse_time(run.get("max_at")), parse_time(run.get("started"))
            candidate = min(seen, started) if seen and started else (seen or floor)
            out.update(cursor=format_time(max(floor, candidate)), **{"pass": None})
        return out


# ----------------------------------------------------------------------------------------------- helpers


def _add(step: _Step, build: Callable[..., Record], *args: Any) -> None:
    """Append ``build(*args)``'s record to the step, or count it as skipped."""
    try:
        step.records.append(build(*args))
    except SkippableRecordError as exc:
        step.skipped += 1
        step.errors.append(str(exc))


def _add_activity(step: _Step, campaign: CampaignInfo, entry: Mapping[str, Any]) -> None:
    """Append an email activity record; its left-out activity items count as skipped too."""
    try:
        record, problems = activity_record(campaign, entry)
    except SkippableRecordError as exc:
        step.skipped += 1
        step.errors.append(str(exc))
        return
    step.records.append(record)
    step.skipped += len(problems)
    step.errors.extend(problems)


def _items(response: httpx.Response, key: str) -> list[Mapping[str, Any]]:
    items = response.json().get(key)
    return [x for x in items if isinstance(x, Mapping)] if isinstance(items, list) else []


def _later(stored: object, latest: datetime | None) -> str | None:
    before = parse_time(stored)
    if latest is None:
        return format_time(before) if before else None
    return format_time(max(before, latest) if before else latest)
