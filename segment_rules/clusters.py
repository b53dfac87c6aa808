"""Cluster suggestions: k-means groups of people, described in words and proposed as rule files to adopt.

Clustering finds groups nobody has defined yet, but it is a poor source of tags: on typical recency,
frequency and spend data the separation is weak (the silhouette is nearly flat from k = 4 to 8), and another
algorithm or seed moves many people between clusters. So clusters are only ever *suggestions*.
:class:`ClusterSuggester` finds them and describes each one in words, and :func:`suggest_rule_files` writes one
candidate rule file per cluster, with thresholds on the original features. A person reviews the files, renames
the segments and moves the ones worth keeping into the active rules folder. From then on the segment is an
ordinary, frozen rule: refitting the clusters does not move its members, and its tags do not churn.

Clusters never change pushed tags by themselves. The files are written to a suggestions folder, never to the
active rules folder, and they name no destination, so even a rules folder that picked them up would push nothing.

Fitting
-------
``fit(X, feature_names)`` takes one row per person and one column per feature, named as in
:mod:`segment_rules.fields` (``recency_days``, ``orders``, ``monetary``, ``aov``, ``email_opens_90d``, ...):

1. Missing values (NaN) mean that the thing measured never happened. A missing time-since value
   (``recency_days`` without orders) is filled with the largest value seen in ``fit``, as lapsed as anyone.
   Any other missing value (``aov`` without orders, ``click_to_open_rate`` without opens) is filled with 0. The
   fill values are learned in ``fit`` and reused by ``predict``.
2. ``log1p`` is applied to non-negative features whose skewness is above ``skew_threshold``. Counts and spend
   are long-tailed, and without the log a few big spenders form clusters of their own.
3. Each feature is standardized (mean 0, standard deviation 1). A constant feature stays at 0.
4. k-means runs for every k from ``k_min`` to ``k_max`` on a sample of at most ``max_sample`` people (drawn
   with ``random_state``, so it is deterministic). Everyone is then assigned to the nearest centre.
5. Clusters are numbered by size, largest first (ties by centre). The numbers then depend on the partition
   only, not on the k-means seed or the row order.

Choosing k
----------
* A k is *eligible* when every one of its clusters holds at least ``min_cluster_share`` of all the people
  (counted over everyone, not just the sample), and none is empty.
* Among the eligible k, the best score wins: the largest silhouette (``criterion="silhouette"``, computed on
  at most ``silhouette_sample`` people) or the smallest Davies-Bouldin index (``"davies_bouldin"``).
* Ties go to the smaller k: the chosen k is the smallest eligible k whose score is within ``tie_tolerance``
  of the best one. When the separation is about as good either way, a map with fewer segments is easier to use.
* When no k is eligible, ``fit`` raises ValueError.

``scores_`` holds the table for every k tried (inertia, silhouette, Davies-Bouldin, smallest share,
eligible), and ``selection_`` says in one sentence why ``k_`` was chosen.

Profiles
--------
Each cluster is described by comparing its centre, the median of its members, with the population median,
feature by feature, on the transformed scale (``log1p`` where it was applied), in standard deviations of
the people who have a value. A shift of at least 0.5 earns a word:

========================================================== ============================= =============================
feature                                                    higher                        lower
========================================================== ============================= =============================
orders, frequency, rfm_f                                   frequent                      infrequent
orders_Nd                                                  frequent in the last N days   infrequent in the last N days
aov                                                        high order value              low order value
monetary, rfm_m                                            high spend                    low spend
spend_Nd                                                   high spend in the last N days low spend in the last N days
recency_days                                               lapsed                        recent
rfm_r                                                      recent                        lapsed
email_opens, email_clicks (any window), click_to_open_rate engaged with email            unengaged with email
sessions (any window), page_views_90d                      browsing often                rarely browsing
tenure_days                                                long-standing                 new
deals_won, deals_won_amount                                many won deals                few won deals
clv, clv_percentile, clv_simple                            high predicted value          low predicted value
expected_orders                                            expected to order             not expected to order
churn_probability                                          likely to churn               unlikely to churn
any other feature                                          high NAME                     low NAME
========================================================== ============================= =============================

Some words do not depend on the population. A median of 0 orders is "never ordered", and then nothing is
said about spend, order value or recency, since the cluster has none. A median of 1 order is "one-time
buyers". A median ``recency_days`` of at most 30 is "recent", and one above 365 is "lapsed" (as in the
packaged ``lapsed`` segment). Without an ``orders`` or ``frequency`` feature, a cluster whose members mostly have no
``recency_days`` has "never ordered" too. Features that most members have no value for are skipped. When
several features give words of one family (email opens and clicks, say), the one with the larger shift
speaks. Words come in a fixed order: orders, value, spend, recency, email, browsing, then the rest. A cluster
with no word is "close to the median on every feature".

Candidate rules
---------------
For each cluster, a shallow decision tree (depth ``rule_depth``) is trained one-vs-rest on the sample, on
the original units with the fill values of step 1. Every node's path becomes a candidate rule: an ``all:``
of ``FIELD: {gte: X}`` and ``FIELD: {lt: X}`` conditions. Thresholds are rounded to readable values
(integer fields to whole numbers, which keeps the rule exact on whole counts; other fields to two
significant figures). Each candidate is then evaluated on everyone, the way the rule language evaluates it:
a comparison with a missing value is false. The candidate with the best F1 against the cluster wins, and
ties go to fewer conditions. Its precision and recall, measured over everyone at ``fit``, are stored in
``rules_`` and written into the rule file as a comment.
"""

from __future__ import annotations

import json
import math
import os
import re
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.cluster import KMeans
from sklearn.metrics import davies_bouldin_score, pairwise_distances_argmin, silhouette_score
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from .btyd import FORMAT_VERSION, _package_version
from .fields import FieldType, lookup
from .language import NAME_RE
from .ruleset import DEFAULT_PROTECTED

__all__ = [
    "CandidateRule",
    "ClusterSuggester",
    "Condition",
    "KScore",
    "suggest_rule_files",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
Criterion = Literal["silhouette", "davies_bouldin"]

# Features where a missing value means "never": filled with the largest value seen, not with 0.
_TIME_SINCE_FEATURES = frozenset({"recency_days"})
# The shift of a cluster median from the population median, in standard deviations, that earns a word.
_WORD_SHIFT = 0.5
# Recency words that hold whatever the population: the RFM top recency score (30 days) and the packaged
# `lapsed` segment (no order in 12 months).
_RECENT_DAYS = 30
_LAPSED_DAYS = 365
_NUMERIC_TYPES = (FieldType.NUMBER, FieldType.INTEGER, FieldType.ANY)
_WINDOWED = re.compile(r"^(?P<stem>[a-z_]+?)_(?P<days>\d+)d$")
_MAX_RULE_DEPTH = 4
_COMMENT_WIDTH = 110


@dataclass(frozen=True, slots=True)
class KScore:
    """How well one k separates the people.

    Args:
        k: the number of clusters.
        inertia: k-means within-cluster sum of squares on the sample, in standardized units.
        silhouette: mean silhouette on at most ``silhouette_sample`` people (NaN if it cannot be computed).
        davies_bouldin: Davies-Bouldin index on the sample (lower is better).
        smallest_share: the smallest cluster's share of everyone.
        eligible: no cluster is empty, and every one holds at least ``min_cluster_share`` of everyone.
    """

    k: int
    inertia: float
    silhouette: float
    davies_bouldin: float
    smallest_share: float
    eligible: bool


@dataclass(frozen=True, slots=True)
class Condition:
    """``field >= value`` (``op="gte"``) or ``field < value`` (``op="lt"``), as written in a rule file."""

    field: str
    op: Literal["gte", "lt"]
    value: float


@dataclass(frozen=True, slots=True)
class CandidateRule:
    """The rule proposed for one cluster, and how well it matches the cluster.

    Args:
        cluster: the cluster number.
        conditions: all of them must hold; empty means everyone.
        matched: how many people the rule matched at ``fit``.
        precision: the share of the matched people who are in the cluster (0 when it matches nobody).
        recall: the share of the cluster that the rule matches.
    """

    cluster: int
    conditions: tuple[Condition, ...]
    matched: int
    precision: float
    recall: float


# ----------------------------------------------------------------------------------------------- vocabulary


@dataclass(frozen=True, slots=True)
class _Words:
    family: str
    higher: str
    lower: str


_ENGAGED = ("email", "engaged with email", "unengaged with email")
_BROWSING = ("browsing", "browsing often", "rarely browsing")
_VALUE = ("clv", "high predicted value", "low predicted value")
_DEALS = ("deals", "many won deals", "few won deals")
_VOCABULARY: Mapping[str, tuple[str, str, str]] = {
    "orders": ("orders", "frequent", "infrequent"),
    "frequency": ("orders", "frequent", "infrequent"),
    "rfm_f": ("orders", "frequent", "infrequent"),
    "aov": ("value", "high order value", "low order value"),
    "monetary": ("spend", "high spend", "low spend"),
    "spend": ("spend", "high spend", "low spend"),
    "rfm_m": ("spend", "high spend", "low spend"),
    "recency_days": ("recency", "lapsed", "recent"),
    "rfm_r": ("recency", "recent", "lapsed"),
    "email_opens": _ENGAGED,
    "email_clicks": _ENGAGED,
    "click_to_open_rate": _ENGAGED,
    "sessions": _BROWSING,
    "page_views": _BROWSING,
    "tenure_days": ("tenure", "long-standing", "new"),
    "deals_won": _DEALS,
    "deals_won_amount": _DEALS,
    "clv": _VALUE,
    "clv_percentile": _VALUE,
    "clv_simple": _VALUE,
    "expected_orders": ("expected", "expected to order", "not expected to order"),
    "churn_probability": ("churn", "likely to churn", "unlikely to churn"),
}
_FAMILY_ORDER = ("orders", "value", "spend", "recency", "email", "browsing", "tenure", "deals", "clv", "expected",
                 "churn")
# Families that describe orders: meaningless for a cluster that never ordered.
_ORDER_FAMILIES = frozenset({"value", "spend", "recency"})


def _words(name: str) -> _Words:
    if name in _VOCABULARY:
        return _Words(*_VOCABULARY[name])
    match = _WINDOWED.match(name)
    if match and match["stem"] in _VOCABULARY:
        family, higher, lower = _VOCABULARY[match["stem"]]
        if family in ("email", "browsing"):
            return _Words(family, higher, lower)
        # "frequent" all time and "frequent in the last 90 days" say different things: separate families.
        window = f" in the last {match['days']} days"
        return _Words(f"{family}{window}", higher + window, lower + window)
    return _Words(f"feature {name}", f"high {name}", f"low {name}")


def _family_rank(family: str) -> int:
    base = family.split(" in the last ")[0]
    return _FAMILY_ORDER.index(base) if base in _FAMILY_ORDER else len(_FAMILY_ORDER)


# ----------------------------------------------------------------------------------------------- numbers


def _readable(value: float, integer: bool) -> float:
    """A threshold rounded for people to read: whole numbers on integer fields, else two significant figures."""
    if integer:
        # Counts are whole, so ``x >= 2.5`` and ``x >= 3`` select the same people (and likewise for ``<``).
        return float(math.ceil(value))
    if value == 0 or not math.isfinite(value):
        return float(value)
    digits = 1 - math.floor(math.log10(abs(value)))
    return float(round(value, digits))


def _text(value: float) -> str:
    """A number as plain YAML: no exponent, no trailing zeros."""
    return str(np.format_float_positional(value, trim="-"))


def _shown(value: float) -> str:
    """A statistic for a comment: three significant figures."""
    if not math.isfinite(value):
        return "none"
    if value == 0:
        return "0"
    return _text(round(value, 2 - math.floor(math.log10(abs(value)))))


def _skewness(values: FloatArray) -> float:
    centred = values - values.mean()
    variance = float(np.mean(centred**2))
    if variance == 0:
        return 0.0
    return float(np.mean(centred**3) / variance**1.5)


def _present_median(values: FloatArray) -> float:
    present = values[~np.isnan(values)]
    return float(np.median(present)) if len(present) else math.nan


def _matches(conditions: Sequence[Condition], X: FloatArray, column: Mapping[str, int]) -> NDArray[np.bool_]:
    """Who satisfies all ``conditions``, as the rule language decides it: a missing value fails any comparison."""
    mask = np.ones(len(X), dtype=bool)
    for condition in conditions:
        values = X[:, column[condition.field]]
        mask &= values >= condition.value if condition.op == "gte" else values < condition.value
    return mask


def _transform(
    data: FloatArray, fill: FloatArray, log: NDArray[np.bool_], mean: FloatArray, scale: FloatArray
) -> FloatArray:
    """Fill missing values, ``log1p`` the ``log`` columns, standardize."""
    filled = np.where(np.isnan(data), fill, data)
    logged = np.where(log, np.log1p(np.where(log, filled, 0.0)), filled)
    return np.asarray((logged - mean) / scale, dtype=np.float64)


def _nan_to_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _none_to_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


# ----------------------------------------------------------------------------------------------- estimator


class ClusterSuggester(BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """Finds k-means clusters of people, chooses k, describes each cluster and proposes a rule for it.

    See the module docstring for the pipeline, the k criterion, the profile vocabulary and the rules.

    Args:
        k_min: the smallest k tried (at least 2).
        k_max: the largest k tried.
        min_cluster_share: a k is eligible only if every cluster holds at least this share of the people.
        criterion: ``"silhouette"`` (largest wins) or ``"davies_bouldin"`` (smallest wins).
        tie_tolerance: scores this close to the best eligible score count as ties, which go to the smaller k.
        n_init: k-means restarts per k (the best inertia is kept).
        max_sample: k-means, scaling and the rule trees use a sample of at most this many people.
        silhouette_sample: the silhouette uses a sample of at most this many people (it is quadratic).
        skew_threshold: ``log1p`` is applied to non-negative features more skewed than this; None never applies it.
        rule_depth: depth of the decision tree a cluster's rule comes from (so at most this many conditions).
        random_state: seed for the samples, k-means and the trees. An int makes every result reproducible,
            which suggestions need to stay reviewable between runs.

    Attributes:
        feature_names_in_: the feature names, in column order.
        n_features_in_: the number of features.
        fill_: per feature, the value a missing value is replaced with.
        log_features_: the features ``log1p`` is applied to.
        mean_: per feature, the mean subtracted (after fill and log).
        scale_: per feature, the standard deviation divided by (1 for a constant feature).
        scores_: one :class:`KScore` per k tried.
        selection_: why ``k_`` was chosen, in one sentence.
        k_: the chosen number of clusters.
        cluster_centers_: shape (k, n_features), the k-means centres in standardized units; ``predict`` assigns
            rows to the nearest one.
        centers_: shape (k, n_features), the median of each cluster's members in original units (NaN when no
            member has a value).
        population_median_: per feature, the median of everyone who has a value.
        sizes_: people per cluster at ``fit``.
        shares_: ``sizes_`` as shares of everyone.
        labels_: the cluster of each row given to ``fit``.
        profiles_: per cluster, the description in words.
        rules_: per cluster, the proposed :class:`CandidateRule`.
        n_people_: rows given to ``fit``.
        n_sample_: rows in the sample.
    """

    def __init__(
        self,
        k_min: int = 2,
        k_max: int = 8,
        min_cluster_share: float = 0.05,
        criterion: Criterion = "silhouette",
        tie_tolerance: float = 0.01,
        n_init: int = 10,
        max_sample: int = 50_000,
        silhouette_sample: int = 5_000,
        skew_threshold: float | None = 1.0,
        rule_depth: int = 3,
        random_state: int | None = 0,
    ) -> None:
        self.k_min = k_min
        self.k_max = k_max
        self.min_cluster_share = min_cluster_share
        self.criterion = criterion
        self.tie_tolerance = tie_tolerance
        self.n_init = n_init
        self.max_sample = max_sample
        self.silhouette_sample = silhouette_sample
        self.skew_threshold = skew_threshold
        self.rule_depth = rule_depth
        self.random_state = random_state

    # -- validation

    def _check_params(self) -> None:
        if not 2 <= self.k_min <= self.k_max:
            raise ValueError(f"need 2 <= k_min <= k_max, got k_min={self.k_min}, k_max={self.k_max}")
        if not 0 <= self.min_cluster_share < 1:
            raise ValueError(f"min_cluster_share must be in [0, 1), got {self.min_cluster_share}")
        if self.criterion not in ("silhouette", "davies_bouldin"):
            raise ValueError(f"criterion must be 'silhouette' or 'davies_bouldin', got {self.criterion!r}")
        if self.tie_tolerance < 0:
            raise ValueError("tie_tolerance must not be negative")
        if self.n_init < 1:
            raise ValueError("n_init must be at least 1")
        if self.max_sample <= self.k_max or self.silhouette_sample <= self.k_max:
            raise ValueError("max_sample and silhouette_sample must be larger than k_max")
        if not 1 <= self.rule_depth <= _MAX_RULE_DEPTH:
            raise ValueError(f"rule_depth must be from 1 to {_MAX_RULE_DEPTH}: deeper rules are not readable")

    @staticmethod
    def _check_names(feature_names: Sequence[str]) -> tuple[str, ...]:
        names = tuple(str(n) for n in feature_names)
        if len(set(names)) != len(names):
            raise ValueError(f"feature names must be unique: {', '.join(names)}")
        for name in names:
            spec = lookup(name)
            if spec is None:
                raise ValueError(f"{name!r} is not a field rules can use: suggested rules could not test it")
            if spec.type not in _NUMERIC_TYPES:
                raise ValueError(f"{name!r} is {spec.type.value}, not a number: it cannot be clustered on")
            if name.removeprefix("properties.").lower() in DEFAULT_PROTECTED:
                raise ValueError(f"{name!r} is a protected attribute: people are never clustered on it")
        return names

    def _check_X(self, X: ArrayLike, n_features: int) -> FloatArray:
        data = np.asarray(X, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != n_features:
            raise ValueError(f"X must have shape (n_people, {n_features}), got {data.shape}")
        if np.any(np.isinf(data)):
            raise ValueError("X contains infinite values (missing values are NaN)")
        return data

    # -- fit

    def fit(self, X: ArrayLike, feature_names: Sequence[str]) -> Self:
        """Clusters people, chooses k, and builds the profiles and candidate rules.

        Args:
            X: shape (n_people, n_features), NaN where a value is missing.
            feature_names: the field name of each column (see :mod:`segment_rules.fields`).

        Returns:
            The fitted suggester.

        Raises:
            ValueError: on invalid inputs or hyper-parameters, a feature without any value, too few distinct
                people, or when no k gives clusters of at least ``min_cluster_share`` each.
        """
        self._check_params()
        names = self._check_names(feature_names)
        data = self._check_X(X, len(names))
        n = len(data)
        rng = check_random_state(self.random_state)
        sample = np.sort(rng.choice(n, self.max_sample, replace=False)) if n > self.max_sample else np.arange(n)
        seed = int(rng.randint(np.iinfo(np.int32).max))

        fill = self._fill_values(data[sample], names)
        filled_sample = np.where(np.isnan(data[sample]), fill, data[sample])
        # log1p only where it is defined (non-negative) and useful (a long right tail).
        log = np.array(
            [
                self.skew_threshold is not None
                and bool(np.all(column >= 0))
                and _skewness(column) > self.skew_threshold
                for column in filled_sample.T
            ],
            dtype=bool,
        )
        logged = _transform(data[sample], fill, log, np.zeros(len(names)), np.ones(len(names)))
        mean = logged.mean(axis=0)
        std = logged.std(axis=0)
        scale = np.where(std > 0, std, 1.0)
        everyone = _transform(data, fill, log, mean, scale)
        fitted = everyone[sample]
        scores, centres = self._try_ks(fitted, everyone, seed)
        k = self._choose(scores)  # raises before any learned attribute is set: a failed fit leaves no half model
        chosen = centres[k]
        counts = np.bincount(pairwise_distances_argmin(everyone, chosen), minlength=k)
        order = sorted(range(k), key=lambda c: (-counts[c], tuple(chosen[c])))

        self.feature_names_in_ = names
        self.n_features_in_ = len(names)
        self.fill_ = fill
        self.log_features_ = tuple(name for name, flag in zip(names, log, strict=True) if flag)
        self.mean_ = mean
        self.scale_ = scale
        self.scores_ = tuple(scores)
        self.k_ = k
        self.cluster_centers_ = np.asarray(chosen[order], dtype=np.float64)
        self.labels_ = self._nearest(everyone)
        self.sizes_ = np.bincount(self.labels_, minlength=k).astype(np.int64)
        self.shares_ = self.sizes_ / n
        self.selection_ = self._selection_text(scores, k)
        self.n_people_ = n
        self.n_sample_ = len(sample)
        self._describe(data)
        filled = np.where(np.isnan(data), fill, data)
        self.rules_ = tuple(self._rule(c, data, filled, sample, seed) for c in range(k))
        return self

    @staticmethod
    def _fill_values(sample: FloatArray, names: Sequence[str]) -> FloatArray:
        fill = np.zeros(len(names))
        for j, name in enumerate(names):
            present = sample[:, j][~np.isnan(sample[:, j])]
            if len(present) == 0:
                raise ValueError(f"feature {name!r} has no values")
            if name in _TIME_SINCE_FEATURES:
                fill[j] = present.max()
        return fill

    def _standardize(self, data: FloatArray) -> FloatArray:
        log = np.isin(np.array(self.feature_names_in_), np.array(self.log_features_, dtype=str))
        return _transform(data, self.fill_, log, self.mean_, self.scale_)

    def _nearest(self, standardized: FloatArray) -> IntArray:
        if len(standardized) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.asarray(pairwise_distances_argmin(standardized, self.cluster_centers_), dtype=np.int64)

    def _try_ks(
        self, fitted: FloatArray, everyone: FloatArray, seed: int
    ) -> tuple[list[KScore], dict[int, FloatArray]]:
        distinct = len(np.unique(fitted, axis=0))
        # The silhouette needs at most n - 1 clusters, and k-means cannot make more clusters than distinct rows.
        k_top = min(self.k_max, distinct - 1)
        if k_top < self.k_min:
            raise ValueError(f"{distinct} distinct people: too few for k_min={self.k_min} clusters")
        n = len(everyone)
        sample_size = self.silhouette_sample if len(fitted) > self.silhouette_sample else None
        scores: list[KScore] = []
        centres: dict[int, FloatArray] = {}
        for k in range(self.k_min, k_top + 1):
            model = KMeans(n_clusters=k, n_init=self.n_init, random_state=seed).fit(fitted)
            centres[k] = np.asarray(model.cluster_centers_, dtype=np.float64)
            smallest = np.bincount(pairwise_distances_argmin(everyone, centres[k]), minlength=k).min() / n
            try:
                silhouette = float(silhouette_score(fitted, model.labels_, sample_size=sample_size, random_state=seed))
            except ValueError:  # the silhouette sample drew people of one cluster only
                silhouette = math.nan
            scores.append(
                KScore(
                    k=k,
                    inertia=float(model.inertia_),
                    silhouette=silhouette,
                    davies_bouldin=float(davies_bouldin_score(fitted, model.labels_)),
                    smallest_share=float(smallest),
                    # An empty cluster is never eligible, even with min_cluster_share=0: it has no profile or rule.
                    eligible=bool(smallest > 0 and smallest >= self.min_cluster_share),
                )
            )
        return scores, centres

    def _score_of(self, score: KScore) -> float:
        """The criterion as "higher is better"."""
        return score.silhouette if self.criterion == "silhouette" else -score.davies_bouldin

    def _choose(self, scores: Sequence[KScore]) -> int:
        eligible = [s for s in scores if s.eligible and math.isfinite(self._score_of(s))]
        if not eligible:
            shares = ", ".join(f"k={s.k}: {s.smallest_share:.1%}" for s in scores)
            raise ValueError(
                f"no k from {self.k_min} to {scores[-1].k} gives clusters of at least {self.min_cluster_share:.1%} "
                f"of the people each (smallest cluster: {shares}); lower min_cluster_share or change the features"
            )
        best = max(self._score_of(s) for s in eligible)
        return min(s.k for s in eligible if self._score_of(s) >= best - self.tie_tolerance)

    def _selection_text(self, scores: Sequence[KScore], k: int) -> str:
        chosen = next(s for s in scores if s.k == k)
        eligible = [str(s.k) for s in scores if s.eligible]
        what = "silhouette" if self.criterion == "silhouette" else "Davies-Bouldin index"
        value = chosen.silhouette if self.criterion == "silhouette" else chosen.davies_bouldin
        best = "largest" if self.criterion == "silhouette" else "smallest"
        return (
            f"k={k}: the smallest k within {self.tie_tolerance:g} of the {best} {what} ({value:.3f} at k={k}) "
            f"among the k whose every cluster holds at least {self.min_cluster_share:.1%} of the people "
            f"(eligible: {', '.join(eligible)} of {scores[0].k}..{scores[-1].k})"
        )

    # -- profiles

    def _describe(self, data: FloatArray) -> None:
        names = self.feature_names_in_
        k = self.k_
        population = np.array([_present_median(data[:, j]) for j in range(len(names))])
        centres = np.full((k, len(names)), math.nan)
        present_share = np.zeros((k, len(names)))
        for c in range(k):
            members = data[self.labels_ == c]
            for j in range(len(names)):
                centres[c, j] = _present_median(members[:, j])
                present_share[c, j] = float(np.mean(~np.isnan(members[:, j]))) if len(members) else 0.0
        spread = np.zeros(len(names))
        for j, name in enumerate(names):
            present = data[:, j][~np.isnan(data[:, j])]
            spread[j] = float(np.std(np.log1p(present) if name in self.log_features_ else present))
        self.population_median_ = population
        self.centers_ = centres
        self.profiles_ = tuple(self._profile(centres[c], present_share[c], population, spread) for c in range(k))

    def _profile(
        self, centre: FloatArray, present_share: FloatArray, population: FloatArray, spread: FloatArray
    ) -> str:
        names = self.feature_names_in_
        column = {name: j for j, name in enumerate(names)}
        order_counts = [column[n] for n in ("orders", "frequency") if n in column]
        never = False
        if order_counts:
            never = centre[order_counts[0]] == 0
        elif "recency_days" in column:
            never = present_share[column["recency_days"]] < 0.5
        # family -> (strength, position, word); the strongest shift in a family speaks for it.
        chosen: dict[str, tuple[float, int, str]] = {}
        if never:
            chosen["orders"] = (math.inf, -1, "never ordered")
        elif order_counts and centre[order_counts[0]] == 1:
            chosen["orders"] = (math.inf, -1, "one-time buyers")
        recency = column.get("recency_days")
        if recency is not None and not never and present_share[recency] >= 0.5:
            # When most buyers are in one cluster, the population median lies inside it and no relative shift
            # shows; a last order a year ago is "lapsed" (and a month ago "recent") in any shop.
            if centre[recency] <= _RECENT_DAYS:
                chosen["recency"] = (math.inf, recency, "recent")
            elif centre[recency] > _LAPSED_DAYS:
                chosen["recency"] = (math.inf, recency, "lapsed")
        for j, name in enumerate(names):
            words = _words(name)
            if (never and words.family in _ORDER_FAMILIES) or present_share[j] < 0.5 or spread[j] == 0:
                continue
            log = name in self.log_features_
            here = math.log1p(centre[j]) if log else centre[j]
            there = math.log1p(population[j]) if log else population[j]
            shift = (here - there) / spread[j]
            if abs(shift) < _WORD_SHIFT:
                continue
            word = words.higher if shift > 0 else words.lower
            if words.family not in chosen or abs(shift) > chosen[words.family][0]:
                chosen[words.family] = (abs(shift), j, word)
        if not chosen:
            return "close to the median on every feature"
        ranked = sorted(chosen.items(), key=lambda item: (_family_rank(item[0]), item[1][1]))
        return ", ".join(word for _, (_, _, word) in ranked)

    # -- rules

    def _rule(self, cluster: int, data: FloatArray, filled: FloatArray, sample: IntArray, seed: int) -> CandidateRule:
        names = self.feature_names_in_
        column = {name: j for j, name in enumerate(names)}
        integer = [(spec := lookup(name)) is not None and spec.type is FieldType.INTEGER for name in names]
        target = self.labels_ == cluster
        tree = DecisionTreeClassifier(
            max_depth=self.rule_depth, min_samples_leaf=max(1, len(sample) // 100), random_state=seed
        ).fit(filled[sample], target[sample])
        structure = tree.tree_
        candidates: list[tuple[Condition, ...]] = []
        stack: list[tuple[int, tuple[tuple[int, str, float], ...]]] = [(0, ())]
        while stack:
            node, path = stack.pop()
            if path:
                candidates.append(self._conditions(path, integer))
            left, right = int(structure.children_left[node]), int(structure.children_right[node])
            if left < 0:
                continue
            feature, threshold = int(structure.feature[node]), float(structure.threshold[node])
            # The tree sends ``x <= t`` left; t lies between observed values, so ``x < t`` selects the same rows.
            stack.append((right, (*path, (feature, "gte", threshold))))
            stack.append((left, (*path, (feature, "lt", threshold))))
        best = CandidateRule(cluster, (), len(data), float(target.mean()), 1.0)
        best_f1 = 2 * best.precision / (best.precision + 1)
        for conditions in candidates:
            matched = _matches(conditions, data, column)
            hits = int(np.sum(matched & target))
            precision = hits / int(matched.sum()) if matched.any() else 0.0
            recall = hits / int(target.sum())
            f1 = 2 * precision * recall / (precision + recall) if hits else 0.0
            if f1 > best_f1 or (f1 == best_f1 and len(conditions) < len(best.conditions)):
                best = CandidateRule(cluster, conditions, int(matched.sum()), precision, recall)
                best_f1 = f1
        return best

    def _conditions(self, path: Sequence[tuple[int, str, float]], integer: Sequence[bool]) -> tuple[Condition, ...]:
        """A tree path as readable conditions: one lower and one upper bound per feature at most, in column order."""
        lower: dict[int, float] = {}
        upper: dict[int, float] = {}
        for feature, op, threshold in path:
            if op == "gte":
                lower[feature] = max(threshold, lower.get(feature, -math.inf))
            else:
                upper[feature] = min(threshold, upper.get(feature, math.inf))
        out: list[Condition] = []
        for j, name in enumerate(self.feature_names_in_):
            if j in lower:
                out.append(Condition(name, "gte", _readable(lower[j], integer[j])))
            if j in upper:
                out.append(Condition(name, "lt", _readable(upper[j], integer[j])))
        return tuple(out)

    # -- use

    def predict(self, X: ArrayLike) -> IntArray:
        """Assigns people to the nearest frozen cluster centre.

        Args:
            X: shape (n_people, n_features), the columns of ``feature_names_in_``, NaN where a value is missing.

        Returns:
            The cluster number of each row.
        """
        check_is_fitted(self)
        return self._nearest(self._standardize(self._check_X(X, self.n_features_in_)))

    def to_dict(self) -> dict[str, Any]:
        """The fitted suggester as JSON-ready data, with a version stamp.

        Per-person labels are not included: they belong to the data, not to the model.

        Returns:
            A dict that :meth:`from_dict` turns back into a suggester with identical predictions, profiles and
            rules.
        """
        check_is_fitted(self)
        return {
            "model": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "library_version": _package_version(),
            "hyper_parameters": self.get_params(),
            "features": list(self.feature_names_in_),
            "fill": self.fill_.tolist(),
            "log_features": list(self.log_features_),
            "mean": self.mean_.tolist(),
            "scale": self.scale_.tolist(),
            "scores": [{**asdict(s), "silhouette": _nan_to_none(s.silhouette)} for s in self.scores_],
            "selection": self.selection_,
            "k": self.k_,
            "cluster_centers": self.cluster_centers_.tolist(),
            "centers": [[_nan_to_none(v) for v in row] for row in self.centers_.tolist()],
            "population_median": [_nan_to_none(v) for v in self.population_median_.tolist()],
            "sizes": self.sizes_.tolist(),
            "profiles": list(self.profiles_),
            "rules": [
                {**asdict(rule), "conditions": [asdict(c) for c in rule.conditions]} for rule in self.rules_
            ],
            "fit": {"n_people": self.n_people_, "n_sample": self.n_sample_},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds a fitted suggester from :meth:`to_dict` output.

        Args:
            data: the stored dict.

        Returns:
            A fitted suggester (without ``labels_``, which is not stored).

        Raises:
            ValueError: when ``data`` is not a stored suggester, or has a newer layout.
        """
        if data.get("model") != cls.__name__:
            raise ValueError(f"not a {cls.__name__}: model is {data.get('model')!r}")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"unsupported {cls.__name__} format_version {version!r} (this version reads <= "
                             f"{FORMAT_VERSION})")
        model = cls(**data["hyper_parameters"])
        model.feature_names_in_ = tuple(data["features"])
        model.n_features_in_ = len(model.feature_names_in_)
        model.fill_ = np.array(data["fill"], dtype=np.float64)
        model.log_features_ = tuple(data["log_features"])
        model.mean_ = np.array(data["mean"], dtype=np.float64)
        model.scale_ = np.array(data["scale"], dtype=np.float64)
        model.scores_ = tuple(
            KScore(**{**s, "silhouette": _none_to_nan(s["silhouette"])}) for s in data["scores"]
        )
        model.selection_ = str(data["selection"])
        model.k_ = int(data["k"])
        model.cluster_centers_ = np.array(data["cluster_centers"], dtype=np.float64)
        model.centers_ = np.array([[_none_to_nan(v) for v in row] for row in data["centers"]], dtype=np.float64)
        model.population_median_ = np.array([_none_to_nan(v) for v in data["population_median"]], dtype=np.float64)
        model.sizes_ = np.array(data["sizes"], dtype=np.int64)
        model.n_people_ = int(data["fit"]["n_people"])
        model.n_sample_ = int(data["fit"]["n_sample"])
        model.shares_ = model.sizes_ / model.n_people_
        model.profiles_ = tuple(str(p) for p in data["profiles"])
        model.rules_ = tuple(
            CandidateRule(**{**rule, "conditions": tuple(Condition(**c) for c in rule["conditions"])})
            for rule in data["rules"]
        )
        return model


# ----------------------------------------------------------------------------------------------- rule files


def _rule_file(suggester: ClusterSuggester, cluster: int, name: str) -> str:
    rule = suggester.rules_[cluster]
    size, share = int(suggester.sizes_[cluster]), float(suggester.shares_[cluster])
    profile = suggester.profiles_[cluster]
    medians = [
        f"  {feature}: {_shown(float(here))} vs {_shown(float(there))}"
        for feature, here, there in zip(
            suggester.feature_names_in_, suggester.centers_[cluster], suggester.population_median_, strict=True
        )
    ]
    notes = [
        f"Suggested segment: cluster {cluster} of {suggester.k_}, found by k-means on "
        f"{', '.join(suggester.feature_names_in_)}.",
        f"{suggester.selection_}.",
        f"{size:,} people ({share:.1%}) at fit. Medians of those with a value, this cluster vs everyone:",
        *medians,
        "The rule approximates the cluster with readable thresholds; measured on everyone at fit:",
        f"  precision {rule.precision:.3f} (of the {rule.matched:,} people it matches, {rule.precision:.1%} are in "
        "the cluster)",
        f"  recall {rule.recall:.3f} (it matches {rule.recall:.1%} of the cluster)",
        *(
            []
            if rule.conditions
            else [
                "No threshold on these features picks out this cluster (comparisons with missing values are false), "
                "so this rule matches everyone: write a condition by hand before adopting it."
            ]
        ),
        "Nothing in a suggestions folder is pushed. To adopt this segment, give it a meaningful name, check the "
        "thresholds and move the file into the rules folder: from then on it is an ordinary rule, and refitting "
        "the clusters does not change who is in it.",
    ]
    lines = [
        wrapped
        for note in notes
        for wrapped in textwrap.wrap(
            note, width=_COMMENT_WIDTH, initial_indent="# ", subsequent_indent="#     " if note[0] == " " else "# "
        )
    ]
    lines += [
        f"segment: {name}",
        # JSON strings are valid YAML double-quoted scalars, so the description needs no YAML-specific escaping.
        f"description: {_json_string(f'{profile} ({size:,} people, {share:.1%} at fit)')}",
        "rule:",
    ]
    if not rule.conditions:
        lines.append("  all: []")
    else:
        lines.append("  all:")
        lines.extend(f"    - {c.field}: {{{c.op}: {_text(c.value)}}}" for c in rule.conditions)
    return "\n".join(lines) + "\n"


def _json_string(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def suggest_rule_files(
    suggester: ClusterSuggester, folder: Path | str, *, prefix: str = "suggested", overwrite: bool = False
) -> list[Path]:
    """Writes one candidate rule file per cluster, ``PREFIX-N.yaml`` defining segment ``PREFIX-N``.

    Each file has the cluster's profile, size and share as its description, and a rule that approximates the
    cluster with thresholds on the original features. Comments give the rule's precision and recall and
    the cluster's medians. Write into a suggestions folder, never into the active rules folder: a person
    adopts a suggestion by moving it there.

    Args:
        suggester: a fitted :class:`ClusterSuggester`.
        folder: the suggestions folder (created if missing).
        prefix: the segment name prefix; ``PREFIX-N`` must be a valid segment name.
        overwrite: replace files that already exist.

    Returns:
        The files written, in cluster order.

    Raises:
        sklearn.exceptions.NotFittedError: when ``suggester`` is not fitted.
        ValueError: when ``prefix`` does not make valid segment names.
        FileExistsError: when a file exists and ``overwrite`` is false; nothing is written then.
    """
    check_is_fitted(suggester)
    names = [f"{prefix}-{c}" for c in range(suggester.k_)]
    if not all(NAME_RE.match(name) for name in names):
        raise ValueError(
            f"prefix {prefix!r} does not make valid segment names ({names[-1]!r}): use lowercase letters, digits, "
            "'_' and '-', starting with a letter"
        )
    target = Path(folder)
    paths = [target / f"{name}.yaml" for name in names]
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{target} already has {', '.join(existing)}: choose another prefix or folder, or pass overwrite=True "
            "to replace them"
        )
    target.mkdir(parents=True, exist_ok=True)
    for cluster, (name, path) in enumerate(zip(names, paths, strict=True)):
        # Written next to the target and renamed, so a reader never sees half a rule file.
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(_rule_file(suggester, cluster, name), encoding="utf-8")
        if not overwrite and path.exists():
            partial.unlink()
            raise FileExistsError(f"{path} appeared while writing the suggestions; pass overwrite=True to replace it")
        os.replace(partial, path)
    return paths
