"""Server-side limiters: never more than N per window, bucket arithmetic, concurrency, speed compression."""

from __future__ import annotations

import math
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.sandbox.emulator import SandboxClock
from hub.sandbox.ratelimit import (
    ConcurrencyLimiter,
    FixedWindowLimiter,
    SlidingWindowLimiter,
    TokenBucket,
    format_seconds,
    hit_all,
)


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def clock(speed: float = 1.0) -> tuple[SandboxClock, FakeTime]:
    t = FakeTime()
    return SandboxClock(speed=speed, monotonic_fn=t), t


gaps = st.lists(st.floats(min_value=0.0, max_value=3.0, allow_nan=False), min_size=1, max_size=200)


@settings(max_examples=200, deadline=None)
@given(gaps=gaps, limit=st.integers(1, 10), window=st.floats(0.5, 10.0), costs=st.lists(st.integers(1, 3)))
def test_sliding_window_never_allows_more_than_limit_in_any_window(
    gaps: list[float], limit: int, window: float, costs: list[int]
) -> None:
    c, t = clock()
    limiter = SlidingWindowLimiter(c, limit=limit, window_s=window)
    allowed: list[tuple[float, int]] = []
    for i, gap in enumerate(gaps):
        t.now += gap
        cost = costs[i % len(costs)] if costs else 1
        decision = limiter.hit(cost)
        assert decision.remaining >= 0
        if decision.allowed:
            allowed.append((t.now, cost))
        else:
            assert decision.retry_after > 0
    for start, _ in allowed:  # every window that begins at an admitted call
        assert sum(c for at, c in allowed if start <= at < start + window) <= limit


@settings(max_examples=200, deadline=None)
@given(gaps=gaps, limit=st.integers(1, 10), window=st.floats(0.5, 10.0))
def test_fixed_window_never_allows_more_than_limit_per_window(
    gaps: list[float], limit: int, window: float
) -> None:
    c, t = clock()
    limiter = FixedWindowLimiter(c, limit=limit, window_s=window)
    per_window: dict[int, int] = {}
    for gap in gaps:
        t.now += gap
        if limiter.hit().allowed:
            index = math.floor(t.now / window)
            per_window[index] = per_window.get(index, 0) + 1
    assert all(count <= limit for count in per_window.values())


def test_sliding_window_retry_after_is_exact_and_compressed_by_speed() -> None:
    c, t = clock(speed=10.0)  # a 10-second window lasts 1 real second
    limiter = SlidingWindowLimiter(c, limit=2, window_s=10)
    assert limiter.hit().allowed and limiter.hit().allowed
    refused = limiter.hit()
    assert not refused.allowed
    assert refused.window_s == pytest.approx(1.0)
    assert refused.retry_after == pytest.approx(1.0)
    t.now += refused.retry_after  # the client sleeps exactly as told
    assert limiter.hit().allowed


def test_hit_all_consumes_only_when_every_limit_allows() -> None:
    c, _ = clock()
    burst = SlidingWindowLimiter(c, limit=5, window_s=10)
    search = SlidingWindowLimiter(c, limit=1, window_s=1)
    ok, _ = hit_all([burst, search])
    assert ok
    ok, decisions = hit_all([burst, search])
    assert not ok
    assert decisions[0].allowed and not decisions[1].allowed
    assert burst.check().remaining == 3  # the refused call took nothing from the burst limit


def test_fixed_window_reports_time_to_the_boundary_and_cost_over_limit() -> None:
    c, t = clock()
    daily = FixedWindowLimiter(c, limit=3, window_s=100)
    t.now = 40
    assert daily.hit(3).allowed
    refused = daily.hit()
    assert refused.retry_after == pytest.approx(60)
    assert math.isinf(daily.hit(4).retry_after)
    t.now = 100
    assert daily.hit().allowed


def test_token_bucket_costs_refunds_and_restore_rate() -> None:
    c, t = clock(speed=2.0)
    bucket = TokenBucket(c, capacity=1000, restore_rate=50)
    first = bucket.hit(800)
    assert first.allowed and first.available == pytest.approx(200)
    assert first.restore_rate == pytest.approx(100)  # 50 points per vendor second at speed 2
    refused = bucket.hit(500)
    assert not refused.allowed
    assert refused.retry_after == pytest.approx(3.0)  # 300 points / 50 per vendor s = 6 vendor s = 3 real s
    assert bucket.refund(100).available == pytest.approx(300)
    t.now += 1.0  # 2 vendor seconds: +100 points
    assert bucket.status().available == pytest.approx(400)
    t.now += 100
    assert bucket.status().available == pytest.approx(1000)  # never above capacity
    assert math.isinf(bucket.hit(1001).retry_after)


def test_concurrency_limiter_rejects_past_the_limit_and_releases() -> None:
    limiter = ConcurrencyLimiter(2)
    with limiter.slot() as a, limiter.slot() as b, limiter.slot() as c:
        assert a.allowed and b.allowed and not c.allowed
        assert limiter.in_use == 2
    assert limiter.in_use == 0
    assert limiter.max_in_use == 2
    assert limiter.rejected == 1
    with pytest.raises(RuntimeError):
        limiter.release()


def test_concurrency_limiter_under_threads() -> None:
    limiter = ConcurrencyLimiter(10)
    barrier = threading.Barrier(16)
    results: list[bool] = []
    lock = threading.Lock()

    def worker() -> None:
        decision = limiter.try_acquire()
        with lock:
            results.append(decision.allowed)
        barrier.wait()  # everyone holds (or was refused) a slot at the same time
        if decision.allowed:
            limiter.release()

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results.count(True) == 10
    assert limiter.in_use == 0


@pytest.mark.parametrize(
    ("seconds", "text"), [(1.0, "1"), (2.5, "2.5"), (0.1234, "0.124"), (0.0, "0"), (math.inf, "86400")]
)
def test_format_seconds(seconds: float, text: str) -> None:
    assert format_seconds(seconds) == text


def test_clock_rejects_non_positive_speed() -> None:
    with pytest.raises(ValueError):
        SandboxClock(speed=0)


def test_context_speed_drives_its_clock() -> None:
    from hub.sandbox.emulator import EmulatorContext

    ctx = EmulatorContext(business=None, speed=10)  # type: ignore[arg-type]
    assert ctx.clock.speed == 10
    assert ctx.clock.real(10) == pytest.approx(1)
    with pytest.raises(ValueError):
        EmulatorContext(business=None, speed=10, clock=SandboxClock(speed=2))  # type: ignore[arg-type]
