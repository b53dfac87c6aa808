"""Readers of the CDNOW fixture files (see fixtures/README.md)."""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from datetime import UTC, datetime, time
from decimal import Decimal
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hub.contracts import ActivityData, Consent, Page, PersonData, Record
from hub.store import Store

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


def read_master_transactions() -> Transactions:
    """The whole 23,570-customer cohort (CDNOW_master.txt)."""
    with gzip.open(FIXTURES / "CDNOW_master.txt.gz", "rt") as f:
        raw = np.loadtxt(f, dtype=str, skiprows=1)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 1]], dtype="datetime64[D]")
    return Transactions(raw[:, 0].astype(np.int64), dates, raw[:, 3].astype(np.float64))


def load_into_store(store: Store, t: Transactions, source: str = "cdnow") -> None:
    """Every transaction as an order (dollars, at midnight UTC) of a contact per customer, committed in pages."""
    by_customer: dict[int, list[int]] = {}
    for row, cid in enumerate(t.customer_ids.tolist()):
        by_customer.setdefault(cid, []).append(row)
    days = t.dates.astype("datetime64[D]").astype(object)
    records = []
    for cid, rows in sorted(by_customer.items()):
        external = f"c{cid}"
        acts = [ActivityData("order", f"{cid}-{row}", datetime.combine(days[row], time(), UTC),
                             Decimal(f"{t.amounts[row]:.2f}"), "USD", person_external_id=external) for row in rows]
        email = f"{external}@cdnow.example"
        records.append(Record("contact", external, {"email": email},
                              person=PersonData(email=email, consent=Consent.GRANTED), activities=acts))
    for start in range(0, len(records), 2000):
        store.commit_page(source, "csv", "contacts", Page(records[start : start + 2000], None))


def read_transactions() -> Transactions:
    raw = np.loadtxt(FIXTURES / "CDNOW_sample.txt", dtype=str)
    dates = np.array([f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in raw[:, 2]], dtype="datetime64[D]")
    return Transactions(raw[:, 1].astype(np.int64), dates, raw[:, 4].astype(np.float64))
