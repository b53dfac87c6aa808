"""RFM scores: the tie policy, the fixed-bin fall-back, monotonicity and the named segment table."""

from __future__ import annotations

import json
from typing import Literal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from segment_rules.btyd import summary_from_transactions
from segment_rules.rfm import DEFAULT_SEGMENTS, RFMScorer, fm_score, segment_table
from tests.segment_rules.cdnow import Transactions

# Populations with many ties: small integer ranges, as in real shops (order counts, whole days, round prices).
populations = hnp.arrays(
    np.float64,
    shape=st.tuples(st.integers(1, 200), st.just(3)),
    elements=st.integers(0, 40).map(float),
)
Policy = Literal["auto", "quantile", "fixed"]
policies: st.SearchStrategy[Policy] = st.sampled_from(["auto", "quantile", "fixed"])


def spread_population(n: int = 200, seed: int = 0) -> np.ndarray:
    """Distinct values in every column: quintiles apply."""
    rng = np.random.default_rng(seed)
    return np.asarray(
        np.c_[rng.permutation(n) + 1.0, rng.permutation(n) + 1.0, rng.permutation(n) * 3.5 + 10], dtype=np.float64
    )


# ---------------------------------------------------------------------------------------------------------------
# Tie policy


@settings(max_examples=30, deadline=None)
@given(X=populations, policy=policies, seed=st.integers(0, 2**32 - 1))
def test_scores_do_not_depend_on_row_order(X: np.ndarray, policy: Policy, seed: int) -> None:
    order = np.random.default_rng(seed).permutation(len(X))
    scorer = RFMScorer(policy=policy, min_customers=5).fit(X)
    shuffled = RFMScorer(policy=policy, min_customers=5).fit(X[order])
    assert shuffled.policy_ == scorer.policy_
    for name, edges in scorer.edges_.items():
        assert np.array_equal(shuffled.edges_[name], edges)
    assert np.array_equal(shuffled.transform(X[order]), scorer.transform(X)[order])


@settings(max_examples=30, deadline=None)
@given(X=populations, policy=policies)
def test_equal_customers_get_equal_scores(X: np.ndarray, policy: Policy) -> None:
    scores = RFMScorer(policy=policy, min_customers=5).fit_transform(X)
    for column in range(3):
        for value in np.unique(X[:, column]):
            assert len(np.unique(scores[X[:, column] == value, column])) == 1


@settings(max_examples=30, deadline=None)
@given(
    X=populations,
    queries=hnp.arrays(np.float64, st.integers(1, 50), elements=st.floats(0, 60)),
    policy=policies,
)
def test_better_values_never_score_lower(X: np.ndarray, queries: np.ndarray, policy: Policy) -> None:
    scorer = RFMScorer(policy=policy, min_customers=5).fit(X)
    # Population values and new values, in increasing order in every column.
    values = np.sort(np.concatenate([np.unique(X), queries]))
    scores = scorer.transform(np.c_[values, values, values])
    assert np.all((scores >= 1) & (scores <= 5))
    assert np.all(np.diff(scores[:, 0]) <= 0)  # more days since the last order: never a better R
    assert np.all(np.diff(scores[:, 1]) >= 0)
    assert np.all(np.diff(scores[:, 2]) >= 0)


def test_quintiles_of_distinct_values() -> None:
    X = spread_population(200)
    scorer = RFMScorer().fit(X)
    assert scorer.policy_ == {"recency": "quantile", "frequency": "quantile", "monetary": "quantile"}
    scores = scorer.transform(X)
    for column in range(3):
        assert np.bincount(scores[:, column], minlength=6)[1:].tolist() == [40] * 5
    # The most recent fifth (1-40 days) scores R = 5; the top fifth of orders and spend score 5.
    assert np.all(scores[X[:, 0] <= 40, 0] == 5) and np.all(scores[X[:, 0] > 160, 0] == 1)
    assert np.all(scores[X[:, 1] > 160, 1] == 5) and np.all(scores[X[:, 1] <= 40, 1] == 1)


def test_a_tied_block_gets_the_score_of_its_middle() -> None:
    # 100 customers; 10 of them share the value 20, at ranks 18-27, across the 20 % boundary. The block's
    # mid-rank percentile is (17 + 10/2) / 100 = 0.22, so the whole block scores ceil(5 x 0.22) = 2 (its lowest
    # rank would give 1, and rank(method="first") would split it between 1 and 2).
    values = np.concatenate([np.arange(1.0, 18.0), np.full(10, 20.0), np.arange(28.0, 101.0)])
    X = np.c_[values, values, values]
    scores = RFMScorer(policy="quantile").fit_transform(X)
    block = values == 20.0
    assert np.all(scores[block, 1] == 2)
    assert np.all(scores[values == 17.0, 1] == 1)
    assert np.all(scores[values == 28.0, 1] == 2)
    # Recency is reversed (fewer days is better): 73 customers are worse, so the block's percentile is
    # (73 + 10/2) / 100 = 0.78 and it scores 4, again as one block.
    assert np.all(scores[block, 0] == 4)


def test_scoring_a_row_alone_or_in_a_batch_gives_the_same_score() -> None:
    scorer = RFMScorer().fit(spread_population(200))
    batch = spread_population(30, seed=5) * 1.3
    together = scorer.transform(batch)
    alone = np.vstack([scorer.transform(row[None, :]) for row in batch])
    assert np.array_equal(together, alone)


# ---------------------------------------------------------------------------------------------------------------
# Fall-back to fixed bins


def test_small_population_uses_fixed_bins() -> None:
    X = spread_population(30)
    scorer = RFMScorer(min_customers=50).fit(X)
    assert scorer.policy_ == {"recency": "fixed", "frequency": "fixed", "monetary": "fixed"}
    assert all("min_customers" in reason for reason in scorer.policy_reasons_.values())
    assert RFMScorer(min_customers=20).fit(X).policy_["frequency"] == "quantile"


def test_heavy_ties_fall_back_per_dimension() -> None:
    X = spread_population(200)
    X[:120, 1] = 1.0  # 60 % of customers ordered once
    scorer = RFMScorer().fit(X)
    assert scorer.policy_ == {"recency": "quantile", "frequency": "fixed", "monetary": "quantile"}
    assert "60.0%" in scorer.policy_reasons_["frequency"]
    # Allowing the tie does not make quintiles usable: the block takes levels 1-3 at once.
    tolerant = RFMScorer(max_tie_share=0.7).fit(X)
    assert tolerant.policy_["frequency"] == "fixed"
    assert "levels" in tolerant.policy_reasons_["frequency"]


def test_max_tie_share_is_configurable() -> None:
    X = spread_population(200)
    X[:60, 1] = 1.0  # 30 %: every quintile level is still used
    assert RFMScorer().fit(X).policy_["frequency"] == "quantile"
    strict = RFMScorer(max_tie_share=0.25).fit(X)
    assert strict.policy_["frequency"] == "fixed"
    assert "max_tie_share=0.25" in strict.policy_reasons_["frequency"]


def test_collapsed_quintiles_fall_back() -> None:
    # Three values, a third of the customers each: no single value dominates (33 % < 40 %), but quintile scores
    # can only take three levels.
    X = spread_population(300)
    X[:, 1] = np.repeat([1.0, 2.0, 3.0], 100)
    scorer = RFMScorer().fit(X)
    assert scorer.policy_["frequency"] == "fixed"
    assert "3 of 5 levels" in scorer.policy_reasons_["frequency"]
    forced = RFMScorer(policy="quantile").fit(X)
    assert forced.policy_["frequency"] == "quantile"
    assert len(np.unique(forced.transform(X)[:, 1])) == 3


def test_fixed_bins_are_the_documented_business_bins() -> None:
    # Spend 0 (ignored for the median), 50, 100 and 600: the median spend is 100, bins at 25, 50, 200 and 400.
    population = np.c_[[5.0, 10.0, 20.0, 30.0], [1.0, 1.0, 2.0, 3.0], [0.0, 50.0, 100.0, 600.0]]
    scorer = RFMScorer(policy="fixed").fit(population)
    days = [0, 30, 31, 90, 91, 180, 181, 365, 366, 5000]
    orders = [0, 1, 2, 3, 4, 5, 6, 50, 1, 1]
    spend = [0, 24.99, 25, 49.99, 50, 199.99, 200, 399.99, 400, 10_000]
    scores = scorer.transform(np.c_[days, orders, spend])
    assert scores[:, 0].tolist() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert scores[:, 1].tolist() == [1, 1, 2, 3, 4, 4, 5, 5, 1, 1]
    assert scores[:, 2].tolist() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


def test_fixed_monetary_thresholds_in_shop_currency() -> None:
    scorer = RFMScorer(policy="fixed", monetary_edges=(100, 200, 300, 400)).fit(spread_population(60))
    scores = scorer.transform(np.c_[[1.0] * 5, [1.0] * 5, [99.0, 100.0, 250.0, 399.0, 400.0]])
    assert scores[:, 2].tolist() == [1, 2, 3, 4, 5]
    assert scorer.edges_["monetary"].tolist() == [100, 200, 300, 400]


def test_nobody_spent_anything() -> None:
    X = np.c_[np.arange(60.0), np.ones(60), np.zeros(60)]
    scores = RFMScorer().fit_transform(X)
    assert np.all(scores[:, 2] == 1)


def test_cdnow_order_counts_fall_back_to_fixed_bins(cdnow_transactions: Transactions) -> None:
    t = cdnow_transactions
    summary = summary_from_transactions(t.customer_ids, t.dates, None, as_of="1998-06-30", period_days=1)
    orders = summary.frequency + 1
    spend = np.bincount(np.searchsorted(summary.customer_ids, t.customer_ids), weights=t.amounts)
    X = np.c_[summary.T - summary.recency, orders, spend]
    scorer = RFMScorer().fit(X)
    # About half of CDNOW's customers bought on a single day: order-count quintiles are meaningless.
    assert 0.45 < np.mean(orders == 1) < 0.55
    assert scorer.policy_["frequency"] == "fixed"
    assert scorer.policy_["recency"] == "quantile"


# ---------------------------------------------------------------------------------------------------------------
# Named segments


def test_default_table_is_total_and_names_eleven_segments() -> None:
    table = segment_table(DEFAULT_SEGMENTS)
    assert sorted(table) == [(r, fm) for r in range(1, 6) for fm in range(1, 6)]
    assert len(set(table.values())) == 11
    assert table[5, 5] == "champions" and table[1, 1] == "lost"
    assert table[5, 1] == "new_customers" and table[1, 5] == "cant_lose_them"
    assert table[2, 1] == "about_to_sleep" and table[1, 3] == "at_risk"


@settings(max_examples=100, deadline=None)
@given(rfm=st.tuples(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5)))
def test_every_score_triple_lands_in_exactly_one_segment(rfm: tuple[int, int, int]) -> None:
    scorer = RFMScorer().fit(spread_population(60))
    (name,) = scorer.segments_for(np.array([rfm]))
    r, f, m = rfm
    cell = f"{r}{fm_score(f, m)}"
    owners = [segment for segment, cells in DEFAULT_SEGMENTS.items() if cell in cells]
    assert owners == [name]


def test_fm_rounds_half_up() -> None:
    assert fm_score([4, 1, 3, 5, 1], [5, 2, 3, 1, 1]).tolist() == [5, 2, 3, 3, 1]


def test_lookup_is_anchored_not_a_substring_match() -> None:
    # R=3, F=1, M=2 is the code "312". An unanchored "[1-2][1-2]" pattern finds "12" in it and says
    # hibernating; the cell is (R=3, FM=2): need attention.
    scorer = RFMScorer().fit(spread_population(60))
    assert scorer.segments_for(np.array([[3, 1, 2]])).tolist() == ["need_attention"]


@pytest.mark.parametrize(
    ("groups", "message"),
    [
        ({**DEFAULT_SEGMENTS, "lost": ("1",)}, "not a cell code"),
        ({**DEFAULT_SEGMENTS, "lost": ("111",)}, "not a cell code"),
        ({**DEFAULT_SEGMENTS, "lost": ("11", "x11")}, "not a cell code"),
        ({**DEFAULT_SEGMENTS, "lost": "11"}, "a list of cell codes"),
        ({**DEFAULT_SEGMENTS, "lost": ("11", "12")}, "in both"),
        ({**DEFAULT_SEGMENTS, "lost": ()}, "without a segment: 11"),
    ],
)
def test_segment_table_rejects_bad_tables(groups: dict[str, tuple[str, ...]], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        segment_table(groups)


def test_a_custom_table_is_used_and_persisted() -> None:
    groups = {"active": [f"{r}{fm}" for r in (3, 4, 5) for fm in range(1, 6)]}
    groups["lapsed"] = [f"{r}{fm}" for r in (1, 2) for fm in range(1, 6)]
    X = spread_population(100)
    scorer = RFMScorer(segments=groups).fit(X)
    names = scorer.predict(X)
    assert set(names) == {"active", "lapsed"}
    assert np.array_equal(names == "active", scorer.transform(X)[:, 0] >= 3)
    loaded = RFMScorer.from_dict(json.loads(json.dumps(scorer.to_dict())))
    assert np.array_equal(loaded.predict(X), names)
    with pytest.raises(ValueError, match="without a segment"):
        RFMScorer(segments={"active": ["55"]}).fit(X)


def test_unreachable_levels_survive_json() -> None:
    # Half the customers ordered today: their tied block scores R = 4 (percentile 0.75), nobody reaches R = 5,
    # and that level's edge is infinite.
    X = spread_population(100)
    X[50:, 0] = 0.0
    scorer = RFMScorer(policy="quantile").fit(X)
    stored = json.loads(json.dumps(scorer.to_dict(), allow_nan=False))
    assert None in stored["edges"]["recency"]
    loaded = RFMScorer.from_dict(stored)
    queries = np.c_[[0.0, 1.0, 1000.0], [0.0, 1.0, 1000.0], [0.0, 1.0, 1000.0]]
    assert np.array_equal(loaded.transform(queries), scorer.transform(queries))


def test_invalid_input_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        RFMScorer().fit(np.ones((10, 2)))
    with pytest.raises(ValueError, match="non-negative"):
        RFMScorer().fit(np.c_[[-1.0, 2.0], [1.0, 1.0], [1.0, 1.0]])
    with pytest.raises(ValueError, match="policy"):
        RFMScorer(policy="rank").fit(spread_population(10))  # type: ignore[arg-type]
