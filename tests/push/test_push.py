"""The push engine against an in-memory destination: ownership, consent, partial failures, guards, dry runs,
reconciliation of a lost ledger, and the number of calls.

The fake destination keeps contacts with their tags and a subscription state, answers per record, splits work
into its batch limit and counts its calls, like the vendor sinks do.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.config.models import PushConfig
from hub.contracts import Consent, Outcome, Page, PersonData, Record, RemoteContact, TagChange, TagOp, TagResult
from hub.push.ledger import State
from hub.push.plan import Targeting
from hub.push.service import PushOptions, push_destination
from hub.store import Store
from hub.store import models as m

from ..support import set_members

PREFIX = "hub:"
LIMIT = 3


@dataclass
class FakeSink:
    """A destination: contacts by remote id with tags and a state; batches of LIMIT; per-record answers."""

    contacts: dict[str, RemoteContact]
    name: str = "dest"
    batch_limits: Mapping[str, int] = field(default_factory=lambda: {"add": LIMIT, "remove": LIMIT})
    transient: set[str] = field(default_factory=set)  # remote ids that fail with a retryable error
    refused: set[str] = field(default_factory=set)  # remote ids refused for good
    calls: list[str] = field(default_factory=list)
    ensured: list[str] = field(default_factory=list)

    def lookup(self, emails: Sequence[str]) -> dict[str, RemoteContact]:
        self.calls.append("lookup")
        by_email = {c.email: c for c in self.contacts.values() if c.email}
        return {e: by_email[e] for e in emails if e in by_email}

    def read_tags(self, prefix: str) -> Iterator[RemoteContact]:
        self.calls.append("read_tags")
        return iter([c for c in self.contacts.values() if any(t.startswith(prefix) for t in c.tags)])

    def ensure_tags(self, tags: Sequence[str]) -> None:
        self.ensured.extend(t for t in tags if t not in self.ensured)

    def apply(self, changes: Sequence[TagChange]) -> list[TagResult]:
        results: list[TagResult] = []
        for op in (TagOp.ADD, TagOp.REMOVE):
            group = [c for c in changes if c.op is op]
            for start in range(0, len(group), LIMIT):
                self.calls.append(op.value)
                for change in group[start : start + LIMIT]:
                    results.append(self._one(change))
        return results

    def _one(self, change: TagChange) -> TagResult:
        rid = change.remote_id or ""
        if rid in self.transient:
            return TagResult(change, Outcome.RETRY, "HTTP 503")
        contact = self.contacts.get(rid)
        if contact is None or rid in self.refused:
            return TagResult(change, Outcome.SKIPPED, "invalid contact")
        tags = set(contact.tags)
        (tags.add if change.op is TagOp.ADD else tags.discard)(change.tag)
        self.contacts[rid] = replace(contact, tags=frozenset(tags))
        return TagResult(change, Outcome.ACKNOWLEDGED)

    def close(self) -> None:
        pass

    def tags_of(self, rid: str) -> set[str]:
        return set(self.contacts[rid].tags)


def people(store: Store, n: int, *, consent: Mapping[int, Consent] | None = None) -> list[int]:
    """n people from the linked source `crm` (remote ids c0..c{n-1}); returns their person ids in order."""
    records = [
        Record("contact", f"c{i}", {"i": i},
               person=PersonData(email=f"p{i}@x.example", consent=(consent or {}).get(i, Consent.GRANTED)))
        for i in range(n)
    ]
    store.commit_page("crm", "test", "contacts", Page(records, None))
    run = store.start_run("sync", "crm")
    store.finish_run(run, "ok", {"records": n})
    with store.engine.connect() as conn:
        ids = dict(conn.execute(sa.select(m.identity.c.external_id, m.identity.c.person_id)).all())
    return [int(ids[f"c{i}"]) for i in range(n)]


def sink_for(n: int, **kwargs: Any) -> FakeSink:
    return FakeSink({f"c{i}": RemoteContact(f"c{i}", f"p{i}@x.example", frozenset({"manual-vip"})) for i in range(n)},
                    **kwargs)


TARGET = Targeting("dest", PREFIX, {"vip": f"{PREFIX}vip", "lapsed": f"{PREFIX}lapsed"}, source="crm")
CONFIG = PushConfig()


def push(store: Store, sink: FakeSink, *, dry_run: bool = False, force: bool = False,
         targeting: Targeting = TARGET, config: PushConfig = CONFIG) -> Any:
    return push_destination(store, targeting, sink, config, ["crm"], PushOptions(dry_run=dry_run, force=force))


def ledger_rows(store: Store) -> dict[tuple[int, str], str]:
    pl = m.push_ledger
    with store.engine.connect() as conn:
        return {(int(p), str(t)): str(s) for p, t, s in conn.execute(sa.select(pl.c.person_id, pl.c.tag, pl.c.state))}


# ----------------------------------------------------------------------------------------------- the basics


def test_tags_appear_and_a_repeated_push_makes_no_calls(store: Store) -> None:
    ids = people(store, 7)
    sink = sink_for(7)
    set_members(store, "vip", ids[:7])
    _plan, result = push(store, sink)
    assert result.added == 7 and sink.calls.count("add") == math.ceil(7 / LIMIT)
    assert all(f"{PREFIX}vip" in sink.tags_of(f"c{i}") for i in range(7))
    assert sink.ensured == [f"{PREFIX}vip"]
    sink.calls.clear()
    _, again = push(store, sink)
    assert again.added == again.removed == 0 and sink.calls == []  # nothing changed: zero calls


def test_only_owned_tags_are_removed(store: Store) -> None:
    ids = people(store, 4)
    sink = sink_for(4)
    sink.contacts["c0"] = replace(sink.contacts["c0"], tags=frozenset({"manual-vip", f"{PREFIX}lapsed"}))
    set_members(store, "vip", ids)
    # The first push reconciles: c0's hub:lapsed carries the hub's prefix, so it is the hub's (adopted), and c0
    # is not in that segment, so it goes; the tag a person set stays.
    _, first = push(store, sink)
    assert (first.adopted, first.removed, first.added) == (1, 1, 4)
    assert sink.tags_of("c0") == {"manual-vip", f"{PREFIX}vip"}
    set_members(store, "vip", ids[1:])
    _, result = push(store, sink)
    assert result.removed == 1
    assert sink.tags_of("c0") == {"manual-vip"}  # the tag a person set survives every push
    assert all("manual-vip" in sink.tags_of(f"c{i}") for i in range(4))


def test_held_out_members_and_missing_consent_get_no_tag(store: Store) -> None:
    ids = people(store, 4, consent={2: Consent.DENIED})
    sink = sink_for(4)
    set_members(store, "vip", ids, held_out=[ids[1]])
    consent_only = replace(TARGET, require_consent=frozenset({"granted"}))
    _, result = push(store, sink, targeting=consent_only)
    assert result.added == 2
    assert [i for i in range(4) if f"{PREFIX}vip" in sink.tags_of(f"c{i}")] == [0, 3]


def test_unsubscribed_contacts_are_never_re_added(store: Store) -> None:
    ids = people(store, 3)
    sink = sink_for(3)
    sink.contacts["c1"] = replace(sink.contacts["c1"], status="unsubscribed")
    set_members(store, "vip", ids)
    unlinked = replace(TARGET, source=None)  # contacts found by email lookup, which reports their state
    _, result = push(store, sink, targeting=unlinked)
    assert result.skipped == {"contact is unsubscribed": 1}
    assert f"{PREFIX}vip" not in sink.tags_of("c1")
    sink.calls.clear()
    _, again = push(store, sink, targeting=unlinked)
    assert again.added == 0 and "add" not in sink.calls and f"{PREFIX}vip" not in sink.tags_of("c1")


def test_people_missing_in_the_destination_are_skipped_and_counted(store: Store) -> None:
    ids = people(store, 3)
    sink = sink_for(3)
    del sink.contacts["c2"]
    set_members(store, "vip", ids)
    _, result = push(store, sink, targeting=replace(TARGET, source=None))
    assert result.added == 2 and result.skipped == {"not in the destination": 1}


# ----------------------------------------------------------------------------------------------- failures


def test_a_partial_batch_failure_retries_only_the_failed_records(store: Store) -> None:
    ids = people(store, 6)
    sink = sink_for(6, transient={"c1", "c4"}, refused={"c5"})
    set_members(store, "vip", ids)
    _, result = push(store, sink)
    assert (result.added, result.retry, dict(result.skipped)) == (3, 2, {"invalid contact": 1})
    rows = ledger_rows(store)
    assert {i for i in range(6) if rows[(ids[i], f"{PREFIX}vip")] == State.PRESENT.value} == {0, 2, 3}
    assert rows[(ids[1], f"{PREFIX}vip")] == State.RETRY_ADD.value
    # The destination recovers; once the backoff is over only c1 and c4 are sent again.
    sink.transient.clear()
    with store.engine.begin() as conn:
        conn.execute(sa.update(m.push_ledger).where(m.push_ledger.c.state == State.RETRY_ADD.value)
                     .values(next_attempt_at=m.utcnow()))
    sink.calls.clear()
    applied: list[TagChange] = []
    original = sink.apply

    def spy(changes: Sequence[TagChange]) -> list[TagResult]:
        applied.extend(changes)
        return original(changes)

    sink.apply = spy  # type: ignore[method-assign]
    _, second = push(store, sink)
    assert sorted(c.remote_id or "" for c in applied) == ["c1", "c4"]
    assert second.added == 2 and f"{PREFIX}vip" not in sink.tags_of("c5")


def test_a_change_the_destination_never_answered_is_not_recorded_as_applied(store: Store) -> None:
    ids = people(store, 4)
    sink = sink_for(4)
    original = sink.apply
    sink.apply = lambda changes: original(changes)[:2]  # type: ignore[method-assign]  # half the answers lost
    set_members(store, "vip", ids)
    _, result = push(store, sink)
    assert result.added == 2 and result.retry == 2
    states = sorted(ledger_rows(store).values())
    assert states == [State.PRESENT.value] * 2 + [State.RETRY_ADD.value] * 2


# ----------------------------------------------------------------------------------------------- guards


def test_the_guard_trips_when_a_source_comes_back_empty(store: Store) -> None:
    ids = people(store, 30)
    sink = sink_for(30)
    set_members(store, "vip", ids)
    push(store, sink)
    # The CRM sync "succeeds" but reports every contact deleted: an outage that looks like everyone leaving.
    gone = [Record("contact", f"c{i}", {"i": i}, deleted=True, person=PersonData(email=f"p{i}@x.example"))
            for i in range(30)]
    store.commit_page("crm", "test", "contacts", Page(gone, None))
    set_members(store, "vip", [])
    _, result = push(store, sink)
    assert result.removed == 0 and result.blocked == 30
    assert any("crm: every profile it had is now deleted" in g for g in result.guards)
    assert all(f"{PREFIX}vip" in sink.tags_of(f"c{i}") for i in range(30))
    _, forced = push(store, sink, force=True)
    assert forced.removed == 30


def test_the_guard_trips_when_the_last_sync_failed(store: Store) -> None:
    ids = people(store, 5)
    sink = sink_for(5)
    set_members(store, "vip", ids)
    push(store, sink)
    run = store.start_run("sync", "crm")
    store.finish_run(run, "failed", {}, "HTTP 503")
    set_members(store, "vip", ids[:3])
    _, result = push(store, sink)
    assert result.removed == 0 and result.blocked == 2
    assert any("crm: its last sync ended failed" in g for g in result.guards)


def test_the_share_guard_limits_removals_per_tag(store: Store) -> None:
    ids = people(store, 40)
    sink = sink_for(40)
    set_members(store, "vip", ids)
    push(store, sink)
    config = PushConfig(max_removal_share=0.25, removal_guard_min=5)
    set_members(store, "vip", ids[:28])  # 12 of 40 leave: 30 %, more than 25 %
    _, held = push(store, sink, config=config)
    assert held.removed == 0 and held.blocked == 12
    set_members(store, "vip", ids[:32])  # 8 of 40 leave: 20 %
    _, fine = push(store, sink, config=config)
    assert fine.removed == 8 and fine.blocked == 0


# ----------------------------------------------------------------------------------------------- dry run, reconcile


def test_dry_run_sends_nothing_and_plans_what_the_push_does(store: Store) -> None:
    ids = people(store, 8)
    sink = sink_for(8)
    set_members(store, "vip", ids[:5])
    set_members(store, "lapsed", ids[5:])
    push(store, sink)
    set_members(store, "vip", ids[2:7])
    before = {rid: set(c.tags) for rid, c in sink.contacts.items()}
    ledger_before = ledger_rows(store)
    dry, _dry_result = push(store, sink, dry_run=True)
    assert {rid: set(c.tags) for rid, c in sink.contacts.items()} == before and ledger_rows(store) == ledger_before
    applied: list[TagChange] = []
    original = sink.apply
    sink.apply = lambda changes: (applied.extend(changes), original(changes))[1]  # type: ignore[method-assign]
    real, _ = push(store, sink)
    key = lambda c: (c.op.value, c.tag, c.remote_id)  # noqa: E731
    assert sorted(map(key, dry.adds + dry.removes)) == sorted(map(key, applied))
    assert dry.as_dict() == real.as_dict()
    assert dry.as_dict()["tags"][f"{PREFIX}vip"]["add"] == 2 and dry.as_dict()["tags"][f"{PREFIX}vip"]["remove"] == 2


def test_a_lost_ledger_reconciles_from_the_remote_tags(store: Store) -> None:
    ids = people(store, 6)
    sink = sink_for(6)
    set_members(store, "vip", ids[:4])
    push(store, sink)
    with store.engine.begin() as conn:  # the database is lost (or this is a new machine)
        conn.execute(sa.delete(m.push_ledger))
        conn.execute(sa.delete(m.run).where(m.run.c.kind.in_(["push", "reconcile"])))
    set_members(store, "vip", ids[1:5])
    sink.calls.clear()
    _, result = push(store, sink)
    assert sink.calls[0] == "read_tags" and result.adopted == 4
    assert (result.added, result.removed) == (1, 1)  # p4 joins, p0 leaves: nothing re-sent, nothing orphaned
    holders = sorted(i for i in range(6) if f"{PREFIX}vip" in sink.tags_of(f"c{i}"))
    assert holders == [1, 2, 3, 4]
    assert sorted(p for (p, _), s in ledger_rows(store).items() if s == "present") == sorted(ids[1:5])


def test_drift_is_reported_and_respected_or_restored(store: Store) -> None:
    ids = people(store, 3)
    sink = sink_for(3)
    set_members(store, "vip", ids)
    push(store, sink)
    sink.contacts["c1"] = replace(sink.contacts["c1"], tags=frozenset({"manual-vip"}))  # removed by hand
    _, respected = push_destination(store, TARGET, sink, CONFIG, ["crm"], PushOptions(reconcile=True))
    assert respected.drift == 1 and f"{PREFIX}vip" not in sink.tags_of("c1")
    restore = PushConfig(drift="restore")
    sink.contacts["c2"] = replace(sink.contacts["c2"], tags=frozenset())
    _, restored = push_destination(store, TARGET, sink, restore, ["crm"], PushOptions(reconcile=True))
    assert restored.drift == 1 and f"{PREFIX}vip" in sink.tags_of("c2")
    assert f"{PREFIX}vip" not in sink.tags_of("c1")  # the earlier removal stays respected


# ----------------------------------------------------------------------------------------------- properties


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sets(st.integers(0, 9)), min_size=1, max_size=4))
def test_after_any_sequence_of_pushes_the_destination_holds_exactly_the_members(
    store: Store, memberships: list[set[int]]
) -> None:
    with store.engine.begin() as conn:
        for table in (m.push_ledger, m.segment_membership, m.run, m.identity, m.raw_record, m.person):
            conn.execute(sa.delete(table))
    ids = people(store, 10)
    sink = sink_for(10)
    unguarded = PushConfig(max_removal_share=1.0)
    for members in memberships:
        set_members(store, "vip", [ids[i] for i in sorted(members)])
        push(store, sink, config=unguarded)
        holders = {i for i in range(10) if f"{PREFIX}vip" in sink.tags_of(f"c{i}")}
        assert holders == members
        assert all("manual-vip" in sink.tags_of(f"c{i}") for i in range(10))
    calls_before = len(sink.calls)
    push(store, sink, config=unguarded)
    assert sink.calls[calls_before:] == []  # converged: the next push makes no call


@pytest.mark.parametrize("n", [1, LIMIT, LIMIT + 1, 10])
def test_calls_are_the_minimum_the_batch_limit_allows(store: Store, n: int) -> None:
    ids = people(store, n)
    sink = sink_for(n)
    set_members(store, "vip", ids)
    push(store, sink)
    assert sink.calls.count("add") == math.ceil(n / LIMIT)
    set_members(store, "vip", [])
    push(store, sink, config=PushConfig(max_removal_share=1.0))
    assert sink.calls.count("remove") == math.ceil(n / LIMIT)
