"""The models reproduce the published CDNOW figures (Fader, Hardie & Lee 2005; Fader & Hardie 2013).

Published values are the external truth. Where the papers give no figure, values computed by ``lifetimes`` 0.11.3
(an independent implementation) on the same files serve as a cross-check; they are marked as such.
"""

from __future__ import annotations

import numpy as np
import pytest

from segment_rules.btyd import (
    BetaGeoModel,
    GammaGammaModel,
    customer_lifetime_value,
    holdout_check,
    select_spend_sample,
    summary_from_transactions,
)
from tests.segment_rules.cdnow import Summary, Transactions

CALIBRATION_END = "1997-09-30"  # week 39 of the cohort's observation
OBSERVATION_END = "1998-06-30"  # week 78


def test_bgnbd_reproduces_published_parameters(cdnow_bgnbd: BetaGeoModel) -> None:
    published = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
    for name, value in published.items():
        assert cdnow_bgnbd.params_[name] == pytest.approx(value, abs=5e-4), name


def test_bgnbd_reproduces_published_log_likelihood(cdnow_bgnbd: BetaGeoModel) -> None:
    assert cdnow_bgnbd.log_likelihood_ == pytest.approx(-9582.4, abs=0.1)


def test_bgnbd_reproduces_published_conditional_expectation(cdnow_bgnbd: BetaGeoModel) -> None:
    # Hardie's worked example (note 004): customer 1, two repeat purchases, the last at week 30.43, age 38.86.
    expected = cdnow_bgnbd.conditional_expected_purchases(39, 2, 30.43, 38.86)
    assert float(expected) == pytest.approx(1.226, abs=5e-4)


def test_bgnbd_published_parameters_give_the_published_expectation() -> None:
    # The same figure from the published (rounded) parameters, without any fitting.
    model = BetaGeoModel.from_dict(
        {
            "model": "BetaGeoModel",
            "format_version": 1,
            "hyper_parameters": {},
            "params": {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426},
            "standard_errors": {"r": None, "alpha": None, "a": None, "b": None},
            "log_likelihood": -9582.4,
            "fit": {"n_customers": 2357, "total_weight": 2357, "n_iter": 0},
        }
    )
    assert float(model.conditional_expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=5e-4)


def test_bgnbd_matches_lifetimes_standard_errors_and_forecast(
    cdnow_bgnbd: BetaGeoModel, cdnow_summary: Summary
) -> None:
    # Cross-check against lifetimes 0.11.3 on the same file: standard errors from its autograd Hessian, and the
    # sum of conditional expectations over the next 39 weeks.
    lifetimes_errors = {"r": 0.0126, "alpha": 0.378, "a": 0.186, "b": 0.705}
    for name, value in lifetimes_errors.items():
        assert cdnow_bgnbd.standard_errors_[name] == pytest.approx(value, abs=5e-4 if name != "r" else 5e-5), name
    s = cdnow_summary
    total = cdnow_bgnbd.conditional_expected_purchases(39, s.frequency, s.recency, s.T).sum()
    assert total == pytest.approx(1653.4, abs=0.05)


def test_probability_alive_is_one_without_repeat_purchases(cdnow_bgnbd: BetaGeoModel, cdnow_summary: Summary) -> None:
    s = cdnow_summary
    alive = cdnow_bgnbd.probability_alive(s.frequency, s.recency, s.T)
    one_time = s.frequency == 0
    assert one_time.sum() == 1411  # 2,357 customers, 946 repeat buyers
    assert np.all(alive[one_time] == 1.0)
    assert np.all(alive[~one_time] < 1.0) and np.all(alive[~one_time] > 0.0)


def test_gamma_gamma_reproduces_published_parameters(cdnow_monetary: Summary) -> None:
    assert cdnow_monetary.monetary_value is not None
    sample = select_spend_sample(cdnow_monetary.frequency, cdnow_monetary.monetary_value)
    # The published fit uses all 946 repeat buyers. The zero-mean-spend repeat buyer of CDNOW (master id 10244,
    # one $0.00 repeat order) is in the full 23,570-customer cohort, not in this 1/10 sample: every repeat buyer
    # here has a positive mean, so nothing is dropped, exactly as in the paper. On data with such customers,
    # select_spend_sample leaves them out of the fit and counts them.
    assert len(sample.frequency) == 946
    assert (sample.n_one_time, sample.n_non_positive) == (1411, 0)

    model = GammaGammaModel().fit(sample.frequency, sample.monetary_value)
    published = {"p": 6.25, "q": 3.74, "gamma": 15.44}
    for name, value in published.items():
        assert model.params_[name] == pytest.approx(value, abs=0.01), name

    # Cross-checks against lifetimes 0.11.3: standard errors, and the frequency-spend correlation its quickstart
    # reports for these customers (the model's independence assumption).
    for name, value in {"p": 1.19, "q": 0.29, "gamma": 4.16}.items():
        assert model.standard_errors_[name] == pytest.approx(value, abs=0.005), name
    assert model.frequency_spend_correlation_ == pytest.approx(0.1139, abs=5e-5)


def test_clv_matches_lifetimes(cdnow_bgnbd: BetaGeoModel, cdnow_monetary: Summary) -> None:
    # lifetimes 0.11.3: 12 monthly periods of 4.345 weeks, 1 % a month, over all 2,357 customers: mean $30.34.
    s = cdnow_monetary
    assert s.monetary_value is not None
    sample = select_spend_sample(s.frequency, s.monetary_value)
    gg = GammaGammaModel().fit(sample.frequency, sample.monetary_value)
    clv = customer_lifetime_value(cdnow_bgnbd, gg, s.frequency, s.recency, s.T, s.monetary_value, 12, 0.01, 4.345)
    assert clv.mean() == pytest.approx(30.34, abs=0.005)


def test_shipped_summaries_agree(cdnow_summary: Summary, cdnow_monetary: Summary) -> None:
    # Guards the fixtures themselves: the two files describe the same customers in the same order.
    assert np.array_equal(cdnow_summary.ids, cdnow_monetary.ids)
    for column in ("frequency", "recency", "T"):
        assert np.array_equal(getattr(cdnow_summary, column), getattr(cdnow_monetary, column))


def test_summary_from_transactions_reproduces_the_shipped_summary(
    cdnow_transactions: Transactions, cdnow_monetary: Summary
) -> None:
    t = cdnow_transactions
    assert len(t.customer_ids) == 6919
    summary = summary_from_transactions(
        t.customer_ids, t.dates, t.amounts, as_of=OBSERVATION_END, period_days=7, calibration_end=CALIBRATION_END
    )
    shipped = cdnow_monetary
    assert summary.monetary_value is not None and shipped.monetary_value is not None
    assert np.array_equal(summary.customer_ids, shipped.ids)
    assert np.array_equal(summary.frequency, shipped.frequency)
    # The shipped file rounds weeks to two decimals.
    assert np.array_equal(np.round(summary.recency, 2), shipped.recency)
    assert np.array_equal(np.round(summary.T, 2), shipped.T)
    assert np.allclose(summary.monetary_value, shipped.monetary_value, atol=0.005 + 1e-9)
    assert summary.observation_end == np.datetime64(CALIBRATION_END)


def test_summary_as_of_the_calibration_end_equals_the_calibration_summary(
    cdnow_transactions: Transactions, cdnow_summary: Summary
) -> None:
    t = cdnow_transactions
    summary = summary_from_transactions(t.customer_ids, t.dates, None, as_of=CALIBRATION_END)
    assert summary.monetary_value is None and summary.frequency_holdout is None
    assert np.array_equal(summary.frequency, cdnow_summary.frequency)
    assert np.array_equal(np.round(summary.T, 2), cdnow_summary.T)


def test_holdout_check_on_cdnow(cdnow_transactions: Transactions) -> None:
    t = cdnow_transactions
    report = holdout_check(t.customer_ids, t.dates, t.amounts, CALIBRATION_END, OBSERVATION_END)

    # Actuals, counted straight from the raw rows: distinct (customer, day) pairs and spend after week 39.
    after = t.dates > np.datetime64(CALIBRATION_END)
    assert report.actual_purchases_total == len(set(zip(t.customer_ids[after], t.dates[after], strict=True)))
    assert report.actual_spend_total == pytest.approx(t.amounts[after].sum())
    # Customer 1 (first row) bought once more after the calibration, on 1997-12-12 for $26.48.
    assert report.summary.customer_ids[0] == 1
    assert (report.actual_purchases[0], report.actual_spend[0]) == (1.0, pytest.approx(26.48))

    # The forecast is the published model's: the same 1,653.4 expected purchases as lifetimes.
    assert report.bgnbd.params_["r"] == pytest.approx(0.243, abs=5e-4)
    assert report.predicted_purchases_total == pytest.approx(1653.4, abs=0.05)
    assert report.summary.monetary_value is not None
    expected_spend = report.predicted_purchases * report.gamma_gamma.conditional_expected_average_profit(
        report.summary.frequency, report.summary.monetary_value
    )
    assert report.predicted_spend_total == pytest.approx(expected_spend.sum())
    assert report.purchases_mae == pytest.approx(np.abs(report.predicted_purchases - report.actual_purchases).mean())
    assert report.spend_mae == pytest.approx(np.abs(report.predicted_spend - report.actual_spend).mean())
    # Ranking is far better than chance but far from perfect: BTYD rank correlations with next-period spend are
    # around 0.4 on the full CDNOW cohort.
    assert 0.3 < report.purchases_spearman < 0.6
    assert 0.3 < report.spend_spearman < 0.6
    assert report.n_spend_dropped == 0
