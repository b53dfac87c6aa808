"""RFM scores (recency, frequency, monetary; 1 to 5, 5 best) and the named RFM segments.

Inputs, one row per customer: ``recency_days`` (days since the last order: fewer is better), ``frequency``
(number of orders) and ``monetary`` (spend). :class:`RFMScorer` learns score edges from a population in
``fit`` and scores rows against those frozen edges in ``transform``/``predict``, so scores do not move between
runs until the scorer is refitted.

Tie policy
----------
A score is a function of the value alone: equal values get equal scores, whatever the row order. (The common
``rank(method="first")`` idiom gives identical customers different scores by row order; it is not used.)

* ``quantile``: quintiles of the population from tie-aware percentiles. A value's percentile is its
  mid-distribution rank, (customers below + half the customers equal) / customers, and its score is
  ceil(5 x percentile), at least 1. A block of tied customers therefore gets one score, chosen by the middle
  of the block. For recency the order is reversed (the most recent fifth scores 5).
* ``fixed``: business bins that mean the same in every shop and are immune to ties:

  ========= ======= ======== ========= ========= ==========
  score     1       2        3         4         5
  ========= ======= ======== ========= ========= ==========
  recency   > 365 d 181-365  91-180    31-90     <= 30 days
  frequency 1 order 2        3         4-5       6 or more
  monetary  < m/4   m/4-m/2  m/2-2m    2m-4m     >= 4m
  ========= ======= ======== ========= ========= ==========

  where m is the median spend of the customers with a positive spend (a log-spaced scale: it needs no
  currency, and a typical customer scores 3), unless fixed thresholds are given in ``monetary_edges``.

With ``policy="auto"`` (the default) a dimension falls back to ``fixed`` when quantiles would mislead: the
population is smaller than ``min_customers``; or one value is held by more than ``max_tie_share`` of the
customers (above 40 % one value necessarily spans two quintile boundaries, so a score level is lost), as
with order counts in most shops, where half the customers ordered once; or quantile edges collapse so that
a score level is empty. ``policy_`` and ``policy_reasons_`` record the choice per dimension, so quality
checks can flag degenerate bins.

Named segments
--------------
Segments come from an anchored lookup of the cell (R, FM), where FM is the mean of the F and M scores rounded
half up (F = 4, M = 5 gives FM = 5). The default table is the 11-segment R x FM family:

===== ============== ================== ================== ============== ==============
R     FM = 1         FM = 2             FM = 3             FM = 4         FM = 5
===== ============== ================== ================== ============== ==============
5     new_customers  potential_loyalist loyal              champions      champions
4     promising      potential_loyalist potential_loyalist loyal          champions
3     promising      need_attention     potential_loyalist loyal          loyal
2     about_to_sleep need_attention     need_attention     at_risk        at_risk
1     lost           hibernating        at_risk            cant_lose_them cant_lose_them
===== ============== ================== ================== ============== ==============

A different table can be passed as ``segments``: a mapping of segment name to its cells, each written as a
two-digit code "R FM" (``{"champions": ["55", "54", "45"], ...}``). Codes are matched whole (``"5"`` or
``"551"`` are errors, never substring matches), and the table must name every one of the 25 cells exactly
once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Self

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from segment_rules.btyd import FORMAT_VERSION, _package_version

__all__ = [
    "DEFAULT_SEGMENTS",
    "DIMENSIONS",
    "RFMScorer",
    "fm_score",
    "segment_table",
]

DIMENSIONS = ("recency", "frequency", "monetary")
N_SCORES = 5

DEFAULT_SEGMENTS: Mapping[str, tuple[str, ...]] = {
    "champions": ("55", "54", "45"),
    "loyal": ("53", "44", "35", "34"),
    "potential_loyalist": ("52", "42", "33", "43"),
    "new_customers": ("51",),
    "promising": ("41", "31"),
    "need_attention": ("32", "23", "22"),
    "about_to_sleep": ("21",),
    "at_risk": ("25", "24", "13"),
    "cant_lose_them": ("15", "14"),
    "hibernating": ("12",),
    "lost": ("11",),
}
"""The default R x FM segment table (see the module docstring)."""

_CELL = re.compile(r"([1-5])([1-5])")
Policy = Literal["quantile", "fixed"]


def segment_table(segments: Mapping[str, Iterable[str]]) -> dict[tuple[int, int], str]:
    """Turns a ``{name: ["R FM" codes]}`` mapping into a total (R, FM) -> name lookup.

    Args:
        segments: segment name to its two-digit cell codes.

    Returns:
        The lookup, with all 25 cells.

    Raises:
        ValueError: on a malformed code, a cell named twice, or a cell left out.
    """
    table: dict[tuple[int, int], str] = {}
    for name, codes in segments.items():
        if isinstance(codes, str):
            raise ValueError(f"segment {name!r}: give a list of cell codes, not the string {codes!r}")
        for code in codes:
            match = _CELL.fullmatch(str(code))
            if match is None:
                raise ValueError(f"segment {name!r}: {code!r} is not a cell code: two digits 1-5, R then FM")
            cell = (int(match[1]), int(match[2]))
            if cell in table:
                raise ValueError(f"cell {code} is in both {table[cell]!r} and {name!r}")
            table[cell] = name
    missing = [f"{r}{fm}" for r in range(1, 6) for fm in range(1, 6) if (r, fm) not in table]
    if missing:
        raise ValueError(f"the segment table leaves cells without a segment: {', '.join(missing)}")
    return table


def fm_score(frequency_score: ArrayLike, monetary_score: ArrayLike) -> NDArray[np.int64]:
    """The combined FM score: the mean of the F and M scores, rounded half up.

    Args:
        frequency_score: F scores, 1-5.
        monetary_score: M scores, 1-5.

    Returns:
        FM scores, 1-5.
    """
    f = np.asarray(frequency_score, dtype=np.int64)
    m = np.asarray(monetary_score, dtype=np.int64)
    return np.asarray((f + m + 1) // 2, dtype=np.int64)


def _quantile_edges(values: NDArray[np.float64], higher_is_better: bool) -> tuple[NDArray[np.float64], int]:
    """Edges reproducing the mid-rank quintile scores of ``values``, and the number of score levels used.

    For ``higher_is_better``, edge k-2 (k = 2..5) is the smallest value scoring >= k, and a value scores
    1 + (number of edges <= value). Otherwise edges are the largest values scoring >= k, and a value scores
    1 + (number of edges >= value). A level nobody reaches gets an infinite edge.
    """
    oriented = values if higher_is_better else -values
    unique, counts = np.unique(oriented, return_counts=True)
    n = len(oriented)
    below = np.cumsum(counts) - counts
    # ceil(5 * (below + count / 2) / n), in integers so a percentile exactly on k/5 scores k without rounding.
    scores = np.maximum(-((-N_SCORES * (2 * below + counts)) // (2 * n)), 1)
    edges = np.full(N_SCORES - 1, np.inf)
    for k in range(2, N_SCORES + 1):
        reached = unique[scores >= k]
        if len(reached):
            edges[k - 2] = reached[0]
    if not higher_is_better:
        edges = np.sort(-edges)
    return edges, len(np.unique(scores))


def _score(values: NDArray[np.float64], edges: NDArray[np.float64], higher_is_better: bool) -> NDArray[np.int64]:
    if higher_is_better:
        passed = np.searchsorted(edges, values, side="right")
    else:
        passed = len(edges) - np.searchsorted(edges, values, side="left")
    return np.asarray(1 + passed, dtype=np.int64)


def _edges_tuple(edges: Sequence[float], name: str) -> NDArray[np.float64]:
    array = np.asarray(edges, dtype=np.float64)
    if array.shape != (N_SCORES - 1,) or np.any(np.isnan(array)) or np.any(np.diff(array) < 0):
        raise ValueError(f"{name} must be {N_SCORES - 1} ascending thresholds, got {edges!r}")
    return array


class RFMScorer(BaseEstimator):  # type: ignore[misc]  # scikit-learn ships no type information
    """Learns RFM score edges from a customer population and scores customers against them.

    Args:
        policy: ``"auto"`` (quintiles, with a per-dimension fall-back to fixed bins), ``"quantile"`` or
            ``"fixed"`` for every dimension.
        min_customers: below this population size, ``auto`` uses fixed bins for every dimension.
        max_tie_share: ``auto`` uses fixed bins for a dimension where one value is held by more than this share
            of customers.
        recency_edges: fixed recency bins, days since the last order: scores 5/4/3/2 are <= each edge.
        frequency_edges: fixed frequency bins, orders: scores 2/3/4/5 start at each edge.
        monetary_edges: fixed spend thresholds where scores 2/3/4/5 start, in the shop's currency; None
            scales them to the population: median x (1/4, 1/2, 2, 4).
        segments: named segment table, ``{name: ["R FM" cell codes]}``; None for :data:`DEFAULT_SEGMENTS`.

    Attributes:
        edges_: per dimension, the four ascending thresholds in the dimension's unit (days, orders, spend).
            Frequency and monetary score 1 + (edges <= value); recency scores 1 + (edges >= days).
        policy_: per dimension, ``"quantile"`` or ``"fixed"``.
        policy_reasons_: per dimension, why that policy was used.
        segment_table_: the (R, FM) -> segment lookup.
        n_customers_: the population size the edges were learned from.
    """

    def __init__(
        self,
        policy: Literal["auto", "quantile", "fixed"] = "auto",
        min_customers: int = 50,
        max_tie_share: float = 0.4,
        recency_edges: tuple[float, float, float, float] = (30, 90, 180, 365),
        frequency_edges: tuple[float, float, float, float] = (2, 3, 4, 6),
        monetary_edges: tuple[float, float, float, float] | None = None,
        segments: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self.policy = policy
        self.min_customers = min_customers
        self.max_tie_share = max_tie_share
        self.recency_edges = recency_edges
        self.frequency_edges = frequency_edges
        self.monetary_edges = monetary_edges
        self.segments = segments

    @staticmethod
    def _check_X(X: ArrayLike) -> NDArray[np.float64]:
        array = np.asarray(X, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(DIMENSIONS):
            raise ValueError(f"X must have shape (n_customers, 3): {', '.join(DIMENSIONS)}; got {array.shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError("X contains NaN or infinite values")
        if np.any(array[:, 0] < 0) or np.any(array[:, 1] < 0):
            raise ValueError("recency_days and frequency must be non-negative")
        return array

    def fit(self, X: ArrayLike, y: None = None) -> Self:
        """Learns the score edges from a population of customers.

        Args:
            X: shape (n_customers, 3): recency_days, frequency (orders), monetary (spend).
            y: ignored.

        Returns:
            The fitted scorer.

        Raises:
            ValueError: on invalid inputs, hyper-parameters or segment table.
        """
        data = self._check_X(X)
        if len(data) == 0:
            raise ValueError("cannot learn RFM edges from an empty population")
        if self.policy not in ("auto", "quantile", "fixed"):
            raise ValueError(f"policy must be 'auto', 'quantile' or 'fixed', got {self.policy!r}")
        if not 0 < self.max_tie_share <= 1:
            raise ValueError("max_tie_share must be in (0, 1]")
        fixed = {
            "recency": _edges_tuple(self.recency_edges, "recency_edges"),
            "frequency": _edges_tuple(self.frequency_edges, "frequency_edges"),
            "monetary": self._monetary_fixed_edges(data[:, 2]),
        }
        table = segment_table(DEFAULT_SEGMENTS if self.segments is None else self.segments)

        n = len(data)
        edges: dict[str, NDArray[np.float64]] = {}
        policy: dict[str, Policy] = {}
        reasons: dict[str, str] = {}
        for column, name in enumerate(DIMENSIONS):
            values = data[:, column]
            quantile, levels = _quantile_edges(values, higher_is_better=name != "recency")
            reason = self._fallback_reason(values, levels)
            if self.policy == "fixed" or (self.policy == "auto" and reason):
                edges[name], policy[name] = fixed[name], "fixed"
                reasons[name] = "fixed bins requested" if self.policy == "fixed" else reason
            else:
                edges[name], policy[name] = quantile, "quantile"
                reasons[name] = f"quintiles of {n} customers" + (f" (though {reason})" if reason else "")
        self.edges_ = edges
        self.policy_ = policy
        self.policy_reasons_ = reasons
        self.segment_table_ = table
        self.n_customers_ = n
        return self

    def _monetary_fixed_edges(self, spend: NDArray[np.float64]) -> NDArray[np.float64]:
        if self.monetary_edges is not None:
            return _edges_tuple(self.monetary_edges, "monetary_edges")
        positive = spend[spend > 0]
        if len(positive) == 0:
            # Nobody spent anything: every customer is equal and scores 1.
            return np.full(N_SCORES - 1, np.inf)
        return float(np.median(positive)) * np.array([0.25, 0.5, 2.0, 4.0])

    def _fallback_reason(self, values: NDArray[np.float64], levels: int) -> str:
        n = len(values)
        if n < self.min_customers:
            return f"{n} customers, fewer than min_customers={self.min_customers}"
        unique, counts = np.unique(values, return_counts=True)
        top = int(np.argmax(counts))
        share = counts[top] / n
        if share > self.max_tie_share:
            limit = f"max_tie_share={self.max_tie_share:g}"
            return f"{unique[top]:g} is held by {share:.1%} of customers, more than {limit}"
        if levels < N_SCORES:
            return f"ties leave quintile scores with only {levels} of {N_SCORES} levels"
        return ""

    def transform(self, X: ArrayLike) -> NDArray[np.int64]:
        """Scores customers against the learned edges.

        Args:
            X: shape (n_customers, 3): recency_days, frequency (orders), monetary (spend).

        Returns:
            Shape (n_customers, 3): the R, F and M scores, 1-5.
        """
        check_is_fitted(self)
        data = self._check_X(X)
        columns = [
            _score(data[:, column], self.edges_[name], higher_is_better=name != "recency")
            for column, name in enumerate(DIMENSIONS)
        ]
        return np.stack(columns, axis=1) if len(data) else np.zeros((0, len(DIMENSIONS)), dtype=np.int64)

    def fit_transform(self, X: ArrayLike, y: None = None) -> NDArray[np.int64]:
        """Fits on ``X`` and scores it.

        Args:
            X: shape (n_customers, 3): recency_days, frequency (orders), monetary (spend).
            y: ignored.

        Returns:
            Shape (n_customers, 3): the R, F and M scores.
        """
        return self.fit(X).transform(X)

    def predict(self, X: ArrayLike) -> NDArray[np.str_]:
        """Named segment per customer, looked up by (R, FM) in the segment table.

        Args:
            X: shape (n_customers, 3): recency_days, frequency (orders), monetary (spend).

        Returns:
            One segment name per customer.
        """
        scores = self.transform(X)
        return self.segments_for(scores)

    def segments_for(self, scores: ArrayLike) -> NDArray[np.str_]:
        """Named segment per row of R, F, M scores.

        Args:
            scores: shape (n, 3) scores, as returned by :meth:`transform`.

        Returns:
            One segment name per row.
        """
        check_is_fitted(self)
        rfm = np.asarray(scores, dtype=np.int64).reshape(-1, len(DIMENSIONS))
        if np.any((rfm < 1) | (rfm > N_SCORES)):
            raise ValueError("scores must be between 1 and 5")
        names = sorted(set(self.segment_table_.values()))
        grid = np.empty((N_SCORES, N_SCORES), dtype=np.int64)
        for (r, fm), name in self.segment_table_.items():
            grid[r - 1, fm - 1] = names.index(name)
        cells = grid[rfm[:, 0] - 1, fm_score(rfm[:, 1], rfm[:, 2]) - 1]
        return np.asarray(np.array(names)[cells], dtype=np.str_)

    def to_dict(self) -> dict[str, Any]:
        """The fitted scorer as JSON-ready data: edges, policies, hyper-parameters and a version stamp.

        Returns:
            A dict that :meth:`from_dict` turns back into an equivalent scorer. The edge of a score level that
            nobody reaches is infinite, and written as None.
        """
        check_is_fitted(self)
        params = self.get_params()
        params["segments"] = None if self.segments is None else {k: list(v) for k, v in self.segments.items()}
        for key in ("recency_edges", "frequency_edges", "monetary_edges"):
            params[key] = None if params[key] is None else [float(v) for v in params[key]]
        return {
            "model": type(self).__name__,
            "format_version": FORMAT_VERSION,
            "library_version": _package_version(),
            "hyper_parameters": params,
            "edges": {
                name: [float(v) if math.isfinite(v) else None for v in edges] for name, edges in self.edges_.items()
            },
            "policy": dict(self.policy_),
            "policy_reasons": dict(self.policy_reasons_),
            "fit": {"n_customers": self.n_customers_},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Rebuilds a fitted scorer from :meth:`to_dict` output.

        Args:
            data: the stored dict.

        Returns:
            A fitted scorer with the stored edges.

        Raises:
            ValueError: when ``data`` is not a stored RFM scorer, or has a newer layout.
        """
        if data.get("model") != cls.__name__:
            raise ValueError(f"not a {cls.__name__}: model is {data.get('model')!r}")
        version = data.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ValueError(f"unsupported {cls.__name__} format_version {version!r}")
        params = dict(data["hyper_parameters"])
        for key in ("recency_edges", "frequency_edges", "monetary_edges"):
            if params.get(key) is not None:
                params[key] = tuple(params[key])
        if params.get("segments") is not None:
            params["segments"] = {k: tuple(v) for k, v in params["segments"].items()}
        scorer = cls(**params)
        # An unreachable level's edge is +inf (frequency, monetary) or -inf (recency, where fewer days is better).
        scorer.edges_ = {
            name: np.array([(-math.inf if name == "recency" else math.inf) if v is None else float(v) for v in values])
            for name, values in data["edges"].items()
        }
        scorer.policy_ = dict(data["policy"])
        scorer.policy_reasons_ = dict(data["policy_reasons"])
        scorer.segment_table_ = segment_table(DEFAULT_SEGMENTS if scorer.segments is None else scorer.segments)
        scorer.n_customers_ = int(data["fit"]["n_customers"])
        return scorer
