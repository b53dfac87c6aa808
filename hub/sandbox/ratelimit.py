"""Server-side rate limiters that emulators reuse to imitate their vendor's limits.

All limiters are thread-safe and run on a :class:`~hub.sandbox.emulator.SandboxClock`: limits are given in
the vendor's own units and time passes ``speed`` times faster, while every duration or rate in a decision is
already converted to the client's real seconds, ready for a header.

- :class:`SlidingWindowLimiter`: at most ``limit`` units in any window of ``window_s`` (HubSpot's 100 or 190
  requests per 10 s, and 5 search requests per second).
- :class:`FixedWindowLimiter`: at most ``limit`` units per aligned window (HubSpot's daily cap).
- :class:`TokenBucket`: a bucket of ``capacity`` points refilled at ``restore_rate`` points per second, with a
  variable cost per call and refunds (Shopify GraphQL: 1000/2000 points, 50/100 per second).
- :class:`ConcurrencyLimiter`: at most ``limit`` requests in flight (Mailchimp: 10 connections, 429 past it).

Combine limits with :func:`hit_all`, which consumes from every limiter only when all of them allow the call.

Example (HubSpot, private app on the Professional tier)::

    burst = SlidingWindowLimiter(ctx.clock, limit=190, window_s=10)
    daily = FixedWindowLimiter(ctx.clock, limit=650_000, window_s=86_400)
    ok, (b, d) = hit_all([burst, daily])
    headers = {"X-HubSpot-RateLimit-Max": str(b.limit), "X-HubSpot-RateLimit-Remaining": str(b.remaining),
               "X-HubSpot-RateLimit-Interval-Milliseconds": str(int(b.window_s * 1000))}
    if not ok:
        headers["Retry-After"] = format_seconds(max(b.retry_after, d.retry_after))
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from hub.sandbox.emulator import SandboxClock

# Float slack so that a client sleeping exactly ``retry_after`` is admitted.
_EPS = 1e-9


@dataclass(frozen=True, slots=True)
class WindowDecision:
    """The outcome of a window limiter check.

    Attributes:
        allowed: whether the call may proceed (its cost was consumed if so).
        limit: units allowed per window.
        remaining: units left in the current window after this call.
        window_s: the window length in real seconds (what a header should report).
        retry_after: real seconds until the call would be allowed (0 when allowed; inf when the cost exceeds
            the limit and can never be served).
    """

    allowed: bool
    limit: int
    remaining: int
    window_s: float
    retry_after: float


class WindowLimiter(Protocol):
    """A "N units per window" limit; see :func:`hit_all`."""

    def check(self, cost: int = 1) -> WindowDecision:
        """What :meth:`hit` would decide, without consuming anything."""
        ...

    def hit(self, cost: int = 1) -> WindowDecision:
        """Consume ``cost`` if the limit allows it."""
        ...

    def reset(self) -> None:
        """Forget all consumption."""
        ...


class SlidingWindowLimiter:
    """At most ``limit`` units within any ``window_s`` vendor seconds (a sliding log).

    Args:
        clock: the sandbox clock.
        limit: units allowed per window.
        window_s: the window in vendor seconds.
    """

    def __init__(self, clock: SandboxClock, *, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.clock = clock
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self, now: float) -> None:
        # An event at t counts while t > now - window, so any half-open interval of one window length holds
        # at most ``limit`` units.
        while self._log and self._log[0][0] <= now - self.window_s:
            self._used -= self._log.popleft()[1]

    def _decide(self, cost: int, now: float) -> WindowDecision:
        self._expire(now)
        window = self.clock.real(self.window_s)
        if self._used + cost <= self.limit:
            return WindowDecision(True, self.limit, self.limit - self._used - cost, window, 0.0)
        if cost > self.limit:
            return WindowDecision(False, self.limit, self.limit - self._used, window, math.inf)
        freed, wait = 0, 0.0
        for t, c in self._log:
            freed += c
            if self._used - freed + cost <= self.limit:
                wait = t + self.window_s - now
                break
        retry = self.clock.real(max(wait, _EPS))  # refused: never 'retry now'
        return WindowDecision(False, self.limit, self.limit - self._used, window, retry)

    def check(self, cost: int = 1) -> WindowDecision:
        """What :meth:`hit` would decide now, without consuming."""
        with self._lock:
            return self._decide(cost, self.clock.monotonic())

    def hit(self, cost: int = 1) -> WindowDecision:
        """Consume ``cost`` units if they fit in the current window."""
        with self._lock:
            now = self.clock.monotonic()
            decision = self._decide(cost, now)
            if decision.allowed:
                self._log.append((now, cost))
                self._used += cost
            return decision

    def reset(self) -> None:
        """Forget all consumption."""
        with self._lock:
            self._log.clear()
            self._used = 0


class FixedWindowLimiter:
    """At most ``limit`` units per aligned window of ``window_s`` vendor seconds, reset at each boundary.

    Cheaper than a sliding log for large limits (a daily cap of 500,000 requests), at the price of allowing
    up to twice the limit across a boundary, which is what fixed-window vendors do too.

    Args:
        clock: the sandbox clock.
        limit: units allowed per window.
        window_s: the window in vendor seconds.
    """

    def __init__(self, clock: SandboxClock, *, limit: int, window_s: float) -> None:
        if limit < 1 or window_s <= 0:
            raise ValueError("limit must be >= 1 and window_s > 0")
        self.clock = clock
        self.limit = limit
        self.window_s = window_s
        self._lock = threading.Lock()
        self._window = -1
        self._used = 0

    def _decide(self, cost: int, now: float) -> WindowDecision:
        index = math.floor(now / self.window_s)
        if index != self._window:
            self._window, self._used = index, 0
        window = self.clock.real(self.window_s)
        if self._used + cost <= self.limit:
            return WindowDecision(True, self.limit, self.limit - self._used - cost, window, 0.0)
        wait = math.inf if cost > self.limit else max((index + 1) * self.window_s - now, _EPS)
        return WindowDecision(False, self.limit, self.limit - self._used, window, self.clock.real(wait))

    def check(self, cost: int = 1) -> WindowDecision:
        """What :meth:`hit` would decide now, without consuming."""
        with self._lock:
            return self._decide(cost, self.clock.monotonic())

    def hit(self, cost: int = 1) -> WindowDecision:
        """Consume ``cost`` units if they fit in the current window."""
        with self._lock:
            decision = self._decide(cost, self.clock.monotonic())
            if decision.allowed:
                self._used += cost
            return decision

    def reset(self) -> None:
        """Forget all consumption."""
        with self._lock:
            self._window, self._used = -1, 0


def hit_all(limiters: Sequence[WindowLimiter], cost: int = 1) -> tuple[bool, list[WindowDecision]]:
    """Consume ``cost`` from every limiter, or from none when any of them refuses.

    Not atomic across limiters: two threads may both pass the checks; emulators that care call it under
    their own lock (the Sandbox's default lock does that for them).

    Returns:
        Whether the call is allowed, and one decision per limiter (in order) to build headers from.
    """
    checks = [limiter.check(cost) for limiter in limiters]
    if not all(d.allowed for d in checks):
        return False, checks
    return True, [limiter.hit(cost) for limiter in limiters]


@dataclass(frozen=True, slots=True)
class BucketDecision:
    """The outcome of a token-bucket check, in Shopify's ``throttleStatus`` terms.

    Attributes:
        allowed: whether the call may proceed (its cost was taken if so).
        capacity: ``maximumAvailable``.
        available: ``currentlyAvailable`` after this call.
        restore_rate: ``restoreRate``, points per real second.
        retry_after: real seconds until ``cost`` points are available (0 when allowed; inf when the cost
            exceeds the capacity and can never be served).
    """

    allowed: bool
    capacity: float
    available: float
    restore_rate: float
    retry_after: float


class TokenBucket:
    """A leaky/token bucket: ``capacity`` points, refilled at ``restore_rate`` points per vendor second.

    A call is allowed when its cost is available. Shopify takes the *requested* cost up front and gives back
    the difference with the *actual* cost afterwards: call :meth:`refund` with it.

    Args:
        clock: the sandbox clock.
        capacity: the bucket size (Shopify ``maximumAvailable``: 1000 standard, 2000 Plus).
        restore_rate: points restored per vendor second (50 standard, 100 Plus).
    """

    def __init__(self, clock: SandboxClock, *, capacity: float, restore_rate: float) -> None:
        if capacity <= 0 or restore_rate <= 0:
            raise ValueError("capacity and restore_rate must be > 0")
        self.clock = clock
        self.capacity = capacity
        self.restore_rate = restore_rate
        self._lock = threading.Lock()
        self._available = capacity
        self._at = clock.monotonic()

    def _refill(self, now: float) -> None:
        self._available = min(self.capacity, self._available + (now - self._at) * self.restore_rate)
        self._at = now

    def _decision(self, allowed: bool, cost: float) -> BucketDecision:
        if allowed:
            wait = 0.0
        elif cost > self.capacity:
            wait = math.inf
        else:
            wait = self.clock.real(max(cost - self._available, 0.0) / self.restore_rate + _EPS)
        rate = self.clock.rate(self.restore_rate)
        return BucketDecision(allowed, self.capacity, self._available, rate, wait)

    def hit(self, cost: float) -> BucketDecision:
        """Take ``cost`` points if they are available."""
        with self._lock:
            self._refill(self.clock.monotonic())
            allowed = cost <= self._available + _EPS
            if allowed:
                self._available = max(self._available - cost, 0.0)
            return self._decision(allowed, cost)

    def refund(self, points: float) -> BucketDecision:
        """Give back ``points`` (requested minus actual cost); returns the status after the refund."""
        with self._lock:
            self._refill(self.clock.monotonic())
            self._available = min(self.capacity, self._available + max(points, 0.0))
            return self._decision(True, 0.0)

    def status(self) -> BucketDecision:
        """The current status, consuming nothing."""
        with self._lock:
            self._refill(self.clock.monotonic())
            return self._decision(True, 0.0)

    def reset(self) -> None:
        """Fill the bucket."""
        with self._lock:
            self._available, self._at = self.capacity, self.clock.monotonic()


@dataclass(frozen=True, slots=True)
class ConcurrencyDecision:
    """The outcome of a concurrency check.

    Attributes:
        allowed: whether a slot was taken (release it when the request ends).
        in_use: requests in flight, including this one when allowed.
        limit: the maximum simultaneous requests.
    """

    allowed: bool
    in_use: int
    limit: int


class ConcurrencyLimiter:
    """At most ``limit`` requests in flight at once (Mailchimp: 10 simultaneous connections per account).

    Only meaningful in an emulator with ``concurrent = True`` (otherwise the Sandbox serialises requests),
    and only when requests overlap, so such an emulator usually also simulates the vendor's latency inside
    the slot. Use :meth:`slot`::

        with self.connections.slot() as slot:
            if not slot.allowed:
                return problem(429, "Too Many Requests", "Exceeded 10 simultaneous connections.")
            ...

    Args:
        limit: the maximum simultaneous requests.
    """

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self._lock = threading.Lock()
        self._in_use = 0
        self.max_in_use = 0
        self.rejected = 0

    def try_acquire(self) -> ConcurrencyDecision:
        """Take a slot if one is free; the caller must :meth:`release` it when allowed."""
        with self._lock:
            if self._in_use >= self.limit:
                self.rejected += 1
                return ConcurrencyDecision(False, self._in_use, self.limit)
            self._in_use += 1
            self.max_in_use = max(self.max_in_use, self._in_use)
            return ConcurrencyDecision(True, self._in_use, self.limit)

    def release(self) -> None:
        """Give a slot back."""
        with self._lock:
            if self._in_use <= 0:
                raise RuntimeError("release() without a matching acquire")
            self._in_use -= 1

    @contextlib.contextmanager
    def slot(self) -> Iterator[ConcurrencyDecision]:
        """Try to take a slot for the duration of the block; released on exit only if taken."""
        decision = self.try_acquire()
        try:
            yield decision
        finally:
            if decision.allowed:
                self.release()

    @property
    def in_use(self) -> int:
        """Requests in flight now."""
        with self._lock:
            return self._in_use


def format_seconds(seconds: float) -> str:
    """A duration for a ``Retry-After``-style header: whole seconds as integers, else rounded up to ms.

    Compressed sandboxes (speed > 1) need sub-second waits; the hub's HTTP core accepts fractional values.
    An infinite wait (a cost that can never be served) is reported as one day.
    """
    if math.isinf(seconds):
        return "86400"
    millis = math.ceil(max(seconds, 0.0) * 1000 - 1e-6)
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis / 1000:.3f}".rstrip("0")
