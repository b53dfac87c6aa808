"""Kill -9 and SIGTERM trials of ``hub sync``, shared by the conformance tests and ``bench/conformance_trials.py``.

A trial starts ``hub sync SOURCE`` as a real process against a world's served emulator, kills it (SIGKILL, or
SIGTERM) at a chosen instant, resumes in-process, and compares the store with a reference sync that was never
interrupted. The instant is either the arrival of the emulator's N-th request (plus a few milliseconds, so the
kill lands anywhere: in a request, in a commit, in between) or of the first request to a named endpoint (a
bulk job being polled, a token being refreshed); without an emulator, a random moment after the first committed
page.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tests.conformance.world import RequestTrigger, Snapshot, World, runs, snapshot, stream_states

PROCESS_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Reference:
    """An uninterrupted first sync: its store, its request count and how long the process took."""

    snapshot: Snapshot
    requests: int
    seconds: float


def reference(world: World) -> Reference:
    """Sync ``world`` into a fresh store once, in a subprocess as the trials will, and remember the outcome."""
    url = world.fresh_store("reference")
    if world.sandbox is not None:
        world.sandbox.reset_stats()
    started = time.monotonic()
    proc = world.popen("sync", world.source)
    code = proc.wait(timeout=PROCESS_TIMEOUT_S)
    seconds = time.monotonic() - started
    assert code == 0, output(proc)[-3000:]
    return Reference(snapshot(url), world.requests(), seconds)


@dataclass(frozen=True)
class Trial:
    """What one kill trial found."""

    connector: str
    variant: str
    label: str
    signal: str
    killed: bool  # False: the sync finished before the kill arrived
    exit_code: int | None
    lost: int
    extra: int
    changed: int
    reread: int
    interrupted_run: str | None  # the killed run's status as the next start left it
    stop_seconds: float | None  # SIGTERM: from the signal to the exit
    resume: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """JSON-able view."""
        return asdict(self)


def kill_trial(
    world: World,
    ref: Reference,
    *,
    seed: int | None = None,
    endpoint: str | None = None,
    label: str | None = None,
    sig: signal.Signals = signal.SIGKILL,
    before: Callable[[World], None] | None = None,
) -> Trial:
    """One trial: kill ``hub sync`` at a random instant (``seed``) or at ``endpoint``'s first request, resume.

    Args:
        world: the connector under trial (its config's store is replaced by a fresh one).
        ref: the uninterrupted reference.
        seed: chooses the request (or the time) to kill at and the extra delay.
        endpoint: kill at the first request whose endpoint name starts with this instead.
        label: how the trial is reported (default: the seed or the endpoint).
        sig: SIGKILL (kill -9) or SIGTERM (a stop request).
        before: called once the process is started, with the world (e.g. to arm a token expiry).
    """
    rng = random.Random(seed)
    url = world.fresh_store(f"trial-{time.monotonic_ns()}")
    if world.sandbox is not None:
        world.sandbox.reset_stats()
    proc = world.popen("sync", world.source)
    sent_at: list[float] = []

    def kill() -> None:
        if proc.poll() is None:
            sent_at.append(time.monotonic())
            proc.send_signal(sig)

    trigger = None
    if world.sandbox is not None:
        at = None if endpoint is not None else rng.randint(1, max(1, ref.requests))
        delay = rng.uniform(0.0, 0.03)
        trigger = RequestTrigger(world.sandbox, lambda: threading.Timer(delay, kill).start(), at=at,
                                 endpoint=endpoint)
    else:
        # No requests to count: the signal goes a random moment after the first committed page (a stop request is
        # only handled once the command runs, and a kill during the start-up would find nothing to lose).
        def after_first_page() -> None:
            deadline = time.monotonic() + PROCESS_TIMEOUT_S
            while proc.poll() is None and time.monotonic() < deadline:
                if _committed(url):
                    time.sleep(rng.uniform(0.0, 0.15))
                    kill()
                    return
                time.sleep(0.005)

        threading.Thread(target=after_first_page, daemon=True).start()
    if before is not None:
        before(world)
    try:
        code = proc.wait(timeout=PROCESS_TIMEOUT_S)
    finally:
        if trigger is not None:
            trigger.remove()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stopped = time.monotonic() - sent_at[0] if sent_at else None
    killed = bool(sent_at)
    resumed = world.sync()
    assert resumed["exit_code"] == 0 and resumed["status"] in ("ok", "ok_with_skips"), resumed
    diff = ref.snapshot.differences(snapshot(url))
    rows = runs(url)
    first_run = rows[0] if len(rows) > 1 else None  # with one row, the kill came before the run started
    return Trial(
        connector=world.name,
        variant=world.variant,
        label=label or (f"endpoint {endpoint}" if endpoint else f"seed {seed}"),
        signal=sig.name,
        killed=killed,
        exit_code=code,
        lost=diff["lost"],
        extra=diff["extra"],
        changed=diff["changed"],
        reread=int(resumed["counts"].get("records_unchanged", 0)),
        interrupted_run=None if first_run is None else str(first_run["status"]),
        stop_seconds=stopped,
        resume={"counts": resumed["counts"], "states": sorted(stream_states(url))},
    )


def output(proc: subprocess.Popen[str]) -> str:
    """What a process started by :meth:`World.popen` printed (stdout and stderr together)."""
    path = getattr(proc, "log_path", None)
    return path.read_text(encoding="utf-8") if path is not None else ""


def _committed(url: str) -> bool:
    """Whether the SQLite store at ``url`` holds a committed page (read without opening a Store: no migrations)."""
    try:
        with sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True, timeout=0.1) as conn:
            return bool(conn.execute("SELECT count(*) FROM sync_state").fetchone()[0])
    except sqlite3.Error:  # not created yet, or locked for a moment by the writer
        return False
