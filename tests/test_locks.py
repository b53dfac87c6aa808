"""Locks and run rows of processes that are gone: a dead holder on this host is replaced at once, one on another
host after its lock expires; the runs such a crash leaves ``running`` are closed as interrupted."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta

import pytest
import sqlalchemy as sa

from hub.locks import LockHeld, close_dead_runs, connector_lock, holder_name
from hub.process import is_dead_here, this_host, this_process
from hub.store import Store
from hub.store import models as m

TTL = timedelta(minutes=10)


@pytest.fixture(scope="module")
def dead_pid() -> int:
    """The pid of a process of this host that has exited (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_process_names_tell_dead_from_alive_and_never_judge_another_host(dead_pid: int) -> None:
    assert not is_dead_here(this_process())
    assert not is_dead_here(holder_name())
    assert is_dead_here(f"{this_host()}:{dead_pid}")
    assert is_dead_here(f"{this_host()}:{dead_pid}:0badf00d")
    assert not is_dead_here(f"elsewhere:{dead_pid}:0badf00d")  # another machine: only its lock's expiry tells
    assert not is_dead_here(f"{this_host()}:{os.getppid()}:x")  # alive
    for unreadable in (None, "", "cli-1", f"{this_host()}:notapid"):
        assert not is_dead_here(unreadable)


def test_a_zombie_child_counts_as_dead() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
        assert is_dead_here(f"{this_host()}:{child.pid}")
    finally:
        child.wait()


def test_the_lock_of_a_killed_holder_on_this_host_is_taken_over_at_once(store: Store, dead_pid: int) -> None:
    dead = f"{this_host()}:{dead_pid}:0badf00d"
    assert store.acquire_lock("sync:shop", dead, TTL)
    with connector_lock(store, "sync:shop") as lock:
        assert store.lock_holder("sync:shop") == lock.holder
    assert store.lock_holder("sync:shop") is None  # released at the end


def test_a_live_holder_and_a_holder_on_another_host_keep_their_lock_until_it_expires(
    store: Store, dead_pid: int
) -> None:
    for holder in (holder_name(), f"other-host:{dead_pid}:0badf00d"):
        assert store.acquire_lock("sync:crm", holder, TTL)
        with pytest.raises(LockHeld, match="running in another process"), connector_lock(store, "sync:crm"):
            pass
        assert store.lock_holder("sync:crm") == holder
        store.release_lock("sync:crm", holder)


def test_a_takeover_loses_to_a_process_that_replaced_the_dead_holder_first(store: Store, dead_pid: int) -> None:
    dead = f"{this_host()}:{dead_pid}:0badf00d"
    assert store.acquire_lock("push:tags", dead, TTL)
    assert store.take_over_lock("push:tags", dead, "first", TTL)
    assert not store.take_over_lock("push:tags", dead, "second", TTL)
    assert store.lock_holder("push:tags") == "first"


def _status(store: Store, run_id: int) -> str:
    with store.engine.connect() as conn:
        return str(conn.execute(sa.select(m.run.c.status).where(m.run.c.id == run_id)).scalar_one())


def test_runs_left_running_by_a_gone_process_are_marked_interrupted_and_no_others(
    store: Store, dead_pid: int
) -> None:
    here_dead = store.start_run("sync", "shop", holder=f"{this_host()}:{dead_pid}")
    here_alive = store.start_run("sync", "crm")  # this process
    far_holder = "other-host:4242"
    far_locked = store.start_run("sync", "mail", holder=far_holder)
    store.acquire_lock("sync:mail", f"{far_holder}:abcd", TTL)  # still renewing its lock: alive
    far_expired = store.start_run("push", "tags", holder="other-host:777")  # its lock ran out
    far_replaced = store.start_run("sync", "csv", holder="other-host:888")
    store.acquire_lock("sync:csv", "other-host:999:ffff", TTL)  # another process of that host runs it now
    old_segment = store.start_run("segment", "full", holder="other-host:555")  # no lock tells about it
    finished = store.start_run("sync", "old", holder=f"{this_host()}:{dead_pid}")
    store.finish_run(finished, "ok", {})

    assert close_dead_runs(store) == 3
    assert {r: _status(store, r) for r in (here_dead, here_alive, far_locked, far_expired, far_replaced,
                                           old_segment, finished)} == {
        here_dead: "interrupted",
        here_alive: "running",
        far_locked: "running",
        far_expired: "interrupted",
        far_replaced: "interrupted",
        old_segment: "running",
        finished: "ok",
    }
    assert close_dead_runs(store) == 0  # nothing left to close
    last = {(r["kind"], r["target"]): r for r in store.summary().as_dict()["last_runs"]}
    assert last[("sync", "shop")]["status"] == "interrupted"
