"""Client-side pacing: run near a vendor's rate limit without provoking 429s.

One :class:`Pacer` per vendor account, shared by every stream of that account (a connector keeps it in
``BuildContext.shared``). A pacer holds one or more named limiters:

- :class:`TokenBucket` for leaky-bucket APIs (Shopify GraphQL: ``maximumAvailable`` points, refilled at
  ``restoreRate`` per second, each query costing a varying number of points);
- :class:`WindowLimit` for "N requests per window" APIs (HubSpot: 100 per 10 s, search 5 per 1 s); unlike a
  token bucket it never lets more than N through in any window, so a burst cannot overshoot the server.

Connectors feed the vendor's own numbers back with :meth:`Pacer.observe` or :meth:`Pacer.update_from_headers`;
the limits tighten to what the server reports (and loosen when it reports a higher tier). :meth:`Pacer.pause`
stops every stream of the account after a 429 with ``Retry-After``, and ``max_concurrent`` caps simultaneous
requests (Mailchimp allows 10 connections per account).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from hub.stop import wait as stop_wait

logger = logging.getLogger(__name__)

# Float slack: after sleeping exactly the computed wait, refill arithmetic can land a hair short.
_EPS = 1e-9


class Limiter(Protocol):
    """One rate limit. Called by :class:`Pacer` under its lock, with the pacer's clock."""

    def wait_time(self, cost: float, now: float) -> float:
        """Seconds until ``cost`` can be taken (0 when it can be taken now)."""
        ...

    def take(self, cost: float, now: float) -> None:
        """Consume ``cost``."""
        ...

    def observe(
        self,
        now: float,
        *,
        remaining: float | None = None,
        limit: float | None = None,
        refill_per_s: float | None = None,
        window_s: float | None = None,
    ) -> None:
        """Adjust to what the server reported."""
        ...

    def snapshot(self, now: float) -> dict[str, float]:
        """Current numbers, for metrics and logs."""
        ...


class TokenBucket:
    """A token bucket: up to ``capacity`` at once, refilled at ``refill_per_s``.

    A cost above the capacity (a Shopify query dearer than the bucket) waits for a full bucket and then goes,
    leaving the bucket in debt, rather than blocking forever.

    Args:
        capacity: the most that can be spent at once.
        refill_per_s: tokens added per second.
    """

    def __init__(self, capacity: float, refill_per_s: float) -> None:
        if capacity <= 0 or refill_per_s <= 0:
            raise ValueError("capacity and refill_per_s must be positive")
        self.capacity = float(capacity)
        self.refill_per_s = float(refill_per_s)
        self.tokens = float(capacity)
        self._updated: float | None = None

    def _refill(self, now: float) -> None:
        if self._updated is not None and now > self._updated:
            self.tokens = min(self.capacity, self.tokens + (now - self._updated) * self.refill_per_s)
        if self._updated is None or now > self._updated:
            self._updated = now

    def wait_time(self, cost: float, now: float) -> float:
        self._refill(now)
        need = min(cost, self.capacity)
        if self.tokens + _EPS >= need:
            return 0.0
        return (need - self.tokens) / self.refill_per_s

    def take(self, cost: float, now: float) -> None:
        self._refill(now)
        self.tokens -= cost

    def observe(
        self,
        now: float,
        *,
        remaining: float | None = None,
        limit: float | None = None,
        refill_per_s: float | None = None,
        window_s: float | None = None,
    ) -> None:
        self._refill(now)
        if limit is not None and limit > 0:
            self.capacity = float(limit)
        if refill_per_s is not None and refill_per_s > 0:
            self.refill_per_s = float(refill_per_s)
        elif window_s is not None and window_s > 0 and limit is not None and limit > 0:
            self.refill_per_s = float(limit) / window_s
        if remaining is not None:
            # The server's count is the truth for a leaky bucket (Shopify refunds the unused part of a query's
            # requested cost), so follow it both ways.
            self.tokens = float(remaining)
        self.tokens = min(self.tokens, self.capacity)

    def snapshot(self, now: float) -> dict[str, float]:
        self._refill(now)
        return {"tokens": self.tokens, "capacity": self.capacity, "refill_per_s": self.refill_per_s}


class WindowLimit:
    """At most ``limit`` (summed cost) in any ``window_s`` seconds: a sliding-window log.

    Args:
        limit: the most that can be spent in one window.
        window_s: the window length in seconds.
    """

    def __init__(self, limit: float, window_s: float) -> None:
        if limit <= 0 or window_s <= 0:
            raise ValueError("limit and window_s must be positive")
        self.limit = float(limit)
        self.window_s = float(window_s)
        self._log: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def _prune(self, now: float) -> None:
        while self._log and self._log[0][0] + self.window_s <= now + _EPS:
            self._used -= self._log.popleft()[1]
        if not self._log:
            self._used = 0.0  # no float drift across long runs

    def wait_time(self, cost: float, now: float) -> float:
        self._prune(now)
        need = min(cost, self.limit)
        excess = self._used + need - self.limit
        if excess <= _EPS:
            return 0.0
        freed = 0.0
        for stamp, spent in self._log:
            freed += spent
            if freed + _EPS >= excess:
                return max(0.0, stamp + self.window_s - now)
        return self.window_s  # only reachable through float slack

    def take(self, cost: float, now: float) -> None:
        self._prune(now)
        self._log.append((now, float(cost)))
        self._used += cost

    def observe(
        self,
        now: float,
        *,
        remaining: float | None = None,
        limit: float | None = None,
        refill_per_s: float | None = None,
        window_s: float | None = None,
    ) -> None:
        if limit is not None and limit > 0:
            self.limit = float(limit)  # a higher tier loosens, a lower one tightens
        if window_s is not None and window_s > 0:
            self.window_s = float(window_s)
        self._prune(now)
        if remaining is not None:
            server_used = self.limit - remaining
            if server_used > self._used + _EPS:
                # Someone else (another process, an earlier run) spent from this account: count it as spent
                # now, which is conservative. A lower server count is not trusted: it misses in-flight calls.
                self.take(server_used - self._used, now)

    def snapshot(self, now: float) -> dict[str, float]:
        self._prune(now)
        return {"used": self._used, "limit": self.limit, "window_s": self.window_s}


@dataclass(frozen=True)
class RateLimitHeaders:
    """Which response headers carry an account's rate-limit numbers.

    The defaults are the IETF draft ``RateLimit-*`` fields; a connector names its vendor's headers, e.g.
    HubSpot:
    ``RateLimitHeaders(remaining="X-HubSpot-RateLimit-Remaining", limit="X-HubSpot-RateLimit-Max",
    window_ms="X-HubSpot-RateLimit-Interval-Milliseconds")``.

    Args:
        remaining: what is left in the current window.
        limit: the window's (or bucket's) size.
        window_ms: the window length in milliseconds.
        window_s: the window length in seconds.
        reset_s: seconds until the window resets; with nothing remaining, the pacer pauses that long.
        bucket: the limiter these headers describe (None: the pacer's default).
    """

    remaining: str | None = "RateLimit-Remaining"
    limit: str | None = "RateLimit-Limit"
    window_ms: str | None = None
    window_s: str | None = None
    reset_s: str | None = "RateLimit-Reset"
    bucket: str | None = None


class Pacer:
    """The rate limits of one vendor account, shared by all its streams; thread-safe.

    Args:
        buckets: named limiters, e.g. ``{"general": WindowLimit(100, 10), "search": WindowLimit(5, 1)}``.
        default_buckets: the limiters a request draws from when it names none (default: the first one).
        max_concurrent: the most requests in flight at once, or None for no cap.
        clock: monotonic seconds (injectable for tests).
        sleep: the sleep function (injectable for tests).
    """

    def __init__(
        self,
        buckets: Mapping[str, Limiter],
        *,
        default_buckets: Sequence[str] | None = None,
        max_concurrent: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not buckets:
            raise ValueError("a pacer needs at least one bucket")
        self._buckets = dict(buckets)
        self._default = tuple(default_buckets) if default_buckets else (next(iter(self._buckets)),)
        self._check_names(self._default)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._paused_until = float("-inf")
        self._slots = threading.BoundedSemaphore(max_concurrent) if max_concurrent else None
        self.waited_s = 0.0
        self.acquired = 0

    @classmethod
    def single(
        cls,
        limiter: Limiter,
        *,
        max_concurrent: int | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Pacer:
        """A pacer with one limiter named ``default``."""
        return cls({"default": limiter}, max_concurrent=max_concurrent, clock=clock, sleep=sleep)

    def acquire(
        self, cost: float = 1.0, buckets: Sequence[str] | None = None, *, stop: threading.Event | None = None
    ) -> float:
        """Block until ``cost`` can be spent from every named bucket at once, then spend it.

        Args:
            cost: request cost (1 for a plain request; a GraphQL query's estimated points).
            buckets: the limiters to draw from (default: the pacer's default buckets).
            stop: a stop event that ends the wait at once.

        Returns:
            Seconds spent waiting.

        Raises:
            Stopped: ``stop`` was set while waiting (nothing was spent).
        """
        names = self._check_names(tuple(buckets) if buckets else self._default)
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                wait = max(self._paused_until - now, *(self._buckets[n].wait_time(cost, now) for n in names))
                if wait <= _EPS:
                    for name in names:
                        self._buckets[name].take(cost, now)
                    self.acquired += 1
                    self.waited_s += waited
                    return waited
            # Sleep outside the lock, then re-check: observe() or pause() may have changed things meanwhile.
            stop_wait(self._sleep, wait, stop)
            waited += wait

    def observe(
        self,
        bucket: str | None = None,
        *,
        remaining: float | None = None,
        limit: float | None = None,
        refill_per_s: float | None = None,
        window_s: float | None = None,
        reset_s: float | None = None,
    ) -> None:
        """Feed the numbers the vendor reported (headers, or a GraphQL cost block).

        Args:
            bucket: the limiter they describe (None: the first default bucket).
            remaining: what is left now.
            limit: the bucket or window size.
            refill_per_s: the refill rate (Shopify ``restoreRate``).
            window_s: the window length.
            reset_s: seconds until the window resets; with nothing remaining, everyone pauses that long.
        """
        name = bucket or self._default[0]
        self._check_names((name,))
        with self._lock:
            self._buckets[name].observe(
                self._clock(), remaining=remaining, limit=limit, refill_per_s=refill_per_s, window_s=window_s
            )
        if remaining is not None and remaining <= 0 and reset_s is not None and reset_s > 0:
            self.pause(reset_s)

    def update_from_headers(self, headers: Mapping[str, str], spec: RateLimitHeaders) -> bool:
        """:meth:`observe` from response headers named by ``spec``.

        Returns:
            Whether any rate-limit header was present.
        """
        remaining = _header_float(headers, spec.remaining)
        limit = _header_float(headers, spec.limit)
        window_ms = _header_float(headers, spec.window_ms)
        window_s = _header_float(headers, spec.window_s)
        if window_s is None and window_ms is not None:
            window_s = window_ms / 1000.0
        reset_s = _header_float(headers, spec.reset_s)
        if remaining is None and limit is None and window_s is None:
            return False
        self.observe(spec.bucket, remaining=remaining, limit=limit, window_s=window_s, reset_s=reset_s)
        return True

    def pause(self, seconds: float) -> None:
        """Stop every stream of the account for ``seconds`` (a 429's ``Retry-After``)."""
        with self._lock:
            until = self._clock() + seconds
            if until > self._paused_until:
                self._paused_until = until
                logger.info("pacing: pausing all requests of this account for %.1f s", seconds)

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """Hold one of the ``max_concurrent`` connection slots (no-op without a cap)."""
        if self._slots is None:
            yield
            return
        with self._slots:
            yield

    def snapshot(self) -> dict[str, Any]:
        """Per-bucket numbers plus totals, for metrics."""
        with self._lock:
            now = self._clock()
            return {
                "buckets": {name: b.snapshot(now) for name, b in self._buckets.items()},
                "paused_for_s": max(0.0, self._paused_until - now),
                "waited_s": self.waited_s,
                "acquired": self.acquired,
            }

    def _check_names(self, names: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [n for n in names if n not in self._buckets]
        if unknown:
            raise ValueError(f"unknown pacer bucket(s) {unknown}; known: {sorted(self._buckets)}")
        return names


def _header_float(headers: Mapping[str, str], name: str | None) -> float | None:
    if name is None:
        return None
    value = headers.get(name)
    if value is None:
        return None
    try:
        return float(value.strip())
    except ValueError:
        return None
