"""Start-up time of ``hub --help``: N runs, each a fresh process, beside ``python -c pass`` (the floor).

    python bench/cli_startup.py              # 30 runs of each
    python bench/cli_startup.py --runs 100 --importtime   # ... and the slowest imports of one run

The product wants ``hub --help`` under half a second. Runs alternate between the two commands, so a burst of load
on a shared machine hits both alike. The user + system CPU of each child is reported beside its wall time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

TARGET_S = 0.5


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``cmd``, its output discarded."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    after = os.times()
    return wall, (after.children_user - before.children_user) + (after.children_system - before.children_system)


def p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10)[-1] if len(values) >= 2 else values[0]


def hub_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    beside = Path(sys.executable).with_name("hub")  # the console script of this interpreter's environment
    found = str(beside) if beside.is_file() else shutil.which("hub")
    if found is None:
        raise SystemExit("no 'hub' command found: install the package (pip install -e .) or pass --hub")
    return [found]


def slowest_imports(cmd: list[str], top: int) -> None:
    """One run with -X importtime; print the imports with the largest cumulative time."""
    script = Path(cmd[0])
    done = subprocess.run(
        [sys.executable, "-X", "importtime", str(script), "--help"], capture_output=True, text=True, check=True
    )
    rows: list[tuple[int, str]] = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _self_us, cumulative, name = line[len("import time:") :].split("|", 2)
        rows.append((int(cumulative), name.strip()))
    print("\nslowest imports of one run (-X importtime, cumulative, nested imports included):")
    for cumulative, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1000:8.1f} ms  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="runs of each command (default 30)")
    parser.add_argument("--hub", default=None, help="the hub executable (default: the one beside this python)")
    parser.add_argument("--importtime", action="store_true", help="also show the slowest imports")
    args = parser.parse_args()
    hub = [*hub_command(args.hub), "--help"]
    floor = [sys.executable, "-c", "pass"]
    for cmd in (hub, floor):  # warm the OS cache: the first run would time the disk
        timed(cmd)
    results: dict[str, list[tuple[float, float]]] = {"hub --help": [], "python -c pass": []}
    for _ in range(args.runs):
        results["hub --help"].append(timed(hub))
        results["python -c pass"].append(timed(floor))
    print(f"{args.runs} runs each, {os.cpu_count()} CPUs, {sys.version.split()[0]}")
    print(f"{'command':16s} {'median':>9s} {'p90':>9s} {'min':>9s} {'CPU median':>11s}")
    for name, runs in results.items():
        walls = [w for w, _ in runs]
        cpus = [c for _, c in runs]
        print(
            f"{name:16s} {statistics.median(walls) * 1000:7.0f} ms {p90(walls) * 1000:7.0f} ms "
            f"{min(walls) * 1000:7.0f} ms {statistics.median(cpus) * 1000:9.0f} ms"
        )
    hub_median = statistics.median(w for w, _ in results["hub --help"])
    floor_median = statistics.median(w for w, _ in results["python -c pass"])
    verdict = "within" if hub_median < TARGET_S else "OVER"
    print(
        f"hub --help: {hub_median * 1000:.0f} ms median, {(hub_median - floor_median) * 1000:.0f} ms above the "
        f"interpreter's own start; {verdict} the {TARGET_S * 1000:.0f} ms target"
    )
    if args.importtime:
        slowest_imports(hub, 15)


if __name__ == "__main__":
    main()
