"""Long conformance trials: many kill -9 (and SIGTERM) seeds per connector and variant, and the fault matrix.

CI runs a fixed handful of seeds (``tests/conformance``); this runs as many as asked and prints the figures
BENCHMARKS.md records: per connector and variant, trials, kills that landed mid-run, records lost, doubled or
changed against the uninterrupted sync, the most records a resume read again, and for SIGTERM the slowest stop;
then the fault matrix as a table.

    python bench/conformance_trials.py --seeds 25                 # every registered connector
    python bench/conformance_trials.py --seeds 50 --only shopify  # one connector
    python bench/conformance_trials.py --seeds 0 --faults         # only the fault matrix
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conformance.faults import ROWS, TOKEN_EXPIRY, prepare_baseline, run_row  # noqa: E402
from tests.conformance.trials import Trial, kill_trial, reference  # noqa: E402
from tests.conformance.world import open_world, registered  # noqa: E402


def kill_trials(name: str, variant: str, seeds: int, sig: signal.Signals, folder: Path) -> dict[str, Any]:
    """``seeds`` trials (plus the kit's named kill points) of one connector and variant."""
    with open_world(name, folder, variant=variant) as world:
        ref = reference(world)
        trials: list[Trial] = [kill_trial(world, ref, seed=seed, sig=sig) for seed in range(1, seeds + 1)]
        if sig == signal.SIGKILL:
            trials += [kill_trial(world, ref, endpoint=e, label=label) for label, e in world.kit.kill_points.items()]
    landed = [t for t in trials if t.killed and t.exit_code != 0] if sig == signal.SIGKILL else [
        t for t in trials if t.killed and t.interrupted_run == "stopped"]
    stops = [t.stop_seconds for t in landed if t.stop_seconds is not None]
    return {
        "connector": name,
        "variant": variant,
        "signal": sig.name,
        "trials": len(trials),
        "landed": len(landed),
        "lost": sum(t.lost for t in trials),
        "extra": sum(t.extra for t in trials),
        "changed": sum(t.changed for t in trials),
        "max_reread": max((t.reread for t in trials), default=0),
        "reread_limit": world.kit.reread_limit,
        "exit_codes": sorted({str(t.exit_code) for t in trials}),
        "slowest_stop_s": round(max(stops), 2) if stops else None,
        "reference_requests": ref.requests,
        "reference_seconds": round(ref.seconds, 2),
        "failures": [t.as_dict() for t in trials
                     if t.lost or t.extra or t.changed or t.reread > world.kit.reread_limit],
    }


def fault_matrix(name: str, folder: Path) -> list[dict[str, Any]]:
    """Every row of the fault matrix on one connector (token expiry on its variant whose tokens expire)."""
    with open_world(name, folder) as world:
        db, snap = prepare_baseline(world)
        outcomes = [run_row(world, row, db, snap).as_dict() for row in ROWS]
    variant = registered()[name][1].expiring_tokens
    if variant is not None:
        with open_world(name, folder / variant, variant=variant) as world:
            db, snap = prepare_baseline(world)
            outcomes[ROWS.index(TOKEN_EXPIRY)] = {**run_row(world, TOKEN_EXPIRY, db, snap).as_dict(),
                                                  "variant": variant}
    return outcomes


def _cell(outcome: dict[str, Any]) -> str:
    if not outcome["applicable"]:
        return "n/a"
    verdict = "completed" if outcome["completed"] else f"stopped: {_reason(outcome['error'])}"
    if outcome.get("variant"):
        verdict += f" ({outcome['variant']}, {outcome['statuses'].get('401', 0)} x 401, then refreshed)"
    if outcome["skipped"]:
        verdict += f", {outcome['skipped']} skipped"
    if outcome["lost"] or not outcome["recovered"]:
        verdict += f" **lost {outcome['lost']}, recovered {outcome['recovered']}**"
    return verdict


def _reason(error: str | None) -> str:
    """The end of a one-line error (its request part is long and the same everywhere)."""
    return (error or "").rsplit(": ", 1)[-1][:60]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=25, help="random kill instants per connector and variant")
    parser.add_argument("--sigterm-seeds", type=int, default=10, help="random SIGTERM instants per connector")
    parser.add_argument("--only", action="append", help="only these connectors")
    parser.add_argument("--faults", action="store_true", help="also run the fault matrix")
    parser.add_argument("--json", type=Path, help="write every figure to this file")
    args = parser.parse_args()
    kits = {n: k for n, (_, k) in registered().items() if not args.only or n in args.only}
    results: dict[str, Any] = {"kills": [], "sigterm": [], "faults": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hub-trials-") as tmp:
        base = Path(tmp)
        for name, kit in kits.items():
            for variant in kit.variants:
                if args.seeds:
                    row = kill_trials(name, variant, args.seeds, signal.SIGKILL, base / f"kill-{name}-{variant}")
                    results["kills"].append(row)
                    print(json.dumps({k: v for k, v in row.items() if k != "failures"}), flush=True)
            if args.sigterm_seeds:
                row = kill_trials(name, next(iter(kit.variants)), args.sigterm_seeds, signal.SIGTERM,
                                  base / f"term-{name}")
                results["sigterm"].append(row)
                print(json.dumps({k: v for k, v in row.items() if k != "failures"}), flush=True)
            if args.faults and registered()[name][0].emulator is not None:
                results["faults"][name] = fault_matrix(name, base / f"faults-{name}")
    if results["faults"]:
        names = list(results["faults"])
        print("\n| fault | " + " | ".join(names) + " |")
        print("|---|" + "---|" * len(names))
        for i, row in enumerate(ROWS):
            print(f"| {row.name} | " + " | ".join(_cell(results["faults"][n][i]) for n in names) + " |")
    print(f"\n{time.monotonic() - started:.0f} s in all")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
