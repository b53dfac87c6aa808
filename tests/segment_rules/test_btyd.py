"""BG/NBD, Gamma-Gamma and CLV against data simulated from the models' own generative stories."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st

from segment_rules.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    customer_lifetime_value,
    holdout_check,
    select_spend_sample,
    simple_clv,
    summary_from_transactions,
)
from tests.segment_rules.cdnow import Summary
from tests.segment_rules.simulation import simulate_bgnbd, simulate_spend

SLOW_PROPERTY = settings(max_examples=5, deadline=None)


def bgnbd(r: float, alpha: float, a: float, b: float) -> BetaGeoModel:
    """A model with known parameters, without fitting."""
    return BetaGeoModel.from_dict(
        {
            "model": "BetaGeoModel",
            "format_version": 1,
            "hyper_parameters": {},
            "params": {"r": r, "alpha": alpha, "a": a, "b": b},
            "standard_errors": dict.fromkeys(("r", "alpha", "a", "b")),
            "log_likelihood": 0.0,
            "fit": {"n_customers": 0, "total_weight": 0, "n_iter": 0},
        }
    )


def gamma_gamma(p: float, q: float, gamma: float) -> GammaGammaModel:
    return GammaGammaModel.from_dict(
        {
            "model": "GammaGammaModel",
            "format_version": 1,
            "hyper_parameters": {},
            "params": {"p": p, "q": q, "gamma": gamma},
            "standard_errors": dict.fromkeys(("p", "q", "gamma")),
            "log_likelihood": 0.0,
            "fit": {"n_customers": 0, "n_iter": 0, "frequency_spend_correlation": 0.0},
        }
    )


def assert_unbiased(residuals: np.ndarray, z: float = 4.5) -> None:
    """The residuals (actual - predicted, independent across customers) sum to zero within z standard errors."""
    bound = z * residuals.std() * np.sqrt(len(residuals))
    assert abs(residuals.sum()) < bound, (residuals.sum(), bound)


# ---------------------------------------------------------------------------------------------------------------
# BG/NBD


@SLOW_PROPERTY
@given(
    r=st.floats(0.2, 1.5),
    alpha=st.floats(1.0, 10.0),
    a=st.floats(0.3, 2.0),
    b=st.floats(1.0, 8.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_bgnbd_recovers_simulated_parameters(r: float, alpha: float, a: float, b: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 5000
    data = simulate_bgnbd(rng, n, r, alpha, a, b, T=rng.uniform(26, 78, n))
    model = BetaGeoModel().fit(data.frequency, data.recency, data.T)
    for name, truth in {"r": r, "alpha": alpha, "a": a, "b": b}.items():
        fitted, error = model.params_[name], model.standard_errors_[name]
        assert np.isfinite(error) and error > 0, name
        # Compared in log space, where the estimate is closer to normal; the standard error is the model's own,
        # so this also checks the Hessian.
        assert abs(np.log(fitted / truth)) < 4.5 * error / fitted, (name, fitted, truth, error)


def test_weights_equal_repeated_rows(cdnow_summary: Summary, cdnow_bgnbd: BetaGeoModel) -> None:
    s = cdnow_summary
    patterns, counts = np.unique(np.c_[s.frequency, s.recency, s.T], axis=0, return_counts=True)
    assert len(patterns) < len(s.frequency)
    weighted = BetaGeoModel().fit(patterns[:, 0], patterns[:, 1], patterns[:, 2], weights=counts)
    for name, value in cdnow_bgnbd.params_.items():
        assert weighted.params_[name] == pytest.approx(value, rel=1e-5), name
    assert weighted.log_likelihood_ == pytest.approx(cdnow_bgnbd.log_likelihood_, rel=1e-9)
    assert weighted.total_weight_ == len(s.frequency)


def test_conditional_forecasts_match_simulated_holdout() -> None:
    rng = np.random.default_rng(20050101)
    params = {"r": 0.5, "alpha": 6.0, "a": 0.8, "b": 2.5}
    n, horizon = 40_000, 26.0
    data = simulate_bgnbd(rng, n, **params, T=rng.uniform(10, 60, n), horizon=horizon)
    model = bgnbd(**params)
    x, tx, age = data.frequency, data.recency, data.T

    assert_unbiased(data.holdout - model.conditional_expected_purchases(horizon, x, tx, age))
    no_purchase = (data.holdout == 0).astype(float) - model.probability_no_purchase(horizon, x, tx, age)
    one_time = x == 0
    # Checked separately, since P(alive) = 1 for the one-time buyers and the formula has a different shape there.
    assert_unbiased(no_purchase[one_time])
    assert_unbiased(no_purchase[~one_time])


def test_unconditional_expectation_matches_simulation() -> None:
    rng = np.random.default_rng(7)
    params = {"r": 0.8, "alpha": 4.0, "a": 1.2, "b": 3.0}
    for age in (5.0, 52.0):
        data = simulate_bgnbd(rng, 40_000, **params, T=age)
        expected = float(bgnbd(**params).expected_purchases(age))
        assert_unbiased(data.frequency - expected)


def test_expected_purchases_of_a_new_customer_is_the_conditional_at_age_zero(cdnow_bgnbd: BetaGeoModel) -> None:
    horizons = np.array([1.0, 10.0, 39.0, 200.0])
    conditional = cdnow_bgnbd.conditional_expected_purchases(horizons, 0, 0, 0)
    assert np.allclose(cdnow_bgnbd.expected_purchases(horizons), conditional, rtol=1e-12)


def _paper_conditional_expectation(
    r: float, alpha: float, a: float, b: float, t: float, x: np.ndarray, tx: np.ndarray, T: np.ndarray
) -> np.ndarray:
    """FHL (2005) eq. (10), term by term as printed."""
    z = t / (alpha + T + t)
    hyp = scipy.special.hyp2f1(r + x, b + x, a + b + x - 1, z)
    numerator = (a + b + x - 1) / (a - 1) * (1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp)
    odds = np.where(x > 0, a / (b + np.maximum(x, 1) - 1) * ((alpha + T) / (alpha + tx)) ** (r + x), 0.0)
    return np.asarray(numerator / (1 + odds), dtype=np.float64)


def test_conditional_expectation_equals_the_paper_formula(cdnow_bgnbd: BetaGeoModel) -> None:
    p = cdnow_bgnbd.params_
    x = np.arange(0, 40, dtype=float)
    tx = np.where(x > 0, np.linspace(1, 30, len(x)), 0.0)
    age = np.full_like(x, 38.86)
    paper = _paper_conditional_expectation(p["r"], p["alpha"], p["a"], p["b"], 39.0, x, tx, age)
    assert np.all(np.isfinite(paper))
    assert np.allclose(cdnow_bgnbd.conditional_expected_purchases(39.0, x, tx, age), paper, rtol=1e-8)


def test_frequent_buyers_stay_finite(cdnow_bgnbd: BetaGeoModel) -> None:
    p = cdnow_bgnbd.params_
    x = np.array([100.0, 1_000.0, 10_000.0, 100_000.0])
    age = np.full_like(x, 38.86)
    # The last purchase about one inter-purchase gap before T: a steady, still active buyer. (With a fixed gap,
    # say a week, a customer buying 1,000 times in 39 weeks would almost surely have dropped out.)
    tx = age - age / (x + 1)
    # The printed formula breaks down here: its hypergeometric series and powers overflow.
    with np.errstate(all="ignore"):
        paper = _paper_conditional_expectation(p["r"], p["alpha"], p["a"], p["b"], 39.0, x, tx, age)
    assert not np.all(np.isfinite(paper))

    expected = cdnow_bgnbd.conditional_expected_purchases(39.0, x, tx, age)
    alive = cdnow_bgnbd.probability_alive(x, tx, age)
    assert np.all(np.isfinite(expected)) and np.all(expected > 0)
    # An active customer's rate has posterior mean (r + x)/(alpha + T); dropout can only remove purchases.
    assert np.all(expected <= 39.0 * (p["r"] + x) / (p["alpha"] + age) * (1 + 1e-9))
    assert np.all((alive > 0.95) & (alive <= 1.0))
    assert np.all(np.diff(expected) > 0)
    # An active customer this frequent buys within 39 weeks for sure: no purchase means dropped out.
    none = cdnow_bgnbd.probability_no_purchase(39.0, x, tx, age)
    assert np.allclose(none, 1.0 - alive, rtol=0, atol=1e-12)


def test_fit_with_a_very_frequent_buyer(cdnow_summary: Summary) -> None:
    s = cdnow_summary
    frequency = np.append(s.frequency, 5_000.0)
    model = BetaGeoModel().fit(frequency, np.append(s.recency, 38.0), np.append(s.T, 38.86))
    assert np.isfinite(model.log_likelihood_)
    assert all(np.isfinite(v) for v in model.params_.values())


@settings(max_examples=50, deadline=None)
@given(
    x=st.integers(0, 50),
    tx_share=st.floats(0.0, 1.0),
    age=st.floats(1.0, 100.0),
    later=st.floats(0.1, 50.0),
    horizon=st.floats(0.1, 100.0),
)
def test_forecasts_behave_with_age(
    cdnow_bgnbd: BetaGeoModel, x: int, tx_share: float, age: float, later: float, horizon: float
) -> None:
    tx = tx_share * age if x > 0 else 0.0
    m = cdnow_bgnbd
    alive_now, alive_later = m.probability_alive(x, tx, age), m.probability_alive(x, tx, age + later)
    none_now, none_later = (
        m.probability_no_purchase(horizon, x, tx, age),
        m.probability_no_purchase(horizon, x, tx, age + later),
    )
    # Without a new purchase, the longer the silence, the less likely the customer is active or buys soon:
    # this holds for one-time buyers too, whose P(alive) stays 1.
    assert alive_later <= alive_now + 1e-12
    assert none_later >= none_now - 1e-12
    assert 0.0 <= none_now <= 1.0
    assert (alive_now == 1.0) == (x == 0)
    longer = m.probability_no_purchase(horizon + later, x, tx, age)
    assert longer <= none_now + 1e-12


# ---------------------------------------------------------------------------------------------------------------
# Gamma-Gamma


@SLOW_PROPERTY
@given(
    p=st.floats(2.0, 8.0),
    q=st.floats(2.0, 6.0),
    gamma=st.floats(5.0, 50.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_gamma_gamma_recovers_simulated_parameters(p: float, q: float, gamma: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    frequency = (1 + rng.poisson(3.0, 4000)).astype(np.float64)
    spend = simulate_spend(rng, frequency, p, q, gamma)
    model = GammaGammaModel().fit(frequency, spend)
    for name, truth in {"p": p, "q": q, "gamma": gamma}.items():
        fitted, error = model.params_[name], model.standard_errors_[name]
        assert abs(np.log(fitted / truth)) < 4.5 * error / fitted, (name, fitted, truth, error)


def test_conditional_spend_matches_simulated_next_transaction() -> None:
    rng = np.random.default_rng(13)
    p, q, gamma = 6.0, 3.5, 15.0
    n = 40_000
    frequency = (1 + rng.poisson(2.0, n)).astype(np.float64)
    nu = rng.gamma(q, 1.0 / gamma, n)
    mean_spend = rng.gamma(p * frequency, 1.0 / nu) / frequency
    next_transaction = rng.gamma(p, 1.0 / nu)
    expected = gamma_gamma(p, q, gamma).conditional_expected_average_profit(frequency, mean_spend)
    assert_unbiased(next_transaction - expected)


def test_conditional_spend_shrinks_towards_the_population_mean() -> None:
    model = gamma_gamma(6.25, 3.74, 15.44)
    population = float(model.conditional_expected_average_profit(0, 0))
    assert population == pytest.approx(6.25 * 15.44 / 2.74)
    x = np.array([1.0, 2.0, 10.0, 1000.0])
    for own in (5.0, 200.0):
        estimate = model.conditional_expected_average_profit(x, np.full_like(x, own))
        low, high = sorted((population, own))
        assert np.all((estimate > low) & (estimate < high))
        assert np.all(np.diff(np.abs(estimate - own)) < 0)  # more purchases, more weight on the customer's mean
        assert estimate[-1] == pytest.approx(own, rel=0.01)


def test_gamma_gamma_rejects_non_positive_spend() -> None:
    with pytest.raises(ValueError, match="non-positive monetary values"):
        GammaGammaModel().fit([1, 2, 3, 1], [10.0, 0.0, 12.0, -5.0])
    with pytest.raises(ValueError, match="repeat buyers only"):
        GammaGammaModel().fit([0, 2, 3], [0.0, 11.0, 12.0])


def test_select_spend_sample_reports_what_it_drops() -> None:
    sample = select_spend_sample([0, 0, 1, 2, 3, 4], [0.0, 0.0, 0.0, -3.0, 20.0, 30.0])
    assert (sample.n_one_time, sample.n_non_positive) == (2, 2)
    assert sample.mask.tolist() == [False, False, False, False, True, True]
    assert sample.frequency.tolist() == [3.0, 4.0] and sample.monetary_value.tolist() == [20.0, 30.0]


# ---------------------------------------------------------------------------------------------------------------
# CLV


def test_undiscounted_clv_is_expected_purchases_times_expected_spend(
    cdnow_bgnbd: BetaGeoModel, cdnow_summary: Summary
) -> None:
    s = cdnow_summary
    gg = gamma_gamma(6.25, 3.74, 15.44)
    spend = np.where(s.frequency > 0, 30.0, 0.0)
    clv = customer_lifetime_value(cdnow_bgnbd, gg, s.frequency, s.recency, s.T, spend, 12, 0.0, 4.345)
    purchases = cdnow_bgnbd.conditional_expected_purchases(12 * 4.345, s.frequency, s.recency, s.T)
    assert np.allclose(clv, purchases * gg.conditional_expected_average_profit(s.frequency, spend), rtol=1e-10)

    discounted = customer_lifetime_value(cdnow_bgnbd, gg, s.frequency, s.recency, s.T, spend, 12, 0.01, 4.345)
    assert np.all(discounted < clv)
    # Discounting at 1 % a period can take off no more than the last period's discount factor.
    assert np.all(discounted > clv / 1.01**12)
    nothing = customer_lifetime_value(cdnow_bgnbd, gg, s.frequency, s.recency, s.T, spend, 0, 0.01)
    assert np.all(nothing == 0)
    with pytest.raises(ValueError):
        customer_lifetime_value(cdnow_bgnbd, gg, s.frequency, s.recency, s.T, spend, 12, -0.1)


def test_simple_clv() -> None:
    # Average order value $50, 4 orders a year, 3 years.
    assert float(simple_clv(50.0, 4.0, 3.0)) == 600.0
    values = simple_clv([50.0, 20.0], [4.0, 1.0], 3.0)
    assert values.tolist() == [600.0, 60.0]
    with pytest.raises(ValueError, match="aov"):
        simple_clv(-1.0, 4.0, 3.0)


# ---------------------------------------------------------------------------------------------------------------
# Transactions -> summary


def test_summary_counts_repeat_days_and_averages_their_totals() -> None:
    ids = ["a", "a", "a", "a", "a", "b", "c"]
    when = ["2024-01-01", "2024-01-01", "2024-01-08", "2024-01-22", "2024-01-22", "2024-01-15", "2024-02-05"]
    amounts = [10.0, 5.0, 20.0, 30.0, 10.0, 7.0, 99.0]
    summary = summary_from_transactions(ids, when, amounts, as_of="2024-01-29")
    # "c" first ordered after as_of: not a customer yet.
    assert summary.customer_ids.tolist() == ["a", "b"]
    # "a": three order days, so two repeats; the two orders of Jan 22 are one purchase worth 40.
    assert summary.frequency.tolist() == [2.0, 0.0]
    assert summary.recency.tolist() == [3.0, 0.0]
    assert summary.T.tolist() == [4.0, 2.0]
    assert summary.monetary_value is not None
    assert summary.monetary_value.tolist() == [30.0, 0.0]  # (20 + 40) / 2; the first day is acquisition

    shuffled = np.random.default_rng(0).permutation(len(ids))
    again = summary_from_transactions(
        np.array(ids)[shuffled], np.array(when)[shuffled], np.array(amounts)[shuffled], as_of="2024-01-29"
    )
    assert again.frequency.tolist() == summary.frequency.tolist()
    assert again.monetary_value is not None and again.monetary_value.tolist() == [30.0, 0.0]


def test_summary_holdout_columns() -> None:
    ids = [1, 1, 1, 1, 2, 3]
    when = ["2024-01-01", "2024-01-10", "2024-02-03", "2024-02-03", "2024-01-05", "2024-02-01"]
    amounts = [10.0, 20.0, 5.0, 6.0, 8.0, 50.0]
    summary = summary_from_transactions(
        ids, when, amounts, as_of="2024-02-28", period_days=1, calibration_end="2024-01-31"
    )
    assert summary.customer_ids.tolist() == [1, 2]  # 3 is a new customer of the holdout window
    assert summary.T.tolist() == [30.0, 26.0]
    assert summary.frequency_holdout is not None and summary.spend_holdout is not None
    assert summary.frequency_holdout.tolist() == [1.0, 0.0]  # two orders on one day
    assert summary.spend_holdout.tolist() == [11.0, 0.0]
    assert summary.duration_holdout == 28.0


def test_summary_days_are_utc_days() -> None:
    eastern = dt.timezone(dt.timedelta(hours=-5))
    when = [dt.datetime(2024, 1, 1, 12, tzinfo=eastern), dt.datetime(2024, 1, 1, 23, 30, tzinfo=eastern)]
    summary = summary_from_transactions(
        ["a", "a"], np.array(when, dtype=object), None, as_of="2024-01-08", period_days=1
    )
    # 23:30 at UTC-5 is already January 2 in UTC: two purchase days.
    assert summary.frequency.tolist() == [1.0]
    assert summary.recency.tolist() == [1.0]


def test_summary_rejects_bad_windows() -> None:
    with pytest.raises(ValueError, match="after as_of"):
        summary_from_transactions([1], ["2024-01-01"], None, as_of="2024-01-10", calibration_end="2024-02-01")
    with pytest.raises(ValueError, match="no transaction"):
        summary_from_transactions([1], ["2024-03-01"], None, as_of="2024-01-10")
    with pytest.raises(ValueError, match="holdout window is empty"):
        holdout_check([1, 1], ["2024-01-01", "2024-01-05"], [1.0, 2.0], "2024-01-10", "2024-01-10")


def test_bgnbd_rejects_impossible_histories() -> None:
    with pytest.raises(ValueError, match="larger than T"):
        BetaGeoModel().fit([1, 0], [5.0, 0.0], [4.0, 3.0])
    with pytest.raises(ValueError, match="whole numbers"):
        BetaGeoModel().fit([1.5, 0], [2.0, 0.0], [4.0, 3.0])
    with pytest.raises(ValueError, match="different lengths"):
        BetaGeoModel().fit([1, 0], [2.0], [4.0, 3.0])
    # Days since the last order passed as recency: a one-time buyer with a non-zero "recency".
    with pytest.raises(ValueError, match="not the time since the last order"):
        BetaGeoModel().fit([0, 1], [3.0, 2.0], [4.0, 4.0])


def test_a_customer_acquired_on_the_observation_date_is_accepted(cdnow_summary: Summary) -> None:
    s = cdnow_summary
    model = BetaGeoModel().fit(np.append(s.frequency, 0), np.append(s.recency, 0), np.append(s.T, 0))
    assert model.params_["r"] == pytest.approx(0.243, abs=5e-3)
    assert float(model.probability_no_purchase(39, 0, 0, 0)) < 1
