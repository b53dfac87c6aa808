"""The scikit-learn estimator contract, and JSON persistence, for every segmentation model.

``sklearn.utils.estimator_checks`` assumes ``fit(X, y)`` estimators; these take (frequency, recency, T) or
(frequency, monetary_value), so the contract is tested directly.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

from segment_rules.btyd import BetaGeoModel, GammaGammaModel, select_spend_sample
from segment_rules.rfm import RFMScorer
from tests.segment_rules.cdnow import Summary


@dataclass(frozen=True)
class Case:
    """An estimator with non-default parameters, how to fit it, and what it predicts."""

    make: Callable[[], BaseEstimator]
    fit: Callable[[BaseEstimator, Summary], BaseEstimator]
    predict: Callable[[BaseEstimator, Summary], np.ndarray]


def _rfm_features(s: Summary) -> np.ndarray:
    """Days since the last order, orders, and repeat spend, from the weekly summary."""
    assert s.monetary_value is not None
    return np.asarray(np.c_[(s.T - s.recency) * 7, s.frequency + 1, s.frequency * s.monetary_value], dtype=float)


def _spend(s: Summary) -> tuple[np.ndarray, np.ndarray]:
    assert s.monetary_value is not None
    sample = select_spend_sample(s.frequency, s.monetary_value)
    return sample.frequency, sample.monetary_value


CASES = {
    "bgnbd": Case(
        make=lambda: BetaGeoModel(penalizer=0.001, max_iter=500),
        fit=lambda m, s: m.fit(s.frequency, s.recency, s.T),
        predict=lambda m, s: np.concatenate(
            [
                m.conditional_expected_purchases(39, s.frequency, s.recency, s.T),
                m.probability_alive(s.frequency, s.recency, s.T),
                m.probability_no_purchase(13, s.frequency, s.recency, s.T),
                m.expected_purchases(np.array([1.0, 39.0])),
            ]
        ),
    ),
    "gamma_gamma": Case(
        make=lambda: GammaGammaModel(penalizer=0.0, tol=1e-9),
        fit=lambda m, s: m.fit(*_spend(s)),
        predict=lambda m, s: m.conditional_expected_average_profit(s.frequency, s.monetary_value),
    ),
    "rfm": Case(
        make=lambda: RFMScorer(min_customers=10, monetary_edges=(10.0, 20.0, 50.0, 100.0)),
        fit=lambda m, s: m.fit(_rfm_features(s)),
        predict=lambda m, s: np.concatenate([m.transform(_rfm_features(s)).ravel(), m.predict(_rfm_features(s))]),
    ),
}


@pytest.fixture(params=sorted(CASES))
def case(request: pytest.FixtureRequest) -> Case:
    return CASES[request.param]


def _learned(estimator: BaseEstimator) -> list[str]:
    return [name for name in vars(estimator) if name.endswith("_") and not name.startswith("__")]


def test_init_only_stores_parameters(case: Case) -> None:
    estimator = case.make()
    assert set(vars(estimator)) == set(estimator.get_params())
    assert _learned(estimator) == []


def test_unfitted_use_raises_not_fitted(case: Case, cdnow_monetary: Summary) -> None:
    estimator = case.make()
    with pytest.raises(NotFittedError):
        case.predict(estimator, cdnow_monetary)
    with pytest.raises(NotFittedError):
        estimator.to_dict()


def test_fit_returns_self_and_sets_only_trailing_underscore_attributes(case: Case, cdnow_monetary: Summary) -> None:
    estimator = case.make()
    params = estimator.get_params()
    assert case.fit(estimator, cdnow_monetary) is estimator
    assert _learned(estimator)
    added = set(vars(estimator)) - set(params)
    assert all(name.endswith("_") for name in added), added
    assert estimator.get_params() == params  # fit does not touch the hyper-parameters
    # No reference to the training data: the fitted model pickles small whatever the data size.
    assert len(pickle.dumps(estimator)) < 5_000


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(case: Case, cdnow_monetary: Summary) -> None:
    fitted = case.fit(case.make(), cdnow_monetary)
    copy = clone(fitted)
    assert copy is not fitted
    assert copy.get_params() == fitted.get_params()
    assert _learned(copy) == []
    with pytest.raises(NotFittedError):
        case.predict(copy, cdnow_monetary)
    # And refitting the copy gives the same model.
    assert np.array_equal(
        case.predict(case.fit(copy, cdnow_monetary), cdnow_monetary), case.predict(fitted, cdnow_monetary)
    )


def test_set_params_round_trips(case: Case) -> None:
    estimator = case.make()
    params = estimator.get_params()
    other = type(estimator)().set_params(**params)
    assert other.get_params() == params


def test_json_round_trip_gives_identical_predictions(case: Case, cdnow_monetary: Summary) -> None:
    fitted = case.fit(case.make(), cdnow_monetary)
    stored: dict[str, Any] = json.loads(json.dumps(fitted.to_dict(), allow_nan=False))
    assert stored["model"] == type(fitted).__name__
    assert stored["format_version"] == 1
    assert stored["library_version"]
    assert stored["fit"]["n_customers"] > 0
    loaded = type(fitted).from_dict(stored)
    assert loaded.get_params() == fitted.get_params()
    assert np.array_equal(case.predict(loaded, cdnow_monetary), case.predict(fitted, cdnow_monetary))


def test_from_dict_rejects_other_models_and_newer_layouts(case: Case, cdnow_monetary: Summary) -> None:
    stored = case.fit(case.make(), cdnow_monetary).to_dict()
    cls = type(case.make())
    with pytest.raises(ValueError, match="not a"):
        cls.from_dict({**stored, "model": "SomethingElse"})
    with pytest.raises(ValueError, match="format_version"):
        cls.from_dict({**stored, "format_version": 99})
