"""End-to-end syncs into a real store (SQLite, and PostgreSQL when configured) through ``hub.sync.sync_source``
against the emulator: full, incremental, crash and resume, changes during a sync, concurrency, faults."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.mailchimp.emulator import Latency
from connectors.mailchimp.ids import member_key
from connectors.mailchimp.paging import parse_time
from hub.contracts import Consent
from hub.sandbox.business import Business
from hub.store import Store
from hub.store import models as m
from hub.sync import sync_source

from .support import Rig, make_sandbox

MEMBERS = "GET /lists/{list_id}/members"
ACTIVITY = "GET /reports/{campaign_id}/email-activity"
UNSUBSCRIBED = "GET /reports/{campaign_id}/unsubscribed"


class Crash(Exception):
    """Stands in for a kill between two committed pages."""


def crash_after(pages: int, stream: str = "members") -> Callable[[str, Any, Any], None]:
    seen = [0]

    def progress(name: str, page: Any, stats: Any) -> None:
        if name == stream:
            seen[0] += 1
            if seen[0] == pages:
                raise Crash(f"killed after page {pages}")

    return progress


def stored(store: Store, object_type: str) -> dict[str, dict[str, Any]]:
    """Raw records of one type by external id: payload and deleted flag."""
    r = m.raw_record
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(r.c.external_id, r.c.payload, r.c.deleted).where(r.c.object_type == object_type)
        ).all()
    return {str(e): {"payload": p, "deleted": bool(d)} for e, p, d in rows}


def activities(store: Store) -> dict[str, int]:
    a = m.activity
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(a.c.type, sa.func.count()).group_by(a.c.type)).all()
    return {str(t): int(n) for t, n in rows}


def expected_activities(rig: Rig) -> dict[str, int]:
    """What the emulator's reports hold: opens, clicks and bounces per recipient, and unsubscribes."""
    data = rig.emulator.data
    counts = {"email_open": 0, "email_click": 0, "email_bounce": 0, "email_unsubscribe": 0}
    for campaign in data.campaigns:
        report = data.report(campaign)
        for events in report.events.values():
            for _at, action, _detail in events:
                counts[f"email_{action}"] += 1
        counts["email_unsubscribe"] += len(report.unsubscribes)
    return {k: v for k, v in counts.items() if v}


def member_keys(rig: Rig, *, archived: bool | None = None) -> set[str]:
    return {
        member_key(rig.list_id, mid)
        for mid, member in rig.emulator.data.members.items()
        if archived is None or (member.status == "archived") == archived
    }


# ----------------------------------------------------------------------------------------------- full sync


def test_a_full_sync_pulls_every_member_and_all_engagement(store: Store, rig: Rig) -> None:
    result = sync_source(store, rig.source(), "mailchimp")
    assert result.status == "ok" and not result.errors
    members = stored(store, "member")
    assert set(members) == member_keys(rig)
    assert activities(store) == expected_activities(rig)
    live = len(member_keys(rig, archived=False))
    endpoints = rig.sandbox.stats()["endpoints"]
    campaigns = len(rig.emulator.data.campaigns)
    # One members page (the audience fits in 1000), one for archived members, one count probe for slicing.
    assert endpoints[MEMBERS] == math.ceil(live / 1000) + 1 + 1
    assert endpoints[ACTIVITY] == campaigns and endpoints[UNSUBSCRIBED] == campaigns
    assert rig.sandbox.stats()["rate_limited"] == 0


def test_member_fields_land_on_the_person(store: Store, rig: Rig) -> None:
    sync_source(store, rig.source(), "mailchimp")
    data = rig.emulator.data
    member = next(x for x in data.members.values() if x.status == "unsubscribed")
    with store.engine.connect() as conn:
        identity = (
            conn.execute(sa.select(m.identity).where(m.identity.c.external_id == member_key(rig.list_id, member.id)))
            .mappings()
            .one()
        )
    assert identity["consent"] == Consent.DENIED.value
    assert (identity["first_name"], identity["last_name"]) == (member.first_name, member.last_name)
    props = identity["properties"]
    assert props["email_status"] == "unsubscribed"
    assert props["member_rating"] == member.member_rating
    assert props["avg_open_rate"] == member.avg_open_rate and props["avg_click_rate"] == member.avg_click_rate
    assert props["country"] == member.country and props["city"] == member.city
    assert props["tags"] == sorted(s.name for s in data.tags_of(member.id))
    assert props["opted_in_at"] == parse_time(data.member_payload(member)["timestamp_opt"]).isoformat()  # type: ignore[union-attr]


def test_opens_are_linked_to_the_member_who_opened(store: Store, rig: Rig) -> None:
    sync_source(store, rig.source(), "mailchimp")
    a, i = m.activity, m.identity
    with store.engine.connect() as conn:
        unlinked = conn.execute(sa.select(sa.func.count()).where(a.c.person_id.is_(None))).scalar_one()
        pairs = conn.execute(
            sa.select(i.c.external_id, sa.func.count())
            .select_from(a.join(i, i.c.person_id == a.c.person_id))
            .where(a.c.type == "email_open", i.c.source == "mc")
            .group_by(i.c.external_id)
        ).all()
    assert unlinked == 0
    data = rig.emulator.data
    opens: dict[str, int] = {}
    for campaign in data.campaigns:
        for mid, events in data.report(campaign).events.items():
            opens[member_key(rig.list_id, mid)] = opens.get(member_key(rig.list_id, mid), 0) + sum(
                e[1] == "open" for e in events
            )
    assert {k: n for k, n in pairs} == {k: n for k, n in opens.items() if n}


# ----------------------------------------------------------------------------------------------- incremental


def test_an_incremental_sync_reads_only_what_changed(store: Store, rig: Rig) -> None:
    sync_source(store, rig.source(), "mailchimp")
    full_calls = rig.calls()
    before = {mid: x.last_changed for mid, x in rig.emulator.data.members.items()}
    newest = max(before.values())
    counts = rig.sandbox.mutate(0.05, 0.01, seed=2)
    rig.sandbox.reset_stats()
    result = sync_source(store, rig.source(), "mailchimp")
    changed = {member_key(rig.list_id, mid) for mid, x in rig.emulator.data.members.items() if x.last_changed > newest}
    assert len(changed) == counts["members_changed"] + counts["members_archived"]
    read = result.as_dict()["streams"]["members"]["records"]
    # The changed members, and those re-read by the one-hour lookback (members changed in the last hour).
    lookback = sum(1 for t in before.values() if t >= newest - 3600)
    assert len(changed) <= read <= len(changed) + lookback
    members = stored(store, "member")
    for key in changed:
        mid = key.split(":")[1]
        assert (
            members[key]["payload"]["last_changed"]
            == rig.emulator.data.member_payload(rig.emulator.data.members[mid])["last_changed"]
        )
        assert members[key]["deleted"] == (rig.emulator.data.members[mid].status == "archived")
    assert activities(store) == expected_activities(rig)
    assert rig.calls() <= 0.2 * full_calls


def test_a_repeated_incremental_sync_changes_nothing(store: Store, rig: Rig) -> None:
    sync_source(store, rig.source(), "mailchimp")
    again = sync_source(store, rig.source(), "mailchimp").as_dict()["streams"]
    assert again["members"]["records_new"] == again["members"]["records_changed"] == 0
    assert again["email_activity"]["records_new"] == again["email_activity"]["records_changed"] == 0


# ----------------------------------------------------------------------------------------------- crash and resume


@pytest.mark.parametrize("connections", [1, 4])
def test_a_crash_resumes_after_the_last_committed_page(store: Store, rig: Rig, connections: int) -> None:
    entry = {"page_size": 20, "connections": connections, "streams": ["members"]}
    with pytest.raises(Crash):
        sync_source(store, rig.source(**entry), "mailchimp", progress=crash_after(4))
    partial = stored(store, "member")
    assert 0 < len(partial) < len(member_keys(rig))
    state = store.get_state("mc", "members")
    assert state is not None and "slices" in state["lists"][rig.list_id]["members"]
    rig.sandbox.reset_stats()
    sync_source(store, rig.source(**entry), "mailchimp")
    assert set(stored(store, "member")) == member_keys(rig)
    live = len(member_keys(rig, archived=False))
    # The resumed run reads what was left, not the audience again.
    assert rig.calls(MEMBERS) <= math.ceil((live - len(partial)) / 20) + 2 * connections + 2
    assert "cursor" in store.get_state("mc", "members")["lists"][rig.list_id]["members"]  # type: ignore[index]


def test_members_changed_during_a_sync_are_not_skipped(store: Store, rig: Rig) -> None:
    # A bulk change between two pages moves members behind the cursor; plain offset paging would lose the
    # member at the next page boundary, and the next incremental run would miss it too.
    def change_midway(name: str, page: Any, stats: Any) -> None:
        change_midway.pages += 1  # type: ignore[attr-defined]
        if name == "members" and change_midway.pages in (2, 5):  # type: ignore[attr-defined]
            rig.sandbox.mutate(0.1, 0.0, seed=change_midway.pages)  # type: ignore[attr-defined]

    change_midway.pages = 0  # type: ignore[attr-defined]
    entry = {"page_size": 25, "connections": 1, "streams": ["members"]}
    sync_source(store, rig.source(**entry), "mailchimp", progress=change_midway)
    sync_source(store, rig.source(**entry), "mailchimp")
    members = stored(store, "member")
    assert set(members) == member_keys(rig)
    data = rig.emulator.data
    for mid, member in data.members.items():
        assert (
            members[member_key(rig.list_id, mid)]["payload"]["last_changed"]
            == data.member_payload(member)["last_changed"]
        )


def test_email_activity_resumes_per_campaign_without_losing_opens(store: Store, rig: Rig) -> None:
    entry = {"page_size": 10, "connections": 3, "streams": ["email_activity"]}
    with pytest.raises(Crash):
        sync_source(store, rig.source(**entry), "mailchimp", progress=crash_after(30, "email_activity"))
    sync_source(store, rig.source(**entry), "mailchimp")
    assert activities(store) == expected_activities(rig)


def test_new_opens_of_recent_campaigns_arrive_incrementally(store: Store, rig: Rig) -> None:
    sync_source(store, rig.source(streams=["email_activity"]), "mailchimp")
    counts = rig.sandbox.mutate(0.2, 0.0, seed=4)
    assert counts["opens_added"] > 0
    rig.sandbox.reset_stats()
    sync_source(store, rig.source(streams=["email_activity"]), "mailchimp")
    assert activities(store) == expected_activities(rig)
    # Only the campaigns of the activity window are read again.
    assert rig.calls(ACTIVITY) < len(rig.emulator.data.campaigns) / 4


# ----------------------------------------------------------------------------------------------- concurrency


def test_a_first_sync_uses_up_to_ten_connections_and_never_more(store: Store, business: Business) -> None:
    sandbox = make_sandbox(business, latency=Latency(base_s=0.01))
    rig = Rig.around(sandbox)
    try:
        sync_source(store, rig.source(page_size=10), "mailchimp")
    finally:
        rig.close()
    stats = sandbox.stats()
    assert 5 <= stats["max_in_flight"] <= 10
    assert stats["rate_limited"] == 0
    assert set(stored(store, "member")) == member_keys(rig)


def test_one_connection_means_one_request_at_a_time(store: Store, business: Business) -> None:
    sandbox = make_sandbox(business, latency=Latency(base_s=0.002))
    rig = Rig.around(sandbox)
    try:
        sync_source(store, rig.source(page_size=50, connections=1), "mailchimp")
    finally:
        rig.close()
    assert sandbox.stats()["max_in_flight"] == 1


# ----------------------------------------------------------------------------------------------- faults


def test_429s_and_5xx_are_retried_and_the_sync_completes(store: Store, rig: Rig, fast_retry: list[float]) -> None:
    rig.sandbox.inject({"kind": "429", "path": f"/3.0/lists/{rig.list_id}/members", "count": 2, "retry_after": None})
    rig.sandbox.inject({"kind": "5xx", "status": 503, "path": "/3.0/reports/", "count": 2})
    result = sync_source(store, rig.source(), "mailchimp")
    assert result.status == "ok"
    assert set(stored(store, "member")) == member_keys(rig)
    assert activities(store) == expected_activities(rig)
    assert len(fast_retry) == 4


def test_a_bad_member_payload_is_skipped_and_counted(store: Store, rig: Rig) -> None:
    data = rig.emulator.data
    victim = sorted(data.members)[3]
    original = data.member_payload

    def broken(member: Any) -> dict[str, Any]:
        payload = original(member)
        if member.id == victim:
            payload["email_address"] = ""
        return payload

    data.member_payload = broken  # type: ignore[method-assign]
    result = sync_source(store, rig.source(streams=["members"]), "mailchimp")
    assert result.status == "ok_with_skips" and result.counts["skipped"] == 1
    assert victim in result.errors[0]
    assert set(stored(store, "member")) == member_keys(rig) - {member_key(rig.list_id, victim)}
