from __future__ import annotations

import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.http.pacer import Pacer, RateLimitHeaders, TokenBucket, WindowLimit

EPS = 1e-6


class FakeClock:
    """A clock that only moves when someone sleeps; thread-safe."""

    def __init__(self) -> None:
        self.now = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.now += max(0.0, seconds)


class RecordingBucket(TokenBucket):
    def __init__(self, capacity: float, rate: float) -> None:
        super().__init__(capacity, rate)
        self.grants: list[tuple[float, float]] = []

    def take(self, cost: float, now: float) -> None:
        self.grants.append((now, cost))
        super().take(cost, now)


class RecordingWindow(WindowLimit):
    def __init__(self, limit: float, window_s: float) -> None:
        super().__init__(limit, window_s)
        self.grants: list[tuple[float, float]] = []

    def take(self, cost: float, now: float) -> None:
        self.grants.append((now, cost))
        super().take(cost, now)


def assert_bucket_bound(grants: list[tuple[float, float]], capacity: float, rate: float) -> None:
    """In any interval [t_i, t_j], a token bucket grants at most capacity + rate * (t_j - t_i)."""
    for i in range(len(grants)):
        spent = 0.0
        for j in range(i, len(grants)):
            spent += grants[j][1]
            assert spent <= capacity + rate * (grants[j][0] - grants[i][0]) + EPS


def assert_window_bound(grants: list[tuple[float, float]], limit: float, window: float) -> None:
    """No window of length ``window`` holds more than ``limit``."""
    for i, (t_i, _) in enumerate(grants):
        inside = sum(c for t, c in grants[: i + 1] if t > t_i - window + EPS)
        assert inside <= limit + EPS


ops = st.lists(
    st.tuples(st.floats(0, 3, allow_nan=False), st.integers(1, 5)),  # (idle gap before, cost)
    min_size=1,
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(capacity=st.integers(5, 50), rate=st.floats(0.5, 50, allow_nan=False), steps=ops)
def test_token_bucket_never_exceeds_its_rate(
    capacity: int, rate: float, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock()
    bucket = RecordingBucket(capacity, rate)
    pacer = Pacer.single(bucket, clock=clock, sleep=clock.sleep)
    for gap, cost in steps:
        clock.sleep(gap)
        pacer.acquire(cost)
    assert len(bucket.grants) == len(steps)
    assert_bucket_bound(bucket.grants, capacity, rate)


@settings(max_examples=150, deadline=None)
@given(limit=st.integers(5, 30), window=st.floats(0.5, 10, allow_nan=False), steps=ops)
def test_window_limit_never_exceeds_its_rate(
    limit: int, window: float, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock()
    win = RecordingWindow(limit, window)
    pacer = Pacer.single(win, clock=clock, sleep=clock.sleep)
    for gap, cost in steps:
        clock.sleep(gap)
        pacer.acquire(cost)
    assert_window_bound(win.grants, limit, window)


@settings(max_examples=30, deadline=None)
@given(threads=st.integers(2, 6), per_thread=st.integers(5, 30))
def test_shared_pacer_holds_under_threads(threads: int, per_thread: int) -> None:
    clock = FakeClock()
    general = RecordingWindow(10, 1.0)
    search = RecordingWindow(3, 1.0)
    pacer = Pacer({"general": general, "search": search}, clock=clock, sleep=clock.sleep)

    def stream(i: int) -> None:
        for _ in range(per_thread):
            pacer.acquire(1, ("general", "search") if i % 2 else None)

    workers = [threading.Thread(target=stream, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(5)
    assert len(general.grants) == threads * per_thread
    assert_window_bound(general.grants, 10, 1.0)
    assert_window_bound(search.grants, 3, 1.0)


def test_runs_near_the_limit_not_below_it() -> None:
    clock = FakeClock()
    pacer = Pacer.single(WindowLimit(100, 10), clock=clock, sleep=clock.sleep)
    for _ in range(1000):
        pacer.acquire()
    # 1,000 requests at 100 per 10 s: the first 100 at once, then a full window per 100.
    assert clock.now == pytest.approx(90.0)


def test_cost_above_capacity_waits_for_a_full_bucket_then_goes() -> None:
    clock = FakeClock()
    bucket = TokenBucket(100, 10)
    pacer = Pacer.single(bucket, clock=clock, sleep=clock.sleep)
    pacer.acquire(60)
    pacer.acquire(250)  # dearer than the whole bucket
    assert clock.now == pytest.approx(6.0)
    assert bucket.tokens == pytest.approx(-150.0)
    pacer.acquire(10)  # the debt is paid back before anything else goes
    assert clock.now == pytest.approx(6.0 + 16.0)


def test_observe_shopify_throttle_status_follows_the_server() -> None:
    clock = FakeClock()
    bucket = TokenBucket(1000, 50)
    pacer = Pacer.single(bucket, clock=clock, sleep=clock.sleep)
    pacer.acquire(400)  # requested cost
    # The server refunded unused points and reports its plan: 2,000 points restoring at 100/s.
    pacer.observe(remaining=1900, limit=2000, refill_per_s=100)
    assert bucket.capacity == 2000 and bucket.refill_per_s == 100
    assert bucket.tokens == pytest.approx(1900)
    pacer.observe(remaining=50)  # another process drained it
    pacer.acquire(150)
    assert clock.now == pytest.approx(1.0)


def test_window_observe_tightens_and_learns_the_tier() -> None:
    clock = FakeClock()
    win = WindowLimit(100, 10)
    pacer = Pacer.single(win, clock=clock, sleep=clock.sleep)
    for _ in range(10):
        pacer.acquire()
    pacer.observe(remaining=50)  # someone else spent 40 more in this window
    assert win.snapshot(clock())["used"] == pytest.approx(50)
    pacer.observe(remaining=95)  # a lower server count is not trusted (in-flight requests)
    assert win.snapshot(clock())["used"] == pytest.approx(50)
    pacer.observe(limit=190)  # a higher tier loosens
    for _ in range(140):
        pacer.acquire()
    assert clock.now == 0.0


def test_update_from_hubspot_headers() -> None:
    clock = FakeClock()
    win = WindowLimit(100, 10)
    pacer = Pacer({"general": win, "search": WindowLimit(5, 1)}, clock=clock, sleep=clock.sleep)
    spec = RateLimitHeaders(
        remaining="X-HubSpot-RateLimit-Remaining",
        limit="X-HubSpot-RateLimit-Max",
        window_ms="X-HubSpot-RateLimit-Interval-Milliseconds",
        reset_s=None,
        bucket="general",
    )
    headers = {
        "X-HubSpot-RateLimit-Remaining": "0",
        "X-HubSpot-RateLimit-Max": "110",
        "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
    }
    assert pacer.update_from_headers(headers, spec)
    assert win.limit == 110 and win.window_s == 10
    pacer.acquire()
    assert clock.now == pytest.approx(10.0)
    assert not pacer.update_from_headers({"Content-Type": "application/json"}, spec)


def test_ietf_headers_with_reset_pause_when_exhausted() -> None:
    clock = FakeClock()
    pacer = Pacer.single(TokenBucket(10, 1), clock=clock, sleep=clock.sleep)
    pacer.update_from_headers(
        {"RateLimit-Remaining": "0", "RateLimit-Limit": "10", "RateLimit-Reset": "30"}, RateLimitHeaders()
    )
    pacer.acquire()
    assert clock.now == pytest.approx(30.0)


def test_pause_blocks_every_stream_and_only_extends() -> None:
    clock = FakeClock()
    pacer = Pacer.single(TokenBucket(100, 100), clock=clock, sleep=clock.sleep)
    pacer.pause(5)
    pacer.pause(2)  # a shorter pause does not shorten the longer one
    assert pacer.acquire() == pytest.approx(5.0)
    assert pacer.acquire() == 0.0


def test_concurrency_limit() -> None:
    pacer = Pacer.single(TokenBucket(1000, 1000), max_concurrent=10)
    active = 0
    peak = 0
    lock = threading.Lock()
    release = threading.Event()

    def call() -> None:
        nonlocal active, peak
        with pacer.slot():
            with lock:
                active += 1
                peak = max(peak, active)
            release.wait(0.05)
            with lock:
                active -= 1

    workers = [threading.Thread(target=call) for _ in range(25)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(5)
    assert 1 < peak <= 10


def test_unknown_bucket_is_an_error() -> None:
    pacer = Pacer({"general": TokenBucket(1, 1)})
    with pytest.raises(ValueError, match="unknown pacer bucket"):
        pacer.acquire(1, ("search",))
    with pytest.raises(ValueError):
        TokenBucket(0, 1)
