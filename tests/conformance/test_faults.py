"""The fault matrix (see :mod:`tests.conformance.faults`) on every connector with an emulator."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conformance.faults import ROWS, TOKEN_EXPIRY, Outcome, Row, prepare_baseline, run_row
from tests.conformance.world import Snapshot, World, connectors_with, open_world, registered

Baseline = tuple[World, Path, Snapshot]


@pytest.fixture(scope="module", params=connectors_with("emulator"))
def matrix_world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    """The connector's world with a fully synced store, copied for every row."""
    folder = tmp_path_factory.mktemp(f"faults-{request.param}")
    with open_world(request.param, folder) as world:
        db, snap = prepare_baseline(world)
        yield world, db, snap


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
def test_each_fault_completes_or_stops_with_one_clear_error_and_loses_nothing(
    matrix_world: Baseline, row: Row
) -> None:
    world, db, snap = matrix_world
    outcome: Outcome = run_row(world, row, db, snap)
    if not outcome.applicable:
        pytest.skip(f"{world.name}: {row.name} does not apply (the kit names no such field or path)")
    assert outcome.lost == 0, outcome
    assert outcome.completed or (outcome.error and outcome.error_lines == 1), outcome
    assert outcome.recovered, outcome
    if row.skips_a_record:
        assert outcome.completed and outcome.skipped >= 1, outcome
    if not row.drift:
        assert outcome.changed == 0, outcome
    if row.faults(world.kit):
        assert outcome.injected >= 1, outcome  # the fault did hit the connector's requests


@pytest.mark.parametrize("connector", connectors_with("expiring_tokens"))
def test_access_tokens_that_expire_mid_run_are_refreshed_and_nothing_is_lost(connector: str, tmp_path: Path) -> None:
    kit = registered()[connector][1]
    with open_world(connector, tmp_path, variant=kit.expiring_tokens) as world:
        db, snap = prepare_baseline(world)
        outcome = run_row(world, TOKEN_EXPIRY, db, snap)
        assert outcome.completed and outcome.lost == 0 and outcome.recovered, outcome
        assert outcome.statuses is not None and outcome.statuses.get("401", 0) >= 1, outcome  # refused, refreshed
