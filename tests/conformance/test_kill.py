"""kill -9 of ``hub sync`` at random instants and at named points (a bulk job, a token refresh), then a resume:
the store equals an uninterrupted sync (nothing lost, nothing doubled), at most one page is read again, and the
killed run is closed as interrupted. CI runs these fixed seeds; ``bench/conformance_trials.py`` runs many more."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conformance.trials import Trial, kill_trial, reference
from tests.conformance.world import open_world, registered, variants

CI_SEEDS = (1, 2)


def check(trial: Trial, reread_limit: int) -> None:
    """The outcome every kill trial must have."""
    assert (trial.lost, trial.extra, trial.changed) == (0, 0, 0), trial
    assert trial.reread <= reread_limit, trial
    # The killed run is never left "running": closed as interrupted at the next start, or already "ok" when
    # the kill came after its row was closed (between the last commit and the process's exit).
    assert trial.interrupted_run in ("interrupted", "ok", None), trial


@pytest.mark.parametrize(("connector", "variant"), variants())
def test_killed_syncs_resume_to_the_uninterrupted_result(connector: str, variant: str, tmp_path: Path) -> None:
    with open_world(connector, tmp_path, variant=variant) as world:
        ref = reference(world)
        trials = [kill_trial(world, ref, seed=seed) for seed in CI_SEEDS]
        trials += [kill_trial(world, ref, endpoint=endpoint, label=label)
                   for label, endpoint in sorted(world.kit.kill_points.items())]
        for trial in trials:
            check(trial, world.kit.reread_limit)
        assert any(t.interrupted_run == "interrupted" for t in trials), trials  # at least one kill landed mid-run


@pytest.mark.parametrize("connector", [n for n, (_, kit) in registered().items() if kit.expiring_tokens])
def test_a_kill_during_a_token_refresh_mid_run_loses_nothing(connector: str, tmp_path: Path) -> None:
    with open_world(connector, tmp_path, variant=registered()[connector][1].expiring_tokens) as world:
        ref = reference(world)
        assert world.sandbox is not None
        sandbox = world.sandbox

        def expire_midway(_: object) -> None:
            from tests.conformance.world import RequestTrigger

            RequestTrigger(sandbox, lambda: sandbox.inject({"kind": "token_expiry"}), at=max(2, ref.requests // 2))

        trial = kill_trial(world, ref, endpoint="POST /oauth", label="token refresh", before=expire_midway)
        check(trial, world.kit.reread_limit)
