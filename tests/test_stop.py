"""Stop requests reach the waits of a run: pacing, retry backoff and polling end at once, the run closes as
``stopped`` after its last committed page, and SIGTERM sets the stop of a command."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from hub.contracts import Page, Record, Stream
from hub.errors import Stopped, TransientError
from hub.http import Pacer, RetryPolicy, TokenBucket, make_client
from hub.stop import current, sleep, stop_on_signals, stop_scope, wait
from hub.store import Store
from hub.sync import sync_source


def _set_soon(event: threading.Event, after: float = 0.05) -> None:
    threading.Timer(after, event.set).start()


def test_a_wait_ends_at_once_when_its_stop_is_set() -> None:
    stop = threading.Event()
    _set_soon(stop)
    started = time.monotonic()
    with pytest.raises(Stopped):
        wait(time.sleep, 30.0, stop)
    assert time.monotonic() - started < 5
    wait(time.sleep, 0.0, None)  # no scope: a plain sleep


def test_an_injected_sleep_runs_then_the_stop_is_checked() -> None:
    stop = threading.Event()
    waits: list[float] = []

    def fake(seconds: float) -> None:
        waits.append(seconds)
        stop.set()

    with pytest.raises(Stopped):
        wait(fake, 3.0, stop)
    assert waits == [3.0]
    with pytest.raises(Stopped):
        wait(fake, 1.0, stop)  # already set: not even called
    assert waits == [3.0]


def test_sleep_reads_the_scope_where_it_runs() -> None:
    stop = threading.Event()
    assert current() is None
    with stop_scope(stop):
        assert current() is stop
        stop.set()
        with pytest.raises(Stopped):
            sleep(10.0)
    assert current() is None
    sleep(0.0)


def test_pacing_and_retry_waits_of_a_client_built_in_a_scope_end_on_stop() -> None:
    stop = threading.Event()
    calls: list[str] = []

    def always_429(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(429, headers={"Retry-After": "60"})

    pacer = Pacer.single(TokenBucket(1.0, 0.01))  # one request, then 100 s until the next
    with stop_scope(stop):
        client = make_client("https://api.test", transport=httpx.MockTransport(always_429), pacer=pacer,
                             retry=RetryPolicy(max_attempts=5))
    _set_soon(stop)
    started = time.monotonic()
    with pytest.raises(Stopped):
        client.get("/v1/x")  # a 429, then a 60 s Retry-After wait, cut short
    assert calls == ["/v1/x"]
    stop.clear()
    _set_soon(stop)
    with pytest.raises(Stopped):
        client.get("/v1/y")  # the pacer's wait for its bucket, cut short
    assert time.monotonic() - started < 5
    assert calls == ["/v1/x"]
    client.close()


class _WaitingStream:
    """Two pages, then a long wait inside the third (a rate-limit pause)."""

    name = "things"

    def read(self, state: Mapping[str, Any] | None, *, full: bool = False) -> Iterator[Page]:
        start = int((state or {}).get("n", 0))
        for n in range(start, 3):
            if n == 2:
                sleep(60.0)
            yield Page([Record("thing", str(n), {"n": n})], {"n": n + 1})


class _Source:
    name = "slow"

    def streams(self) -> list[Stream]:
        return [_WaitingStream()]

    def check(self) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_stop_during_a_wait_closes_the_run_as_stopped_after_its_committed_pages(store: Store) -> None:
    stop = threading.Event()
    _set_soon(stop, 0.2)
    started = time.monotonic()
    result = sync_source(store, _Source(), "toy", stop=stop)
    assert time.monotonic() - started < 5
    assert (result.status, result.stopped, result.counts["records"]) == ("stopped", True, 2)
    assert store.get_state("slow", "things") == {"n": 2}
    last = {(r["kind"], r["target"]): r for r in store.summary().as_dict()["last_runs"]}
    assert last[("sync", "slow")]["status"] == "stopped"
    assert last[("sync", "slow")]["finished_at"] is not None


def test_sigterm_sets_the_stop_and_a_second_one_stops_at_once() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(grace=30.0) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler runs in this (main) thread between bytecodes
        assert stop.is_set()
        with pytest.raises(Stopped):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1.0)
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_run_still_going_after_the_grace_time_is_stopped_where_it_is() -> None:
    with stop_on_signals(grace=0.2) as stop:
        os.kill(os.getpid(), signal.SIGINT)
        started = time.monotonic()
        with pytest.raises(Stopped):
            time.sleep(10.0)  # stands for a request hanging until its timeout
        assert stop.is_set()
        assert time.monotonic() - started < 5


def test_transient_errors_still_retry_inside_a_scope() -> None:
    answers = iter([httpx.Response(503), httpx.Response(200, json={"ok": True})])
    with stop_scope(threading.Event()):
        client = make_client("https://api.test", transport=httpx.MockTransport(lambda r: next(answers)),
                             retry=RetryPolicy(initial_wait=0.001, max_wait=0.001))
    assert client.get("/x").json() == {"ok": True}
    client.close()
    assert issubclass(Stopped, Exception) and not issubclass(Stopped, TransientError)


def test_a_signal_after_the_work_is_ignored_when_the_process_ends_with_the_block() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        with stop_on_signals(restore=False):
            pass
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGTERM)  # would end this process by default
        time.sleep(0.05)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, signal.default_int_handler)
