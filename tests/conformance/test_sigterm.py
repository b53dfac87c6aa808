"""SIGTERM mid-sync: the page in flight is finished (or given up if it has to wait), the checkpoint written, the
run row closed as stopped, exit 0 within 10 s; the next sync resumes to the uninterrupted result."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.conformance.trials import kill_trial, reference
from tests.conformance.world import connectors_with, open_world

STOP_WITHIN_S = 10.0


@pytest.mark.parametrize("connector", connectors_with())
def test_sigterm_stops_within_seconds_with_the_run_closed_and_resumes_to_the_same_store(
    connector: str, tmp_path: Path
) -> None:
    with open_world(connector, tmp_path) as world:
        ref = reference(world)
        landed = []
        for seed in (3, 4):
            trial = kill_trial(world, ref, seed=seed, sig=signal.SIGTERM)
            assert (trial.lost, trial.extra, trial.changed) == (0, 0, 0), trial
            assert trial.exit_code == 0, trial
            if trial.killed and trial.interrupted_run is not None:
                landed.append(trial)
                assert trial.interrupted_run == "stopped", trial
                assert trial.stop_seconds is not None and trial.stop_seconds < STOP_WITHIN_S, trial
                assert trial.reread <= world.kit.reread_limit, trial
        assert landed, "no stop request landed while a sync was running"
