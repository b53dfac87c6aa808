"""Readers of the CDNOW fixture files (see fixtures/README.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

FIXTURES = Path(__file__).parent / "fixtures"


@dataclass(frozen=True)
class Summary:
    """Per-customer calibration summary as shipped (weeks)."""

    ids: NDArray[np.int64]
    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    monetary_value: NDArray[np.float64] | None = None


@dataclass(frozen=True)
class Transactions:
    """The raw CDNOW sample: one row per transaction."""

    customer_ids: NDArray[np.int64]
    dates: NDArray[np.datetime64]
    amounts: NDArray[np.float64]


def read_summary() -> Summary:
    table = np.loadtxt(FIXTURES / "cdnow_customers_summary.csv", delimiter=",", skiprows=1)
    return Summary(table[:, 0].astype(np.int64), table[:, 1], table[:, 2], table[:, 3])


def read_summary_with_monetary_value() -> Summary:
    table = np.loadtxt(FIXTURES / "cdnow_customers_summary_with_transactions.csv", delimiter=",", skiprows=1)
    return Summary(table[:, 0].astype(np.int64), table[:, 1], table[:, 2], table[:, 3], table[:, 4])


def read_transactions() -> Transactions:
    raw = np.loadtxt(FIXTURES / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return Transactions(raw[:, 1].astype(np.int64), dates, raw[:, 4].astype(np.float64))
