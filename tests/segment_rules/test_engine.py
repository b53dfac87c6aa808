"""Segment evaluation in SQL: the boolean laws, window edges, exclusive groups, holdouts and membership diffs.

The store is filled through the real page commit (people and orders as a connector would deliver them), rules
are compiled to SQL, and the memberships are compared with a direct Python computation on the same data. Every
test runs on SQLite and, with HUB_TEST_DATABASE_URL set, on PostgreSQL (the `store` fixture).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from segment_rules.compile import HOLDOUT_BUCKETS, holdout_bucket_py
from segment_rules.engine import evaluate
from segment_rules.language import GroupDef, Node, Parser, SegmentDef
from segment_rules.quality import MASK_BITS
from segment_rules.ruleset import RuleSet

AS_OF = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def rule(data: Any) -> Node:
    parser = Parser(lambda path, key=False: "test.yaml:1:1")
    node = parser.node(data, ("rule",))
    assert node is not None and not parser.errors, parser.errors
    return node


def ruleset(rules: Mapping[str, Any], *, groups: Mapping[str, tuple[str, ...]] | None = None,
            holdout: Mapping[str, float] | None = None) -> RuleSet:
    """Segments in the given order (the caller orders references), optionally in exclusive groups."""
    group_of = {member: g for g, members in (groups or {}).items() for member in members}
    segments = tuple(
        SegmentDef(name, "", name, (), (holdout or {}).get(name, 0.0), rule(data), group_of.get(name))
        for name, data in rules.items()
    )
    group_defs = {g: GroupDef(g, "", True, members) for g, members in (groups or {}).items()}
    return RuleSet(segments, group_defs, ())


def reset(store: Store) -> None:
    with store.engine.begin() as conn:
        for table in reversed(m.TABLES):
            conn.execute(sa.delete(table))


def load(store: Store, people: Mapping[str, list[tuple[float, float]]], *, consent: Mapping[str, Consent] | None = None,
         events: Mapping[str, list[tuple[str, float]]] | None = None) -> dict[str, int]:
    """People by email, each with orders (days before AS_OF, amount) and other events (type, days before)."""
    records: list[Record] = []
    for i, (email, orders) in enumerate(sorted(people.items())):
        acts = [
            ActivityData("order", f"{email}-o{j}", AS_OF - timedelta(days=days), Decimal(str(amount)), "EUR",
                         person_external_id=f"c{i}")
            for j, (days, amount) in enumerate(orders)
        ]
        acts += [
            ActivityData(kind, f"{email}-e{j}", AS_OF - timedelta(days=days), person_external_id=f"c{i}")
            for j, (kind, days) in enumerate((events or {}).get(email, []))
        ]
        person = PersonData(email=email, consent=(consent or {}).get(email, Consent.GRANTED))
        records.append(Record("contact", f"c{i}", {"email": email}, person=person, activities=acts))
    store.commit_page("shop", "test", "contacts", Page(records, None))
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.identity.c.email, m.identity.c.person_id).where(m.identity.c.seen.is_(True)))
        return {str(e): int(p) for e, p in rows}


def members(store: Store) -> dict[str, set[int]]:
    sm = m.segment_membership
    out: dict[str, set[int]] = {}
    with store.engine.connect() as conn:
        for segment, pid in conn.execute(sa.select(sm.c.segment, sm.c.person_id).where(sm.c.exited_at.is_(None))):
            out.setdefault(str(segment), set()).add(int(pid))
    return out


# ----------------------------------------------------------------------------------------------- the laws

ORDERS = st.lists(st.tuples(st.floats(0, 400, allow_nan=False), st.sampled_from([5, 20, 50, 120])), max_size=5)
POPULATION = st.dictionaries(st.sampled_from([f"p{i}@x.example" for i in range(8)]), ORDERS, min_size=1)
LEAVES = st.one_of(
    st.builds(lambda k: {"orders": {"gte": k}}, st.integers(0, 4)),
    st.builds(lambda x: {"monetary": {"gt": x}}, st.sampled_from([0, 30, 100])),
    st.builds(lambda d, k: {"event": "order", "within": f"{d}d", "count": {"gte": k}},
              st.sampled_from([30, 90, 365]), st.integers(1, 3)),
    st.builds(lambda d: {"last_order_at": {"within": f"{d}d"}}, st.sampled_from([30, 90, 365])),
    st.builds(lambda d: {"recency_days": {"lte": d}}, st.sampled_from([30, 90])),
)


def trees(depth: int = 2) -> st.SearchStrategy[Any]:
    return st.recursive(
        LEAVES,
        lambda inner: st.one_of(
            st.builds(lambda xs: {"all": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda xs: {"any": xs}, st.lists(inner, max_size=3)),
            st.builds(lambda x: {"not": x}, inner),
        ),
        max_leaves=6,
    )


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(POPULATION, trees(), trees())
def test_not_all_any_follow_set_laws(store: Store, people: dict[str, Any], a: Any, b: Any) -> None:
    reset(store)
    ids = load(store, people)
    everyone = set(ids.values())
    rules = ruleset({
        "a": a, "b": b,
        "not_a": {"not": {"segment": "a"}},
        "a_and_b": {"all": [{"segment": "a"}, {"segment": "b"}]},
        "a_or_b": {"any": [{"segment": "a"}, {"segment": "b"}]},
        "de_morgan": {"not": {"any": [{"not": {"segment": "a"}}, {"not": {"segment": "b"}}]}},
        "double_not": {"not": {"not": a}},
    })
    evaluate(store, rules, as_of=AS_OF)
    got = members(store)
    sa_, sb = got.get("a", set()), got.get("b", set())
    assert got.get("not_a", set()) == everyone - sa_
    assert got.get("a_and_b", set()) == sa_ & sb
    assert got.get("a_or_b", set()) == sa_ | sb
    assert got.get("de_morgan", set()) == sa_ & sb
    assert got.get("double_not", set()) == sa_


def _oracle(orders: list[tuple[float, float]], leaf: Mapping[str, Any]) -> bool:
    """The meaning of each generated leaf, computed directly from the generated orders."""
    key = next(iter(leaf))
    if key == "orders":
        return len(orders) >= leaf["orders"]["gte"]
    if key == "monetary":
        return sum(a for _, a in orders) > leaf["monetary"]["gt"]
    if key == "event":
        days = int(leaf["within"][:-1])
        return sum(1 for d, _ in orders if d <= days) >= leaf["count"]["gte"]
    if key == "last_order_at":
        days = int(leaf["last_order_at"]["within"][:-1])
        return bool(orders) and min(d for d, _ in orders) <= days
    return bool(orders) and min(d for d, _ in orders) <= leaf["recency_days"]["lte"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(POPULATION, st.lists(LEAVES, min_size=1, max_size=5))
def test_leaves_mean_what_they_say(store: Store, people: dict[str, Any], leaves: list[Any]) -> None:
    reset(store)
    ids = load(store, people)
    evaluate(store, ruleset({f"s{i}": leaf for i, leaf in enumerate(leaves)}), as_of=AS_OF)
    got = members(store)
    for i, leaf in enumerate(leaves):
        expected = {ids[email] for email, orders in people.items() if _oracle(orders, leaf)}
        assert got.get(f"s{i}", set()) == expected, leaf


# ----------------------------------------------------------------------------------------------- edges


def test_window_edges_are_inclusive_and_the_future_does_not_count(store: Store) -> None:
    second = 1 / 86_400
    ids = load(store, {
        "edge@x.example": [(90.0, 10)],  # exactly 90 days before as_of: inside a 90-day window
        "outside@x.example": [(90.0 + second, 10)],  # one second earlier: outside
        "future@x.example": [(-1.0, 10)],  # after as_of: not known at as_of
        "now@x.example": [(0.0, 10)],  # at as_of: inside
    })
    rules = ruleset({
        "w": {"event": "order", "within": "90d"},
        "t": {"last_order_at": {"within": "90d"}},
        "old": {"last_order_at": {"older_than": "90d"}},
        "any_order": {"orders": {"gte": 1}},
    })
    evaluate(store, rules, as_of=AS_OF)
    got = members(store)
    inside = {ids["edge@x.example"], ids["now@x.example"]}
    assert got["w"] == inside and got["t"] == inside
    assert got["old"] == {ids["outside@x.example"]}
    assert got["any_order"] == inside | {ids["outside@x.example"]}


def test_missing_values_are_false_and_their_negation_true(store: Store) -> None:
    ids = load(store, {"buyer@x.example": [(10.0, 50)], "never@x.example": []})
    rules = ruleset({
        "recent": {"recency_days": {"lte": 30}},
        "not_recent": {"not": {"recency_days": {"lte": 30}}},
        "ne": {"recency_days": {"ne": 10}},
        "no_order_time": {"last_order_at": {"exists": False}},
    })
    evaluate(store, rules, as_of=AS_OF)
    got = members(store)
    assert got["recent"] == {ids["buyer@x.example"]}
    assert got["not_recent"] == {ids["never@x.example"]}
    assert got.get("ne", set()) == set()  # 10 days ago is not "ne 10"; a missing value is not either
    assert got["no_order_time"] == {ids["never@x.example"]}


def test_an_exclusive_group_puts_each_person_in_its_first_match(store: Store) -> None:
    ids = load(store, {
        "big@x.example": [(5.0, 120), (50.0, 120)],
        "mid@x.example": [(5.0, 50)],
        "none@x.example": [],
    })
    rules = ruleset(
        {"gold": {"monetary": {"gte": 200}}, "silver": {"monetary": {"gte": 40}}, "rest": {"all": []},
         "outside": {"monetary": {"gte": 40}}},
        groups={"tiers": ("gold", "silver", "rest")},
    )
    evaluate(store, rules, as_of=AS_OF)
    got = members(store)
    assert got["gold"] == {ids["big@x.example"]}
    assert got["silver"] == {ids["mid@x.example"]}
    assert got["rest"] == {ids["none@x.example"]}
    assert got["outside"] == {ids["big@x.example"], ids["mid@x.example"]}  # not in the group: not exclusive


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(POPULATION, st.lists(LEAVES, min_size=1, max_size=5), st.integers(0, 4), st.integers(0, 4), st.booleans())
def test_an_exclusive_group_across_masks_is_its_first_match(
    store: Store, people: dict[str, Any], leaves: list[Any], offset: int, hold: int, incremental: bool
) -> None:
    """Members of an exclusive group among other segments and on both sides of a mask boundary (more segments
    than one bit mask holds): each person is in the first member whose rule holds, every other segment keeps
    its own members, and the held-out people of a member are among its members."""
    reset(store)
    ids = load(store, people)
    rules: dict[str, Any] = {f"f{k:02d}": {"orders": {"gte": k % 4}} for k in range(MASK_BITS - 3 + offset)}
    for k, leaf in enumerate(leaves):
        rules[f"g{k}"] = leaf
        rules[f"between{k}"] = {"monetary": {"gt": 10 * k}}
    held = f"g{hold % len(leaves)}"
    rule_set = ruleset(rules, groups={"tiers": tuple(f"g{k}" for k in range(len(leaves)))}, holdout={held: 50})
    full = evaluate(store, rule_set, as_of=AS_OF)
    if incremental:  # the same people re-evaluated through the incremental path: nothing may change
        before = members(store)
        evaluate(store, rule_set, as_of=AS_OF, person_ids=sorted(ids.values()))
        assert members(store) == before
    got = members(store)
    first = {email: next((k for k, leaf in enumerate(leaves) if _oracle(orders, leaf)), None)
             for email, orders in people.items()}
    for k in range(len(leaves)):
        assert got.get(f"g{k}", set()) == {ids[e] for e, hit in first.items() if hit == k}, k
        assert got.get(f"between{k}", set()) == {ids[e] for e, o in people.items() if sum(a for _, a in o) > 10 * k}
    for name, leaf in rules.items():
        if name.startswith("f"):
            assert got.get(name, set()) == {ids[e] for e, o in people.items() if _oracle(o, leaf)}, name
    sm = m.segment_membership
    with store.engine.connect() as conn:
        held_out = {int(p) for p in conn.execute(
            sa.select(sm.c.person_id).where(sm.c.segment == held, sm.c.exited_at.is_(None), sm.c.held_out.is_(True))
        ).scalars()}
    assert held_out == {p for p in got.get(held, set()) if holdout_bucket_py(p, held) < HOLDOUT_BUCKETS // 2}
    assert {c.segment: c.held_out for c in full.segments}[held] == len(held_out)


def test_people_who_objected_are_never_scored_or_segmented(store: Store) -> None:
    ids = load(store, {"a@x.example": [(5.0, 50)], "b@x.example": [(5.0, 50)]},
               consent={"b@x.example": Consent.OBJECTED})
    result = evaluate(store, ruleset({"all": {"all": []}}), as_of=AS_OF)
    assert members(store)["all"] == {ids["a@x.example"]}
    assert result.people == 1
    with store.engine.connect() as conn:
        scored = set(conn.execute(sa.select(m.person_score.c.person_id)).scalars())
    assert scored == {ids["a@x.example"]}


def test_holdout_is_deterministic_and_near_its_share(store: Store) -> None:
    people = {f"p{i}@x.example": [(5.0, 20)] for i in range(400)}
    ids = load(store, people)
    evaluate(store, ruleset({"h": {"orders": {"gte": 1}}}, holdout={"h": 20}), as_of=AS_OF)
    sm = m.segment_membership
    with store.engine.connect() as conn:
        held = {int(p) for p in conn.execute(sa.select(sm.c.person_id).where(sm.c.held_out.is_(True))).scalars()}
    assert held == {pid for pid in ids.values() if holdout_bucket_py(pid, "h") < 20 * HOLDOUT_BUCKETS // 100}
    assert 40 <= len(held) <= 120  # 20 % of 400, give or take the hash's spread
    # Re-evaluating keeps the same people held out: the assignment is a function of (segment, person).
    evaluate(store, ruleset({"h": {"orders": {"gte": 1}}}, holdout={"h": 20}), as_of=AS_OF)
    with store.engine.connect() as conn:
        again = {int(p) for p in conn.execute(sa.select(sm.c.person_id).where(sm.c.held_out.is_(True))).scalars()}
    assert again == held


def test_memberships_are_diffs_with_history(store: Store) -> None:
    ids = load(store, {"a@x.example": [(5.0, 50)], "b@x.example": [(100.0, 50)]})
    rules = ruleset({"recent": {"last_order_at": {"within": "30d"}}})
    first = evaluate(store, rules, as_of=AS_OF)
    assert [(c.size, c.entered, c.exited) for c in first.segments] == [(1, 1, 0)]
    # Thirty days later, a has aged out: the stay closes; b never entered.
    later = evaluate(store, rules, as_of=AS_OF + timedelta(days=30))
    assert [(c.size, c.entered, c.exited) for c in later.segments] == [(0, 0, 1)]
    again = evaluate(store, rules, as_of=AS_OF + timedelta(days=30))
    assert [(c.size, c.entered, c.exited) for c in again.segments] == [(0, 0, 0)]
    sm = m.segment_membership
    with store.engine.connect() as conn:
        stays = conn.execute(sa.select(sm.c.person_id, sm.c.exited_at.is_not(None))).all()
    assert [(int(p), bool(closed)) for p, closed in stays] == [(ids["a@x.example"], True)]


def test_incremental_evaluation_touches_only_the_changed_people(store: Store) -> None:
    people = {f"p{i}@x.example": [(5.0, 20)] for i in range(20)}
    ids = load(store, people)
    customer = f"c{sorted(people).index('p3@x.example')}"  # `load` numbers customers in email order
    rules = ruleset({"big": {"monetary": {"gte": 100}}})
    evaluate(store, rules, as_of=AS_OF)
    assert members(store).get("big", set()) == set()
    # p3 places a large order; an incremental run over p3 alone puts them in the segment.
    order = ActivityData("order", "big-one", AS_OF - timedelta(days=1), Decimal("500"), "EUR",
                         person_external_id=customer)
    store.commit_page("shop", "test", "orders", Page([Record("order", "big-one", {}, activities=[order])], None))
    result = evaluate(store, rules, as_of=AS_OF, person_ids=[ids["p3@x.example"]])
    assert result.incremental and result.people == 20
    assert members(store)["big"] == {ids["p3@x.example"]}
    assert [(c.size, c.entered) for c in result.segments] == [(1, 1)]


def test_overlaps_of_many_segments_equal_the_self_join_of_the_stays(store: Store) -> None:
    """The Jaccard figures come from grouped segment bit masks (of the evaluation after a full run, of the open
    stays otherwise): with more segments than a 16-bit flag or one mask holds they must still equal the pairwise
    self-join of the open stays."""
    from segment_rules.compile import Compiler
    from segment_rules.engine import _Evaluation
    from segment_rules.quality import SegmentStats, overlaps

    people = {f"p{i}@x.example": [(float(3 * j + i % 7), 10 + i) for j in range(i % 5)] for i in range(30)}
    load(store, people)
    rules = ruleset({f"s{k:02d}": {"any": [{"orders": {"gte": k % 5}}, {"monetary": {"gt": 10 * k}}]}
                     for k in range(34)})
    result = evaluate(store, rules, as_of=AS_OF)
    sizes = {c.segment: c.size for c in result.segments}
    stats = [SegmentStats(c.segment, c.size, c.entered, c.exited, None, None) for c in result.segments]
    sm = m.segment_membership
    a, b = sm.alias("a"), sm.alias("b")
    work = _Evaluation([s.name for s in rules.segments])
    with store.engine.begin() as conn:
        pairs = conn.execute(
            sa.select(a.c.segment, b.c.segment, sa.func.count())
            .select_from(a.join(b, (a.c.person_id == b.c.person_id) & (a.c.segment < b.c.segment)))
            .where(a.c.exited_at.is_(None), b.c.exited_at.is_(None))
            .group_by(a.c.segment, b.c.segment)
        ).all()
        joined = {(x, y): n / (sizes[x] + sizes[y] - n) for x, y, n in pairs}
        work.create(conn, Compiler(rules, AS_OF).compile(), None)
        try:
            evaluated = work.overlaps(conn, result.segments)
        finally:
            work.drop(conn)
        from_stays = overlaps(conn, stats)
    assert joined and evaluated.keys() == joined.keys() == from_stays.keys()
    for pair, value in joined.items():
        assert evaluated[pair] == pytest.approx(value), pair
        assert from_stays[pair] == pytest.approx(value), pair


def test_a_re_evaluation_carries_the_overlap_findings_of_the_last_run(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    import segment_rules.engine as engine

    ids = load(store, {f"p{i}@x.example": [(10.0 + i, 20.0)] for i in range(30)})
    twins = ruleset({"buyers": {"orders": {"gte": 1}}, "also-buyers": {"monetary": {"gt": 0}}})
    full = evaluate(store, twins, as_of=AS_OF)
    found = {c.segment: c.warnings for c in full.segments}
    assert any(w.startswith("overlaps also-buyers: Jaccard 1.00") for w in found["buyers"]), found

    def no_overlaps(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a re-evaluation grouped every open stay")

    monkeypatch.setattr(engine, "overlaps", no_overlaps)
    again = evaluate(store, twins, as_of=AS_OF, person_ids=[ids["p3@x.example"]])
    assert {c.segment: [w for w in c.warnings if w.startswith("overlaps")] for c in again.segments} == {
        name: [w for w in lines if w.startswith("overlaps")] for name, lines in found.items()
    }
    # A segment that never ran has nothing to carry: the overlaps are measured.
    measured: list[int] = []
    monkeypatch.undo()
    real = engine.overlaps
    monkeypatch.setattr(engine, "overlaps", lambda *a, **k: measured.append(1) or real(*a, **k))
    grown = ruleset({"buyers": {"orders": {"gte": 1}}, "also-buyers": {"monetary": {"gt": 0}},
                     "new-twin": {"orders": {"gte": 1}}})
    evaluate(store, grown, as_of=AS_OF, person_ids=[ids["p3@x.example"]])
    assert measured == [1]


@pytest.mark.parametrize("enabled", [True, False])
def test_the_cyclic_collector_is_off_during_a_run_and_restored_after(
    store: Store, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    import gc

    import segment_rules.engine as engine

    seen: list[bool] = []
    real = engine.compute

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.append(gc.isenabled())
        return real(*args, **kwargs)

    load(store, {"a@x.example": [(5.0, 20)]})
    monkeypatch.setattr(engine, "compute", spy)
    (gc.enable if enabled else gc.disable)()
    try:
        evaluate(store, ruleset({"buyers": {"orders": {"gte": 1}}}), as_of=AS_OF)
        with pytest.raises(ValueError, match="boom"):
            monkeypatch.setattr(engine, "write_memberships", lambda *a, **k: (_ for _ in ()).throw(ValueError("boom")))
            evaluate(store, ruleset({"buyers": {"orders": {"gte": 1}}}), as_of=AS_OF)
        assert gc.isenabled() is enabled  # as it was, after a run and after a failed one
    finally:
        gc.enable()
    assert seen == [False, False]


# Event conditions the activity pass counts (no attribute filters) and the SQL that counts them otherwise.
PASS_EVENTS = st.one_of(
    st.builds(lambda t, d, k: {"event": t, "within": f"{d}d", "count": {"gte": k}},
              st.sampled_from(["order", "email_open", "session"]), st.sampled_from([0, 1, 30, 90]), st.integers(1, 3)),
    st.builds(lambda d, x: {"event": "order", "within": f"{d}d", "sum": {"gte": x}},
              st.sampled_from([30, 90, 365]), st.sampled_from([0.25, 20.5, 70])),
    st.builds(lambda a, b, k: {"event": "order", "after": a, "before": b, "count": {"gte": k}},
              st.sampled_from(["2026-03-03", "2025-12-01"]), st.sampled_from(["2026-05-22", "2026-06-01"]),
              st.integers(1, 2)),
    st.builds(lambda k: {"not": {"event": "email_click", "count": {"gte": k}}}, st.integers(1, 2)),
)
EVENTS_OF = st.lists(st.tuples(st.sampled_from(["email_open", "session", "email_click"]),
                               st.sampled_from([0.0, 1.0, 30.0, 89.9, 90.0, 200.0, -2.0])), max_size=5)
# Orders on and around the window edges, amounts that add up exactly in binary (so both sums agree), some
# cancelled or refunded (an event counts them; the order features do not).
EDGE_ORDERS = st.lists(st.tuples(st.sampled_from([0.0, 1.0, 30.0, 30.5, 90.0, 91.0, 365.0, 10.0, -1.0]),
                                 st.sampled_from([0.25, 10, 20.5, 60]),
                                 st.sampled_from([None, None, "cancelled", "refunded"])), max_size=5)


def load_flagged(store: Store, people: Mapping[str, tuple[list[Any], list[tuple[str, float]]]]) -> dict[str, int]:
    """:func:`load`, with orders that may carry a ``cancelled`` / ``refunded`` flag."""
    records: list[Record] = []
    for i, (email, (orders, events)) in enumerate(sorted(people.items())):
        acts = [
            ActivityData("order", f"{email}-o{j}", AS_OF - timedelta(days=days), Decimal(str(amount)), "EUR",
                         {flag: True} if flag else None, person_external_id=f"c{i}")
            for j, (days, amount, flag) in enumerate(orders)
        ]
        acts += [
            ActivityData(kind, f"{email}-e{j}", AS_OF - timedelta(days=days), person_external_id=f"c{i}")
            for j, (kind, days) in enumerate(events)
        ]
        records.append(Record("contact", f"c{i}", {"email": email}, person=PersonData(email=email),
                              activities=acts))
    store.commit_page("shop", "test", "contacts", Page(records, None))
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.identity.c.email, m.identity.c.person_id).where(m.identity.c.seen.is_(True)))
        return {str(e): int(p) for e, p in rows}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.dictionaries(st.sampled_from([f"p{i}@x.example" for i in range(6)]), st.tuples(EDGE_ORDERS, EVENTS_OF),
                    min_size=1),
    st.lists(PASS_EVENTS, min_size=1, max_size=4),
)
def test_events_counted_by_the_pass_equal_the_sql_aggregates(
    store: Store, people: dict[str, Any], conditions: list[Any]
) -> None:
    """A full run counts event windows in the activity pass; re-evaluating everyone incrementally takes the
    SQL aggregates instead: the memberships must not change."""
    reset(store)
    ids = load_flagged(store, people)
    rules = ruleset({f"s{i}": c for i, c in enumerate(conditions)})
    full = evaluate(store, rules, as_of=AS_OF)
    assert full.timings  # the run went through
    before = members(store)
    again = evaluate(store, rules, as_of=AS_OF, person_ids=sorted(ids.values()))
    assert members(store) == before
    assert all(c.entered == 0 and c.exited == 0 for c in again.segments), [vars(c) for c in again.segments]
