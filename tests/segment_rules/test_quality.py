"""Segment quality checks: sizes, instability, overlap, score bins, exclusive groups."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from hub.store import Store
from hub.store import models as m
from segment_rules.quality import (
    QualitySettings,
    SegmentStats,
    exclusive_gaps,
    overlap_warnings,
    overlaps,
    score_warnings,
    size_warnings,
)

SETTINGS = QualitySettings(min_size=20, min_share=0.01, max_segments=3, max_overlap=0.8, max_churn=0.5)


def test_sizes_emptiness_and_instability() -> None:
    stats = [
        SegmentStats("empty", 0, 0, 0, None),
        SegmentStats("tiny", 5, 5, 0, None),
        SegmentStats("thin", 50, 0, 0, 50),  # 50 of 10,000 people: 0.5 %
        SegmentStats("fine", 500, 10, 10, 500),
        SegmentStats("jumpy", 500, 200, 100, 400),  # 300 moved of 400: 75 %
    ]
    found = size_warnings(stats, 10_000, SETTINGS)
    assert found["empty"] == ["empty: no one matches the rule"]
    assert found["tiny"][0] == "too small: 5 members (fewer than 20)"
    assert found["thin"][0] == "too small: 0.5% of 10,000 people (less than 1%)"
    assert found["jumpy"][0].startswith("unstable: 200 entered and 100 left since the last run (75% of its previous")
    # Four segments are active, more than max_segments=3: each active one says so; the empty one does not.
    assert all(any(w.startswith("too many segments: 4") for w in found[n]) for n in ("tiny", "thin", "fine", "jumpy"))
    assert not any("too many" in w for w in found["empty"])
    assert [w for w in found["fine"] if not w.startswith("too many")] == []


@given(st.integers(0, 1000), st.integers(0, 1000), st.integers(1, 1000))
def test_instability_is_flagged_exactly_above_the_threshold(entered: int, exited: int, previous: int) -> None:
    stats = [SegmentStats("s", 100, entered, exited, previous)]
    flagged = any(w.startswith("unstable") for w in size_warnings(stats, 100, SETTINGS)["s"])
    assert flagged == ((entered + exited) / previous > SETTINGS.max_churn)


def test_overlap_is_reported_on_both_sides_except_within_a_group() -> None:
    stats = [SegmentStats("a", 100, 0, 0, None), SegmentStats("b", 100, 0, 0, None),
             SegmentStats("c", 100, 0, 0, None, group="g"), SegmentStats("d", 100, 0, 0, None, group="g")]
    jaccard = {("a", "b"): 0.9, ("c", "d"): 0.95, ("a", "c"): 0.5}
    found = overlap_warnings(jaccard, stats, SETTINGS)
    assert found == {
        "a": ["overlaps b: Jaccard 0.90 (more than 0.80), near-duplicates"],
        "b": ["overlaps a: Jaccard 0.90 (more than 0.80), near-duplicates"],
    }


def _stays(store: Store, members: dict[str, set[int]]) -> None:
    now = m.utcnow()
    with store.engine.begin() as conn:
        ids = sorted({p for people in members.values() for p in people})
        conn.execute(sa.insert(m.person), [
            {"id": p, "consent": "granted", "deleted": False, "created_at": now, "changed_at": now} for p in ids
        ])
        conn.execute(sa.insert(m.segment_membership), [
            {"person_id": p, "segment": s, "entered_at": now - timedelta(days=1), "exited_at": None, "held_out": False}
            for s, people in members.items() for p in people
        ])
        # A closed stay never counts.
        conn.execute(sa.insert(m.segment_membership).values(
            person_id=ids[0], segment="b", entered_at=now - timedelta(days=9), exited_at=now - timedelta(days=8),
            held_out=False))


def test_jaccard_from_the_open_stays(store: Store) -> None:
    members = {"a": set(range(1, 11)), "b": set(range(6, 16)), "c": {100}}
    _stays(store, members)
    stats = [SegmentStats(s, len(p), 0, 0, None) for s, p in members.items()]
    with store.engine.connect() as conn:
        jaccard = overlaps(conn, stats)
        gaps = exclusive_gaps(conn, {"ab": ("a", "b"), "ac": ("a", "c")})
        scoped = exclusive_gaps(conn, {"ab": ("a", "b")}, person_ids=[1, 7, 8, 15])
    assert jaccard == {("a", "b"): 5 / 15}  # 6..10 in common, 1..15 in all
    assert gaps == {"ab": 5, "ac": 0}
    assert scoped == {"ab": 2}  # of 1, 7, 8 and 15, only 7 and 8 hold both


def test_score_warnings_only_for_fallbacks_nobody_asked_for() -> None:
    policy = {"recency": "quantile", "frequency": "fixed", "monetary": "fixed"}
    reasons = {"recency": "quintiles of 900 customers", "frequency": "1 is held by 55.0% of customers",
               "monetary": "fixed bins requested"}
    assert score_warnings(policy, reasons) == ["RFM frequency uses fixed bins: 1 is held by 55.0% of customers"]
