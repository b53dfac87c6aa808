"""Gradient-boosted trees for churn that persist as plain JSON.

scikit-learn's :class:`~sklearn.ensemble.HistGradientBoostingClassifier` does the learning; its fitted trees are
then read out into arrays (feature, threshold, where missing values go, children, leaf values) and every
prediction is made from those arrays. A model rebuilt from JSON therefore predicts exactly as the fitted one,
with no pickle in the store and nothing tied to scikit-learn's private layout after the fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Self

import numpy as np
import scipy.special
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

FloatArray = NDArray[np.float64]

_FIELDS = ("feature", "threshold", "missing_left", "left", "right", "leaf", "value")


def _tree_arrays(nodes: Any) -> dict[str, NDArray[Any]]:
    """One fitted tree's node table (scikit-learn's structured ``nodes`` array) as plain arrays."""
    return {
        "feature": nodes["feature_idx"].astype(np.int64),
        "threshold": nodes["num_threshold"].astype(np.float64),
        "missing_left": nodes["missing_go_to_left"].astype(np.bool_),
        "left": nodes["left"].astype(np.int64),
        "right": nodes["right"].astype(np.int64),
        "leaf": nodes["is_leaf"].astype(np.bool_),
        "value": nodes["value"].astype(np.float64),
    }


def _tree_values(tree: Mapping[str, NDArray[Any]], X: FloatArray) -> FloatArray:
    """The leaf value every row of ``X`` reaches: numeric splits go left on ``x <= threshold``, NaN goes where
    the tree learned missing values go (as scikit-learn's own predictor walks them)."""
    rows = np.arange(len(X))
    node = np.zeros(len(X), dtype=np.int64)
    while True:
        inner = ~tree["leaf"][node]
        if not inner.any():
            return np.asarray(tree["value"][node], dtype=np.float64)
        at = node[inner]
        x = X[rows[inner], tree["feature"][at]]
        left = np.where(np.isnan(x), tree["missing_left"][at], x <= tree["threshold"][at])
        node[inner] = np.where(left, tree["left"][at], tree["right"][at])


class BoostedTrees(ClassifierMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """Binary gradient boosting on raw features (NaN allowed: the trees learn where missing values go).

    Args:
        learning_rate, max_iter, max_leaf_nodes, min_samples_leaf, l2_regularization: as in
            :class:`~sklearn.ensemble.HistGradientBoostingClassifier`; the defaults are deliberately modest
            (shallow trees, large leaves), since churn data are noisy and the model must generalise one horizon
            ahead rather than fit the training cutoffs.
        random_state: fixed, so the same data give the same trees.

    Attributes:
        trees_: the fitted trees as arrays. ``baseline_``: the raw score before the first tree.
        classes_: ``[0, 1]``. ``n_features_in_``: columns expected.
    """

    def __init__(
        self,
        learning_rate: float = 0.1,
        max_iter: int = 100,
        max_leaf_nodes: int = 15,
        min_samples_leaf: int = 100,
        l2_regularization: float = 1.0,
        random_state: int = 0,
    ) -> None:
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.max_leaf_nodes = max_leaf_nodes
        self.min_samples_leaf = min_samples_leaf
        self.l2_regularization = l2_regularization
        self.random_state = random_state

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Fits the trees on labels 0/1."""
        from sklearn.ensemble import HistGradientBoostingClassifier
        from threadpoolctl import threadpool_limits

        array = np.asarray(X, dtype=np.float64)
        labels = np.asarray(y).astype(np.int64)
        # One OpenMP thread: on the small machines the hub runs on, threads fighting over two cores made a fit of
        # 20,000 rows take 2-3 s instead of 0.9 s (and the daemon and the store need a core too).
        with threadpool_limits(limits=1, user_api="openmp"):
            booster = self._booster(HistGradientBoostingClassifier).fit(array, labels)
        # Binary classification grows one tree per iteration.
        self.trees_ = [_tree_arrays(predictors[0].nodes) for predictors in booster._predictors]
        self.baseline_ = float(np.ravel(booster._baseline_prediction)[0])
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = array.shape[1]
        return self

    def _booster(self, kind: Any) -> Any:
        return kind(
            learning_rate=self.learning_rate,
            max_iter=self.max_iter,
            max_leaf_nodes=self.max_leaf_nodes,
            min_samples_leaf=self.min_samples_leaf,
            l2_regularization=self.l2_regularization,
            early_stopping=False,
            random_state=self.random_state,
        )

    def decision_function(self, X: ArrayLike) -> FloatArray:
        """The raw score (log-odds of class 1) per row."""
        check_is_fitted(self)
        array = np.asarray(X, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != self.n_features_in_:
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {array.shape}")
        raw = np.full(len(array), self.baseline_)
        for tree in self.trees_:
            raw += _tree_values(tree, array)
        return raw

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Columns P(0), P(1)."""
        p = scipy.special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """The more likely class."""
        return (self.decision_function(X) > 0).astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        """Hyper-parameters and trees as JSON-ready data."""
        check_is_fitted(self)
        return {
            "hyper_parameters": self.get_params(),
            "baseline": self.baseline_,
            "n_features": self.n_features_in_,
            "trees": [{name: tree[name].tolist() for name in _FIELDS} for tree in self.trees_],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds a fitted model from :meth:`to_dict` output."""
        model = cls(**data["hyper_parameters"])
        dtypes = {"feature": np.int64, "left": np.int64, "right": np.int64, "missing_left": np.bool_,
                  "leaf": np.bool_, "threshold": np.float64, "value": np.float64}
        model.trees_ = [{name: np.asarray(tree[name], dtype=dtypes[name]) for name in _FIELDS}
                        for tree in data["trees"]]
        model.baseline_ = float(data["baseline"])
        model.classes_ = np.array([0, 1])
        model.n_features_in_ = int(data["n_features"])
        return model
