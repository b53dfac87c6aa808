"""Scores per person from the stored features: RFM, CLV (simple and BG/NBD x Gamma-Gamma), churn risk.

The scoring step takes a few feature columns of the people in scope as numpy arrays (from the features
step's :class:`~segment_rules.features.FeatureTable`: one float per cell, never a Python object per person),
fits or reuses the models, and writes ``person_score`` with the store's bulk writer.

- **RFM** (:class:`~segment_rules.rfm.RFMScorer`) on customers with at least one order: recency in days,
  orders, spend.
- **CLV**: BG/NBD on (x = distinct order days - 1, t_x = first to last order, T = first order to ``as_of``),
  in weeks, condensed to distinct (x, t_x, T) rows with weights (identical customers fit once); Gamma-Gamma on
  repeat buyers' average order value. ``clv`` is the discounted expected spend over the horizon,
  ``expected_orders`` the expected orders, ``clv_percentile`` the rank among scored customers. The Gamma-Gamma
  input is the average of *all* orders (the first included), which one aggregation pass gives; the textbook
  input averages repeat orders only, so absolute CLV runs slightly high for customers whose first basket was
  unusually large.
- **clv_simple**: average order value x orders per year (since the first order, at least a month) x the
  configured lifespan in years: the formula small-business guides teach, for display.
- **churn_probability**: P(no order within the churn horizon) from BG/NBD. It is the baseline the churn model
  must beat (never BG/NBD's P(alive), which is 1 for every one-time buyer).

With too few customers for a stable BG/NBD fit (fewer than ``min_repeat_buyers`` repeat buyers), CLV and
churn scores stay empty and the report says so; RFM falls back to fixed bins by itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import sqlalchemy as sa
from numpy.typing import NDArray
from sqlalchemy.engine import Connection

from hub.store import models as m
from hub.store.bulk import Column

from .aggregate import micros
from .btyd import PENALIZER_GRID, BetaGeoModel, ConvergenceError, GammaGammaModel, customer_lifetime_value
from .features import DaysBetween
from .rfm import RFMScorer

if TYPE_CHECKING:
    from .features import FeatureTable

logger = logging.getLogger(__name__)

FloatArray = NDArray[np.float64]
WEEK_DAYS = 7.0
MONTH_WEEKS = 4.345  # average weeks per month: CLV is discounted monthly
CHUNK_ROWS = 100_000
FIT_SAMPLE = 200_000  # customers a BG/NBD or Gamma-Gamma fit sees at most (see fit_sample)


@dataclass(frozen=True)
class ScoringSettings:
    """How scores are computed (the ``segments.scoring`` section of the config).

    Args:
        clv_horizon_months: months of future spend in ``clv``.
        clv_monthly_discount: discount rate per month.
        lifespan_years: the expected customer lifespan of ``clv_simple``.
        churn_horizon_days: churn means no order within this many days.
        min_repeat_buyers: fewer repeat buyers than this leave CLV and churn empty.
        rfm_policy: ``auto``, ``quantile`` or ``fixed`` (see :class:`~segment_rules.rfm.RFMScorer`).
        rfm_min_customers: below this many customers RFM uses fixed bins.
        penalizer: L2 penalizer of the BG/NBD and Gamma-Gamma fits, in the units of
            :class:`~segment_rules.btyd.BetaGeoModel` and :class:`~segment_rules.btyd.GammaGammaModel` (those of
            ``lifetimes``). ``"auto"`` (the default): maximum likelihood, as the literature fits these models,
            and the smallest penalty of :data:`~segment_rules.btyd.PENALIZER_GRID` that converges only where
            maximum likelihood does not. ``hub model clv`` scores the grid on held-out data and says whether a
            penalty helps; a number set here is used as is.
    """

    clv_horizon_months: int = 12
    clv_monthly_discount: float = 0.01
    lifespan_years: float = 3.0
    churn_horizon_days: int = 90
    min_repeat_buyers: int = 20
    rfm_policy: str = "auto"
    rfm_min_customers: int = 50
    penalizer: float | str = "auto"


@dataclass
class ScoreReport:
    """What a scoring run did: populations, fitted models and notes for ``hub model`` and quality checks."""

    as_of: datetime
    people: int = 0
    customers: int = 0
    repeat_buyers: int = 0
    rfm: dict[str, Any] | None = None
    bgnbd: dict[str, Any] | None = None
    gamma_gamma: dict[str, Any] | None = None
    churn: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return {
            "as_of": self.as_of.isoformat(),
            "people": self.people,
            "customers": self.customers,
            "repeat_buyers": self.repeat_buyers,
            "rfm": self.rfm,
            "bgnbd": self.bgnbd,
            "gamma_gamma": self.gamma_gamma,
            "churn": self.churn,
            "notes": list(self.notes),
        }


@dataclass
class FeatureArrays:
    """The feature columns scoring needs, one entry per person in scope (ages in days; NaN without orders)."""

    person_id: NDArray[np.int64]
    orders: FloatArray
    order_days: FloatArray
    monetary: FloatArray
    recency_days: FloatArray  # as_of - last order
    age_days: FloatArray  # as_of - first order

    @classmethod
    def from_table(cls, table: FeatureTable) -> FeatureArrays:
        """The scoring inputs of every row of ``table``."""
        c = table.columns
        return cls(
            person_id=table.person_id,
            orders=c["orders"].astype(np.float64),
            order_days=c["order_days"].astype(np.float64),
            monetary=c["monetary"].astype(np.float64),
            recency_days=np.clip(table.times("last_order_at"), 0.0, None),
            age_days=np.clip(table.times("first_order_at"), 0.0, None),
        )


def read_float_rows(conn: Connection, stmt: sa.Select[Any], width: int) -> FloatArray:
    """The rows of ``stmt`` as a float array of ``width`` columns, fetched in chunks; NULL becomes NaN."""
    chunks = [np.array(rows, dtype=np.float64).reshape(-1, width) for rows in _partitions(conn, stmt)]
    return np.concatenate(chunks) if chunks else np.zeros((0, width))


def _partitions(conn: Connection, stmt: sa.Select[Any]) -> Iterator[list[tuple[Any, ...]]]:
    result = conn.execution_options(yield_per=CHUNK_ROWS).execute(stmt)
    for part in result.partitions(CHUNK_ROWS):
        yield [tuple(np.nan if v is None else v for v in row) for row in part]


@dataclass
class Scores:
    """Computed scores, aligned with :attr:`FeatureArrays.person_id` (NaN / None where not computed)."""

    person_id: NDArray[np.int64]
    rfm: NDArray[np.int64]  # (n, 3), 0 where the person has no order
    rfm_segment: list[str | None]
    clv: FloatArray
    clv_percentile: FloatArray
    clv_simple: FloatArray
    expected_orders: FloatArray
    churn_probability: FloatArray


def compute_scores(
    features: FeatureArrays, settings: ScoringSettings, report: ScoreReport, models: dict[str, Any] | None = None
) -> Scores:
    """Fit (or reuse ``models``) and score every person of ``features``.

    Args:
        features: the inputs.
        settings: scoring settings.
        report: filled with populations, models and notes.
        models: previously fitted models (``rfm``, ``bgnbd``, ``gamma_gamma`` as their ``to_dict``); given,
            they are reused instead of refitted (incremental re-scoring keeps the edges and parameters).

    Returns:
        The scores.
    """
    n = len(features.person_id)
    buyer = features.orders >= 1
    report.people, report.customers = n, int(buyer.sum())
    rfm = np.zeros((n, 3), dtype=np.int64)
    segments: list[str | None] = [None] * n
    if buyer.any():
        scorer = _rfm_model(features, buyer, settings, models, report)
        x = np.column_stack([features.recency_days[buyer], features.orders[buyer], features.monetary[buyer]])
        rfm[buyer] = scorer.transform(x)
        names = scorer.segments_for(rfm[buyer])
        for i, name in zip(np.flatnonzero(buyer), names, strict=True):
            segments[i] = str(name)
    clv, expected, churn = _btyd_scores(features, buyer, settings, models, report)
    percentile = _percentile(clv)
    return Scores(
        features.person_id, rfm, segments, clv, percentile, _simple_clv(features, buyer, settings), expected, churn
    )


def _rfm_model(
    f: FeatureArrays, buyer: NDArray[np.bool_], settings: ScoringSettings, models: dict[str, Any] | None,
    report: ScoreReport,
) -> RFMScorer:
    if models and models.get("rfm"):
        scorer = RFMScorer.from_dict(models["rfm"])
    else:
        scorer = RFMScorer(policy=settings.rfm_policy, min_customers=settings.rfm_min_customers)  # type: ignore[arg-type]
        scorer.fit(np.column_stack([f.recency_days[buyer], f.orders[buyer], f.monetary[buyer]]))
    report.rfm = scorer.to_dict()
    return scorer


def _btyd_inputs(f: FeatureArrays, buyer: NDArray[np.bool_]) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = np.maximum(f.order_days[buyer] - 1.0, 0.0)
    # Whole days, as the models count purchase days; T >= t_x by construction.
    age = np.floor(f.age_days[buyer])
    since_last = np.floor(f.recency_days[buyer])
    tx = np.where(x > 0, np.clip(age - since_last, 0.0, age), 0.0)
    return x, tx / WEEK_DAYS, age / WEEK_DAYS


def _btyd_scores(
    f: FeatureArrays, buyer: NDArray[np.bool_], settings: ScoringSettings, models: dict[str, Any] | None,
    report: ScoreReport,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    n = len(f.person_id)
    clv, expected, churn = (np.full(n, np.nan) for _ in range(3))
    if not buyer.any():
        return clv, expected, churn
    x, tx, age = _btyd_inputs(f, buyer)
    report.repeat_buyers = int((x > 0).sum())
    try:
        bgnbd, gg = _btyd_models(x, tx, age, f.monetary[buyer] / f.orders[buyer], settings, models, report)
    except (ConvergenceError, ValueError) as exc:
        report.notes.append(f"CLV and churn scores not computed: {exc}")
        return clv, expected, churn
    if bgnbd is None or gg is None:
        return clv, expected, churn
    aov = f.monetary[buyer] / f.orders[buyer]
    spend = np.where(x > 0, aov, 0.0)
    horizon_weeks = settings.clv_horizon_months * MONTH_WEEKS
    clv[buyer] = customer_lifetime_value(
        bgnbd, gg, x, tx, age, spend, settings.clv_horizon_months, settings.clv_monthly_discount, MONTH_WEEKS
    )
    expected[buyer] = bgnbd.conditional_expected_purchases(horizon_weeks, x, tx, age)
    churn[buyer] = bgnbd.probability_no_purchase(settings.churn_horizon_days / WEEK_DAYS, x, tx, age)
    return clv, expected, churn


def _btyd_models(
    x: FloatArray, tx: FloatArray, age: FloatArray, aov: FloatArray, settings: ScoringSettings,
    models: dict[str, Any] | None, report: ScoreReport,
) -> tuple[BetaGeoModel | None, GammaGammaModel | None]:
    if models and models.get("bgnbd") and models.get("gamma_gamma"):
        bgnbd = BetaGeoModel.from_dict(models["bgnbd"])
        gg = GammaGammaModel.from_dict(models["gamma_gamma"])
    else:
        repeat = x > 0
        if int(repeat.sum()) < settings.min_repeat_buyers:
            report.notes.append(
                f"CLV and churn scores not computed: {int(repeat.sum())} repeat buyers, fewer than "
                f"{settings.min_repeat_buyers} needed for a stable fit"
            )
            return None, None
        bgnbd = fit_bgnbd(x, tx, age, settings.penalizer, report.notes)
        positive = fit_sample(len(x)) & repeat & (aov > 0)
        gg = stable_fit(
            lambda value: GammaGammaModel(penalizer=value).fit(x[positive], aov[positive]),
            settings.penalizer, "Gamma-Gamma", report.notes,
        )
    report.bgnbd, report.gamma_gamma = bgnbd.to_dict(), gg.to_dict()
    return bgnbd, gg


def fit_sample(n: int, limit: int = FIT_SAMPLE) -> NDArray[np.bool_]:
    """A deterministic, evenly spread sample of about ``limit`` of ``n`` rows (all of them when n <= limit).

    The model fits keep their accuracy on a few hundred thousand customers; beyond that every likelihood
    evaluation only gets slower. Rows are in person id order, so the sample is every k-th person.
    """
    keep = np.zeros(n, dtype=np.bool_)
    step = max(1, -(-n // limit))
    keep[::step] = True
    return keep


_Fitted = TypeVar("_Fitted")


def stable_fit(
    fit: Callable[[float], _Fitted], penalizer: float | str, model: str, notes: list[str] | None = None
) -> _Fitted:
    """``fit(penalizer)``; with ``"auto"``, maximum likelihood first, then the grid's penalties in increasing
    order until one converges (said in ``notes``), since a penalty is only wanted where the data need it.

    Raises:
        ConvergenceError: when no value converges (or the configured one does not).
    """
    if penalizer != "auto":
        return fit(float(penalizer))
    failure: ConvergenceError | None = None
    for value in PENALIZER_GRID:
        try:
            fitted = fit(value)
        except ConvergenceError as exc:
            failure = failure or exc
            continue
        if value and notes is not None:
            notes.append(f"{model}: no maximum-likelihood fit converged on this shop; penalizer {value:g} used")
        return fitted
    assert failure is not None
    raise failure


def fit_bgnbd(
    x: FloatArray, tx: FloatArray, age: FloatArray, penalizer: float | str, notes: list[str] | None = None
) -> BetaGeoModel:
    """BG/NBD fitted on the distinct (x, t_x, T) rows of a sample of the customers, weighted by their count
    (see :func:`stable_fit` for ``penalizer="auto"``)."""
    keep = fit_sample(len(x))
    rows, weights = np.unique(np.column_stack([x[keep], tx[keep], age[keep]]), axis=0, return_counts=True)
    return stable_fit(
        lambda value: BetaGeoModel(penalizer=value).fit(rows[:, 0], rows[:, 1], rows[:, 2], weights),
        penalizer, "BG/NBD", notes,
    )


def _simple_clv(f: FeatureArrays, buyer: NDArray[np.bool_], settings: ScoringSettings) -> FloatArray:
    out = np.full(len(f.person_id), np.nan)
    if buyer.any():
        years = np.maximum(f.age_days[buyer], 30.0) / 365.25
        aov = f.monetary[buyer] / f.orders[buyer]
        out[buyer] = np.maximum(aov, 0.0) * (f.orders[buyer] / years) * settings.lifespan_years
    return out


def _percentile(values: FloatArray) -> FloatArray:
    """Percentile rank (0-100, ties share their average rank) among the finite values; NaN elsewhere."""
    import scipy.stats

    out = np.full(len(values), np.nan)
    ok = np.isfinite(values)
    if ok.any():
        ranks = scipy.stats.rankdata(values[ok], method="average")
        out[ok] = 100.0 * (ranks - 0.5) / ok.sum()
    return out


SCORE_COLUMNS = (
    "person_id",
    "scored_at",
    "rfm_r",
    "rfm_f",
    "rfm_m",
    "rfm_score",
    "rfm_segment",
    "clv",
    "clv_percentile",
    "clv_simple",
    "expected_orders",
    "churn_probability",
    "cluster",
)


def stored_scores(scores: Scores, scored: datetime, start: int, stop: int) -> dict[str, Column]:
    """``person_score`` rows ``start:stop`` column by column, in :data:`SCORE_COLUMNS` order."""
    ids = scores.person_id[start:stop]
    rfm = scores.rfm[start:stop]
    n = len(ids)
    out = {"person_id": Column(ids), "scored_at": Column(np.full(n, micros(scored), dtype=np.int64))}
    out |= {name: Column(rfm[:, k], rfm[:, k] == 0) for k, name in enumerate(("rfm_r", "rfm_f", "rfm_m"))}
    out["rfm_score"] = Column([f"{r}{f}{mo}" if r else None for r, f, mo in rfm.tolist()])
    out["rfm_segment"] = Column(scores.rfm_segment[start:stop])
    for name in ("clv", "clv_percentile", "clv_simple", "expected_orders", "churn_probability"):
        values = getattr(scores, name)[start:stop]
        out[name] = Column(values, ~np.isfinite(values))
    out["cluster"] = Column(np.zeros(n, dtype=np.int64), np.ones(n, dtype=np.bool_))
    return out


def clv_backtest(
    conn: Connection, as_of: datetime, holdout_days: int, penalizer: float | str = "auto"
) -> dict[str, Any]:
    """Fit BG/NBD x Gamma-Gamma on the orders up to ``as_of - holdout_days`` and compare its forecast with what
    happened up to ``as_of``: purchases and spend per customer and in total, against the simple formula and
    predicting zero. ``penalizer="auto"`` chooses it on a held-out part of the calibration window only.

    Orders are read as (person, days before ``as_of``, amount) arrays, cancelled and refunded ones left out,
    for the people in scope only.
    """
    from datetime import timedelta

    from .btyd import holdout_check
    from .features import _is_order, in_scope

    a, p = m.activity, m.person
    at = sa.literal(as_of, m.UTCDateTime())
    stmt = (
        sa.select(a.c.person_id, DaysBetween(at, a.c.occurred_at), sa.cast(a.c.amount, sa.Float))
        .select_from(a.join(p, p.c.id == a.c.person_id))
        .where(_is_order(a), a.c.deleted.is_(False), a.c.occurred_at <= at, in_scope(p))
    )
    data = read_float_rows(conn, stmt, 3)
    seconds = np.round(data[:, 1] * 86_400).astype("timedelta64[s]")
    stamps = np.datetime64(as_of.replace(tzinfo=None), "s") - seconds
    cutoff = as_of - timedelta(days=holdout_days)
    report = holdout_check(
        data[:, 0].astype(np.int64), stamps, np.nan_to_num(data[:, 2]), cutoff.replace(tzinfo=None),
        as_of.replace(tzinfo=None), penalizer=penalizer,
    )
    baselines = {name: measures.as_dict() for name, measures in report.spend_baselines.items()}
    return {
        "calibration_end": cutoff.isoformat(),
        "holdout_end": as_of.isoformat(),
        "customers": len(report.summary.frequency),
        "penalizer": report.penalizer.as_dict(),
        "bgnbd": report.bgnbd.to_dict(),
        "gamma_gamma": report.gamma_gamma.to_dict(),
        "repeat_purchases": report.purchases.as_dict(),
        "spend": report.spend.as_dict(),
        "spend_baselines": baselines,
        "verdict": clv_verdict(report.spend.rmse, {k: v.rmse for k, v in report.spend_baselines.items()}),
        "spend_customers_dropped": report.n_spend_dropped,
    }


_BASELINE_WORDS = {"simple_formula": "the simple formula", "zero": "predicting zero"}


def clv_verdict(model_rmse: float, baseline_rmse: dict[str, float]) -> str:
    """One sentence: does the model's per-customer spend forecast beat each baseline's (by RMSE)?"""
    beaten = [_BASELINE_WORDS[k] for k, v in baseline_rmse.items() if model_rmse < v]
    not_beaten = [_BASELINE_WORDS[k] for k, v in baseline_rmse.items() if model_rmse >= v]
    figures = ", ".join(f"{_BASELINE_WORDS[k]} {v:.2f}" for k, v in baseline_rmse.items())
    if not not_beaten:
        return f"the model forecasts spend per customer better than {' and '.join(beaten)} (RMSE {model_rmse:.2f}; "\
               f"{figures})"
    return f"the model does not beat {' and '.join(not_beaten)} on this store (RMSE {model_rmse:.2f}; {figures}): "\
           "use its CLV for ranking with care"


def _finite(value: float) -> float | None:
    return round(value, 4) if np.isfinite(value) else None
