"""Page commits on both backends: idempotent re-pulls, identity merges, key-only identities, deletions,
consent, atomicity of a page and its state, the status summary, and connector locks."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.contracts import ActivityData, Consent, Page, PersonData, Record
from hub.store import Store
from hub.store import models as m
from hub.store.repo import PageStats, _PageWriter

WHEN = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
STREAM = "main"
# Every table a page commit writes to, besides the stream state.
CONTENT_TABLES = (m.raw_record, m.person, m.identity, m.person_merge, m.activity)


# ----------------------------------------------------------------------------------------------- builders


def contact(
    external_id: str,
    email: str | None = None,
    *,
    first_name: str | None = None,
    consent: Consent = Consent.UNKNOWN,
    links: Mapping[str, str] | None = None,
    deleted: bool = False,
    updated_at: datetime | None = None,
) -> Record:
    person = PersonData(email=email, first_name=first_name, consent=consent, links=dict(links or {}))
    payload = {"id": external_id, "email": email, "first_name": first_name}
    return Record("contact", external_id, payload, updated_at=updated_at, deleted=deleted, person=person)


def order(
    external_id: str,
    *,
    customer: str | None = None,
    email: str | None = None,
    amount: str = "10.00",
    deleted: bool = False,
) -> Record:
    activity = ActivityData(
        type="order",
        external_id=external_id,
        occurred_at=WHEN,
        amount=Decimal(amount),
        currency="EUR",
        person_external_id=customer,
        person_email=email,
    )
    payload = {"id": external_id, "customer": customer, "email": email, "amount": amount}
    return Record("order", external_id, payload, deleted=deleted, activities=(activity,))


def commit(store: Store, source: str, records: Iterable[Record], state: Mapping[str, Any] | None = None) -> PageStats:
    return store.commit_page(source, "test", STREAM, Page(list(records), state))


# ----------------------------------------------------------------------------------------------- readers


def select(store: Store, stmt: sa.Select[Any]) -> list[sa.Row[Any]]:
    with store.engine.connect() as conn:
        return list(conn.execute(stmt))


def count(store: Store, table: sa.Table) -> int:
    return int(select(store, sa.select(sa.func.count()).select_from(table))[0][0])


def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the content tables, timestamps and ids included."""
    return {t.name: sorted((tuple(r) for r in select(store, sa.select(t))), key=repr) for t in CONTENT_TABLES}


def identity(store: Store, source: str, external_id: str) -> sa.Row[Any]:
    i = m.identity
    rows = select(store, sa.select(i).where(i.c.source == source, i.c.external_id == external_id))
    assert len(rows) == 1, f"{source}:{external_id} has {len(rows)} identity rows"
    return rows[0]


def person(store: Store, person_id: int) -> sa.Row[Any]:
    return select(store, sa.select(m.person).where(m.person.c.id == person_id))[0]


def live_people(store: Store) -> list[sa.Row[Any]]:
    p = m.person
    return select(store, sa.select(p).where(p.c.merged_into.is_(None)).order_by(p.c.id))


def activity(store: Store, source: str, external_id: str) -> sa.Row[Any]:
    a = m.activity
    return select(store, sa.select(a).where(a.c.source == source, a.c.external_id == external_id))[0]


# ----------------------------------------------------------------------------------------------- re-pulls


def test_repull_of_identical_records_writes_only_the_state(store: Store) -> None:
    records = [
        contact("1", "ann@example.com", first_name="Ann"),
        contact("2", "bo@example.com"),
        order("o1", customer="1"),
        order("o2", email="cy@example.com"),
        order("o3", customer="9"),
    ]
    first = commit(store, "shop", records, {"page": 1})
    assert (first.records_new, first.records_unchanged, first.activities_written) == (5, 0, 3)
    before = snapshot(store)
    assert {k: len(v) for k, v in before.items()} == {
        "raw_record": 5,
        "person": 4,  # ann, bo, the email-only buyer and customer 9 (known only from an order)
        "identity": 4,
        "person_merge": 0,
        "activity": 3,
    }

    # A touched but identical record (only the source's updated_at moved) is not a change either.
    touched = [*records[1:], contact("1", "ann@example.com", first_name="Ann", updated_at=WHEN)]
    again = commit(store, "shop", touched, {"page": 2})

    assert again == PageStats(records_unchanged=5)
    assert snapshot(store) == before
    assert store.get_state("shop", STREAM) == {"page": 2}


def test_changed_record_updates_its_rows_in_place(store: Store) -> None:
    commit(store, "shop", [contact("1", "ann@example.com", first_name="Ann"), order("o1", customer="1")])
    r = m.raw_record
    raw_before = {row.external_id: row for row in select(store, sa.select(r))}
    order_before = activity(store, "shop", "o1")

    stats = commit(
        store, "shop", [contact("1", "ann@example.com", first_name="Anna"), order("o1", customer="1", amount="12.5")]
    )

    assert (stats.records_new, stats.records_changed, stats.records_unchanged) == (0, 2, 0)
    assert stats.people_created == 0
    raw_after = {row.external_id: row for row in select(store, sa.select(r))}
    assert raw_after.keys() == raw_before.keys() == {"1", "o1"}
    for key, row in raw_after.items():
        assert row.id == raw_before[key].id
        assert row.first_seen_at == raw_before[key].first_seen_at
        assert row.content_hash != raw_before[key].content_hash
    assert raw_after["1"].payload["first_name"] == "Anna"
    order_after = activity(store, "shop", "o1")
    assert order_after.id == order_before.id
    assert order_after.amount == Decimal("12.5")
    assert count(store, m.activity) == 1
    people = live_people(store)
    assert [(p.first_name, p.email) for p in people] == [("Anna", "ann@example.com")]
    assert order_after.person_id == people[0].id


def test_last_copy_of_a_record_in_a_page_wins(store: Store) -> None:
    stats = commit(store, "shop", [contact("1", "old@example.com"), contact("1", "new@example.com")])
    assert stats.records_new == 1
    assert identity(store, "shop", "1").email == "new@example.com"
    assert [p.email for p in live_people(store)] == ["new@example.com"]


# ----------------------------------------------------------------------------------------------- identity


def test_same_email_from_two_sources_is_one_person(store: Store) -> None:
    commit(store, "shop", [contact("1", "  Ann.Lee@Example.COM ", first_name="Ann")])
    stats = commit(store, "crm", [contact("9", "ann.lee@example.com\u00a0")])

    assert stats.people_created == 0
    people = live_people(store)
    assert len(people) == 1
    shop, crm = identity(store, "shop", "1"), identity(store, "crm", "9")
    assert shop.person_id == crm.person_id == people[0].id
    assert shop.email == crm.email == "ann.lee@example.com"
    assert shop.email_seen == "  Ann.Lee@Example.COM "  # as the source wrote it


def test_person_properties_merge_every_source_and_follow_changes(store: Store) -> None:
    def with_props(external_id: str, email: str, props: dict[str, Any]) -> Record:
        person = PersonData(email=email, properties=props)
        return Record("contact", external_id, {"id": external_id, **props}, person=person)

    commit(store, "shop", [with_props("1", "ann@example.com", {"country": "DE", "city": "Berlin"})])
    commit(store, "crm", [with_props("9", "ann@example.com", {"lifecycle_stage": "customer", "country": "AT"})])
    (ann,) = live_people(store)
    # crm sorts before shop in the view, so its country wins; each source fills what the other lacks.
    assert ann.properties == {"lifecycle_stage": "customer", "country": "AT", "city": "Berlin"}

    commit(store, "crm", [with_props("9", "ann@example.com", {"lifecycle_stage": "evangelist"})])
    (ann,) = live_people(store)
    assert ann.properties == {"lifecycle_stage": "evangelist", "country": "DE", "city": "Berlin"}


def test_merge_by_email_is_logged_and_explained(store: Store) -> None:
    commit(store, "shop", [contact("1", "ann@example.com", first_name="Ann")])
    commit(store, "crm", [contact("9", None)])
    winner, loser = identity(store, "shop", "1").person_id, identity(store, "crm", "9").person_id
    assert winner != loser

    stats = commit(store, "crm", [contact("9", " ANN@example.com", consent=Consent.GRANTED)])

    assert stats.people_merged == 1
    assert identity(store, "crm", "9").person_id == winner
    assert person(store, loser).merged_into == winner
    merges = select(store, sa.select(m.person_merge))
    assert [(r.winner_id, r.loser_id) for r in merges] == [(winner, loser)]
    reason = merges[0].reason
    assert "same email ann@example.com" in reason and "shop:1" in reason and "crm:9" in reason

    for who in ("Ann@Example.com ", str(winner), "shop:1", "crm:9", str(loser)):
        explained = store.explain_person(who)
        assert explained is not None, who
        assert explained.person_id == winner, who
    explained = store.explain_person(str(loser))
    assert explained is not None
    assert explained.merged_ids == [loser]
    assert [(x.winner_id, x.loser_id, x.reason) for x in explained.merges] == [(winner, loser, reason)]
    assert {(i.source, i.external_id) for i in explained.identities} == {("shop", "1"), ("crm", "9")}
    assert (explained.email, explained.first_name, explained.consent) == ("ann@example.com", "Ann", "granted")
    assert store.explain_person("nobody@example.com") is None
    assert store.explain_person("shop:404") is None
    assert store.explain_person("99999") is None
    assert store.summary().merged == 1


def test_merge_by_explicit_link_is_logged(store: Store) -> None:
    commit(store, "shop", [contact("1", "ann@example.com")])
    commit(store, "crm", [contact("9", "ann.work@example.com")])
    assert len(live_people(store)) == 2

    stats = commit(store, "crm", [contact("9", "ann.work@example.com", links={"shop": "1"})])

    assert stats.people_merged == 1
    people = live_people(store)
    assert len(people) == 1
    assert identity(store, "crm", "9").person_id == identity(store, "shop", "1").person_id == people[0].id
    reason = select(store, sa.select(m.person_merge.c.reason))[0][0]
    assert reason == "explicit link crm:9 -> shop:1"
    explained = store.explain_person("ann.work@example.com")
    assert explained is not None and explained.person_id == people[0].id
    assert [x.reason for x in explained.merges] == [reason]


def test_link_to_a_profile_not_pulled_yet_is_filled_in_later(store: Store) -> None:
    commit(store, "crm", [contact("9", "ann@example.com", links={"shop": "7"})])
    key_only = identity(store, "shop", "7")
    assert not key_only.seen
    assert store.summary().key_only_identities == 1

    stats = commit(store, "shop", [contact("7", "ann.other@example.com", first_name="Ann")])

    assert stats.people_created == 0 and stats.people_merged == 0
    filled = identity(store, "shop", "7")
    assert filled.id == key_only.id and filled.seen and filled.person_id == key_only.person_id
    assert len(live_people(store)) == 1
    assert store.summary().key_only_identities == 0


def test_activity_before_its_person_creates_a_key_only_identity(store: Store) -> None:
    first = commit(store, "shop", [order("o1", customer="C1", email="c1@example.com")])
    assert first.people_created == 1
    key_only = identity(store, "shop", "C1")
    assert (key_only.seen, key_only.email) == (False, "c1@example.com")
    summary = store.summary()
    assert (summary.people, summary.key_only_identities, summary.identities) == (1, 1, {})

    later = commit(store, "shop", [contact("C1", "c1@example.com", first_name="Cy")])

    assert later.people_created == 0
    profile = identity(store, "shop", "C1")
    assert profile.id == key_only.id and profile.seen
    people = live_people(store)
    assert [(p.id, p.first_name) for p in people] == [(key_only.person_id, "Cy")]
    assert activity(store, "shop", "o1").person_id == people[0].id
    summary = store.summary()
    assert (summary.people, summary.key_only_identities, summary.identities) == (1, 0, {"shop": 1})


def test_activity_known_only_by_email_joins_the_later_profile(store: Store) -> None:
    commit(store, "shop", [order("o1", email="Dee@Example.com")])
    i = m.identity
    email_only = select(store, sa.select(i))
    assert [(r.source, r.external_id, r.email, r.seen) for r in email_only] == [
        ("shop", None, "dee@example.com", False)
    ]

    stats = commit(store, "crm", [contact("5", "dee@example.com")])

    assert stats.people_created == 0
    assert len(live_people(store)) == 1
    assert activity(store, "shop", "o1").person_id == identity(store, "crm", "5").person_id


def test_activity_for_an_unpulled_customer_joins_the_person_known_by_its_email(store: Store) -> None:
    commit(store, "crm", [contact("K1", "cy@example.com")])

    stats = commit(store, "shop", [order("o1", customer="C1", email="Cy@Example.com")])

    assert stats.people_created == 0
    [only] = live_people(store)
    assert identity(store, "shop", "C1").person_id == activity(store, "shop", "o1").person_id == only.id


def test_activity_without_any_person_is_kept_unlinked(store: Store) -> None:
    record = Record("order", "o1", {}, activities=(ActivityData("order", "o1", WHEN),))
    stats = commit(store, "shop", [record])
    assert (stats.activities_written, stats.activities_unlinked, stats.people_created) == (1, 1, 0)
    assert activity(store, "shop", "o1").person_id is None


def test_deleted_profile_deletes_the_person_only_when_all_profiles_are_deleted(store: Store) -> None:
    commit(store, "shop", [contact("1", "ann@example.com"), contact("2", "bo@example.com"), order("o1", customer="1")])
    commit(store, "crm", [contact("9", "bo@example.com")])

    stats = commit(
        store,
        "shop",
        [
            contact("1", "ann@example.com", deleted=True),
            Record("contact", "2", {}, deleted=True),  # deleted without person data: still that profile
            order("o1", customer="1", deleted=True),
        ],
    )

    assert stats.records_deleted == 3
    ann, bo = identity(store, "shop", "1"), identity(store, "shop", "2")
    assert ann.deleted and bo.deleted and not identity(store, "crm", "9").deleted
    assert person(store, ann.person_id).deleted
    assert not person(store, bo.person_id).deleted  # crm still describes Bo
    assert activity(store, "shop", "o1").deleted
    summary = store.summary()
    assert (summary.people, summary.deleted_people) == (1, 1)
    assert summary.raw_deleted == {"shop/contact": 2, "shop/order": 1}

    commit(store, "shop", [contact("1", "ann@example.com")])  # restored at the source
    assert not person(store, ann.person_id).deleted


@pytest.mark.parametrize(
    ("shop", "crm", "expected"),
    [
        (Consent.GRANTED, Consent.DENIED, "denied"),
        (Consent.GRANTED, Consent.UNKNOWN, "granted"),
        (Consent.PENDING, Consent.GRANTED, "pending"),
        (Consent.UNDELIVERABLE, Consent.GRANTED, "undeliverable"),
        (Consent.UNDELIVERABLE, Consent.OBJECTED, "objected"),
    ],
)
def test_consent_resolves_to_the_strictest(store: Store, shop: Consent, crm: Consent, expected: str) -> None:
    commit(store, "shop", [contact("1", "ann@example.com", consent=shop)])
    commit(store, "crm", [contact("9", "ANN@example.com", consent=crm)])
    [resolved] = live_people(store)
    assert resolved.consent == expected

    # The view is recomputed, not sticky: once both sources grant, the person is granted.
    commit(store, "shop", [contact("1", "ann@example.com", consent=Consent.GRANTED)])
    commit(store, "crm", [contact("9", "ANN@example.com", consent=Consent.GRANTED)])
    assert person(store, resolved.id).consent == "granted"


# ----------------------------------------------------------------------------------------------- atomicity


def _fail(*_args: Any, **_kwargs: Any) -> None:
    raise RuntimeError("disk on fire")


def _fail_after(original: Any) -> Any:
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        raise RuntimeError("disk on fire")

    return wrapper


@pytest.mark.parametrize(
    "break_at",
    ["activities", "identities done", "state"],
)
def test_failed_page_writes_neither_records_nor_state(
    store: Store, monkeypatch: pytest.MonkeyPatch, break_at: str
) -> None:
    commit(store, "shop", [contact("1", "ann@example.com"), order("o1", customer="1")], {"page": 1})
    before = snapshot(store)
    page = [
        contact("1", "ann@example.com", first_name="Ann"),  # a change
        contact("2", "bo@example.com", links={"crm": "7"}),  # a new person and a key-only identity
        order("o2", customer="2"),
        order("o3", customer="3"),  # a person known only from this order
    ]
    with monkeypatch.context() as patch:
        if break_at == "activities":
            patch.setattr(_PageWriter, "_write_activities", _fail)
        elif break_at == "identities done":
            patch.setattr(_PageWriter, "run", _fail_after(_PageWriter.run))
        else:
            patch.setattr(Store, "_write_state", _fail)
        with pytest.raises(RuntimeError, match="disk on fire"):
            commit(store, "shop", page, {"page": 2})

    assert snapshot(store) == before
    assert store.get_state("shop", STREAM) == {"page": 1}

    # Nothing half-written is mistaken for already stored: the same page now commits in full.
    stats = commit(store, "shop", page, {"page": 2})
    assert (stats.records_new, stats.records_changed, stats.people_created) == (3, 1, 2)
    assert store.get_state("shop", STREAM) == {"page": 2}
    assert count(store, m.activity) == 3


def test_failed_first_page_leaves_the_stream_unstarted(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_PageWriter, "_write_activities", _fail)
    with pytest.raises(RuntimeError):
        commit(store, "shop", [contact("1", "ann@example.com"), order("o1", customer="1")], {"page": 1})
    assert store.get_state("shop", STREAM) is None
    assert all(not rows for rows in snapshot(store).values())


# ----------------------------------------------------------------------------------------------- summary


def test_summary_of_an_empty_store(store: Store) -> None:
    summary = store.summary()
    assert summary.people == summary.merged == summary.deleted_people == summary.key_only_identities == 0
    assert summary.identities == summary.raw_records == summary.raw_deleted == summary.activities == {}
    assert summary.last_runs == [] and summary.sample_email is None


def test_summary_counts(store: Store) -> None:
    first_sync = store.start_run("sync", "shop")
    store.finish_run(first_sync, "failed", {}, "boom")
    commit(
        store,
        "shop",
        [
            contact("1", "ann@example.com"),
            contact("2", "bo@example.com"),
            contact("3", "dee@example.com", deleted=True),
            order("o1", customer="1"),
            order("o2", customer="42"),  # customer 42 is known only from this order
            order("o3", email="eve@example.com"),
        ],
    )
    commit(store, "crm", [contact("9", "bo@example.com"), contact("3", "dee@example.com", deleted=True)])
    # Dee has the most profiles, but a deleted person is no good example.
    commit(store, "mail", [contact("m3", "dee@example.com", deleted=True)])
    commit(store, "crm", [contact("8", None)])
    commit(store, "crm", [contact("8", "ann@example.com")])  # merges crm 8 into Ann
    second_sync = store.start_run("sync", "shop")
    store.finish_run(second_sync, "ok", {"records": 6})
    push = store.start_run("push", "mailer")

    summary = store.summary()

    assert summary.people == 4  # ann, bo, customer 42, eve
    assert (summary.merged, summary.deleted_people) == (1, 1)
    assert summary.identities == {"shop": 3, "crm": 3, "mail": 1}
    assert summary.key_only_identities == 2
    assert summary.raw_records == {"shop/contact": 3, "shop/order": 3, "crm/contact": 3, "mail/contact": 1}
    assert summary.raw_deleted == {"shop/contact": 1, "crm/contact": 1, "mail/contact": 1}
    assert summary.activities == {"order": 3}
    assert summary.sample_email in ("ann@example.com", "bo@example.com")  # two profiles each
    runs = {(r["kind"], r["target"]): r for r in summary.last_runs}
    assert set(runs) == {("sync", "shop"), ("push", "mailer")}
    assert (runs["sync", "shop"]["id"], runs["sync", "shop"]["status"]) == (second_sync, "ok")
    assert (runs["push", "mailer"]["id"], runs["push", "mailer"]["status"]) == (push, "running")
    assert summary.as_dict()["sample_email"] == summary.sample_email


def test_sample_email_is_the_person_with_the_most_profiles(store: Store) -> None:
    commit(store, "shop", [contact("1", "ann@example.com"), contact("2", "bo@example.com")])
    commit(store, "crm", [contact("9", "bo@example.com")])
    assert store.summary().sample_email == "bo@example.com"
    commit(store, "crm", [contact("7", "ann@example.com")])
    commit(store, "mail", [contact("m1", "ann@example.com")])
    assert store.summary().sample_email == "ann@example.com"


# ----------------------------------------------------------------------------------------------- locks


def test_connector_lock_is_exclusive_until_it_expires(store: Store) -> None:
    hour = timedelta(hours=1)
    assert store.acquire_lock("sync:shop", "cli-1", hour)
    assert not store.acquire_lock("sync:shop", "daemon-2", hour)
    assert store.acquire_lock("sync:shop", "cli-1", hour)  # the holder renews
    assert store.acquire_lock("sync:crm", "daemon-2", hour)  # other locks are independent

    store.release_lock("sync:shop", "daemon-2")  # not the holder: no effect
    assert not store.acquire_lock("sync:shop", "daemon-2", hour)

    lock = m.connector_lock
    with store.engine.begin() as conn:  # the holder crashed an hour ago
        conn.execute(sa.update(lock).where(lock.c.name == "sync:shop").values(expires_at=m.utcnow() - hour))
    assert store.acquire_lock("sync:shop", "daemon-2", hour)
    assert not store.acquire_lock("sync:shop", "cli-1", hour)

    store.release_lock("sync:shop", "daemon-2")
    assert store.acquire_lock("sync:shop", "cli-1", hour)


# ----------------------------------------------------------------------------------------------- properties

SOURCES = ("shop", "crm")
CUSTOMERS = 6
Item = tuple[str, Record]  # (source, record)


def _email_variant(email: str | None, style: int) -> str | None:
    if email is None:
        return None
    return [email, email.upper(), f"  {email.title()} ", f"{email}\u200b"][style % 4]


@st.composite
def store_records(draw: st.DrawFn) -> list[Item]:
    """A small consistent world, in any case and padding of its emails.

    Each customer has one email (or none) that every record naming them uses. Crm contacts carry any
    customer's email and may link to a shop contact; shop contacts may link to a crm contact. A link always
    names a profile that is in the set: an activity's email only seeds a person nobody has described, so a
    link to a profile that never arrives would make that email's fate depend on arrival order.
    """
    emails = [draw(st.sampled_from([f"c{i}@example.com", None])) for i in range(CUSTOMERS)]
    orders_carry_email = [draw(st.booleans()) for _ in range(CUSTOMERS)]
    customer = st.integers(0, CUSTOMERS - 1)
    style = st.integers(0, 3)
    consent = st.sampled_from(list(Consent))
    shop_ids = sorted(draw(st.sets(customer)))
    crm_ids = sorted(draw(st.sets(customer, max_size=4)))

    def link(source: str, prefix: str, ids: list[int]) -> dict[str, str]:
        if not ids or not draw(st.booleans()):
            return {}
        return {source: f"{prefix}{draw(st.sampled_from(ids))}"}

    items: list[Item] = []
    for i in shop_ids:
        rec = contact(
            f"C{i}",
            _email_variant(emails[i], draw(style)),
            first_name=draw(st.sampled_from([None, "Ann", "Bo"])),
            consent=draw(consent),
            links=link("crm", "K", crm_ids),
            deleted=draw(st.integers(0, 4)) == 0,
        )
        items.append(("shop", rec))
    for k in crm_ids:
        email = _email_variant(emails[draw(customer)], draw(style))
        items.append(("crm", contact(f"K{k}", email, consent=draw(consent), links=link("shop", "C", shop_ids))))
    for n in range(draw(st.integers(0, 8))):
        i = draw(customer)
        by_email_only = emails[i] is not None and draw(st.integers(0, 3)) == 0
        email = _email_variant(emails[i], draw(style)) if orders_carry_email[i] or by_email_only else None
        amount = f"{draw(st.integers(1, 500))}.00"
        deleted = draw(st.integers(0, 5)) == 0
        items.append(
            (
                "shop",
                order(
                    f"O{n}", customer=None if by_email_only else f"C{i}", email=email, amount=amount, deleted=deleted
                ),
            )
        )
    return items


def _pages(items: Sequence[Item], cuts: Iterable[int]) -> list[tuple[str, list[Record]]]:
    """Split ``items`` at ``cuts``; a page holds one source, so each piece is split by source in turn."""
    bounds = sorted({0, len(items), *(c % (len(items) + 1) for c in cuts)})
    pages: list[tuple[str, list[Record]]] = []
    for start, end in itertools.pairwise(bounds):
        for source in SOURCES:
            chunk = [r for s, r in items[start:end] if s == source]
            if chunk:
                pages.append((source, chunk))
    return pages


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(m.TABLES):
            conn.execute(sa.delete(table))


def _commit_pages(store: Store, pages: Sequence[tuple[str, list[Record]]]) -> list[PageStats]:
    return [commit(store, source, records, {"page": n}) for n, (source, records) in enumerate(pages)]


def _resolved(store: Store) -> tuple[frozenset[Any], frozenset[Any], frozenset[Any]]:
    """The store's content, independent of row ids and of the order it was built in.

    A person is named by the keys of their identities (ids and normalized emails); activities point at those.
    """
    i, p, a, r = m.identity, m.person, m.activity, m.raw_record
    keys: dict[int, set[tuple[str, ...]]] = {}
    for row in select(store, sa.select(i.c.person_id, i.c.source, i.c.external_id, i.c.email, i.c.seen)):
        group = keys.setdefault(row.person_id, set())
        if row.external_id is not None:
            group.add(("id", row.source, row.external_id, "seen" if row.seen else "key-only"))
        if row.email is not None:
            group.add(("email", row.email))
    name = {pid: frozenset(group) for pid, group in keys.items()}
    people = frozenset(
        (name[row.id], row.email, row.first_name, row.consent, row.deleted)
        for row in select(store, sa.select(p).where(p.c.merged_into.is_(None)))
    )
    assert len(people) == len(name), "every live person has identities, and every identity a live person"
    activities = frozenset(
        (
            row.source,
            row.external_id,
            str(row.amount),
            row.deleted,
            row.person_external_id,
            row.person_email,
            name.get(row.person_id),
        )
        for row in select(store, sa.select(a))
    )
    raw = frozenset(
        (row.source, row.object_type, row.external_id, row.content_hash, row.deleted)
        for row in select(store, sa.select(r))
    )
    return people, activities, raw


PROPERTY_SETTINGS = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@PROPERTY_SETTINGS
@given(items=store_records(), data=st.data())
def test_page_split_and_order_do_not_change_the_outcome(store: Store, items: list[Item], data: st.DataObject) -> None:
    _reset(store)
    _commit_pages(store, _pages(items, []))  # everything at once: one page per source
    expected = _resolved(store)

    shuffled = data.draw(st.permutations(items))
    cuts = data.draw(st.lists(st.integers(0, 100), max_size=6))
    _reset(store)
    _commit_pages(store, _pages(shuffled, cuts))

    assert _resolved(store) == expected


@PROPERTY_SETTINGS
@given(items=store_records(), cuts=st.lists(st.integers(0, 100), max_size=5), data=st.data())
def test_recommitting_any_prefix_of_pages_changes_nothing(
    store: Store, items: list[Item], cuts: list[int], data: st.DataObject
) -> None:
    _reset(store)
    pages = _pages(items, cuts)
    _commit_pages(store, pages)
    before = snapshot(store)

    prefix = pages[: data.draw(st.integers(0, len(pages)))]
    stats = _commit_pages(store, prefix)

    assert stats == [
        PageStats(records_unchanged=len({(r.object_type, r.external_id) for r in recs})) for _, recs in prefix
    ]
    assert snapshot(store) == before
