"""Full and incremental syncs: the fewest requests the account needs, no 429 at the paced rate, and a store
that equals a fresh full sync of the vendor's current state."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.conformance.world import open_world, snapshot, variants

CHANGED, DELETED = 0.05, 0.01


@pytest.mark.parametrize(("connector", "variant"), variants())
def test_full_sync_then_nothing_new_then_an_incremental_equals_a_fresh_full_sync(
    connector: str, variant: str, tmp_path: Path
) -> None:
    with open_world(connector, tmp_path, variant=variant) as world:
        kit = world.kit
        first = world.sync()
        assert (first["exit_code"], first["status"]) == (0, "ok"), first
        assert first["counts"]["records_new"] > 0
        if world.sandbox is not None:
            stats = world.stats()
            assert stats["rate_limited"] == 0, stats["statuses"]
            if kit.full_requests is not None:
                expected = kit.full_requests(world.sandbox.emulator, world.variant)
                polls = {e: n for e, n in stats["endpoints"].items() if e in kit.polling}
                assert stats["requests"] - sum(polls.values()) == expected, stats["endpoints"]
            world.sandbox.reset_stats()

        again = world.sync()
        assert again["status"] == "ok"
        assert {k: again["counts"].get(k, 0) for k in ("records_new", "records_changed", "records_deleted")} == {
            "records_new": 0, "records_changed": 0, "records_deleted": 0}
        if world.sandbox is None:
            return
        if kit.incremental_requests is not None:
            assert world.requests() == kit.incremental_requests(world.sandbox.emulator, world.variant)
        assert world.stats()["rate_limited"] == 0

        mutated = world.sandbox.mutate(CHANGED, DELETED, seed=11)
        assert any(mutated.values()), mutated
        time.sleep(kit.index_lag_s)
        third = world.sync()
        assert third["status"] == "ok"
        assert third["counts"]["records_changed"] + third["counts"]["records_deleted"] > 0
        incremental = world.snapshot()
        reference_url = world.fresh_store("reference")
        assert world.sync()["status"] == "ok"
        reference = snapshot(reference_url)
        assert incremental.ids() == reference.ids()
        live = {k: v for k, v in reference.records.items() if not v[1] and k[1] not in kit.delta_records}
        assert {k: incremental.records[k] for k in live} == live  # same content, not only the same ids
        # Nothing the vendor shows now is missing; the incremental store may know more history than the vendor
        # still shows (a contact's previous "last open" is an activity of its own).
        assert reference.activities.items() <= incremental.activities.items()
