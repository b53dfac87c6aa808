"""Keyset paging over an audience sorted by ``last_changed``, resumable after a crash without skipping anyone.

Plain offset paging over ``?since_last_changed=S&sort_field=last_changed`` is what the anchors do, and it can
skip members: a member changed mid-sync moves to the end of the order, everyone behind it shifts back by one,
and the member at the next page boundary is never seen (its ``last_changed`` is older than the final bookmark,
so the next run misses it too). Advancing a bookmark per page without sorting (the Singer tap) is worse.

:class:`LastChangedPaginator` is a :class:`hub.http.Paginator` strategy (driven by :func:`hub.http.paginate`)
that restarts every page from the last member it emitted instead of from an offset:

- ``keyset`` mode asks for ``since_last_changed = at - 1 s`` (timestamps have second resolution, and whether
  "since" includes its own second does not matter then), sorted ascending, from offset 0. Of a page it keeps
  the members after ``at``, and those at ``at`` not seen yet (their ids are in the state): a member is emitted
  once, and a member that moves behind the cursor is simply met again later.
- When a full page holds nothing past ``at``, more than a page of members changed in that same second (a bulk
  import). ``tie`` mode then reads exactly that second (``before_last_changed = at + 1 s``) by offset. A member
  of the group that changes meanwhile leaves the window, which ``total_items`` shows: the offset steps back by
  as many, so nobody slides past it unseen (those who left are read again later, at their new time).
- Once the second is read, ``after`` mode asks for members after it (``since_last_changed = at``); should the
  server count ``since`` inclusively, the group comes first and is stepped over by offset.
- A slice may be bounded (``lo <= last_changed < hi``): a first sync splits an audience into slices that run in
  parallel; the bounds are checked on our side, whatever the server does with ``before_last_changed``.

The state after each page (``lo``, ``hi``, ``at``, ``ids``, ``mode``, ``skip``, ``tie_total``, ``done``) is
stored with the page and resumes exactly there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import httpx

from hub.errors import HubError, PaginationLoopError, TransientError
from hub.http import PageRequest

from . import settings


class UnsortedPageError(HubError):
    """Mailchimp returned members out of ``last_changed`` order: a keyset cursor could skip some, so stop."""


def parse_time(value: object) -> datetime | None:
    """A Mailchimp timestamp (``2026-10-05T09:13:22+00:00``) as aware UTC; None for ``""`` or garbage."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def format_time(value: datetime) -> str:
    """A timestamp the way Mailchimp writes and reads them."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _opt_time(state: Mapping[str, Any], key: str) -> datetime | None:
    return parse_time(state.get(key))


class LastChangedPaginator:
    """Keyset paging of one audience listing (or one slice of it) by ``last_changed``.

    Args:
        page_size: members per request (``count``, at most 1000).
        lo: the slice's first ``last_changed`` (inclusive), or None.
        hi: the slice's end (exclusive), or None for an open end.
        at: start after this ``last_changed`` (an earlier run's cursor), or None.
        seen: ids already emitted at ``at``.
    """

    def __init__(
        self,
        page_size: int,
        *,
        lo: datetime | None = None,
        hi: datetime | None = None,
        at: datetime | None = None,
        seen: frozenset[str] = frozenset(),
    ) -> None:
        if not 0 < page_size <= settings.PAGE_SIZE:
            raise ValueError(f"page_size must be within 1..{settings.PAGE_SIZE}")
        self.page_size = page_size
        self._lo, self._hi, self._at = lo, hi, at
        self._ids: set[str] = set(seen)
        self._mode = "keyset"
        self._skip = 0
        self._tie_total: int | None = None
        self._done = False
        self._last: tuple[str, str, int] | None = None
        self.kept: list[dict[str, Any]] = []
        self.malformed: list[dict[str, Any]] = []

    @property
    def has_next(self) -> bool:
        return not self._done

    @property
    def at(self) -> datetime | None:
        """The ``last_changed`` of the newest member emitted so far."""
        return self._at

    def prepare(self, request: PageRequest) -> PageRequest:
        params: dict[str, Any] = {**request.params, "count": self.page_size, "sort_field": "last_changed",
                                  "sort_dir": "ASC", "offset": 0 if self._mode == "keyset" else self._skip}  # fmt: skip
        since, before = self._window()
        if since is not None:
            params["since_last_changed"] = format_time(since)
        if before is not None:
            params["before_last_changed"] = format_time(before)
        return replace(request, params=params)

    def update(self, response: httpx.Response) -> None:
        members = _members(response)
        self.kept, self.malformed = [], []
        before = self._at
        previous: datetime | None = None
        for member in members:
            changed = parse_time(member.get("last_changed"))
            member_id = member.get("id")
            if changed is None or not isinstance(member_id, str) or not member_id:
                self.malformed.append(member)
                continue
            if previous is not None and changed < previous:
                raise UnsortedPageError(
                    f"{_where(response)}: members are not sorted by last_changed ({format_time(changed)} after "
                    f"{format_time(previous)}); stopping rather than risk skipping members"
                )
            previous = changed
            if self._is_new(changed, member_id):
                self.kept.append(member)
                self._advance(changed, member_id)
        self._check_loop(response, members)
        total = response.json().get("total_items")
        total = total if isinstance(total, int) else None
        full = len(members) >= self.page_size
        if self._at != before:
            self._mode, self._skip, self._tie_total = "keyset", 0, None
            self._done = not full
        elif self._mode == "tie":
            self._next_in_second(len(members), full, total)
        elif not full:
            self._done = True
        elif self._mode == "keyset":
            self._mode, self._skip, self._tie_total = "tie", 0, None  # more than a page in one second
        else:
            self._skip += len(members)  # "since" counted inclusively: step over the finished second

    def get_state(self) -> dict[str, Any]:
        return {
            "lo": _fmt(self._lo),
            "hi": _fmt(self._hi),
            "at": _fmt(self._at),
            "ids": sorted(self._ids),
            "mode": self._mode,
            "skip": self._skip,
            "tie_total": self._tie_total,
            "done": self._done,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        self._lo, self._hi, self._at = _opt_time(state, "lo"), _opt_time(state, "hi"), _opt_time(state, "at")
        ids = state.get("ids")
        self._ids = {str(i) for i in ids} if isinstance(ids, list) else set()
        mode = state.get("mode")
        self._mode = mode if mode in ("keyset", "tie", "after") else "keyset"
        self._skip = int(state.get("skip") or 0)
        tie_total = state.get("tie_total")
        self._tie_total = tie_total if isinstance(tie_total, int) else None
        self._done = bool(state.get("done", False))
        self._last = None

    def _window(self) -> tuple[datetime | None, datetime | None]:
        """``since_last_changed`` and ``before_last_changed`` of the next request."""
        if self._mode == "keyset" or self._at is None:
            start = self._at if self._at is not None else self._lo
            return (start - settings.TIE_OVERLAP if start is not None else None), self._hi
        if self._mode == "tie":
            end = self._at + settings.TIE_OVERLAP
            return self._at - settings.TIE_OVERLAP, min(end, self._hi) if self._hi is not None else end
        return self._at, self._hi

    def _next_in_second(self, received: int, full: bool, total: int | None) -> None:
        """Move on within the second being read by offset, stepping back if members left it meanwhile."""
        left = self._tie_total - total if total is not None and self._tie_total is not None else 0
        shrank = left > 0
        if shrank:
            self._skip = max(0, self._skip - left)
        else:
            self._skip += received
        self._tie_total = total
        # A short page after members left the second says nothing about the end: the ones behind them moved
        # up past the offset just asked for, so the stepped-back offset is read before the second is done.
        if (not full and not shrank) or (total is not None and self._skip >= total):
            self._mode, self._skip, self._tie_total = "after", 0, None

    def _is_new(self, changed: datetime, member_id: str) -> bool:
        if self._at is not None and (changed < self._at or (changed == self._at and member_id in self._ids)):
            return False
        if self._lo is not None and changed < self._lo:
            return False
        return self._hi is None or changed < self._hi

    def _advance(self, changed: datetime, member_id: str) -> None:
        if self._at is None or changed > self._at:
            self._at, self._ids = changed, {member_id}
        else:
            self._ids.add(member_id)

    def _check_loop(self, response: httpx.Response, members: list[dict[str, Any]]) -> None:
        # A page may legitimately come twice (a second re-read from its start), but the same full page with
        # nothing new for the same window at another offset means the server ignores the offset.
        if len(members) < self.page_size:
            return
        params = response.request.url.params
        window = f"{params.get('since_last_changed')}|{params.get('before_last_changed')}"
        offset = int(params.get("offset", "0"))
        digest = hashlib.sha256("|".join(str(m.get("id")) for m in members).encode()).hexdigest()
        last = self._last
        if last is not None and last[0] == digest and last[1] == window and last[2] != offset and not self.kept:
            raise PaginationLoopError(f"{_where(response)}: the server repeated the same page of members")
        self._last = (digest, window, offset)


def _members(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError as exc:
        raise TransientError(f"{_where(response)}: the page body is not valid JSON") from exc
    members = body.get("members") if isinstance(body, dict) else None
    if not isinstance(members, list):
        raise TransientError(f"{_where(response)}: the page has no members list")
    return [m if isinstance(m, dict) else {} for m in members]


def _where(response: httpx.Response) -> str:
    return f"{response.request.method} {response.request.url.path}"


def _fmt(value: datetime | None) -> str | None:
    return format_time(value) if value is not None else None
