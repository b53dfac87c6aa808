"""Churn risk: metrics, the out-of-time design, the model's estimator contract, and the choice between the model
and its baselines on shops where the answer is known.

- the seeded synthetic shop (``hub demo``'s business, loaded through the CSV connector) on SQLite and, with
  HUB_TEST_DATABASE_URL set, PostgreSQL: sensible out-of-time metrics, labels checked against the raw orders;
- a shop where email engagement predicts the next order and recency does not: the model must win;
- customers whose churn depends on recency alone, and a tiny shop: a baseline must win, with the reason.
"""

from __future__ import annotations

import json
import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.special
import sqlalchemy as sa
from hypothesis import assume, given
from hypothesis import strategies as st
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.metrics import average_precision_score, roc_auc_score
from sklearn.tree import DecisionTreeClassifier

from hub.contracts import ActivityData, Consent, Page, PersonData, Record
from hub.store import Store, open_store
from hub.store import models as m
from segment_rules.boosting import BoostedTrees
from segment_rules.btyd import BetaGeoModel
from segment_rules.churn import (
    BASELINES,
    BTYD_FEATURES,
    DEFAULT_FEATURES,
    RECENCY_FEATURES,
    ChurnModel,
    ChurnReport,
    ChurnScorer,
    ChurnSettings,
    CutoffData,
    Log1pColumns,
    Metrics,
    ScorerKind,
    brier_score,
    btyd_columns,
    choose_scorer,
    cutoff_plan,
    delong_test,
    fit_churn,
    fit_churn_arrays,
    logistic_pipeline,
    pr_auc,
    reliability,
    roc_auc,
    score_churn,
    top_decile_lift,
)
from segment_rules.scoring import FeatureArrays
from tests.conftest import PG_ENV, PG_SKIP_REASON, _pg_schema_url

SCORERS: tuple[ScorerKind, ...] = ("model", "recency", "frequency", "expected_purchases", "bgnbd")

# ----------------------------------------------------------------------------------------------- metrics

N_ROWS = st.integers(2, 60)
LABELLED = N_ROWS.flatmap(
    lambda n: st.tuples(
        st.lists(st.booleans(), min_size=n, max_size=n),
        # Few distinct values, so ties are common.
        st.lists(st.integers(0, 8), min_size=n, max_size=n),
    )
)


@given(LABELLED)
def test_roc_auc_matches_scikit_learn(case: tuple[list[bool], list[int]]) -> None:
    y, s = case
    assume(0 < sum(y) < len(y))
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)


@given(LABELLED)
def test_pr_auc_is_scikit_learns_average_precision(case: tuple[list[bool], list[int]]) -> None:
    y, s = case
    assume(any(y))
    assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


@given(LABELLED, st.sampled_from(["affine", "cube", "exp"]), st.randoms(use_true_random=False))
def test_ranking_metrics_ignore_monotone_transforms_and_row_order(
    case: tuple[list[bool], list[int]], transform: str, rnd: Any
) -> None:
    y, s = np.array(case[0]), np.array(case[1], dtype=float)
    assume(0 < y.sum() < len(y))
    t = {"affine": 3 * s + 7, "cube": s**3 + s, "exp": np.exp(s / 3)}[transform]
    order = list(range(len(y)))
    rnd.shuffle(order)
    for metric in (roc_auc, pr_auc, top_decile_lift):
        assert metric(y, t) == pytest.approx(metric(y, s), abs=1e-12)
        assert metric(y[order], t[order]) == pytest.approx(metric(y, s), abs=1e-12)


@given(st.lists(st.booleans(), min_size=1, max_size=80), st.randoms(use_true_random=False), st.booleans())
def test_lift_of_a_perfect_ranking_is_one_over_the_base_rate_capped_by_the_decile(
    y: list[bool], rnd: Any, tied: bool
) -> None:
    labels = np.array(y)
    assume(labels.any())
    # Churners above everyone else, with or without ties inside each class.
    jitter = np.zeros(len(y)) if tied else np.array([rnd.randint(0, 5) for _ in y], dtype=float)
    score = labels * 10.0 + jitter
    top = math.ceil(0.1 * len(y))
    assert top_decile_lift(labels, score) == pytest.approx(min(1 / labels.mean(), len(y) / top))


def test_lift_on_hand_computed_examples() -> None:
    # Ten customers, two churners, the top-scored one a churner: top decile = 1 customer, rate 1 / 0.2.
    y = [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    assert top_decile_lift(y, list(range(10, 0, -1))) == pytest.approx(5.0)
    # The worst ranking puts a non-churner on top.
    assert top_decile_lift(y, list(range(10))) == 0.0
    # Twenty customers, top decile = 2: one clear churner, then four tied of whom two churn, so the second
    # place is half a churner: rate 1.5 / 2 = 0.75 on a base rate of 3 / 20.
    y = [1, 1, 1, 0, 0] + [0] * 15
    s = [9, 5, 5, 5, 5] + [1] * 15
    assert top_decile_lift(y, s) == pytest.approx(0.75 / 0.15)
    # Everyone tied: no lift.
    assert top_decile_lift(y, [0] * 20) == pytest.approx(1.0)


def test_brier_score_and_undefined_metrics() -> None:
    assert brier_score([1, 0], [0.8, 0.4]) == pytest.approx((0.04 + 0.16) / 2)
    assert brier_score([True, False], [1.0, 0.0]) == 0.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1, 0], [1.2, 0.1])
    with pytest.raises(ValueError, match="0/1"):
        roc_auc([2, 0], [0.1, 0.2])
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert math.isnan(pr_auc([0, 0], [0.1, 0.2]))
    assert math.isnan(top_decile_lift([0, 0], [0.1, 0.2]))


# ----------------------------------------------------------------------------------------------- cutoffs

AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


@given(st.integers(1, 400), st.integers(1, 8), st.one_of(st.none(), st.integers(1, 200)))
def test_training_labels_never_reach_into_the_test_window(horizon: int, k: int, spacing: int | None) -> None:
    plan = cutoff_plan(AS_OF, horizon, k, spacing)
    assert len(plan.train) == len(plan.final) == k
    assert plan.label_end(plan.test) == AS_OF
    assert all(plan.label_end(c) <= plan.test for c in plan.train)
    assert all(plan.label_end(c) <= AS_OF for c in plan.final)
    assert max(plan.final) == plan.test
    assert list(plan.train) == sorted(set(plan.train))


def test_default_plan_uses_quarters_back_from_as_of() -> None:
    plan = ChurnSettings().plan(AS_OF)
    assert plan.test == AS_OF - timedelta(days=90)
    assert plan.train == tuple(AS_OF - timedelta(days=90 * j) for j in (5, 4, 3, 2))
    assert plan.final == tuple(AS_OF - timedelta(days=90 * j) for j in (4, 3, 2, 1))
    with pytest.raises(ValueError, match="positive"):
        cutoff_plan(AS_OF, 0)


def test_delong_agrees_with_a_paired_bootstrap() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    y = rng.uniform(size=n) < 0.3
    strong = y * 1.0 + rng.normal(0, 1.0, n)
    weak = y * 0.8 + rng.normal(0, 1.0, n)
    test = delong_test(y, strong, weak)
    assert test["auc_difference"] == pytest.approx(roc_auc(y, strong) - roc_auc(y, weak), abs=1e-12)
    diffs = []
    for _ in range(300):
        i = rng.integers(0, n, n)
        diffs.append(roc_auc(y[i], strong[i]) - roc_auc(y[i], weak[i]))
    assert test["standard_error"] == pytest.approx(float(np.std(diffs)), rel=0.2)
    assert 0 < test["p_value"] < 0.5 and test["z"] > 0
    # The same ranking twice: no difference, no evidence.
    same = delong_test(y, strong, strong * 2 + 1)
    assert same["auc_difference"] == 0 and same["p_value"] == 0.5


@given(st.lists(st.tuples(st.booleans(), st.floats(0, 1)), min_size=1, max_size=200))
def test_reliability_bins_account_for_every_customer(rows: list[tuple[bool, float]]) -> None:
    y = np.array([r[0] for r in rows])
    p = np.array([r[1] for r in rows])
    table, error = reliability(y, p)
    assert sum(b["customers"] for b in table) == len(rows)
    for b in table:
        inside = (p >= b["low"]) & ((p < b["high"]) | (b["high"] == 1.0))
        assert b["customers"] == int(inside.sum())
        assert b["observed"] == pytest.approx(float(y[inside].mean()), abs=5e-5)
    gaps = sum(b["customers"] * abs(b["mean_predicted"] - b["observed"]) for b in table) / len(rows)
    assert error == pytest.approx(gaps, abs=1e-3)
    _, zero_error = reliability(y, y.astype(float))
    assert zero_error == 0.0


def test_boosted_trees_predict_as_scikit_learn_and_round_trip_through_json() -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(8)
    X = rng.normal(size=(3000, 4))
    X[rng.uniform(size=X.shape) < 0.15] = np.nan
    y = (np.nan_to_num(X[:, 0]) + np.nan_to_num(X[:, 1]) ** 2 + rng.normal(size=3000) > 1).astype(int)
    ours = BoostedTrees(max_iter=30, min_samples_leaf=20).fit(X, y)
    theirs = HistGradientBoostingClassifier(
        max_iter=30, min_samples_leaf=20, max_leaf_nodes=15, l2_regularization=1.0, early_stopping=False,
        random_state=0,
    ).fit(X, y)
    assert np.allclose(ours.predict_proba(X), theirs.predict_proba(X), atol=1e-12)
    again = BoostedTrees.from_dict(json.loads(json.dumps(ours.to_dict(), allow_nan=False)))
    assert np.array_equal(again.predict_proba(X), ours.predict_proba(X))
    with pytest.raises(ValueError, match="shape"):
        ours.predict_proba(X[:, :3])


# ----------------------------------------------------------------------------------------------- choice


def metrics(auc: float) -> Metrics:
    return Metrics(auc, 0.9, 0.1, 1.1, 500, 400)


@pytest.mark.parametrize(
    ("aucs", "shortage", "chosen", "phrase"),
    [
        ({"model": 0.85, "recency": 0.79, "bgnbd": 0.78}, None, "model", "the model scores better than recency alone"),
        ({"model": 0.792, "recency": 0.79, "bgnbd": 0.78}, None, "recency", "recency alone scores as well as"),
        ({"model": 0.80, "recency": 0.76, "expected_purchases": 0.798}, None, "expected_purchases",
         "BG/NBD expected purchases scores as well"),
        ({"model": 0.80, "recency": 0.76, "bgnbd": 0.798}, None, "bgnbd", "probability of no purchase scores as well"),
        ({"model": 0.793, "frequency": 0.79, "bgnbd": 0.77}, None, "frequency", "the order count alone scores as"),
        ({"model": 0.95, "recency": 0.79, "bgnbd": None}, "12 churners", "recency", "too few data"),
        ({"model": 0.95, "recency": None, "bgnbd": 0.7}, "12 churners", "bgnbd", "(12 churners): using BG/NBD"),
    ],
)
def test_the_model_must_beat_the_best_baseline_by_the_margin(
    aucs: dict[str, float | None], shortage: str | None, chosen: str, phrase: str
) -> None:
    table = {k: None if v is None else metrics(v) for k, v in aucs.items()}
    kind, reason = choose_scorer(table, margin=0.005, shortage=shortage)
    assert kind == chosen
    assert phrase in reason
    if shortage is None:
        winner = max(v for v in aucs.values() if v is not None)
        assert f"{winner:.3f}" in reason


@pytest.mark.parametrize(
    ("p_value", "chosen"), [(0.01, "model"), (0.05, "model"), (0.2, "recency"), (math.nan, "recency")]
)
def test_a_gain_within_chance_keeps_the_simpler_scorer(p_value: float, chosen: str) -> None:
    table = {"model": metrics(0.85), "recency": metrics(0.80)}
    kind, reason = choose_scorer(table, margin=0.005, p_value=p_value, significance=0.05)
    assert kind == chosen
    if chosen == "recency":
        assert "within chance" in reason and "0.850 vs 0.800" in reason


def test_no_checked_scorer_leaves_the_choice_to_the_fallback() -> None:
    kind, reason = choose_scorer({"model": None, "recency": None, "bgnbd": None}, margin=0.005, shortage="3 customers")
    assert kind is None and reason == "3 customers"


# ----------------------------------------------------------------------------------------------- contract

FEATURES = ("recency_days", "orders", "click_to_open_rate", "email_opens_90d")


def training_rows(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rows over FEATURES, churn driven by recency and opens; the open rate is missing without opens."""
    rng = np.random.default_rng(seed)
    recency = rng.exponential(150, n)
    opens = rng.poisson(2, n).astype(float)
    rate = np.where(opens > 0, rng.uniform(0, 1, n), np.nan)
    X = np.column_stack([recency, 1 + rng.poisson(1, n), rate, opens])
    p = scipy.special.expit(-2 + 0.6 * np.log1p(recency) - 0.5 * opens)
    return X, rng.uniform(size=n) < p


def learned(estimator: Any) -> list[str]:
    return [name for name in vars(estimator) if name.endswith("_") and not name.startswith("__")]


def test_churn_model_follows_the_estimator_contract() -> None:
    X, y = training_rows()
    model = ChurnModel(horizon_days=60, features=FEATURES, n_cutoffs=3, cutoff_spacing_days=30)
    params = model.get_params()
    assert set(vars(model)) == set(params) and learned(model) == []
    with pytest.raises(NotFittedError):
        model.churn_probability(X)
    with pytest.raises(NotFittedError):
        model.to_dict()
    assert model.fit(X, y) is model
    assert all(name.endswith("_") for name in set(vars(model)) - set(params))
    assert model.get_params() == params
    assert len(pickle.dumps(model)) < 20_000  # no training data kept
    copy = clone(model)
    assert copy.get_params() == params and learned(copy) == []
    with pytest.raises(NotFittedError):
        copy.predict_proba(X)
    assert np.array_equal(copy.fit(X, y).churn_probability(X), model.churn_probability(X))
    assert ChurnModel().set_params(**params).get_params() == params
    proba = model.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0) and np.all((proba >= 0) & (proba <= 1))
    assert model.cutoff_plan(AS_OF) == cutoff_plan(AS_OF, 60, 3, 30)


def test_churn_model_learns_the_direction_of_its_features() -> None:
    X, y = training_rows(4000)
    coefficients = ChurnModel(features=FEATURES).fit(X, y).coefficients()
    assert coefficients is not None
    assert coefficients["recency_days"] > 0  # longer since the last order: more churn
    assert coefficients["email_opens_90d"] < 0  # more opens: less churn


@pytest.mark.parametrize("default", [True, False])
def test_json_round_trip_gives_identical_probabilities(default: bool) -> None:
    X, y = training_rows()
    classifier = None if default else logistic_pipeline(FEATURES, C=0.3)
    model = ChurnModel(features=FEATURES, classifier=classifier).fit(X, y)
    stored = json.loads(json.dumps(model.to_dict(), allow_nan=False))
    assert stored["model"] == "ChurnModel" and stored["format_version"] == 1 and stored["library_version"]
    loaded = ChurnModel.from_dict(stored)
    assert np.array_equal(loaded.churn_probability(X), model.churn_probability(X))
    assert loaded.coefficients() == model.coefficients()
    if default:
        assert loaded.get_params() == model.get_params()
    else:
        assert loaded.classifier.get_params()["logistic__C"] == 0.3
    with pytest.raises(ValueError, match="not a ChurnModel"):
        ChurnModel.from_dict({**stored, "model": "RFMScorer"})
    with pytest.raises(ValueError, match="format_version"):
        ChurnModel.from_dict({**stored, "format_version": 99})


def test_columns_without_variation_are_left_out() -> None:
    X, y = training_rows()
    X[:, 3] = 0.0  # a shop without an email tool: no opens anywhere
    X[:, 2] = np.nan
    model = ChurnModel(features=FEATURES).fit(X, y)
    assert model.features_ == ("recency_days", "orders")
    assert model.support_.tolist() == [True, True, False, False]
    assert set(model.coefficients() or {}) == {"intercept", "recency_days", "orders"}


def test_invalid_training_data_and_custom_classifiers() -> None:
    X, y = training_rows()
    with pytest.raises(ValueError, match="one class"):
        ChurnModel(features=FEATURES).fit(X, np.ones(len(X), dtype=bool))
    with pytest.raises(ValueError, match="columns"):
        ChurnModel(features=FEATURES).fit(X[:, :2], y)
    tree = ChurnModel(features=FEATURES, classifier=DecisionTreeClassifier(max_depth=3, random_state=0))
    p = tree.fit(np.nan_to_num(X), y).churn_probability(np.nan_to_num(X))
    assert np.all((p >= 0) & (p <= 1))
    assert tree.coefficients() is None
    with pytest.raises(TypeError, match="logistic"):
        tree.to_dict()


def test_log_transform_leaves_rates_and_missing_values_alone() -> None:
    pipeline = logistic_pipeline(DEFAULT_FEATURES)
    flags = dict(zip(DEFAULT_FEATURES, pipeline.named_steps["log"].columns, strict=True))
    assert flags["click_to_open_rate"] is False
    assert flags["monetary"] and flags["recency_days"] and flags["orders"]
    log = Log1pColumns((True, False)).fit(np.zeros((1, 2)))
    out = log.transform(np.array([[np.e - 1, 0.5], [np.nan, np.nan], [-3.0, 2.0]]))
    assert out[0].tolist() == pytest.approx([1.0, 0.5])
    assert np.isnan(out[1]).all()
    assert out[2].tolist() == [0.0, 2.0]


# ----------------------------------------------------------------------------------------------- array data


def cutoff_data(
    cutoff: datetime, names: tuple[str, ...], rng: np.random.Generator, n: int, *, labelled: bool = True
) -> CutoffData:
    """Customers whose churn depends on recency alone; every other feature is noise."""
    recency = rng.exponential(180, n)
    orders = 1 + rng.poisson(1.0, n).astype(float)
    columns = {
        "recency_days": recency,
        "orders": orders,
        "monetary": orders * rng.lognormal(3.5, 0.5, n),
        "email_opens_90d": rng.poisson(1.5, n).astype(float),
    }
    arrays = FeatureArrays(
        person_id=np.arange(1, n + 1, dtype=np.int64),
        orders=orders,
        order_days=orders,
        monetary=columns["monetary"],
        recency_days=recency,
        # Single-order customers bought once: first order = last order.
        age_days=np.where(orders > 1, recency + rng.uniform(30, 600, n), recency),
    )
    churned = rng.uniform(size=n) < scipy.special.expit(-3.0 + 0.8 * np.log1p(recency)) if labelled else None
    return CutoffData(cutoff, names, np.column_stack([columns[c] for c in names]), arrays, churned)


def recency_only_data(settings: ChurnSettings, n: int, seed: int) -> dict[datetime, CutoffData]:
    rng = np.random.default_rng(seed)
    names = settings.model().feature_names()
    data = {c: cutoff_data(c, names, rng, n) for c in settings.plan(AS_OF).labelled}
    data[AS_OF] = cutoff_data(AS_OF, names, rng, n, labelled=False)
    return data


NOISE_SETTINGS = ChurnSettings(features=("recency_days", "orders", "monetary", "email_opens_90d"))


def test_without_extra_signal_a_baseline_is_chosen_and_the_report_says_why() -> None:
    report = fit_churn_arrays(AS_OF, recency_only_data(NOISE_SETTINGS, 1500, seed=3), NOISE_SETTINGS)
    aucs = {k: v.roc_auc for k, v in report.metrics.items() if v is not None}
    assert set(aucs) == {*SCORERS, "p_alive"}
    baselines = ("recency", "frequency", "expected_purchases", "bgnbd")
    assert report.chosen in baselines
    assert aucs[report.chosen] == max(aucs[k] for k in baselines)
    assert "as well as the model on this shop" in report.reason or "within chance" in report.reason
    assert abs(aucs["model"] - aucs["recency"]) < 0.02  # the noise features add nothing
    assert report.scorer is not None and report.scorer.kind == report.chosen


def known_bgnbd() -> BetaGeoModel:
    """A BG/NBD model with fixed parameters (in weeks), without fitting."""
    return BetaGeoModel.from_dict({
        "model": "BetaGeoModel", "format_version": 1, "hyper_parameters": {},
        "params": {"r": 0.25, "alpha": 4.4, "a": 0.8, "b": 2.4},
        "standard_errors": dict.fromkeys(("r", "alpha", "a", "b")), "log_likelihood": 0.0,
        "fit": {"n_customers": 0, "total_weight": 0, "n_iter": 0},
    })


@pytest.mark.parametrize("kind", SCORERS)
def test_every_scorer_round_trips_through_json(kind: ScorerKind) -> None:
    data = recency_only_data(NOISE_SETTINGS, 600, seed=5)
    latest = data[AS_OF]
    train = [data[c] for c in NOISE_SETTINGS.plan(AS_OF).final]
    if kind == "bgnbd":
        scorer = ChurnScorer("bgnbd", 90, AS_OF, bgnbd=known_bgnbd())
    else:
        bgnbd = known_bgnbd()
        train = [d.with_columns(btyd_columns(bgnbd, d, 90)) for d in train]
        features = {
            "recency": RECENCY_FEATURES, "frequency": ("orders",), "expected_purchases": ("expected_purchases",),
            "model": (*NOISE_SETTINGS.model().feature_names(), *BTYD_FEATURES),
        }[kind]
        # The model kind with boosted trees on the BG/NBD columns: the richest layout to store.
        classifier = BoostedTrees(max_iter=20, min_samples_leaf=20) if kind == "model" else None
        model = NOISE_SETTINGS.model(classifier, features=features)
        X = np.concatenate([d.matrix(model.feature_names()) for d in train])
        y = np.concatenate([d.churned for d in train if d.churned is not None])
        scorer = ChurnScorer(kind, 90, AS_OF, model=model.fit(X, y), bgnbd=bgnbd)
    stored = json.loads(json.dumps(scorer.to_dict(), allow_nan=False))
    ids, p = score_churn(latest, scorer, AS_OF)
    ids2, p2 = score_churn(latest, stored)
    assert np.array_equal(ids, ids2) and np.array_equal(p, p2)
    assert np.array_equal(ChurnScorer.from_dict(stored).score(latest), p)
    assert np.all((p >= 0) & (p <= 1)) and len(p) == len(latest)
    with pytest.raises(ValueError, match="not"):
        score_churn(latest, scorer, AS_OF + timedelta(days=1))
    with pytest.raises(ValueError, match="not a ChurnScorer"):
        ChurnScorer.from_dict({**stored, "model": "ChurnModel"})


# ----------------------------------------------------------------------------------------------- store data


def commit(store: Store, people: list[tuple[list[ActivityData], str]]) -> None:
    """People (their activities, email) committed as contacts of one source, a hundred per page."""
    records = [
        Record("contact", f"c{i}", {"email": email}, person=PersonData(email=email, consent=Consent.GRANTED),
               activities=[ActivityData(a.type, a.external_id, a.occurred_at, a.amount, a.currency,
                                        person_external_id=f"c{i}") for a in acts])
        for i, (acts, email) in enumerate(people)
    ]
    for start in range(0, len(records), 100):
        store.commit_page("shop", "test", "contacts", Page(records[start : start + 100], None))


PERIOD = timedelta(days=90)
PERIODS = 7


def engagement_shop(store: Store, n: int = 400, seed: int = 11) -> tuple[datetime, dict[str, bool]]:
    """Customers whose next-quarter order follows this quarter's email opens, not their order history.

    Time runs in 90-day quarters ending at the cutoffs. In every quarter a customer is engaged or not (a fair
    coin, independent across quarters): engaged customers open about four emails in it and order in the next
    quarter with probability 0.85, the others open 0.3 and order with probability 0.15. Orders in a quarter
    thus depend on the previous quarter's engagement only, so at any cutoff recency and frequency say nothing
    about the next quarter, while the opens of the last 90 days say a lot.

    Returns:
        ``as_of`` (the end of the last quarter) and, by email, whether the customer is engaged in it.
    """
    rng = np.random.default_rng(seed)
    start = AS_OF - PERIODS * PERIOD

    def inside(quarter: int) -> datetime:
        # Strictly inside the quarter, away from the cutoffs at its ends.
        return start + quarter * PERIOD + timedelta(hours=float(rng.uniform(12, 89 * 24)))

    people: list[tuple[list[ActivityData], str]] = []
    engaged_now: dict[str, bool] = {}
    for i in range(n):
        email = f"p{i}@shop.example"
        acts = [ActivityData("order", f"{i}-o0", inside(0), Decimal("40"), "EUR")]
        engaged = rng.uniform(size=PERIODS) < 0.5
        for q in range(PERIODS):
            opens = rng.poisson(4.0 if engaged[q] else 0.3)
            acts += [ActivityData("email_open", f"{i}-e{q}-{j}", inside(q)) for j in range(opens)]
            if q + 1 < PERIODS and rng.uniform() < (0.85 if engaged[q] else 0.15):
                acts.append(ActivityData("order", f"{i}-o{q + 1}", inside(q + 1), Decimal("40"), "EUR"))
        people.append((acts, email))
        engaged_now[email] = bool(engaged[-1])
    commit(store, people)
    return AS_OF, engaged_now


def emails(store: Store) -> dict[int, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(m.identity.c.person_id, m.identity.c.email).where(m.identity.c.seen.is_(True)))
        return {int(pid): str(email) for pid, email in rows}


def test_engagement_that_predicts_orders_makes_the_model_win(store: Store) -> None:
    as_of, engaged = engagement_shop(store)
    with store.engine.connect() as conn:
        report = fit_churn(conn, as_of)
        ids, p = score_churn(conn, report, as_of)
    model, recency = report.metrics["model"], report.metrics["recency"]
    assert model is not None and recency is not None
    assert model.roc_auc > 0.75 and recency.roc_auc < 0.6
    assert report.chosen == "model"
    assert report.reason.startswith("the model scores better than")
    assert f"{model.roc_auc:.3f}" in report.reason
    # Engagement features count only where the shop has them: no web sessions, no clicks here.
    assert "email_opens_90d" in report.features
    assert not {"sessions_90d", "email_clicks_90d", "click_to_open_rate"} & set(report.features)
    # The classifier is the candidate cross-validation picked on the training cutoffs alone.
    assert report.candidate in report.cross_validation and report.cross_validation[report.candidate] is not None
    if report.candidate.startswith("logistic"):
        assert report.coefficients is not None and report.coefficients["email_opens_90d"] < 0
    # Scores at as_of follow the current quarter's engagement.
    by_email = emails(store)
    now = np.array([engaged[by_email[int(pid)]] for pid in ids])
    assert p[now].mean() < p[~now].mean() - 0.3


def test_a_tiny_shop_gets_a_baseline_and_the_reason(store: Store) -> None:
    rng = np.random.default_rng(2)
    people = []
    for i in range(30):
        days = np.sort(rng.uniform(1, 700, 1 + rng.poisson(2)))
        acts = [ActivityData("order", f"{i}-o{j}", AS_OF - timedelta(days=float(d)), Decimal("25"), "EUR")
                for j, d in enumerate(days)]
        people.append((acts, f"t{i}@shop.example"))
    commit(store, people)
    with store.engine.connect() as conn:
        report = fit_churn(conn, AS_OF)
        ids, p = score_churn(conn, report, AS_OF)
    assert report.chosen in BASELINES
    assert report.reason.startswith("too few data to choose a model on this shop")
    assert "200 needed" in report.reason
    assert len(ids) == 30 and np.all((p >= 0) & (p <= 1))


def test_an_empty_store_has_no_churn_scorer(store: Store) -> None:
    with store.engine.connect() as conn:
        report = fit_churn(conn, AS_OF)
        assert report.chosen is None and report.scorer is None
        assert "stay empty" in report.reason
        json.dumps(report.as_dict(), allow_nan=False)
        with pytest.raises(ValueError, match="no churn scorer"):
            score_churn(conn, report, AS_OF)


# ----------------------------------------------------------------------------------------------- the synthetic shop


@dataclass
class Shop:
    """The seeded synthetic business in a store, with its churn fit at the business's as_of."""

    store: Store
    as_of: datetime
    report: ChurnReport


def load_shop(url: str, folder: Path) -> Shop:
    from hub.config import load_config
    from hub.demo import prepare_demo
    from hub.registry import BuildContext
    from hub.sandbox.business import DEFAULT_AS_OF
    from hub.sync import build_source, sync_source

    workspace = prepare_demo(folder, contacts=3000, seed=7)
    loaded = load_config(workspace.config)
    store = open_store(url)
    context = BuildContext(resolve_secret=loaded.resolve_secret, base_dir=loaded.base_dir)
    for name in loaded.model.sources:
        sync_source(store, build_source(loaded, name, context), "csv")
    with store.engine.connect() as conn:
        report = fit_churn(conn, DEFAULT_AS_OF)
    return Shop(store, DEFAULT_AS_OF, report)


@pytest.fixture(scope="module")
def sqlite_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    folder = tmp_path_factory.mktemp("shop")
    shop = load_shop(f"sqlite:///{folder / 'hub.db'}", folder)
    yield shop
    shop.store.close()


@pytest.fixture(scope="module")
def postgres_shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(PG_SKIP_REASON)
    for url in _pg_schema_url(base):
        shop = load_shop(url, tmp_path_factory.mktemp("shop"))
        try:
            yield shop
        finally:
            shop.store.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shop(request: pytest.FixtureRequest) -> Shop:
    fixture: Shop = request.getfixturevalue(f"{request.param}_shop")
    return fixture


def test_out_of_time_metrics_on_the_synthetic_shop_are_sensible(shop: Shop) -> None:
    report = shop.report
    table = report.metrics
    assert all(table[k] is not None for k in (*SCORERS, "p_alive"))
    model, recency, bgnbd, p_alive = (table[k] for k in ("model", "recency", "bgnbd", "p_alive"))
    assert model is not None and recency is not None and bgnbd is not None and p_alive is not None
    assert model.roc_auc > 0.6 and recency.roc_auc > 0.6 and bgnbd.roc_auc > 0.6
    # The anti-baseline is reported, and shows why it is not used: one-time buyers look safest.
    assert p_alive.roc_auc < min(recency.roc_auc, bgnbd.roc_auc) - 0.1
    for scored in (model, recency, bgnbd):
        assert scored.top_decile_lift > 1
        assert scored.pr_auc > report.test_churners / report.test_customers  # above the no-skill floor
        assert scored.brier is not None and report.base_rate_brier is not None
        assert scored.brier < report.base_rate_brier
    assert report.chosen in SCORERS
    chosen = table[report.chosen]
    assert chosen is not None and f"{chosen.roc_auc:.3f}" in report.reason
    # Every scorer serves what it is ranked on: the chosen one never trails the best baseline out of time.
    assert chosen.roc_auc >= max(table[k].roc_auc for k in BASELINES if table[k] is not None)  # type: ignore[union-attr]
    assert model.reliability is not None and model.calibration_error is not None
    assert sum(b["customers"] for b in model.reliability) == report.test_customers
    json.dumps(report.as_dict(), allow_nan=False)


def test_labels_come_from_the_windows_after_each_cutoff_and_never_leak(shop: Shop) -> None:
    report, plan = shop.report, shop.report.plan
    assert all(plan.label_end(c) <= plan.test for c in plan.train)
    assert plan.label_end(plan.test) <= shop.as_of
    # The test cutoff's population and churners, recomputed from the raw rows.
    with shop.store.engine.connect() as conn:
        p = m.person
        in_scope = {
            int(pid) for pid, merged, deleted, consent in conn.execute(
                sa.select(p.c.id, p.c.merged_into, p.c.deleted, p.c.consent))
            if merged is None and not deleted and consent != Consent.OBJECTED.value
        }
        a = m.activity
        orders = [
            (int(pid), when) for pid, when, attrs, deleted in conn.execute(
                sa.select(a.c.person_id, a.c.occurred_at, a.c.attributes, a.c.deleted).where(a.c.type == "order"))
            if pid is not None and not deleted and not any((attrs or {}).get(k) for k in ("cancelled", "refunded"))
        ]
    customers = {pid for pid, when in orders if when <= plan.test and pid in in_scope}
    came_back = {pid for pid, when in orders if plan.test < when <= plan.label_end(plan.test)}
    assert report.test_customers == len(customers) > 1000
    assert report.test_churners == len(customers - came_back)
    first_train = [c for c in report.cutoffs if c["cutoff"] == plan.train[0].isoformat()]
    assert first_train and first_train[0]["customers"] == len(
        {pid for pid, when in orders if when <= plan.train[0] and pid in in_scope})


def test_the_chosen_scorer_scores_every_customer_and_survives_storage(shop: Shop) -> None:
    scorer = shop.report.scorer
    assert scorer is not None and scorer.kind == shop.report.chosen
    with shop.store.engine.connect() as conn:
        ids, p = score_churn(conn, shop.report, shop.as_of)
        stored = json.loads(json.dumps(scorer.to_dict(), allow_nan=False))
        ids2, p2 = score_churn(conn, stored, shop.as_of)
        some = ids[:50].tolist()
        ids3, p3 = score_churn(conn, stored, shop.as_of, person_ids=some)
    assert len(ids) > shop.report.test_customers  # everyone with an order by as_of, more than a quarter ago
    assert np.all(np.diff(ids) > 0)
    assert np.all((p >= 0) & (p <= 1)) and p.std() > 0.01
    assert np.array_equal(ids, ids2) and np.array_equal(p, p2)
    assert ids3.tolist() == some and np.array_equal(p3, p[:50])


@pytest.mark.postgres
def test_postgres_and_sqlite_agree_on_the_synthetic_shop(sqlite_shop: Shop, postgres_shop: Shop) -> None:
    a, b = sqlite_shop.report, postgres_shop.report
    assert a.cutoffs == b.cutoffs
    assert a.chosen == b.chosen and a.features == b.features
    for name, metric in a.metrics.items():
        other = b.metrics[name]
        assert metric is not None and other is not None
        assert other.roc_auc == pytest.approx(metric.roc_auc, abs=1e-9)
        assert other.top_decile_lift == pytest.approx(metric.top_decile_lift, abs=1e-9)
