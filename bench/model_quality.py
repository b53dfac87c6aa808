"""Model quality on the whole CDNOW cohort: the CLV holdout check against its baselines, churn by horizon against
every baseline, and the BG/NBD fit time against lifetimes in the same run.

    python bench/model_quality.py                 # the whole cohort (23,570 customers)
    python bench/model_quality.py --sample        # the 1/10 sample of the papers
    pip install lifetimes==0.11.3                 # optional: adds the fit-time comparison

The store is a temporary SQLite file loaded with CDNOW's orders; the commands' own functions do the rest
(``clv_backtest`` is ``hub model clv``, ``fit_churn`` is ``hub model churn``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.store import open_store
from segment_rules.btyd import BetaGeoModel, summary_from_transactions
from segment_rules.churn import ChurnSettings, fit_churn
from segment_rules.scoring import clv_backtest
from tests.segment_rules.cdnow import (
    Transactions,
    load_into_store,
    read_master_transactions,
    read_transactions,
)

AS_OF = datetime(1998, 6, 30, 23, 59, 59, tzinfo=UTC)
HORIZONS = (30, 60, 90, 180)
SCORERS = ("model", "recency", "frequency", "expected_purchases", "bgnbd", "p_alive")
HEADERS = ("model", "recency", "frequency", "exp. purch.", "P(no buy)", "1-P(alive)")


def clv_table(report: dict[str, Any]) -> None:
    print(f"\nCLV holdout {report['calibration_end'][:10]} to {report['holdout_end'][:10]}, "
          f"{report['customers']:,} customers; penalizer: {report['penalizer']['reason']}")
    print(f"BG/NBD {report['bgnbd']['params']}\nGamma-Gamma {report['gamma_gamma']['params']}")
    print(f"{'spend forecast':<16}{'predicted':>12}{'actual':>12}{'MAE':>8}{'RMSE':>9}{'Spearman':>10}{'top 10%':>9}")
    rows = {"model": report["spend"], **report["spend_baselines"]}
    for name, m in rows.items():
        rho = "n/a" if m["spearman"] is None else f"{m['spearman']:.3f}"
        top = "n/a" if m["top_decile_share"] is None else f"{m['top_decile_share']:.1%}"
        print(f"{name:<16}{m['predicted']:>12,.0f}{m['actual']:>12,.0f}{m['mae_per_customer']:>8.2f}"
              f"{m['rmse_per_customer']:>9.2f}{rho:>10}{top:>9}")
    print(report["verdict"])


def churn_table(store: Any) -> None:
    print("\nChurn, out-of-time ROC-AUC (test cutoff = as_of - horizon)")
    print(f"{'days':>5}" + "".join(f"{h:>12}" for h in HEADERS) + f"{'p (model)':>11}  chosen  [model Brier/ECE]")
    for horizon in HORIZONS:
        started = time.perf_counter()
        with store.engine.connect() as conn:
            report = fit_churn(conn, AS_OF, ChurnSettings(horizon_days=horizon))
        seconds = time.perf_counter() - started
        cells = "".join(f"{m.roc_auc:>12.4f}" if (m := report.metrics.get(s)) else f"{'n/a':>12}" for s in SCORERS)
        p = report.comparison["p_value"] if report.comparison else float("nan")
        model = report.metrics["model"]
        extra = "" if model is None else f"  [{model.brier:.4f}/{model.calibration_error:.4f}]"
        print(f"{horizon:>5}{cells}{p:>11.3f}  {report.chosen} ({report.candidate}, {seconds:.1f} s){extra}")
        tried = ", ".join(f"{k} {v:.4f}" for k, v in report.cross_validation.items() if v is not None)
        print(f"{'':>5}cross-validated AUC on the training cutoffs: {tried}")


def fit_times(t: Transactions, runs: int) -> None:
    s = summary_from_transactions(t.customer_ids, t.dates, None, "1997-09-30")
    try:
        from lifetimes import BetaGeoFitter
    except ImportError:
        BetaGeoFitter = None
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(runs):  # interleaved, so both see the same machine
        started = time.perf_counter()
        BetaGeoModel().fit(s.frequency, s.recency, s.T)
        ours.append(time.perf_counter() - started)
        if BetaGeoFitter is not None:
            started = time.perf_counter()
            BetaGeoFitter(0.0).fit(s.frequency, s.recency, s.T)
            theirs.append(time.perf_counter() - started)
    print(f"\nBG/NBD fit on {len(s.frequency):,} customers, median of {runs}: {statistics.median(ours):.3f} s")
    if theirs:
        print(f"lifetimes 0.11.3: {statistics.median(theirs):.3f} s; "
              f"ratio lifetimes / ours {statistics.median(theirs) / statistics.median(ours):.1f}x")
    else:
        print("lifetimes not installed (pip install lifetimes==0.11.3): no comparison")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", action="store_true", help="the 2,357-customer sample instead of the cohort")
    parser.add_argument("--runs", type=int, default=7, help="fit-time repetitions")
    args = parser.parse_args()
    t = read_transactions() if args.sample else read_master_transactions()
    with tempfile.TemporaryDirectory() as folder:
        store = open_store(f"sqlite:///{Path(folder) / 'hub.db'}")
        started = time.perf_counter()
        load_into_store(store, t)
        print(f"loaded {len(t.customer_ids):,} orders of {len(np.unique(t.customer_ids)):,} customers "
              f"in {time.perf_counter() - started:.1f} s")
        with store.engine.connect() as conn:
            clv_table(clv_backtest(conn, AS_OF, 273))
        churn_table(store)
        store.close()
    fit_times(t, args.runs)


if __name__ == "__main__":
    main()
