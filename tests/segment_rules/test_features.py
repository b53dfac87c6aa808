"""Per-person features from the streamed activity pass, against a direct Python computation on the same data.

Activities of every kind go in through the real page commit, with times on and around the window edges
(exactly ``as_of - 30d``, one microsecond before it, exactly ``as_of``, after it), cancelled and refunded
orders, sessions with and without a page count; the stored ``person_feature`` rows and the in-memory table
must both equal what a plain loop over the activities gives. Runs on SQLite and, with HUB_TEST_DATABASE_URL
set, on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hub.contracts import ActivityData, Consent, Page, PersonData, Record
from hub.store import Store
from hub.store import models as m
from segment_rules.aggregate import id_chunks
from segment_rules.churn import ChurnSettings, CutoffReader, read_cutoff
from segment_rules.engine import compute, write_features
from segment_rules.features import (
    COUNT_COLUMNS,
    STORED_COLUMNS,
    SUM_COLUMNS,
    TIME_COLUMNS,
    FeatureTable,
    compute_features,
    read_people,
)
from segment_rules.fields import WINDOWS_DAYS
from segment_rules.scoring import ScoringSettings
from tests.segment_rules.test_engine import reset

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
US = timedelta(microseconds=1)
KINDS = ("order", "email_open", "email_click", "email_bounce", "email_unsubscribe", "session", "deal_won", "other")
# Offsets before AS_OF that sit on the edges of the windows, or just inside / outside them.
EDGES = [timedelta(0), -US, US, *(timedelta(days=d) + e for d in WINDOWS_DAYS for e in (-US, timedelta(0), US))]


@dataclass(frozen=True)
class Act:
    kind: str
    before: timedelta  # AS_OF - before is when it happened (negative: after AS_OF)
    amount: Decimal | None
    flags: tuple[str, ...]  # cancelled / refunded
    page_views: int | None


ACT = st.builds(
    Act,
    st.sampled_from(KINDS),
    st.one_of(st.sampled_from(EDGES), st.timedeltas(timedelta(days=-5), timedelta(days=800))),
    st.one_of(st.none(), st.decimals(0, 500, places=2, allow_nan=False)),
    st.sampled_from([(), (), ("cancelled",), ("refunded",)]),
    st.one_of(st.none(), st.integers(0, 40)),
)
PEOPLE = st.dictionaries(st.sampled_from([f"p{i}@x.example" for i in range(6)]), st.lists(ACT, max_size=8), min_size=1)


def load(store: Store, people: Mapping[str, Sequence[Act]], objected: frozenset[str] = frozenset()) -> dict[str, int]:
    records = []
    for i, (email, acts) in enumerate(sorted(people.items())):
        activities = []
        for j, a in enumerate(acts):
            attributes: dict[str, Any] = {flag: True for flag in a.flags}
            if a.page_views is not None:
                attributes["page_views"] = a.page_views
            amount = a.amount if a.kind in ("order", "deal_won") else None
            activities.append(ActivityData(a.kind, f"{email}-{j}", AS_OF - a.before, amount, "EUR" if amount else None,
                                           attributes, person_external_id=f"c{i}"))
        consent = Consent.OBJECTED if email in objected else Consent.GRANTED
        records.append(Record("contact", f"c{i}", {"email": email}, person=PersonData(email=email, consent=consent),
                              activities=activities))
    store.commit_page("shop", "test", "contacts", Page(records, None))
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.identity.c.email, m.identity.c.person_id).where(m.identity.c.seen.is_(True)))
        return {str(e): int(p) for e, p in rows}


def expected(acts: Sequence[Act], created: datetime) -> dict[str, Any]:
    """The features of one person, by a plain loop."""
    seen = [a for a in acts if a.before >= timedelta(0)]  # at or before AS_OF
    orders = [a for a in seen if a.kind == "order" and not a.flags]
    out: dict[str, Any] = {name: 0 for name in COUNT_COLUMNS}
    out.update({name: 0.0 for name in SUM_COLUMNS})

    def within(a: Act, days: int) -> bool:
        return a.before <= timedelta(days=days)

    def when(a: Act) -> datetime:
        return AS_OF - a.before

    out["orders"] = len(orders)
    out["order_days"] = len({when(a).date() for a in orders})
    out["monetary"] = float(sum(a.amount or 0 for a in orders))
    for d in WINDOWS_DAYS:
        out[f"orders_{d}d"] = sum(within(a, d) for a in orders)
        out[f"spend_{d}d"] = float(sum(a.amount or 0 for a in orders if within(a, d)))
    for kind, name in (("email_open", "email_opens"), ("email_click", "email_clicks"), ("session", "sessions")):
        mine = [a for a in seen if a.kind == kind]
        out[name] = len(mine)
        for d in WINDOWS_DAYS:
            out[f"{name}_{d}d"] = sum(within(a, d) for a in mine)
    out["email_bounces"] = sum(a.kind == "email_bounce" for a in seen)
    out["email_unsubscribes"] = sum(a.kind == "email_unsubscribe" for a in seen)
    out["page_views_90d"] = sum(
        (1 if a.page_views is None else a.page_views) for a in seen if a.kind == "session" and within(a, 90)
    )
    won = [a for a in seen if a.kind == "deal_won"]
    out["deals_won"] = len(won)
    out["deals_won_amount"] = float(sum(a.amount or 0 for a in won))

    def latest(kind: str) -> datetime | None:
        times = [when(a) for a in (orders if kind == "order" else [a for a in seen if a.kind == kind])]
        return max(times) if times else None

    out["first_order_at"] = min((when(a) for a in orders), default=None)
    out["last_order_at"] = latest("order")
    out["last_email_open_at"] = latest("email_open")
    out["last_email_click_at"] = latest("email_click")
    out["last_session_at"] = latest("session")
    out["first_seen_at"] = min([created, *(when(a) for a in seen)])
    return out


def stored(store: Store) -> dict[int, dict[str, Any]]:
    f = m.person_feature
    with store.engine.connect() as conn:
        return {int(row.person_id): dict(row._mapping) for row in conn.execute(sa.select(f))}


def created_at(store: Store) -> dict[int, datetime]:
    with store.engine.connect() as conn:
        return {int(i): c for i, c in conn.execute(sa.select(m.person.c.id, m.person.c.created_at))}


def same(got: Any, want: Any, column: str) -> None:
    if column in SUM_COLUMNS:
        assert float(got) == pytest.approx(want, abs=1e-6), column
    else:
        assert got == want, column


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=PEOPLE)
def test_stored_features_equal_a_plain_loop(store: Store, people: dict[str, list[Act]]) -> None:
    reset(store)
    ids = load(store, people)
    computed = compute(store, AS_OF, ScoringSettings(), None)
    write_features(store, computed.features)
    rows, created = stored(store), created_at(store)
    assert set(rows) == set(ids.values())
    for email, acts in people.items():
        want = expected(acts, created[ids[email]])
        row = rows[ids[email]]
        assert row["as_of"] == AS_OF
        for column, value in want.items():
            same(row[column], value, column)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=PEOPLE)
def test_the_table_in_memory_equals_the_stored_rows(store: Store, people: dict[str, list[Act]]) -> None:
    reset(store)
    load(store, people)
    with store.engine.connect() as conn:
        table = compute_features(conn, AS_OF)
    write_features(store, table)
    rows = stored(store)
    at = {name: table.times(name) for name in (*TIME_COLUMNS, "first_seen_at")}
    for i, pid in enumerate(table.person_id.tolist()):
        row = rows[pid]
        for column in (*COUNT_COLUMNS, *SUM_COLUMNS):
            same(row[column], table.columns[column][i].item(), column)
        for column, days in at.items():
            value = row[column]
            if value is None:
                assert np.isnan(days[i]), column
            else:
                assert (AS_OF - value) / timedelta(days=1) == pytest.approx(days[i], abs=1e-9), column


def test_derived_values_match_their_sql_definitions(store: Store) -> None:
    """recency, tenure, aov and rates in numpy (models) and in SQL (rules) say the same."""
    from segment_rules.features import derived, derived_names

    reset(store)
    load(store, {
        "a@x.example": [Act("order", timedelta(days=3), Decimal("40"), (), None),
                        Act("order", timedelta(days=40), Decimal("20"), (), None),
                        Act("email_open", timedelta(days=2), None, (), None),
                        Act("email_click", timedelta(days=2), None, (), None)],
        "b@x.example": [Act("email_bounce", timedelta(days=1), None, (), None)],
        "c@x.example": [],
    })
    with store.engine.connect() as conn:
        table = compute_features(conn, AS_OF)
    write_features(store, table)
    f = m.person_feature
    exprs = derived(f, AS_OF)
    names = sorted(derived_names())
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(f.c.person_id, *(exprs[n] for n in names)).order_by(f.c.person_id)).all()
    for i, row in enumerate(rows):
        for name, value in zip(names, row[1:], strict=True):
            got = table.values(name)[i]
            if value is None:
                assert np.isnan(got), name
            else:
                assert float(value) == pytest.approx(got, rel=1e-9, abs=1e-6), name


def test_people_out_of_scope_get_no_features(store: Store) -> None:
    reset(store)
    ids = load(store, {"in@x.example": [Act("order", timedelta(days=1), Decimal("5"), (), None)],
                       "out@x.example": [Act("order", timedelta(days=1), Decimal("5"), (), None)]},
               objected=frozenset({"out@x.example"}))
    with store.engine.connect() as conn:
        table = compute_features(conn, AS_OF)
    assert table.person_id.tolist() == [ids["in@x.example"]]


def test_one_pass_gives_each_cutoff_what_its_own_read_gives(store: Store) -> None:
    """The churn cutoffs fed alongside the features equal one read per cutoff."""
    rng = np.random.default_rng(3)
    people = {
        f"p{i}@x.example": [Act("order", timedelta(days=float(d)), Decimal("10"), (), None)
                            for d in rng.uniform(0, 700, rng.integers(1, 6))]
        for i in range(40)
    }
    reset(store)
    load(store, people)
    churn = ChurnSettings(horizon_days=60, n_cutoffs=2)
    with store.engine.connect() as conn:
        reader = CutoffReader(AS_OF, churn, read_people(conn))
        table = compute_features(conn, AS_OF, people=reader.people, also=list(reader.accumulators.values()))
        data = reader.data(table)
        names = churn.model().feature_names()
        for cutoff in reader.plan.labelled:
            alone = read_cutoff(conn, cutoff, names, horizon_days=60)
            assert data[cutoff].person_id.tolist() == alone.person_id.tolist()
            np.testing.assert_allclose(data[cutoff].X, alone.X, equal_nan=True)
            assert data[cutoff].churned is not None and alone.churned is not None
            assert data[cutoff].churned.tolist() == alone.churned.tolist()
    assert isinstance(table, FeatureTable) and AS_OF in data


def test_incremental_reads_are_chunked_and_sorted() -> None:
    assert list(id_chunks(None)) == [None]
    chunks = list(id_chunks([5, 3, 3, 9, 1], size=2))
    assert chunks == [[1, 3], [5, 9]]
    assert STORED_COLUMNS[0] == "person_id"


def test_small_read_chunks_give_the_same_features(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rows arrive in chunks (on PostgreSQL, binary COPY blocks cut anywhere): chunk size changes nothing."""
    import segment_rules.aggregate as aggregate

    rng = np.random.default_rng(11)
    people = {
        f"p{i}@x.example": [
            Act(str(rng.choice(KINDS)), timedelta(days=float(d)), Decimal("7.5"), (), int(rng.integers(5)))
            for d in rng.uniform(-3, 400, rng.integers(0, 9))
        ]
        for i in range(25)
    }
    reset(store)
    load(store, people)
    with store.engine.connect() as conn:
        whole = compute_features(conn, AS_OF)
    monkeypatch.setattr(aggregate, "CHUNK_ROWS", 7)
    with store.engine.connect() as conn:
        chunked = compute_features(conn, AS_OF)
    assert chunked.person_id.tolist() == whole.person_id.tolist()
    for name, values in whole.columns.items():
        np.testing.assert_array_equal(chunked.columns[name], values, err_msg=name)


@given(st.lists(st.integers(-(2**62), 2**62), max_size=200), st.lists(st.integers(0, 5), max_size=50))
def test_sorted_distinct_is_unique(spread: list[int], repeated: list[int]) -> None:
    from segment_rules.aggregate import sorted_distinct

    values = np.array(spread + repeated, dtype=np.int64)
    assert sorted_distinct(values).tolist() == sorted(set(values.tolist()))
