"""The sink against the emulator: tags as static segments in batches of 500, per-member outcomes, statuses never
touched, unsubscribed and cleaned members never tagged; and the real push engine driving it."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import pytest
import sqlalchemy as sa

from connectors.mailchimp.ids import member_key, subscriber_hash
from hub.config.models import PushConfig
from hub.contracts import Outcome, TagChange, TagOp, TagResult
from hub.push.plan import Targeting
from hub.push.service import PushOptions, push_destination
from hub.sandbox.business import Business
from hub.store import Store
from hub.store import models as m
from hub.sync import sync_source

from ...support import set_members
from .spec import check_exchanges, sample, spec_present
from .support import Rig, make_sandbox

UPDATE = "POST /lists/{list_id}/segments/{segment_id}"
CREATE = "POST /lists/{list_id}/segments"
TAG = "hub:vip"


@pytest.fixture(scope="module")
def large_business() -> Business:
    """About 2,000 taggable members (subscribed or pending) and 440 unsubscribed or cleaned."""
    return Business.generate(3300, seed=5)


@pytest.fixture
def big(large_business: Business) -> Iterator[Rig]:
    rig = Rig.around(make_sandbox(large_business))
    yield rig
    rig.close()
    if spec_present():
        check_exchanges(sample(rig.exchanges))


def emails(rig: Rig, *statuses: str) -> list[str]:
    members = sorted(rig.emulator.data.members.values(), key=lambda x: x.order)
    return [x.email for x in members if x.status in statuses]


def add(email: str | None, person: int = 1, *, remote: str | None = None, tag: str = TAG) -> TagChange:
    return TagChange(TagOp.ADD, tag, person, email, remote)


def remove(rig: Rig, email: str, person: int = 1, tag: str = TAG) -> TagChange:
    # The engine sends removals with the remote id it recorded, and no email.
    return TagChange(TagOp.REMOVE, tag, person, None, member_key(rig.list_id, subscriber_hash(email)))


def holders(rig: Rig, tag: str = TAG) -> set[str]:
    segment = rig.emulator.data.segment_by_name(tag)
    assert segment is not None
    return {rig.emulator.data.members[h].email for h in segment.members}


def outcomes(results: Sequence[TagResult]) -> dict[str, tuple[Outcome, str | None]]:
    out: dict[str, tuple[Outcome, str | None]] = {}
    for r in results:
        key = r.change.email or str(r.change.remote_id)
        out[key] = (r.outcome, r.reason)
    return out


def statuses(rig: Rig) -> dict[str, str]:
    return {h: x.status for h, x in rig.emulator.data.members.items()}


# ----------------------------------------------------------------------------------------------- batches


def test_2000_changes_on_one_tag_cost_4_calls_per_direction(big: Rig) -> None:
    targets = emails(big, "subscribed", "pending")[:2000]
    assert len(targets) == 2000
    sink = big.sink()
    sink.ensure_tags([TAG])
    assert big.calls(CREATE) == 1  # the tag did not exist: created as a static segment
    results = sink.apply([add(e, i) for i, e in enumerate(targets)])
    assert {r.outcome for r in results} == {Outcome.ACKNOWLEDGED} and len(results) == 2000
    assert big.calls(UPDATE) == 4 and holders(big) == set(targets)
    results = sink.apply([remove(big, e, i) for i, e in enumerate(targets)])
    assert {r.outcome for r in results} == {Outcome.ACKNOWLEDGED}
    assert big.calls(UPDATE) == 8 and holders(big) == set()
    assert 400 not in {resp.status_code for _, resp in big.exchanges}  # never above the 500 cap


def test_adds_and_removes_of_one_tag_share_calls(big: Rig) -> None:
    members = emails(big, "subscribed")
    sink = big.sink()
    sink.ensure_tags([TAG])
    sink.apply([add(e, i) for i, e in enumerate(members[:600])])
    before = big.calls(UPDATE)
    changes = [remove(big, e, i) for i, e in enumerate(members[:600])] + [add(e) for e in members[600:1100]]
    results = sink.apply(changes)
    assert {r.outcome for r in results} == {Outcome.ACKNOWLEDGED}
    assert big.calls(UPDATE) - before == math.ceil(600 / 500)  # 2 calls, each adding and removing
    assert holders(big) == set(members[600:1100])


def test_no_changes_cost_no_calls(rig: Rig) -> None:
    sink = rig.sink()
    before = rig.calls()
    assert sink.apply([]) == []
    sink.ensure_tags([])
    assert rig.calls() == before


def test_an_existing_tag_is_reused_whatever_its_case(rig: Rig) -> None:
    sink = rig.sink()
    sink.ensure_tags(["customer"])  # "Customer" exists: set by hand
    assert rig.calls(CREATE) == 0
    member = emails(rig, "subscribed")[0]
    sink.apply([add(member, tag="customer")])
    assert member in holders(rig, "Customer")


# ----------------------------------------------------------------------------------------------- consent


def test_unsubscribed_and_cleaned_members_are_skipped_without_a_call(rig: Rig) -> None:
    unsubscribed, cleaned = emails(rig, "unsubscribed")[:3], emails(rig, "cleaned")[:2]
    sink = rig.sink()
    found = sink.lookup(unsubscribed + cleaned)
    assert {c.status for c in found.values()} == {"unsubscribed", "cleaned"}
    before = statuses(rig)
    results = sink.apply([add(e) for e in unsubscribed + cleaned])
    for email, (outcome, reason) in outcomes(results).items():
        assert outcome is Outcome.SKIPPED and reason is not None
        assert ("unsubscribed" if email in unsubscribed else "cleaned") in reason
    assert rig.calls(UPDATE) == 0
    assert statuses(rig) == before


def test_members_known_only_by_id_are_checked_before_tagging(big: Rig) -> None:
    # A linked source gives remote ids and no status: the sink lists the compliance states once.
    taggable = emails(big, "subscribed")[:40]
    blocked = emails(big, "unsubscribed")[:20] + emails(big, "cleaned")[:10]
    changes = [add(e, i, remote=member_key(big.list_id, subscriber_hash(e))) for i, e in enumerate(taggable + blocked)]
    sink = big.sink()
    before = statuses(big)
    results = outcomes(sink.apply(changes))
    assert all(results[e][0] is Outcome.ACKNOWLEDGED for e in taggable)
    assert all(results[e][0] is Outcome.SKIPPED for e in blocked)
    assert holders(big) == set(taggable)
    assert big.calls("GET /lists/{list_id}/members") <= math.ceil(326 / 1000) + math.ceil(117 / 1000)
    assert big.calls(UPDATE) == 1 and statuses(big) == before


def test_mailchimps_per_member_errors_become_per_record_results(rig: Rig) -> None:
    subscribed = emails(rig, "subscribed")
    sink = rig.sink()
    sink.ensure_tags([TAG])
    sink.apply([add(subscribed[0])])
    # Unsubscribes after the sink learned it was subscribed: Mailchimp's compliance error is the answer.
    late = subscribed[1]
    sink.lookup([late])
    rig.emulator.data.members[subscriber_hash(late)].status = "unsubscribed"
    results = outcomes(sink.apply([add(subscribed[0]), add(late), add("nobody@nowhere.example"), add(subscribed[2])]))
    assert results[subscribed[0]] == (Outcome.ACKNOWLEDGED, None)  # already there: "already a member"
    assert results[subscribed[2]] == (Outcome.ACKNOWLEDGED, None)
    assert results[late][0] is Outcome.SKIPPED and "compliance state" in str(results[late][1])
    assert results["nobody@nowhere.example"][0] is Outcome.SKIPPED
    assert rig.emulator.data.members[subscriber_hash(late)].status == "unsubscribed"


def test_an_address_mailchimp_calls_fake_is_skipped_with_its_reason(rig: Rig) -> None:
    sink = rig.sink()
    sink.ensure_tags([TAG])
    results = outcomes(sink.apply([add("not-an-address"), add(emails(rig, "subscribed")[0])]))
    assert results["not-an-address"][0] is Outcome.SKIPPED
    assert "looks fake or invalid" in str(results["not-an-address"][1])
    assert results[emails(rig, "subscribed")[0]] == (Outcome.ACKNOWLEDGED, None)  # the rest of the batch


def test_transient_failures_are_retry_results_not_exceptions(rig: Rig, fast_retry: list[float]) -> None:
    sink = rig.sink()
    sink.ensure_tags([TAG])
    targets = emails(rig, "subscribed")[:5]
    rig.sandbox.inject({"kind": "5xx", "status": 503, "method": "POST", "path": "/3.0/lists/", "count": 5})
    results = sink.apply([add(e) for e in targets])
    assert {r.outcome for r in results} == {Outcome.RETRY}
    assert holders(rig) == set()
    assert {r.outcome for r in sink.apply([add(e) for e in targets])} == {Outcome.ACKNOWLEDGED}


def test_a_change_for_another_audience_is_refused(rig: Rig) -> None:
    results = rig.sink().apply([add(None, remote="otherlist0:" + "0" * 32)])
    assert results[0].outcome is Outcome.SKIPPED and "another audience" in str(results[0].reason)


# ----------------------------------------------------------------------------------------------- reading back


def test_read_tags_returns_the_hub_tags_only_and_lookup_finds_members(rig: Rig) -> None:
    subscribed = emails(rig, "subscribed")
    sink = rig.sink()
    sink.ensure_tags([TAG, "hub:lapsed"])
    sink.apply([add(e) for e in subscribed[:7]] + [add(subscribed[0], tag="hub:lapsed")])
    fresh = rig.sink()  # a new run: nothing cached
    remote = {c.email: c for c in fresh.read_tags("hub:")}
    assert set(remote) == set(subscribed[:7])
    assert {"hub:vip", "hub:lapsed"} <= remote[subscribed[0]].tags
    assert all(c.remote_id == member_key(rig.list_id, subscriber_hash(str(c.email))) for c in remote.values())
    found = fresh.lookup([subscribed[0].upper(), "nobody@nowhere.example"])
    assert set(found) == {subscribed[0].upper()}


# ----------------------------------------------------------------------------------------------- with the engine


def people_of(store: Store, rig: Rig, addresses: Sequence[str]) -> list[int]:
    keys = [member_key(rig.list_id, subscriber_hash(e)) for e in addresses]
    i = m.identity
    with store.engine.connect() as conn:
        found = dict(conn.execute(sa.select(i.c.external_id, i.c.person_id).where(i.c.external_id.in_(keys))).all())
    return [int(found[k]) for k in keys]


TARGET = Targeting("newsletter-tags", "hub:", {"vip": TAG}, source="mc")


def push(store: Store, rig: Rig) -> object:
    _plan, result = push_destination(store, TARGET, rig.sink(), PushConfig(), ["mc"], PushOptions())
    return result


def test_the_engine_pushes_only_changes_and_never_re_adds_the_unsubscribed(store: Store, big: Rig) -> None:
    sync_source(store, big.source(streams=["members"]), "mailchimp")
    subscribed, unsubscribed = emails(big, "subscribed"), emails(big, "unsubscribed")
    wanted = subscribed[:1500] + unsubscribed[:100] + emails(big, "cleaned")[:20]
    set_members(store, "vip", people_of(store, big, wanted))
    before = statuses(big)
    big.sandbox.reset_stats()
    first = push(store, big)
    assert holders(big) == set(subscribed[:1500])
    assert big.calls(UPDATE) == math.ceil(1500 / 500)
    assert first.added == 1500 and sum(first.skipped.values()) == 120  # type: ignore[attr-defined]
    # A repeated push with nothing changed makes no call at all.
    big.sandbox.reset_stats()
    push(store, big)
    assert big.calls() == 0
    # Someone tagged leaves the segment and unsubscribes, then comes back into the segment.
    leaver = subscribed[0]
    set_members(store, "vip", people_of(store, big, subscribed[1:1500]))
    push(store, big)
    assert leaver not in holders(big)
    big.emulator.data.members[subscriber_hash(leaver)].status = "unsubscribed"
    sync_source(store, big.source(streams=["members"]), "mailchimp")
    set_members(store, "vip", people_of(store, big, subscribed[:1500]))
    push(store, big)
    assert leaver not in holders(big)
    assert not {e for e in holders(big) if big.emulator.data.members[subscriber_hash(e)].status != "subscribed"}
    after = statuses(big)
    assert {h for h in after if after[h] != before.get(h)} == {subscriber_hash(leaver)}  # only the hand change
    writes = {f"{r.method} {r.url.path.split('/')[-1]}" for r, _ in big.exchanges if r.method in ("PUT", "PATCH")}
    assert writes == set()  # no member is ever written: statuses stay as they are
