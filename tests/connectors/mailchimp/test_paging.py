"""Keyset paging by last_changed: no member skipped or repeated, across ties, crashes and concurrent changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.mailchimp.paging import LastChangedPaginator, UnsortedPageError, format_time, parse_time
from hub.errors import PaginationLoopError
from hub.http import NO_RETRY, make_client, paginate

T0 = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class FakeAudience:
    """A members endpoint with Mailchimp's filters: since/before (strict or inclusive), sorted, offset paged.

    ``on_request`` runs before each answer, so a test can change members between two pages.
    """

    changed: dict[str, int] = field(default_factory=dict)  # id -> seconds after T0
    inclusive: bool = False
    on_request: Callable[[int], None] | None = None
    requests: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.on_request is not None:
            self.on_request(self.requests)
        self.requests += 1
        q = request.url.params
        since = _seconds(q.get("since_last_changed"))
        before = _seconds(q.get("before_last_changed"))
        order = {k: i for i, k in enumerate(self.changed)}
        rows = sorted(self.changed.items(), key=lambda kv: (kv[1], order[kv[0]]))
        if since is not None:
            rows = [r for r in rows if r[1] >= since] if self.inclusive else [r for r in rows if r[1] > since]
        if before is not None:
            rows = [r for r in rows if r[1] < before]
        offset, count = int(q.get("offset", 0)), int(q.get("count", 10))
        page = rows[offset : offset + count]
        members = [{"id": k, "last_changed": format_time(T0 + timedelta(seconds=v))} for k, v in page]
        return httpx.Response(200, json={"members": members, "total_items": len(rows)})

    def touch(self, member_id: str) -> None:
        """Change a member now: it moves to the end of the order."""
        self.changed[member_id] = max(self.changed.values(), default=0) + 1


def _seconds(value: str | None) -> int | None:
    parsed = parse_time(value)
    return None if parsed is None else int((parsed - T0).total_seconds())


def drain(audience: FakeAudience, page_size: int, *, crash_every: int | None = None, **bounds: Any) -> list[str]:
    """Every id the paginator emits, restarting from the saved state every ``crash_every`` pages."""
    client = make_client("https://us21.api.mailchimp.com/3.0", transport=httpx.MockTransport(audience),
                         retry=NO_RETRY)  # fmt: skip
    pager = LastChangedPaginator(page_size, **bounds)
    emitted: list[str] = []
    pages = 0
    while pager.has_next:
        for _response in paginate(client, "GET", "/lists/x/members", pager):
            emitted.extend(m["id"] for m in pager.kept)
            pages += 1
            assert pages < 10_000, "paging does not end"
            if crash_every and pages % crash_every == 0:
                state = pager.get_state()
                pager = LastChangedPaginator(page_size)
                pager.set_state(state)  # a new process resuming from the committed state
                break
    return emitted


def audience_of(stamps: list[int], **options: Any) -> FakeAudience:
    return FakeAudience({f"m{i:04d}": s for i, s in enumerate(stamps)}, **options)


def test_pages_follow_the_cursor_and_end() -> None:
    audience = audience_of([1, 2, 3, 4, 5, 6, 7])
    assert drain(audience, 3) == [f"m{i:04d}" for i in range(7)]


def test_a_tie_group_larger_than_a_page_is_read_once() -> None:
    stamps = [1] + [5] * 23 + [9, 9, 10]
    for inclusive in (False, True):
        emitted = drain(audience_of(stamps, inclusive=inclusive), 4)
        assert sorted(emitted) == [f"m{i:04d}" for i in range(len(stamps))]
        assert len(emitted) == len(set(emitted))


def test_resuming_from_state_neither_skips_nor_repeats() -> None:
    stamps = [1, 1, 2, 3, 3, 3, 4, 5, 5, 6, 7, 7, 7, 7, 8]
    emitted = drain(audience_of(stamps), 2, crash_every=1)
    assert emitted == [f"m{i:04d}" for i in range(len(stamps))]


def test_a_member_changed_mid_sync_does_not_push_another_one_out() -> None:
    # Plain offset paging loses the member at the next page boundary when an earlier one moves to the end.
    audience = audience_of(list(range(1, 21)))
    audience.on_request = lambda n: audience.touch("m0001") if n == 2 else None
    emitted = drain(audience, 5)
    assert set(emitted) == set(audience.changed)
    assert emitted.count("m0001") == 2  # seen before its change and after


def test_a_member_leaving_a_large_tie_group_does_not_hide_the_next_one() -> None:
    # Twelve members imported in the same second, read three at a time by offset within that second; the
    # first of them changes after the group's first page: everyone behind it shifts back by one.
    audience = audience_of([5] * 12)
    audience.on_request = lambda n: audience.touch("m0000") if n == 3 else None
    emitted = drain(audience, 3)
    assert set(emitted) == set(audience.changed)
    assert emitted.count("m0000") == 2  # read before its change and after
    assert sorted(m for m in emitted if m != "m0000") == sorted(set(audience.changed) - {"m0000"})


def test_slices_partition_the_audience() -> None:
    audience = audience_of([1, 2, 2, 3, 4, 4, 4, 5, 6, 7])
    lo, mid = T0 + timedelta(seconds=1), T0 + timedelta(seconds=4)
    first = drain(audience, 2, hi=mid)
    second = drain(audience, 2, lo=mid)
    assert sorted(first + second) == sorted(audience.changed)
    assert not set(first) & set(second)
    assert drain(audience, 2, lo=lo, hi=lo + timedelta(seconds=1)) == ["m0000"]


def test_unsorted_answers_stop_the_sync() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        members = [{"id": "b", "last_changed": "2026-01-02T00:00:00+00:00"},
                   {"id": "a", "last_changed": "2026-01-01T00:00:00+00:00"}]  # fmt: skip
        return httpx.Response(200, json={"members": members, "total_items": 2})

    client = make_client("https://x", transport=httpx.MockTransport(handler), retry=NO_RETRY)
    with pytest.raises(UnsortedPageError):
        list(paginate(client, "GET", "/lists/x/members", LastChangedPaginator(10)))


def test_a_server_ignoring_the_parameters_is_a_loop() -> None:
    members = [{"id": f"m{i}", "last_changed": "2026-01-01T00:00:00+00:00"} for i in range(3)]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"members": members})

    client = make_client("https://x", transport=httpx.MockTransport(handler), retry=NO_RETRY)
    with pytest.raises(PaginationLoopError):
        list(paginate(client, "GET", "/lists/x/members", LastChangedPaginator(3)))


def test_members_without_a_time_are_set_aside() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        members = [{"id": "a", "last_changed": "2026-01-01T00:00:00+00:00"}, {"id": "b", "last_changed": ""}, {}]
        return httpx.Response(200, json={"members": members, "total_items": 3})

    client = make_client("https://x", transport=httpx.MockTransport(handler), retry=NO_RETRY)
    pager = LastChangedPaginator(10)
    list(paginate(client, "GET", "/lists/x/members", pager))
    assert [m["id"] for m in pager.kept] == ["a"] and len(pager.malformed) == 2


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stamps=st.lists(st.integers(0, 6), min_size=0, max_size=40),
    page_size=st.integers(1, 6),
    crash_every=st.one_of(st.none(), st.integers(1, 4)),
    inclusive=st.booleans(),
)
def test_every_member_is_read_exactly_once(
    stamps: list[int], page_size: int, crash_every: int | None, inclusive: bool
) -> None:
    emitted = drain(audience_of(stamps, inclusive=inclusive), page_size, crash_every=crash_every)
    assert sorted(emitted) == sorted(f"m{i:04d}" for i in range(len(stamps)))


def test_a_member_leaving_the_second_before_a_short_page_hides_no_one() -> None:
    """Three members in one second, pages of two: the first leaves the second (it changes) just before the
    offset-2 read, so that read comes back empty although the third member moved up to offset 1."""
    audience = audience_of([0, 0, 0])
    audience.on_request = lambda n: audience.touch("m0000") if n == 3 else None
    emitted = drain(audience, 2)
    assert set(emitted) == {"m0000", "m0001", "m0002"}
    assert emitted.count("m0002") == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    stamps=st.lists(st.integers(0, 6), min_size=1, max_size=30),
    page_size=st.integers(2, 6),
    touches=st.lists(st.tuples(st.integers(0, 8), st.integers(0, 29)), max_size=6),
    crash_every=st.one_of(st.none(), st.integers(1, 3)),
)
def test_concurrent_changes_never_hide_a_member(
    stamps: list[int], page_size: int, touches: list[tuple[int, int]], crash_every: int | None
) -> None:
    audience = audience_of(stamps)
    ids = list(audience.changed)
    plan: dict[int, list[str]] = {}
    for when, which in touches:
        plan.setdefault(when, []).append(ids[which % len(ids)])
    final: dict[str, int] = {}

    def change(n: int) -> None:
        for member_id in plan.get(n, []):
            audience.touch(member_id)

    audience.on_request = change
    emitted = drain(audience, page_size, crash_every=crash_every)
    final = dict(audience.changed)
    # Each member's last version is read: nothing ends behind the cursor unseen.
    assert set(emitted) == set(final)
    untouched = [m for m in ids if all(m not in v for v in plan.values())]
    assert all(emitted.count(m) == 1 for m in untouched)
