"""Churn risk for non-contractual shops: who places no order within the horizon, learned and checked out of time.

Definition
----------
A customer *churns* at a cutoff c when they place no order (cancelled and refunded orders left out, as in every
feature) in the ``horizon_days`` after it, the window (c, c + H]. The scored population at a cutoff is every
person in scope (see :func:`segment_rules.features.in_scope`) with at least one such order at or before it:
people who never ordered are prospects, not customers, and get no churn probability.

Out-of-time design
------------------
Features at a past cutoff are computed from the activities known then (the same accumulation as the stored
features, :mod:`segment_rules.aggregate`, at that cutoff), so a model trained on past cutoffs sees what it will
see in production. One pass over the activities feeds every cutoff (and, in a scoring run, the features at
``as_of`` too): :class:`CutoffReader`. With H the horizon,
s the spacing (default H) and k cutoffs, :func:`cutoff_plan` places

* the **test** cutoff at ``as_of - H``: the latest one whose label window is over by ``as_of``;
* k **training** cutoffs at ``test - H - j*s`` (j = 0 .. k-1): every training label window ends on or before the
  test cutoff, so nothing that happens in the test window leaks into training;
* k **final** cutoffs at ``test - j*s``: the same design one horizon later, whose newest labels end at
  ``as_of``. Once a scorer has been chosen on the test cutoff it is refitted there, so the scores at ``as_of``
  use the newest behaviour the shop has labels for.

BG/NBD at every cutoff
----------------------
BG/NBD is fitted at every labelled cutoff on the history up to it (and at ``as_of`` for scoring), which gives
three more columns per customer (:data:`BTYD_FEATURES`): the expected purchases within the horizon, the
probability of no purchase within it, and P(alive). They are baselines and, stacked, model features.

Scorers compared on the test cutoff
-----------------------------------
* ``model``: :class:`ChurnModel`. Its classifier is chosen among :data:`CANDIDATES` by time-based
  cross-validation on the training cutoffs only (each fold trains on the cutoffs whose label windows end
  before the validation cutoff): a logistic regression on RFM features plus email and web engagement
  (log-transformed, imputed, standardised), the same with the BG/NBD columns, and gradient-boosted trees
  (:class:`~segment_rules.boosting.BoostedTrees`) on both. Engagement features only count where the shop has
  them: a column that does not vary in the training data (no email tool connected) is left out.
* ``recency``: days since the last order alone (the hiatus heuristic of Wübben & von Wangenheim 2008), turned
  into a probability by a one-feature logistic fit on the training cutoffs (a :class:`ChurnModel` on
  ``recency_days``). The calibration is monotone: it ranks as raw recency does (or reversed, in a shop where
  recent buyers churn more).
* ``frequency``: the order count alone, calibrated the same way.
* ``expected_purchases``: BG/NBD's expected purchases within the horizon, calibrated the same way (fewer
  expected purchases, more churn).
* ``bgnbd``: BG/NBD's probability of no purchase within the horizon, served as it is (it is a probability).
* ``p_alive``: 1 - BG/NBD P(alive), reported only as an anti-baseline and never chosen. P(alive) is 1 for every
  customer without a repeat purchase however long ago they bought, so it ranks one-time buyers as the safest
  customers (ROC-AUC 0.32 on CDNOW). Its Brier score treats 1 - P(alive) as a churn probability.

Every scorer serves the very score it is ranked on, so the chosen scorer's out-of-time AUC is the one reported.

Each gets ROC-AUC, PR-AUC (average precision, churners as the positive class), the Brier score, a reliability
table (predicted against observed churn in ten probability bins) with its expected calibration error, and the
lift in the top decile (churn rate among the 10 % highest scored / base rate). The report also gives the Brier
score of predicting the training base rate for everyone, the bar any probability must clear.

Choice
------
The model is chosen only when its out-of-time ROC-AUC beats the best baseline's by ``margin``, the gain is
significant (a one-sided paired DeLong test at ``significance``: on the same customers, not noise), and there
are enough data: at least ``min_customers`` customers in the training cutoffs and in the test cutoff, and at least
``min_per_class`` churners and as many customers who ordered again in both. Otherwise the best baseline by AUC
is chosen (recency first when none could be checked: it needs the fewest data), and the report says why in one
sentence. Thresholds on the probability are left to the segment rules: they should be set on cost or recall,
never on accuracy, which on a base rate around 0.8 favours calling everyone churned.

I/O is kept apart from the numbers: :func:`read_cutoff` and :func:`fit_churn` read the store; everything else
works on :class:`CutoffData` arrays. A scoring run calls::

    report = fit_churn(conn, as_of, ChurnSettings(horizon_days=90))
    person_ids, probabilities = score_churn(conn, report, as_of)

and stores ``report.scorer.to_dict()`` (JSON, in ``model_artifact``), which :func:`score_churn` accepts as is
for later incremental runs.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal, Self, cast

import numpy as np
import scipy.stats
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from sqlalchemy.engine import Connection

from .aggregate import FeatureAccumulator, scan
from .boosting import BoostedTrees
from .btyd import FORMAT_VERSION, BetaGeoModel, ConvergenceError, _package_version
from .features import FeatureTable, People, read_people
from .fields import FIELDS, FieldKind, FieldType
from .scoring import WEEK_DAYS, FeatureArrays, _btyd_inputs, fit_bgnbd

__all__ = [
    "BASELINES",
    "BTYD_FEATURES",
    "CANDIDATES",
    "DEFAULT_FEATURES",
    "RECENCY_FEATURES",
    "ChurnModel",
    "ChurnReport",
    "ChurnScorer",
    "ChurnSettings",
    "CutoffData",
    "CutoffPlan",
    "CutoffReader",
    "Log1pColumns",
    "MedianImputer",
    "Metrics",
    "ScorerKind",
    "brier_score",
    "choose_scorer",
    "churn_definition",
    "cross_validate",
    "cutoff_plan",
    "delong_test",
    "evaluate_scores",
    "fit_churn",
    "fit_churn_arrays",
    "logistic_pipeline",
    "pr_auc",
    "read_cutoff",
    "reliability",
    "roc_auc",
    "score_churn",
    "top_decile_lift",
]

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]
ScorerKind = Literal["model", "recency", "frequency", "expected_purchases", "bgnbd"]

DEFAULT_FEATURES: tuple[str, ...] = (
    "recency_days",
    "orders",
    "monetary",
    "aov",
    "tenure_days",
    "orders_90d",
    "orders_365d",
    "spend_365d",
    "email_opens_90d",
    "email_clicks_90d",
    "click_to_open_rate",
    "sessions_90d",
)
"""RFM features plus email and web engagement; engagement columns without variation are dropped in ``fit``."""

RECENCY_FEATURES: tuple[str, ...] = ("recency_days",)
"""The recency baseline's one feature."""

BTYD_FEATURES: tuple[str, ...] = ("expected_purchases", "p_no_purchase", "p_alive")
"""Columns of a BG/NBD fit at each cutoff: expected purchases and P(no purchase) within the horizon, P(alive)."""

BASELINES: tuple[ScorerKind, ...] = ("recency", "frequency", "expected_purchases", "bgnbd")
"""The baselines the model must beat, each served as the score it is ranked on."""

_ONE_FEATURE: dict[str, tuple[str, ...]] = {
    "recency": RECENCY_FEATURES,
    "frequency": ("orders",),
    "expected_purchases": ("expected_purchases",),
}

CANDIDATES: tuple[str, ...] = ("logistic", "logistic_btyd", "boosted_trees_btyd")
"""The model's classifiers, simplest first; cross-validation on the training cutoffs picks one. ``_btyd`` ones
also see the BG/NBD columns; where BG/NBD cannot be fitted they run without them (``boosted_trees`` is the
trees' plain variant)."""

CV_TOLERANCE = 0.001
"""A candidate replaces a simpler one only when its cross-validated AUC is higher by more than this."""

TREES_MIN_ROWS = 1_000
"""Fewer training rows than this: no boosted trees (they would only memorise)."""

TOP_FRACTION = 0.1
_LABELS: dict[str, tuple[str, str]] = {
    # scorer: (how a sentence names it, how the "using ..." clause names it)
    "model": ("the model", "the model"),
    "recency": ("recency alone", "recency"),
    "frequency": ("the order count alone", "frequency"),
    "expected_purchases": ("BG/NBD expected purchases", "expected purchases"),
    "bgnbd": ("the BG/NBD probability of no purchase", "BG/NBD"),
}
# When no scorer could be checked on the test cutoff, the one needing the fewest data goes first.
_FALLBACK_ORDER: tuple[ScorerKind, ...] = ("recency", "bgnbd")


def churn_definition(horizon_days: int) -> str:
    """The churn definition in one sentence, for reports and ``hub explain``."""
    return (
        f"a customer churns at a cutoff when they place no order (cancelled and refunded orders left out) in the "
        f"{horizon_days} days after it; customers are the people in scope with at least one order by the cutoff"
    )


# ----------------------------------------------------------------------------------------------- metrics


def _labels(values: ArrayLike, n: int | None = None) -> BoolArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"labels must be one-dimensional, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{len(array)} labels for {n} rows")
    if array.dtype != np.bool_:
        numeric = np.asarray(array, dtype=np.float64)
        if not np.all((numeric == 0) | (numeric == 1)):
            raise ValueError("labels must be 0/1 or booleans (1: churned)")
        array = numeric == 1
    return np.asarray(array, dtype=np.bool_)


def _scores(values: ArrayLike, n: int) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"scores must have shape ({n},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("scores contain NaN or infinite values")
    return array


def roc_auc(churned: ArrayLike, score: ArrayLike) -> float:
    """ROC-AUC of ``score`` (higher: more likely to churn), ties counted as half (Mann-Whitney U).

    Args:
        churned: 1/True for churners.
        score: the ranking score.

    Returns:
        The AUC, or NaN when only one class is present.
    """
    y = _labels(churned)
    s = _scores(score, len(y))
    positives = int(y.sum())
    negatives = len(y) - positives
    if positives == 0 or negatives == 0:
        return math.nan
    ranks = scipy.stats.rankdata(s, method="average")
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def pr_auc(churned: ArrayLike, score: ArrayLike) -> float:
    """Area under the precision-recall curve as average precision: sum over thresholds of (R_n - R_n-1) P_n.

    Every distinct score is a threshold (tied customers enter together), as in scikit-learn's
    ``average_precision_score``; no interpolation, which would be optimistic.

    Args:
        churned: 1/True for churners (the positive class).
        score: the ranking score.

    Returns:
        The average precision, or NaN without churners.
    """
    y = _labels(churned)
    s = _scores(score, len(y))
    positives = int(y.sum())
    if positives == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    ordered = s[order]
    last_of_block = np.r_[np.flatnonzero(np.diff(ordered) != 0), len(ordered) - 1]
    true_pos = np.cumsum(y[order])[last_of_block]
    precision = true_pos / (last_of_block + 1)
    recall = true_pos / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def brier_score(churned: ArrayLike, probability: ArrayLike) -> float:
    """Mean squared difference between the churn probability and the outcome (lower is better).

    Raises:
        ValueError: when a probability is outside [0, 1].
    """
    y = _labels(churned)
    p = _scores(probability, len(y))
    if len(y) == 0:
        return math.nan
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return float(np.mean((p - y) ** 2))


def top_decile_lift(churned: ArrayLike, score: ArrayLike, fraction: float = TOP_FRACTION) -> float:
    """Churn rate among the ``fraction`` highest scored, divided by the overall churn rate.

    The top group holds ceil(fraction x n) customers. Customers tied at its edge enter it in equal parts (their
    churn rate counts for the places left), so the value does not depend on row order. A perfect ranking
    reaches min(1 / base rate, n / ceil(fraction x n)).

    Args:
        churned: 1/True for churners.
        score: the ranking score.
        fraction: the share of customers in the top group.

    Returns:
        The lift, or NaN without churners.
    """
    y = _labels(churned)
    s = _scores(score, len(y))
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    if len(y) == 0 or not y.any():
        return math.nan
    top = math.ceil(fraction * len(y))
    edge = np.sort(s)[::-1][top - 1]
    above = s > edge
    tied = s == edge
    churners = float(y[above].sum()) + (top - int(above.sum())) * float(y[tied].mean())
    return float(churners / top / y.mean())


def reliability(churned: ArrayLike, probability: ArrayLike, bins: int = 10) -> tuple[list[dict[str, Any]], float]:
    """Predicted against observed churn in ``bins`` equal-width probability bins, and the expected calibration
    error (the customer-weighted mean gap between the two).

    Returns:
        The non-empty bins (``low``, ``high``, ``customers``, ``mean_predicted``, ``observed``) and the error.
    """
    y = _labels(churned)
    p = _scores(probability, len(y))
    if len(y) == 0:
        return [], math.nan
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    table: list[dict[str, Any]] = []
    gap = 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        if not count:
            continue
        predicted, observed = float(p[inside].mean()), float(y[inside].mean())
        gap += count * abs(predicted - observed)
        table.append({"low": b / bins, "high": (b + 1) / bins, "customers": count,
                      "mean_predicted": round(predicted, 4), "observed": round(observed, 4)})
    return table, gap / len(y)


def _placements(y: BoolArray, s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """DeLong's structural components: per churner the share of non-churners it outranks, and per non-churner
    the share of churners that outrank it (ties counted half)."""
    pos, neg = s[y], s[~y]
    every = scipy.stats.rankdata(np.concatenate([pos, neg]))
    v10 = (every[: len(pos)] - scipy.stats.rankdata(pos)) / len(neg)
    v01 = 1.0 - (every[len(pos):] - scipy.stats.rankdata(neg)) / len(pos)
    return v10, v01


def delong_test(churned: ArrayLike, first: ArrayLike, second: ArrayLike) -> dict[str, float]:
    """Paired DeLong test of AUC(first) > AUC(second) on the same customers (DeLong, DeLong & Clarke-Pearson 1988).

    Returns:
        ``auc_difference``, its standard error, ``z`` and the one-sided ``p_value`` (NaN with one class only).
    """
    y = _labels(churned)
    a, b = _scores(first, len(y)), _scores(second, len(y))
    if y.all() or not y.any():
        return {"auc_difference": math.nan, "standard_error": math.nan, "z": math.nan, "p_value": math.nan}
    a10, a01 = _placements(y, a)
    b10, b01 = _placements(y, b)
    d10, d01 = a10 - b10, a01 - b01
    difference = float(d10.mean())
    variance = float(d10.var(ddof=1) / len(d10) + d01.var(ddof=1) / len(d01)) if min(len(d10), len(d01)) > 1 else 0.0
    error = math.sqrt(max(variance, 0.0))
    # Identical placements everywhere (the same ranking twice): no variance, the sign alone decides.
    z = difference / error if error > 0 else math.copysign(math.inf, difference) if difference else 0.0
    return {"auc_difference": difference, "standard_error": error, "z": z, "p_value": float(scipy.stats.norm.sf(z))}


@dataclass(frozen=True)
class Metrics:
    """How well one scorer ranks and predicts churn on the test cutoff.

    Attributes:
        roc_auc: ROC-AUC of the ranking score.
        pr_auc: average precision, churners positive (its floor is the churn rate, not 0.5).
        brier: Brier score of the probability (None when the scorer has none).
        top_decile_lift: churn rate in the top 10 % / base rate.
        customers: customers scored.
        churners: of whom churned.
        calibration_error: expected calibration error of the probability (None without one).
        reliability: its reliability table (see :func:`reliability`).
    """

    roc_auc: float
    pr_auc: float
    brier: float | None
    top_decile_lift: float
    customers: int
    churners: int
    calibration_error: float | None = None
    reliability: tuple[dict[str, Any], ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view (NaN as None)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in asdict(self).items()}


def evaluate_scores(churned: ArrayLike, ranking: ArrayLike, probability: ArrayLike | None = None) -> Metrics:
    """All metrics of one scorer.

    Args:
        churned: the outcome.
        ranking: the score ranked on (higher: more likely to churn).
        probability: the churn probability for the Brier score, if the scorer has one.

    Returns:
        The metrics.
    """
    y = _labels(churned)
    table, error = reliability(y, probability) if probability is not None else (None, None)
    return Metrics(
        roc_auc=roc_auc(y, ranking),
        pr_auc=pr_auc(y, ranking),
        brier=None if probability is None else brier_score(y, probability),
        top_decile_lift=top_decile_lift(y, ranking),
        customers=len(y),
        churners=int(y.sum()),
        calibration_error=error,
        reliability=None if table is None else tuple(table),
    )


# ----------------------------------------------------------------------------------------------- cutoffs


@dataclass(frozen=True)
class CutoffPlan:
    """Where features are taken and labels observed (see the module docstring).

    Attributes:
        as_of: the evaluation time; no label window ends after it.
        horizon_days: the churn horizon H.
        train: training cutoffs, oldest first; their label windows end on or before ``test``.
        test: the test cutoff, ``as_of - H``.
        final: the cutoffs the chosen scorer is refitted on, oldest first; the newest is ``test``.
    """

    as_of: datetime
    horizon_days: int
    train: tuple[datetime, ...]
    test: datetime
    final: tuple[datetime, ...]

    def label_end(self, cutoff: datetime) -> datetime:
        """The end of the label window (cutoff, cutoff + H]."""
        return cutoff + timedelta(days=self.horizon_days)

    @property
    def labelled(self) -> tuple[datetime, ...]:
        """Every cutoff whose labels the plan needs, oldest first."""
        return tuple(sorted({*self.train, self.test, *self.final}))

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view, with each label window."""

        def window(c: datetime) -> dict[str, str]:
            return {"cutoff": c.isoformat(), "label_end": self.label_end(c).isoformat()}

        return {
            "as_of": self.as_of.isoformat(),
            "horizon_days": self.horizon_days,
            "train": [window(c) for c in self.train],
            "test": window(self.test),
            "final": [window(c) for c in self.final],
        }


def cutoff_plan(
    as_of: datetime, horizon_days: int = 90, n_cutoffs: int = 4, spacing_days: int | None = None
) -> CutoffPlan:
    """The training, test and final cutoffs for ``as_of``.

    Args:
        as_of: the evaluation time.
        horizon_days: the churn horizon H.
        n_cutoffs: training cutoffs k (and as many final ones).
        spacing_days: days between consecutive cutoffs (default H: label windows that do not overlap).

    Returns:
        The plan.

    Raises:
        ValueError: on a non-positive horizon, spacing or cutoff count.
    """
    spacing = horizon_days if spacing_days is None else spacing_days
    if horizon_days <= 0 or spacing <= 0 or n_cutoffs < 1:
        raise ValueError("horizon_days, cutoff spacing and n_cutoffs must be positive")
    horizon = timedelta(days=horizon_days)
    test = as_of - horizon
    steps = [timedelta(days=spacing * j) for j in range(n_cutoffs)]
    return CutoffPlan(
        as_of=as_of,
        horizon_days=horizon_days,
        train=tuple(sorted(test - horizon - step for step in steps)),
        test=test,
        final=tuple(sorted(test - step for step in steps)),
    )


# ----------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class CutoffData:
    """The customers at one cutoff: model features, BG/NBD inputs and, for a past cutoff, the outcome.

    Attributes:
        cutoff: the time features are taken at.
        features: the names of the columns of ``X``.
        X: feature values, shape (customers, len(features)), NaN where missing.
        arrays: person ids, orders, distinct order days, spend, days since the last and the first order.
        churned: whether each customer placed no order in the label window; None when it is not observed.
        extra: computed columns by name (the BG/NBD columns of :data:`BTYD_FEATURES`), one value per customer.
    """

    cutoff: datetime
    features: tuple[str, ...]
    X: FloatArray
    arrays: FeatureArrays
    churned: BoolArray | None = None
    extra: Mapping[str, FloatArray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.arrays.person_id)
        if self.X.shape != (n, len(self.features)):
            raise ValueError(f"X has shape {self.X.shape}, expected ({n}, {len(self.features)})")
        if self.churned is not None and self.churned.shape != (n,):
            raise ValueError(f"churned has shape {self.churned.shape}, expected ({n},)")

    @property
    def person_id(self) -> IntArray:
        """The customers, in person id order."""
        return self.arrays.person_id

    def __len__(self) -> int:
        return len(self.arrays.person_id)

    def with_columns(self, columns: Mapping[str, FloatArray]) -> CutoffData:
        """A copy holding ``columns`` as well."""
        return replace(self, extra={**self.extra, **columns})

    def matrix(self, names: Sequence[str]) -> FloatArray:
        """The columns ``names`` (``recency_days`` is always available from the BG/NBD inputs).

        Raises:
            ValueError: when a column was not read.
        """
        columns = []
        for name in names:
            if name in self.features:
                columns.append(self.X[:, self.features.index(name)])
            elif name in self.extra:
                columns.append(np.asarray(self.extra[name], dtype=np.float64))
            elif name == "recency_days":
                columns.append(self.arrays.recency_days)
            else:
                raise ValueError(f"feature {name!r} was not read at {self.cutoff.isoformat()}")
        return np.column_stack(columns) if columns else np.zeros((len(self), 0))


def _check_features(names: Sequence[str]) -> None:
    numeric = (FieldType.NUMBER, FieldType.INTEGER, FieldType.BOOLEAN)
    for name in names:
        spec = FIELDS.get(name)
        if spec is None or spec.kind is not FieldKind.FEATURE or spec.type not in numeric:
            raise ValueError(f"{name!r} is not a numeric feature (see `hub segment fields`)")
    if len(set(names)) != len(names):
        raise ValueError(f"features are listed twice: {list(names)}")


def cutoff_data(
    table: FeatureTable, features: Sequence[str] = (), outcome: IntArray | None = None
) -> CutoffData:
    """The customers of ``table`` (at least one order by its ``as_of``) as :class:`CutoffData`.

    Args:
        table: features at the cutoff.
        features: numeric feature names for ``X``.
        outcome: per row of ``table``, the orders in the label window (None: not observed).
    """
    names = tuple(features)
    _check_features(names)
    customers = table.columns["orders"] >= 1
    sub = table.subset(customers)
    churned = None if outcome is None else np.asarray(outcome)[customers] == 0
    return CutoffData(table.as_of, names, sub.matrix(names), FeatureArrays.from_table(sub), churned)


def read_cutoff(
    conn: Connection,
    cutoff: datetime,
    features: Sequence[str] = DEFAULT_FEATURES,
    *,
    horizon_days: int | None = None,
    person_ids: Sequence[int] | None = None,
    every: int = 1,
) -> CutoffData:
    """Read the customers at ``cutoff``: features as known then and, with ``horizon_days``, the outcome.

    Args:
        conn: an open connection.
        cutoff: only activities at or before it count for the features.
        features: numeric feature names (see :mod:`segment_rules.fields`).
        horizon_days: when given, ``churned`` is "no order in (cutoff, cutoff + horizon_days]".
        person_ids: only these people.
        every: only every ``every``-th person by id (a deterministic sample of a very large customer base).

    Returns:
        The customers (people in scope with at least one order by ``cutoff``), in person id order.

    Raises:
        ValueError: on an unknown or non-numeric feature name.
    """
    _check_features(tuple(features))
    people = read_people(conn, person_ids).sample(every)
    acc = FeatureAccumulator(cutoff, people.person_id, outcome_days=horizon_days)
    scan(conn, [acc], person_ids, every)
    return cutoff_data(FeatureTable.from_accumulator(acc, people), features, acc.outcome)


def sample_every(people: int, limit: int | None) -> int:
    """The ``every`` that keeps about ``limit`` of ``people`` (1: everyone)."""
    if limit is None:
        return 1
    return max(1, -(-people // limit))


class CutoffReader:
    """The churn cutoffs of one fit: accumulators to feed from an activity pass, then their :class:`CutoffData`.

    Args:
        as_of: the evaluation time.
        settings: churn settings (the plan, the horizon, the sample size).
        people: the people in scope; a deterministic sample of them is read when there are many.
    """

    def __init__(self, as_of: datetime, settings: ChurnSettings, people: People) -> None:
        self.as_of = as_of
        self.settings = settings
        self.every = sample_every(len(people), settings.sample_people)
        self.people = people.sample(self.every)
        self.plan = settings.plan(as_of)
        self.accumulators = {
            c: FeatureAccumulator(c, self.people.person_id, outcome_days=settings.horizon_days)
            for c in self.plan.labelled
        }

    def data(self, current: FeatureTable) -> dict[datetime, CutoffData]:
        """Every cutoff's customers once the pass is over; ``current``: the features at ``as_of`` (everyone
        in scope, or the sample)."""
        names = self.settings.model().feature_names()
        out = {
            c: cutoff_data(FeatureTable.from_accumulator(acc, self.people), names, acc.outcome)
            for c, acc in self.accumulators.items()
        }
        if self.every > 1 and len(current) != len(self.people):
            current = current.subset(current.person_id % self.every == 0)
        out[self.as_of] = cutoff_data(current)
        return out


def _bgnbd_inputs(data: CutoffData) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(x, t_x, T) in weeks, derived exactly as the CLV scores derive them."""
    return _btyd_inputs(data.arrays, np.ones(len(data), dtype=np.bool_))


def btyd_columns(bgnbd: BetaGeoModel | None, data: CutoffData, horizon_days: int) -> dict[str, FloatArray]:
    """The :data:`BTYD_FEATURES` of ``data``'s customers from ``bgnbd`` (NaN without a model)."""
    if bgnbd is None or len(data) == 0:
        return {name: np.full(len(data), np.nan) for name in BTYD_FEATURES}
    x, tx, age = _bgnbd_inputs(data)
    weeks = horizon_days / WEEK_DAYS
    # A fit on a young cutoff's few repeat buyers can sit where the closed forms overflow for some customers:
    # those values are missing (NaN), not a warning on the console.
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        columns = {
            "expected_purchases": np.asarray(bgnbd.conditional_expected_purchases(weeks, x, tx, age), np.float64),
            "p_no_purchase": np.clip(bgnbd.probability_no_purchase(weeks, x, tx, age), 0.0, 1.0),
            "p_alive": np.asarray(bgnbd.probability_alive(x, tx, age), dtype=np.float64),
        }
    return {name: np.where(np.isfinite(v), v, np.nan) for name, v in columns.items()}


def _needs_btyd(names: Sequence[str]) -> bool:
    return any(name in BTYD_FEATURES for name in names)


# ----------------------------------------------------------------------------------------------- the model


def _matrix(X: ArrayLike, n_columns: int | None = None) -> FloatArray:
    array = np.asarray(X, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"X must be two-dimensional, got shape {array.shape}")
    if n_columns is not None and array.shape[1] != n_columns:
        raise ValueError(f"X has {array.shape[1]} columns, expected {n_columns}")
    if np.any(np.isinf(array)):
        raise ValueError("X contains infinite values (NaN marks a missing value)")
    return array


class Log1pColumns(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """log(1 + x) of the flagged columns (negative values clipped to 0), the others unchanged; NaN stays NaN.

    Counts, spend and ages are heavily right-skewed; on the log scale a logistic model treats 1 -> 2 orders
    like 10 -> 20, and a few very large customers do not dominate the fit.

    Args:
        columns: one flag per input column.
    """

    def __init__(self, columns: tuple[bool, ...] = ()) -> None:
        self.columns = columns

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        """Checks the width of ``X``; nothing is learned."""
        array = _matrix(X, len(self.columns))
        self.n_features_in_ = array.shape[1]
        return self

    def transform(self, X: ArrayLike) -> FloatArray:
        """The transformed copy of ``X``."""
        check_is_fitted(self)
        out = _matrix(X, self.n_features_in_).copy()
        flags = np.asarray(self.columns, dtype=np.bool_)
        out[:, flags] = np.log1p(np.maximum(out[:, flags], 0.0))
        return out


class MedianImputer(TransformerMixin, BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """Fills NaN with the column's training median (0 for a column without any value).

    scikit-learn's ``SimpleImputer`` keeps private dtype state, so a fitted one cannot be rebuilt from JSON; this
    one learns ``statistics_`` only.
    """

    def fit(self, X: ArrayLike, y: ArrayLike | None = None) -> Self:
        """Learns the medians."""
        array = _matrix(X)
        stats = []
        for j in range(array.shape[1]):
            known = array[:, j][~np.isnan(array[:, j])]
            stats.append(float(np.median(known)) if len(known) else 0.0)
        self.statistics_ = np.array(stats, dtype=np.float64)
        self.n_features_in_ = array.shape[1]
        return self

    def transform(self, X: ArrayLike) -> FloatArray:
        """The imputed copy of ``X``."""
        check_is_fitted(self)
        out = _matrix(X, self.n_features_in_).copy()
        missing = np.isnan(out)
        out[missing] = np.broadcast_to(self.statistics_, out.shape)[missing]
        return out


def _skewed(name: str) -> bool:
    spec = FIELDS.get(name)
    return not name.endswith("_rate") and (spec is None or spec.type is not FieldType.BOOLEAN)


def logistic_pipeline(features: Sequence[str], C: float = 1.0) -> Pipeline:
    """The default churn classifier: log of skewed features, median imputation, standardisation, logistic fit.

    Args:
        features: the column names it will see (rates and flags are not log-transformed).
        C: inverse L2 regularisation strength of the logistic regression.

    Returns:
        An unfitted pipeline. ``class_weight`` stays None: re-weighting the classes would distort the
        probabilities that segment thresholds and Brier scores rely on.
    """
    return Pipeline(
        [
            ("log", Log1pColumns(tuple(_skewed(n) for n in features))),
            ("impute", MedianImputer()),
            ("scale", StandardScaler()),
            ("logistic", LogisticRegression(C=C, class_weight=None, max_iter=1000)),
        ]
    )


def _logistic_steps(classifier: Any) -> tuple[Log1pColumns, MedianImputer, Any, Any] | None:
    """The steps of a pipeline built like :func:`logistic_pipeline`, else None."""
    if not isinstance(classifier, Pipeline) or len(classifier.steps) != 4:
        return None
    steps = [step for _, step in classifier.steps]
    kinds = (Log1pColumns, MedianImputer, StandardScaler, LogisticRegression)
    if not all(isinstance(step, kind) for step, kind in zip(steps, kinds, strict=True)):
        return None
    return steps[0], steps[1], steps[2], steps[3]


def _varying(X: FloatArray) -> BoolArray:
    """Columns with at least two distinct known values."""
    out = np.zeros(X.shape[1], dtype=np.bool_)
    for j in range(X.shape[1]):
        known = X[:, j][~np.isnan(X[:, j])]
        out[j] = len(known) > 0 and bool(known.min() != known.max())
    return out


class ChurnModel(BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """Churn classifier on features at past cutoffs: P(no order within ``horizon_days``).

    ``fit(X, y)`` takes the feature rows of the training cutoffs stacked (columns :meth:`feature_names`) and
    whether each customer churned; :func:`fit_churn` builds them with the model's own cutoff design
    (:meth:`cutoff_plan`). The model keeps no training data.

    Args:
        horizon_days: the churn horizon the labels were observed over.
        features: feature names, in column order (default :data:`DEFAULT_FEATURES`).
        classifier: an unfitted scikit-learn classifier with ``predict_proba`` (labels 0/1); default
            :func:`logistic_pipeline` on the features that vary. Logistic pipelines and
            :class:`~segment_rules.boosting.BoostedTrees` persist as JSON.
        n_cutoffs: training cutoffs.
        cutoff_spacing_days: days between cutoffs (default ``horizon_days``).

    Attributes:
        support_: which of the columns vary in the training data and are used.
        features_: their names.
        classifier_: the fitted classifier.
        n_features_in_: columns expected by ``predict_proba``.
        n_train_: training rows; ``base_rate_``: their churn rate.
    """

    def __init__(
        self,
        horizon_days: int = 90,
        features: Sequence[str] | None = None,
        classifier: Any = None,
        n_cutoffs: int = 4,
        cutoff_spacing_days: int | None = None,
    ) -> None:
        self.horizon_days = horizon_days
        self.features = features
        self.classifier = classifier
        self.n_cutoffs = n_cutoffs
        self.cutoff_spacing_days = cutoff_spacing_days

    def feature_names(self) -> tuple[str, ...]:
        """The columns ``fit`` and ``predict_proba`` take, in order."""
        return DEFAULT_FEATURES if self.features is None else tuple(self.features)

    def cutoff_plan(self, as_of: datetime) -> CutoffPlan:
        """This model's training, test and final cutoffs for ``as_of`` (see :func:`cutoff_plan`)."""
        return cutoff_plan(as_of, self.horizon_days, self.n_cutoffs, self.cutoff_spacing_days)

    def fit(self, X: ArrayLike, y: ArrayLike) -> Self:
        """Fits the classifier on the columns that vary.

        Args:
            X: feature rows, one column per :meth:`feature_names`, NaN where missing.
            y: 1/True where the customer churned.

        Returns:
            The fitted model.

        Raises:
            ValueError: when the labels hold one class only, or no column varies.
        """
        names = self.feature_names()
        array = _matrix(X, len(names))
        labels = _labels(y, len(array))
        if labels.all() or not labels.any():
            raise ValueError(f"the training labels hold one class only ({len(labels)} rows)")
        support = _varying(array)
        if not support.any():
            raise ValueError("no feature varies in the training data")
        used = tuple(n for n, keep in zip(names, support.tolist(), strict=True) if keep)
        classifier = logistic_pipeline(used) if self.classifier is None else clone(self.classifier)
        classifier.fit(array[:, support], labels.astype(np.int64))
        self.support_ = support
        self.features_ = used
        self.classifier_ = classifier
        self.n_features_in_ = len(names)
        self.n_train_ = len(labels)
        self.base_rate_ = float(labels.mean())
        return self

    def churn_probability(self, X: ArrayLike) -> FloatArray:
        """P(churn) per row of ``X`` (columns :meth:`feature_names`)."""
        check_is_fitted(self)
        array = _matrix(X, self.n_features_in_)
        if len(array) == 0:
            return np.zeros(0)
        proba = np.asarray(self.classifier_.predict_proba(array[:, self.support_]), dtype=np.float64)
        column = [int(c) for c in self.classifier_.classes_].index(1)
        return np.asarray(proba[:, column], dtype=np.float64)

    def predict_proba(self, X: ArrayLike) -> FloatArray:
        """Columns P(stays), P(churns), as scikit-learn classifiers give them."""
        p = self.churn_probability(X)
        return np.column_stack([1.0 - p, p])

    def coefficients(self) -> dict[str, float] | None:
        """Logistic coefficients by feature, per standard deviation of the (log-transformed) feature.

        Returns:
            ``{"intercept": b, feature: coefficient, ...}``; positive means more churn. None for a classifier
            that is not a logistic pipeline.
        """
        check_is_fitted(self)
        steps = _logistic_steps(self.classifier_)
        if steps is None:
            return None
        logistic = steps[3]
        out = {"intercept": float(logistic.intercept_[0])}
        out.update(zip(self.features_, (float(v) for v in logistic.coef_[0]), strict=True))
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fitted model as JSON-ready data: the pipeline's statistics and coefficients, and version stamps.

        Returns:
            A dict that :meth:`from_dict` turns back into a model giving identical probabilities.

        Raises:
            TypeError: when the classifier is not a logistic pipeline (see :func:`logistic_pipeline`).
        """
        check_is_fitted(self)
        head = {
            "model": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "library_version": _package_version(),
            "hyper_parameters": {
                "horizon_days": self.horizon_days,
                "features": None if self.features is None else list(self.features),
                "n_cutoffs": self.n_cutoffs,
                "cutoff_spacing_days": self.cutoff_spacing_days,
            },
        }
        if isinstance(self.classifier_, BoostedTrees):
            return head | {
                "classifier": {"default": False, "kind": "boosted_trees", "trees": self.classifier_.to_dict()},
                "support": self.support_.tolist(),
                "features": list(self.features_),
                "fit": {"n_train": self.n_train_, "base_rate": self.base_rate_},
            }
        steps = _logistic_steps(self.classifier_)
        if steps is None:
            raise TypeError(
                f"only logistic pipelines and boosted trees are stored as JSON, not {type(self.classifier_).__name__}"
            )
        log, impute, scale, logistic = steps
        coefficients = self.coefficients()
        assert coefficients is not None
        return head | {
            "classifier": {"default": self.classifier is None, "C": float(logistic.C)},
            "support": self.support_.tolist(),
            "features": list(self.features_),
            "log_columns": [bool(v) for v in log.columns],
            "impute": impute.statistics_.tolist(),
            "scale": {"mean": scale.mean_.tolist(), "scale": scale.scale_.tolist(), "var": scale.var_.tolist()},
            "coefficients": coefficients,
            "fit": {"n_train": self.n_train_, "base_rate": self.base_rate_},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds a fitted model from :meth:`to_dict` output.

        Raises:
            ValueError: when ``data`` is not a stored churn model, or has a newer layout.
        """
        if data.get("model") != cls.__name__:
            raise ValueError(f"not a {cls.__name__}: model is {data.get('model')!r}")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"unsupported {cls.__name__} format_version {version!r} (this version reads <= {FORMAT_VERSION})"
            )
        params = dict(data["hyper_parameters"])
        if params.get("features") is not None:
            params["features"] = tuple(params["features"])
        used = tuple(data["features"])
        if data["classifier"].get("kind") == "boosted_trees":
            trees = BoostedTrees.from_dict(data["classifier"]["trees"])
            return cls(**params, classifier=BoostedTrees(**trees.get_params()))._restore(data, used, trees)
        log_columns = tuple(bool(v) for v in data["log_columns"])
        c_value = float(data["classifier"]["C"])
        template = None if data["classifier"]["default"] else logistic_pipeline(used, C=c_value)
        if template is not None:
            template.set_params(log__columns=log_columns)
        model = cls(**params, classifier=template)
        pipeline = logistic_pipeline(used, C=c_value)
        log, impute, scale, logistic = cast(tuple[Log1pColumns, MedianImputer, Any, Any], _logistic_steps(pipeline))
        n = len(used)
        log.set_params(columns=log_columns)
        log.n_features_in_ = n
        impute.statistics_ = np.array(data["impute"], dtype=np.float64)
        impute.n_features_in_ = n
        scale.mean_ = np.array(data["scale"]["mean"], dtype=np.float64)
        scale.scale_ = np.array(data["scale"]["scale"], dtype=np.float64)
        scale.var_ = np.array(data["scale"]["var"], dtype=np.float64)
        scale.n_features_in_ = n
        scale.n_samples_seen_ = int(data["fit"]["n_train"])
        coefficients = data["coefficients"]
        logistic.coef_ = np.array([[float(coefficients[name]) for name in used]], dtype=np.float64)
        logistic.intercept_ = np.array([float(coefficients["intercept"])], dtype=np.float64)
        logistic.classes_ = np.array([0, 1])
        logistic.n_features_in_ = n
        return model._restore(data, used, pipeline)

    def _restore(self, data: Mapping[str, Any], used: tuple[str, ...], classifier: Any) -> Self:
        """Set the fitted attributes that every stored layout shares."""
        self.support_ = np.array(data["support"], dtype=np.bool_)
        self.features_ = used
        self.classifier_ = classifier
        self.n_features_in_ = len(self.support_)
        self.n_train_ = int(data["fit"]["n_train"])
        self.base_rate_ = float(data["fit"]["base_rate"])
        return self


# ----------------------------------------------------------------------------------------------- scorers


@dataclass(frozen=True)
class ChurnScorer:
    """The chosen scorer, fitted, with what it needs to score customers at any time.

    Attributes:
        kind: ``model``, ``recency``, ``frequency``, ``expected_purchases`` (each a :class:`ChurnModel`) or
            ``bgnbd``.
        horizon_days: the churn horizon.
        fitted_at: the ``as_of`` of the fit.
        model: the classifier of every kind but ``bgnbd``.
        bgnbd: the BG/NBD model fitted at ``fitted_at``: the ``bgnbd`` scorer, and the source of the
            :data:`BTYD_FEATURES` of a model that uses them.
    """

    kind: ScorerKind
    horizon_days: int
    fitted_at: datetime
    model: ChurnModel | None = None
    bgnbd: BetaGeoModel | None = None

    @property
    def features(self) -> tuple[str, ...]:
        """The stored feature columns scoring reads (BG/NBD columns are computed from the order history)."""
        if self.model is None:
            return ()
        return tuple(name for name in self.model.feature_names() if name not in BTYD_FEATURES)

    def score(self, data: CutoffData) -> FloatArray:
        """Churn probabilities in [0, 1] for the customers of ``data``."""
        if len(data) == 0:
            return np.zeros(0)
        if self.model is not None:
            names = self.model.feature_names()
            if _needs_btyd(names):
                if self.bgnbd is None:
                    raise ValueError(f"the {self.kind} scorer uses BG/NBD columns but holds no BG/NBD model")
                data = data.with_columns(btyd_columns(self.bgnbd, data, self.horizon_days))
            p = self.model.churn_probability(data.matrix(names))
        elif self.bgnbd is not None:
            x, tx, age = _bgnbd_inputs(data)
            p = self.bgnbd.probability_no_purchase(self.horizon_days / WEEK_DAYS, x, tx, age)
        else:
            raise ValueError(f"the {self.kind} scorer holds no model")
        # BG/NBD's closed form can land a rounding error outside [0, 1].
        return np.asarray(np.clip(p, 0.0, 1.0), dtype=np.float64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data with a version stamp, for ``model_artifact``."""
        return {
            "model": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "library_version": _package_version(),
            "kind": self.kind,
            "horizon_days": self.horizon_days,
            "fitted_at": self.fitted_at.isoformat(),
            "classifier": None if self.model is None else self.model.to_dict(),
            "bgnbd": None if self.bgnbd is None else self.bgnbd.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds a scorer from :meth:`to_dict` output.

        Raises:
            ValueError: when ``data`` is not a stored churn scorer, or has a newer layout.
        """
        if data.get("model") != cls.__name__:
            raise ValueError(f"not a {cls.__name__}: model is {data.get('model')!r}")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(
                f"unsupported {cls.__name__} format_version {version!r} (this version reads <= {FORMAT_VERSION})"
            )
        kind = data["kind"]
        if kind not in _LABELS:
            raise ValueError(f"unknown churn scorer kind {kind!r}")
        return cls(
            kind=kind,
            horizon_days=int(data["horizon_days"]),
            fitted_at=datetime.fromisoformat(data["fitted_at"]),
            model=None if data["classifier"] is None else ChurnModel.from_dict(data["classifier"]),
            bgnbd=None if data["bgnbd"] is None else BetaGeoModel.from_dict(data["bgnbd"]),
        )


# ----------------------------------------------------------------------------------------------- settings, report


@dataclass(frozen=True)
class ChurnSettings:
    """How churn is defined, learned and chosen (the ``segments.churn`` section of the config).

    Args:
        horizon_days: churn means no order within this many days.
        n_cutoffs: training cutoffs (and final cutoffs the chosen scorer is refitted on).
        cutoff_spacing_days: days between cutoffs (default ``horizon_days``).
        features: the model's features (default :data:`DEFAULT_FEATURES`).
        margin: the out-of-time ROC-AUC by which the model must beat the best baseline to be chosen.
        significance: and the one-sided p-value of the paired DeLong test of that gain must be at most this.
        candidates: the model's classifiers tried by cross-validation (see :data:`CANDIDATES`).
        cv_folds: validation cutoffs of the cross-validation (the newest training cutoffs).
        min_customers: fewer customers than this in the training cutoffs or the test cutoff: no model.
        min_per_class: fewer churners, or customers who ordered again, than this in training or test: no model.
        min_repeat_buyers: fewer repeat buyers than this at a cutoff: no BG/NBD fit there.
        penalizer: L2 penalizer of the BG/NBD fits; ``"auto"``: maximum likelihood, a penalty only where it
            does not converge (see :func:`segment_rules.scoring.stable_fit`).
        sample_people: above this many people in scope, the cutoffs are kept for a deterministic sample of about
            this many (every k-th person id): each cutoff holds its own per-person arrays, and a fit on a few
            ten thousand customers is as good as one on millions. None keeps everyone.
    """

    horizon_days: int = 90
    n_cutoffs: int = 4
    cutoff_spacing_days: int | None = None
    features: tuple[str, ...] | None = None
    margin: float = 0.002
    significance: float = 0.05
    candidates: tuple[str, ...] = CANDIDATES
    cv_folds: int = 2
    min_customers: int = 200
    min_per_class: int = 20
    min_repeat_buyers: int = 20
    penalizer: float | str = "auto"
    sample_people: int | None = 25_000

    def plan(self, as_of: datetime) -> CutoffPlan:
        """The cutoffs for ``as_of``."""
        return cutoff_plan(as_of, self.horizon_days, self.n_cutoffs, self.cutoff_spacing_days)

    def model(self, classifier: Any = None, features: Sequence[str] | None = None) -> ChurnModel:
        """An unfitted :class:`ChurnModel` with these settings (``features`` overrides the feature list)."""
        chosen = self.features if features is None else tuple(features)
        return ChurnModel(self.horizon_days, chosen, classifier, self.n_cutoffs, self.cutoff_spacing_days)


@dataclass
class ChurnReport:
    """What a churn fit did: design, sizes, out-of-time metrics, the choice and the fitted scorer.

    Attributes:
        as_of: the evaluation time.
        plan: the cutoffs.
        settings: the settings used.
        cutoffs: per labelled cutoff: customers, churners and churn rate.
        train_customers, train_churners: pooled over the training cutoffs.
        test_customers, test_churners: at the test cutoff.
        metrics: per scorer (``model``, the :data:`BASELINES`, and the anti-baseline ``p_alive``); None where it
            could not be fitted or checked.
        candidate: the model's classifier (one of :data:`CANDIDATES`); ``cross_validation``: each candidate's
            mean AUC over the validation cutoffs (None where it could not be scored).
        comparison: the paired DeLong test of the model against the best baseline on the test cutoff.
        base_rate_brier: Brier score of predicting the training churn rate for every test customer.
        features: the features the evaluated model used; ``coefficients``: its logistic coefficients.
        chosen: the scorer that scores customers (None when none could be fitted); ``reason``: why, one sentence.
        scorer: the chosen scorer, refitted on the final cutoffs (BG/NBD: at ``as_of``).
        notes: what could not be fitted, and why.
    """

    as_of: datetime
    plan: CutoffPlan
    settings: ChurnSettings
    cutoffs: list[dict[str, Any]] = field(default_factory=list)
    train_customers: int = 0
    train_churners: int = 0
    test_customers: int = 0
    test_churners: int = 0
    metrics: dict[str, Metrics | None] = field(default_factory=dict)
    base_rate_brier: float | None = None
    features: tuple[str, ...] = ()
    coefficients: dict[str, float] | None = None
    candidate: str | None = None
    cross_validation: dict[str, float | None] = field(default_factory=dict)
    comparison: dict[str, Any] | None = None
    chosen: ScorerKind | None = None
    reason: str = ""
    scorer: ChurnScorer | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def train_base_rate(self) -> float | None:
        """Churn rate over the training cutoffs."""
        return self.train_churners / self.train_customers if self.train_customers else None

    @property
    def test_base_rate(self) -> float | None:
        """Churn rate at the test cutoff."""
        return self.test_churners / self.test_customers if self.test_customers else None

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        settings = asdict(self.settings)
        settings["features"] = None if self.settings.features is None else list(self.settings.features)
        settings["candidates"] = list(self.settings.candidates)
        return {
            "definition": {
                "horizon_days": self.settings.horizon_days,
                "text": churn_definition(self.settings.horizon_days),
            },
            "as_of": self.as_of.isoformat(),
            "cutoffs": self.plan.as_dict(),
            "sizes": {
                "per_cutoff": [dict(c) for c in self.cutoffs],
                "train": {"customers": self.train_customers, "churners": self.train_churners},
                "test": {"customers": self.test_customers, "churners": self.test_churners},
            },
            "base_rates": {"train": self.train_base_rate, "test": self.test_base_rate},
            "metrics": {k: (None if v is None else v.as_dict()) for k, v in self.metrics.items()},
            "base_rate_brier": self.base_rate_brier,
            "features": list(self.features),
            "coefficients": self.coefficients,
            "candidate": self.candidate,
            "cross_validation": dict(self.cross_validation),
            "comparison": None if self.comparison is None else {
                k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in self.comparison.items()
            },
            "chosen": self.chosen,
            "reason": self.reason,
            "scorer": None if self.scorer is None else self.scorer.to_dict(),
            "notes": list(self.notes),
            "settings": settings,
        }


# ----------------------------------------------------------------------------------------------- choice


def _shortage(report: ChurnReport, settings: ChurnSettings) -> str | None:
    """Why there are too few data to train and check a model, or None."""
    # Training counts are customer-cutoff rows: a customer present at every training cutoff counts k times.
    sizes = (
        ("over the training cutoffs", report.train_customers, report.train_churners),
        ("at the test cutoff", report.test_customers, report.test_churners),
    )
    for where, customers, _ in sizes:
        if customers < settings.min_customers:
            return f"{customers} customers {where}, {settings.min_customers} needed"
    for where, customers, churners in sizes:
        if churners < settings.min_per_class:
            return f"{churners} churners {where}, {settings.min_per_class} needed"
        if customers - churners < settings.min_per_class:
            return f"{customers - churners} customers who ordered again {where}, {settings.min_per_class} needed"
    return None


def _auc(metrics: Metrics | None) -> float:
    return metrics.roc_auc if metrics is not None and math.isfinite(metrics.roc_auc) else math.nan


def best_baseline(metrics: Mapping[str, Metrics | None]) -> ScorerKind | None:
    """The baseline with the highest out-of-time AUC (on a tie the earlier of :data:`BASELINES`: fewer data)."""
    checked = [k for k in BASELINES if math.isfinite(_auc(metrics.get(k)))]
    return max(checked, key=lambda k: _auc(metrics.get(k)), default=None)


def choose_scorer(
    metrics: Mapping[str, Metrics | None],
    *,
    margin: float,
    shortage: str | None = None,
    model_problem: str | None = None,
    p_value: float | None = None,
    significance: float = 0.05,
) -> tuple[ScorerKind | None, str]:
    """Pick the scorer: the model only when it beats the best baseline's ROC-AUC by ``margin``, significantly, on
    enough data.

    Args:
        metrics: out-of-time metrics by scorer (``model`` and the :data:`BASELINES`; others are ignored).
        margin: the AUC margin the model must clear.
        shortage: why the data are too few for a model, if they are.
        model_problem: why the model could not be trained or checked, if so.
        p_value: one-sided p-value of the paired test of the model's gain over the best baseline (None: untested).
        significance: the largest p-value that counts as a real gain.

    Returns:
        The scorer (None when no scorer could be checked: the caller falls back) and the reason, one sentence.
    """
    best = best_baseline(metrics)
    model_auc = _auc(metrics.get("model"))
    if best is None:
        if shortage is None and model_problem is None and math.isfinite(model_auc):
            return "model", f"no baseline could be checked on this shop (model AUC {model_auc:.3f}): using the model"
        why = shortage or model_problem or "no scorer could be checked out of time"
        return None, why
    name, short = _LABELS[best]
    best_auc = _auc(metrics.get(best))
    if shortage is not None:
        return best, f"too few data to choose a model on this shop ({shortage}): using {short}"
    if model_problem is not None or not math.isfinite(model_auc):
        return best, f"the model could not be checked on this shop ({model_problem or 'no AUC'}): using {short}"
    significant = p_value is None or (math.isfinite(p_value) and p_value <= significance)
    if model_auc >= best_auc + margin and significant:
        return "model", (
            f"the model scores better than {name} on this shop (AUC {model_auc:.3f} vs {best_auc:.3f}): using the model"
        )
    if model_auc >= best_auc + margin:
        return best, (
            f"the model's gain over {name} is within chance on this shop (AUC {model_auc:.3f} vs {best_auc:.3f}, "
            f"p = {p_value:.2f}): using {short}"
        )
    return best, (
        f"{name} scores as well as the model on this shop (AUC {best_auc:.3f} vs {model_auc:.3f}): using {short}"
    )


# ----------------------------------------------------------------------------------------------- fitting


def _stack(parts: Sequence[CutoffData], names: Sequence[str]) -> tuple[FloatArray, BoolArray]:
    xs = [p.matrix(names) for p in parts]
    ys = [p.churned for p in parts]
    if any(y is None for y in ys):
        raise ValueError("a training cutoff has no labels")
    X = np.concatenate(xs) if xs else np.zeros((0, len(names)))
    y = np.concatenate([cast(BoolArray, y) for y in ys]) if ys else np.zeros(0, dtype=np.bool_)
    return X, y


def _fit_model(model: ChurnModel, parts: Sequence[CutoffData]) -> tuple[ChurnModel | None, str | None]:
    X, y = _stack(parts, model.feature_names())
    try:
        return model.fit(X, y), None
    except ValueError as exc:
        return None, str(exc)


def _fit_bgnbd(data: CutoffData | None, settings: ChurnSettings) -> tuple[BetaGeoModel | None, str | None]:
    if data is None or len(data) == 0:
        return None, "no customers for a BG/NBD fit"
    x, tx, age = _bgnbd_inputs(data)
    repeat = int((x > 0).sum())
    if repeat < settings.min_repeat_buyers:
        return None, (
            f"{repeat} repeat buyers at {data.cutoff.date().isoformat()}, {settings.min_repeat_buyers} needed "
            "for a stable BG/NBD fit"
        )
    try:
        # Identical customers fit once, weighted (as the CLV scores do).
        model = fit_bgnbd(x, tx, age, settings.penalizer)
    except (ConvergenceError, ValueError) as exc:
        return None, f"BG/NBD fit at {data.cutoff.date().isoformat()} failed: {exc}"
    return model, None


def candidate_model(settings: ChurnSettings, name: str) -> ChurnModel:
    """An unfitted model of the candidate ``name`` (see :data:`CANDIDATES`)."""
    base = settings.model().feature_names()
    if name == "logistic":
        return settings.model()
    if name == "logistic_btyd":
        return settings.model(features=(*base, *BTYD_FEATURES))
    if name == "boosted_trees_btyd":
        return settings.model(BoostedTrees(), features=(*base, *BTYD_FEATURES))
    if name == "boosted_trees":
        return settings.model(BoostedTrees())
    raise ValueError(f"unknown churn model candidate {name!r} (known: {', '.join(CANDIDATES)})")


def _score_fold(model: ChurnModel, inner: Sequence[CutoffData], validation: CutoffData) -> float | None:
    fitted, _ = _fit_model(clone(model), inner)
    if fitted is None:
        return None
    probability = fitted.churn_probability(validation.matrix(fitted.feature_names()))
    return roc_auc(cast(BoolArray, validation.churned), probability)


def cross_validate(
    candidates: Mapping[str, ChurnModel], train: Sequence[CutoffData], horizon_days: int, folds: int = 2
) -> dict[str, float | None]:
    """Mean out-of-time AUC of each candidate over the newest ``folds`` training cutoffs.

    Each fold validates on one training cutoff and trains on the older training cutoffs whose label windows
    end by it, the same design as the test, one step back: the test cutoff is never looked at.
    """
    scores: dict[str, list[float]] = {name: [] for name in candidates}
    window = timedelta(days=horizon_days)
    for validation in list(train)[-folds:]:
        churned = validation.churned
        if churned is None or churned.all() or not churned.any():
            continue
        inner = [part for part in train if part.cutoff + window <= validation.cutoff and len(part)]
        if not inner:
            continue
        for name, model in candidates.items():
            auc = _score_fold(model, inner, validation)
            if auc is not None and math.isfinite(auc):
                scores[name].append(auc)
    return {name: (float(np.mean(v)) if v else None) for name, v in scores.items()}


def _pick_candidate(scores: Mapping[str, float | None], order: Sequence[str]) -> str:
    """The simplest candidate within :data:`CV_TOLERANCE` of the best cross-validated AUC."""
    known = {k: v for k, v in scores.items() if v is not None}
    if not known:
        return order[0]
    best = max(known.values())
    return next(k for k in order if k in known and known[k] >= best - CV_TOLERANCE)


def _with_btyd(
    data: Mapping[datetime, CutoffData], settings: ChurnSettings
) -> tuple[dict[datetime, CutoffData], dict[datetime, BetaGeoModel | None], dict[datetime, str]]:
    """Every cutoff with its BG/NBD columns (NaN where BG/NBD could not be fitted there), the models and the
    reasons of the failed fits."""
    out: dict[datetime, CutoffData] = {}
    models: dict[datetime, BetaGeoModel | None] = {}
    problems: dict[datetime, str] = {}
    for cutoff, part in data.items():
        bgnbd, problem = _fit_bgnbd(part, settings) if len(part) else (None, None)
        columns = btyd_columns(bgnbd, part, settings.horizon_days)
        broken = sum(int(np.isnan(v).sum()) for v in columns.values()) if bgnbd is not None else 0
        if broken:
            # A baseline must score every customer: a fit that cannot is no fit here.
            bgnbd, problem = None, f"BG/NBD at {cutoff.date().isoformat()} gives no finite forecast for some customers"
            columns = btyd_columns(None, part, settings.horizon_days)
        models[cutoff] = bgnbd
        if problem is not None:
            problems[cutoff] = problem
        out[cutoff] = part.with_columns(columns)
    return out, models, problems


def _final_scorer(
    kind: ScorerKind,
    template: ChurnModel,
    plan: CutoffPlan,
    final: Sequence[CutoffData],
    latest: CutoffData | None,
    settings: ChurnSettings,
) -> tuple[ChurnScorer | None, str | None]:
    """The chosen scorer refitted for ``as_of``: on the final cutoffs (with BG/NBD at ``as_of`` for its columns),
    or BG/NBD on the history up to ``as_of``."""
    needs_bgnbd = kind == "bgnbd" or _needs_btyd(template.feature_names())
    bgnbd, problem = _fit_bgnbd(latest, settings) if needs_bgnbd else (None, None)
    if needs_bgnbd and bgnbd is None:
        return None, problem
    if kind == "bgnbd":
        return ChurnScorer(kind, settings.horizon_days, plan.as_of, bgnbd=bgnbd), None
    model, problem = _fit_model(template, final)
    scorer = None if model is None else ChurnScorer(kind, settings.horizon_days, plan.as_of, model=model, bgnbd=bgnbd)
    return scorer, problem


def _cutoff_sizes(report: ChurnReport, plan: CutoffPlan, data: Mapping[datetime, CutoffData]) -> None:
    roles = {c: [r for r, cs in (("train", plan.train), ("test", (plan.test,)), ("final", plan.final)) if c in cs]
             for c in plan.labelled}
    for c in plan.labelled:
        churned = data[c].churned
        if churned is None:
            raise ValueError(f"the cutoff {c.isoformat()} has no labels")
        report.cutoffs.append({
            "cutoff": c.isoformat(), "roles": roles[c], "customers": len(churned), "churners": int(churned.sum()),
            "churn_rate": float(churned.mean()) if len(churned) else None,
        })


def _baseline_templates(settings: ChurnSettings) -> dict[ScorerKind, ChurnModel]:
    return {cast(ScorerKind, kind): settings.model(features=names) for kind, names in _ONE_FEATURE.items()}


def _model_template(
    settings: ChurnSettings, classifier: Any, train: Sequence[CutoffData], report: ChurnReport, btyd_ok: bool
) -> ChurnModel:
    """The model to train: the caller's classifier, or the candidate cross-validation picks."""
    if classifier is not None:
        return settings.model(classifier)
    rows = sum(len(part) for part in train)
    # Without BG/NBD columns a candidate falls back to its plain-feature variant (trees stay trees).
    plain = [n if btyd_ok else n.removesuffix("_btyd") for n in settings.candidates]
    names = [n for n in dict.fromkeys(plain) if rows >= TREES_MIN_ROWS or "trees" not in n]
    candidates = {name: candidate_model(settings, name) for name in names or ["logistic"]}
    if len(candidates) > 1:
        report.cross_validation = cross_validate(candidates, train, settings.horizon_days, settings.cv_folds)
    report.candidate = _pick_candidate(report.cross_validation, list(candidates))
    return candidates[report.candidate]


def fit_churn_arrays(
    as_of: datetime,
    data: Mapping[datetime, CutoffData],
    settings: ChurnSettings | None = None,
    *,
    classifier: Any = None,
) -> ChurnReport:
    """Train, check out of time, choose and refit, from arrays (:func:`fit_churn` reads them from the store).

    Args:
        as_of: the evaluation time.
        data: the customers at every cutoff of ``settings.plan(as_of).labelled`` (with labels) and at ``as_of``
            (labels not needed; used to fit BG/NBD).
        settings: churn settings (default :class:`ChurnSettings`).
        classifier: an unfitted classifier for the model (default: the candidate cross-validation picks).

    Returns:
        The report, with the fitted scorer in ``scorer``.

    Raises:
        KeyError: when a cutoff of the plan is missing from ``data``.
    """
    from threadpoolctl import threadpool_limits

    # Every fit here is small (tens of thousands of rows, a dozen columns): BLAS and OpenMP threads only fight
    # over the cores (a 90-day fit on CDNOW took 21 s with them, 4 s without).
    with threadpool_limits(limits=1):
        return _fit_churn_arrays(as_of, data, settings or ChurnSettings(), classifier)


def _fit_churn_arrays(
    as_of: datetime, data: Mapping[datetime, CutoffData], settings: ChurnSettings, classifier: Any
) -> ChurnReport:
    plan = settings.plan(as_of)
    report = ChurnReport(as_of=as_of, plan=plan, settings=settings)
    _cutoff_sizes(report, plan, data)
    data, bgnbd_at, bgnbd_problems = _with_btyd({c: data[c] for c in (*plan.labelled, as_of) if c in data}, settings)
    train = [data[c] for c in plan.train]
    test = data[plan.test]
    y_test = cast(BoolArray, test.churned)
    _, y_train = _stack(train, ())
    report.train_customers, report.train_churners = len(y_train), int(y_train.sum())
    report.test_customers, report.test_churners = len(y_test), int(y_test.sum())
    both_classes = 0 < report.test_churners < report.test_customers
    # BG/NBD columns are usable when the test cutoff and some training cutoff have them; a young cutoff whose
    # few repeat buyers give no fit has them missing, which the models impute (logistic) or route (trees).
    btyd_ok = bgnbd_at.get(plan.test) is not None and any(bgnbd_at.get(c) is not None for c in plan.train)
    rankings: dict[str, FloatArray] = {}

    template = _model_template(settings, classifier, train, report, btyd_ok)
    model, model_problem = _fit_model(template, train)
    if model is not None:
        report.features = model.features_
        report.coefficients = model.coefficients()
        if both_classes:
            rankings["model"] = model.churn_probability(test.matrix(model.feature_names()))
            report.metrics["model"] = evaluate_scores(y_test, rankings["model"], rankings["model"])
    else:
        report.notes.append(f"model not trained: {model_problem}")
        report.metrics["model"] = None

    baselines = _baseline_templates(settings)
    for name, baseline in baselines.items():
        report.metrics[name] = None
        if name == "expected_purchases" and not btyd_ok:
            continue
        fitted, problem = _fit_model(baseline, train)
        if fitted is not None and both_classes:
            rankings[name] = fitted.churn_probability(test.matrix(fitted.feature_names()))
            report.metrics[name] = evaluate_scores(y_test, rankings[name], rankings[name])
        elif problem is not None:
            report.notes.append(f"{_LABELS[name][1]} baseline not calibrated: {problem}")

    report.metrics["bgnbd"] = report.metrics["p_alive"] = None
    if bgnbd_at.get(plan.test) is not None and both_classes:
        rankings["bgnbd"] = test.extra["p_no_purchase"]
        report.metrics["bgnbd"] = evaluate_scores(y_test, rankings["bgnbd"], rankings["bgnbd"])
        dead = 1.0 - test.extra["p_alive"]
        report.metrics["p_alive"] = evaluate_scores(y_test, dead, dead)
    elif plan.test in bgnbd_problems:
        report.notes.append(f"BG/NBD baseline not fitted: {bgnbd_problems[plan.test]}")
    if not both_classes:
        report.notes.append(
            f"the test cutoff has {report.test_churners} churners among {report.test_customers} customers: "
            "nothing can be checked out of time"
        )
    if report.train_customers and report.test_customers:
        rate = np.full(report.test_customers, report.train_churners / report.train_customers)
        report.base_rate_brier = brier_score(y_test, rate)

    best = best_baseline(report.metrics)
    if best is not None and "model" in rankings:
        report.comparison = {"baseline": best, **delong_test(y_test, rankings["model"], rankings[best])}
    if model is not None and not both_classes:
        model_problem = "the test cutoff holds one class only"
    kind, report.reason = choose_scorer(
        report.metrics, margin=settings.margin, shortage=_shortage(report, settings), model_problem=model_problem,
        p_value=None if report.comparison is None else report.comparison["p_value"],
        significance=settings.significance,
    )
    _refit_chosen(report, kind, template, baselines, plan, data, settings)
    logger.info("churn at %s: %s", as_of.isoformat(), report.reason)
    return report


def _refit_chosen(
    report: ChurnReport,
    kind: ScorerKind | None,
    template: ChurnModel,
    baselines: Mapping[ScorerKind, ChurnModel],
    plan: CutoffPlan,
    data: Mapping[datetime, CutoffData],
    settings: ChurnSettings,
) -> None:
    """Refit the chosen scorer for ``as_of``, falling back to the simplest ones that can be refitted."""
    candidates: list[ScorerKind] = [kind] if kind is not None else []
    candidates += [k for k in _FALLBACK_ORDER if k not in candidates]
    final = [data[c] for c in plan.final]
    for candidate in candidates:
        chosen_template = template if candidate == "model" else baselines.get(candidate, template)
        scorer, problem = _final_scorer(candidate, chosen_template, plan, final, data.get(plan.as_of), settings)
        if scorer is not None:
            if candidate != kind:
                _, short = _LABELS[candidate]
                report.reason = f"{report.reason}; using {short}, not checked out of time"
            report.chosen, report.scorer = candidate, scorer
            return
        report.notes.append(f"{candidate} could not be refitted for {plan.as_of.date().isoformat()}: {problem}")
    report.reason = f"{report.reason}; no churn scorer could be fitted, churn probabilities stay empty"


def fit_churn(
    conn: Connection,
    as_of: datetime,
    settings: ChurnSettings | None = None,
    *,
    classifier: Any = None,
) -> ChurnReport:
    """Read the cutoffs from the store (one activity pass), then train, check out of time, choose and refit.

    Args:
        conn: an open connection.
        as_of: the evaluation time; labels are observed up to it, never after.
        settings: churn settings (default :class:`ChurnSettings`).
        classifier: an unfitted classifier for the model (default :func:`logistic_pipeline`).

    Returns:
        The report; score with ``score_churn(conn, report, as_of)``.
    """
    settings = settings or ChurnSettings()
    reader = CutoffReader(as_of, settings, read_people(conn))
    current = FeatureAccumulator(as_of, reader.people.person_id)
    scan(conn, [current, *reader.accumulators.values()], every=reader.every)
    data = reader.data(FeatureTable.from_accumulator(current, reader.people))
    return fit_churn_arrays(as_of, data, settings, classifier=classifier)


def _as_scorer(scorer: ChurnReport | ChurnScorer | Mapping[str, Any]) -> ChurnScorer:
    if isinstance(scorer, ChurnScorer):
        return scorer
    if isinstance(scorer, ChurnReport):
        if scorer.scorer is None:
            raise ValueError(f"no churn scorer was fitted: {scorer.reason}")
        return scorer.scorer
    return ChurnScorer.from_dict(scorer)


def score_churn(
    source: Connection | CutoffData,
    scorer: ChurnReport | ChurnScorer | Mapping[str, Any],
    as_of: datetime | None = None,
    *,
    person_ids: Sequence[int] | None = None,
) -> tuple[IntArray, FloatArray]:
    """Churn probabilities of the customers at ``as_of``.

    Args:
        source: an open connection (features are read at ``as_of``), or customers already read.
        scorer: a fit's report, its scorer, or the scorer's stored ``to_dict`` data.
        as_of: the scoring time (required with a connection; with arrays it must match their cutoff).
        person_ids: only these people (with a connection).

    Returns:
        ``(person_ids, probabilities)``: the customers (people with at least one order by ``as_of``) in person
        id order, and P(no order within the horizon) for each, in [0, 1].

    Raises:
        ValueError: when the report holds no scorer, or ``as_of`` is missing or does not match the arrays.
    """
    fitted = _as_scorer(scorer)
    if isinstance(source, CutoffData):
        if as_of is not None and as_of != source.cutoff:
            raise ValueError(f"the arrays were read at {source.cutoff.isoformat()}, not {as_of.isoformat()}")
        data = source
    else:
        if as_of is None:
            raise ValueError("as_of is required to score from the store")
        data = read_cutoff(source, as_of, fitted.features, person_ids=person_ids)
    return data.person_id, fitted.score(data)
