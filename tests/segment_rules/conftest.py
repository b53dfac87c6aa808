"""CDNOW fixtures, loaded once per session."""

from __future__ import annotations

import pytest

from segment_rules.btyd import BetaGeoModel
from tests.segment_rules.cdnow import (
    Summary,
    Transactions,
    read_summary,
    read_summary_with_monetary_value,
    read_transactions,
)


@pytest.fixture(scope="session")
def cdnow_summary() -> Summary:
    return read_summary()


@pytest.fixture(scope="session")
def cdnow_monetary() -> Summary:
    return read_summary_with_monetary_value()


@pytest.fixture(scope="session")
def cdnow_transactions() -> Transactions:
    return read_transactions()


@pytest.fixture(scope="session")
def cdnow_bgnbd(cdnow_summary: Summary) -> BetaGeoModel:
    """BG/NBD fitted on the CDNOW calibration summary; shared, so tests must not refit it."""
    return BetaGeoModel().fit(cdnow_summary.frequency, cdnow_summary.recency, cdnow_summary.T)
