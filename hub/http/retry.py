"""The one retry policy every connector uses, built on tenacity.

Only :class:`~hub.errors.TransientError` is retried: the client turns 429, 5xx, timeouts and other transport
errors into it before the policy sees them, so after the last attempt the caller gets a TransientError (with
``retry_after`` when the server gave one), never a raw httpx exception.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import RetryCallState, Retrying, retry_if_exception_type

from hub.errors import TransientError
from hub.redact import redact
from hub.stop import wait

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Attempts a request gets in all when the server keeps naming its wait (429 with Retry-After), as a multiple of
# ``max_attempts``; the total wait caps it too.
RATE_LIMITED_FACTOR = 6


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry a transient failure.

    Args:
        max_attempts: attempts in all, the first one included (1 disables retries). Rate-limit refusals whose
            wait the server named (a 429's ``Retry-After``) do not count against it, up to
            ``RATE_LIMITED_FACTOR`` times as many attempts; ``max_total_wait`` still caps the time.
        initial_wait: the first backoff wait in seconds; it doubles on every retry.
        max_wait: cap on one backoff wait.
        max_retry_after: a ``Retry-After`` longer than this is not slept inside a request: the TransientError
            is raised at once with ``retry_after`` set, so the scheduler can come back later (a daily cap).
        max_total_wait: cap on the time slept across all retries of one request.
        sleep: the sleep function (tests pass one that records the waits).
        uniform: the random source for jitter, ``uniform(a, b)``.
    """

    max_attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 60.0
    max_retry_after: float = 300.0
    max_total_wait: float = 600.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def backoff(self, retry_number: int) -> float:
        """The jittered wait before retry ``retry_number`` (1-based) when the server named none.

        "Equal jitter": half of the exponential step is fixed, half random, so waits grow reliably while
        parallel streams that failed together do not retry in lockstep.
        """
        step = min(self.max_wait, self.initial_wait * 2.0 ** (retry_number - 1))
        return step / 2 + self.uniform(0.0, step / 2)

    def call(
        self,
        fn: Callable[[], T],
        *,
        describe: str | Callable[[], str] = "request",
        on_retry: Callable[[], None] | None = None,
        stop: threading.Event | None = None,
    ) -> T:
        """Call ``fn`` until it returns, raises a non-transient error, or the policy gives up.

        Args:
            fn: one attempt; raises TransientError for what is worth retrying.
            describe: what is being tried, for the retry log line (already sanitized); a callable is asked
                at each retry.
            on_retry: called before each retry sleep (the client counts retries with it).
            stop: a stop event that ends a retry wait at once (:class:`~hub.errors.Stopped`).

        Returns:
            What ``fn`` returned.

        Raises:
            TransientError: the last attempt's error, once attempts or total wait run out.
            Stopped: ``stop`` was set during a retry wait.
        """
        retrying = Retrying(
            sleep=lambda seconds: wait(self.sleep, seconds, stop),
            stop=self._stop,
            wait=self._wait,
            retry=retry_if_exception_type(TransientError),
            before_sleep=lambda state: self._before_sleep(state, describe, on_retry),
            reraise=True,
        )
        return retrying(fn)

    def _stop(self, state: RetryCallState) -> bool:
        after = _retry_after(state)
        if after is not None and after > self.max_retry_after:
            return True
        # A wait the server named (a 429's Retry-After) is pacing, not a failure: it does not use up the
        # attempts, so a rate-limit storm is waited out as long as the total wait allows.
        counted = getattr(state, "_hub_counted", None)
        if counted is None or counted[0] != state.attempt_number:
            failures = (counted[1] if counted else 0) + (0 if _paced(state) else 1)
            state._hub_counted = (state.attempt_number, failures)  # type: ignore[attr-defined]
        failures = state._hub_counted[1]  # type: ignore[attr-defined]
        if failures >= self.max_attempts or state.attempt_number >= self.max_attempts * RATE_LIMITED_FACTOR:
            return True
        return state.idle_for + self._wait(state) > self.max_total_wait

    def _wait(self, state: RetryCallState) -> float:
        after = _retry_after(state)
        if after is not None:
            return min(after, self.max_retry_after)
        # tenacity asks for the wait more than once per retry (stop, then wait): cache it so jitter is stable.
        cached = getattr(state, "_hub_wait", None)
        if cached is not None and cached[0] == state.attempt_number:
            return float(cached[1])
        wait = self.backoff(state.attempt_number)
        state._hub_wait = (state.attempt_number, wait)  # type: ignore[attr-defined]
        return wait

    def _before_sleep(
        self, state: RetryCallState, describe: str | Callable[[], str], on_retry: Callable[[], None] | None
    ) -> None:
        if on_retry is not None:
            on_retry()
        exc = state.outcome.exception() if state.outcome is not None else None
        wait = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "retrying %s in %.1f s (attempt %d of %d failed: %s)",
            describe() if callable(describe) else describe,
            wait,
            state.attempt_number,
            self.max_attempts,
            redact(str(exc)),
        )


NO_RETRY = RetryPolicy(max_attempts=1)
"""For requests that must not be repeated (non-idempotent writes)."""


def _paced(state: RetryCallState) -> bool:
    """The last attempt was refused for a rate limit with a named wait."""
    exc = state.outcome.exception() if state.outcome is not None and state.outcome.failed else None
    return isinstance(exc, TransientError) and exc.rate_limited and exc.retry_after is not None


def _retry_after(state: RetryCallState) -> float | None:
    if state.outcome is None or not state.outcome.failed:
        return None
    exc = state.outcome.exception()
    return exc.retry_after if isinstance(exc, TransientError) else None
