"""Stop requests that reach the waits of a run, so SIGTERM ends a sync within seconds.

A sync checks its stop event between pages. The waits inside a page (pacing for a rate limit, a retry's
backoff or ``Retry-After``, a bulk job's polling) can last far longer than a stop may take, so they wait on the
event too and raise :class:`~hub.errors.Stopped` when it is set: the page in flight is given up, nothing of it
is committed, and the next run resumes from the last committed page.

The CLI and the daemon open a :func:`stop_scope` around building and running a source. An HTTP client joins
the scope active where it is built (so its worker threads stop too); other waits call :func:`sleep`, which
reads the scope where it runs.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from types import FrameType
from typing import Any

from hub.errors import Stopped

logger = logging.getLogger(__name__)

# A stop must end a run within 10 s. Waits end at once; what cannot be interrupted cooperatively (a request in
# flight up to its read timeout) is interrupted this long after the signal.
STOP_GRACE_S = 7.0

_CURRENT: ContextVar[threading.Event | None] = ContextVar("hub_stop", default=None)

Sleep = Callable[[float], None]


@contextmanager
def stop_scope(event: threading.Event | None) -> Iterator[None]:
    """Make ``event`` the stop event of every wait in this block (and of the clients built in it)."""
    token = _CURRENT.set(event)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current() -> threading.Event | None:
    """The stop event of the scope this code runs in, or None."""
    return _CURRENT.get()


def sleep(seconds: float) -> None:
    """``time.sleep`` that raises :class:`~hub.errors.Stopped` as soon as the scope's stop event is set."""
    wait(time.sleep, seconds, current())


def wait(sleep_fn: Sleep, seconds: float, event: threading.Event | None) -> None:
    """Sleep ``seconds`` with ``sleep_fn``, ending early with :class:`~hub.errors.Stopped` when ``event`` is set.

    The real ``time.sleep`` is replaced by a wait on the event (it wakes at once); an injected sleep (tests
    pass fakes that record waits) is called as is and the event checked after it.
    """
    if event is None:
        sleep_fn(seconds)
        return
    if event.is_set():
        raise Stopped("stopped while waiting")
    if sleep_fn is time.sleep:
        if event.wait(max(0.0, seconds)):
            raise Stopped("stopped while waiting")
        return
    sleep_fn(seconds)
    if event.is_set():
        raise Stopped("stopped while waiting")


@contextmanager
def stop_on_signals(grace: float = STOP_GRACE_S, *, restore: bool = True) -> Iterator[threading.Event]:
    """SIGTERM and SIGINT set the yielded stop event (for a command run in the main thread).

    The run then ends after its page in flight, or at once when it waits. If it is still going ``grace``
    seconds later (a request hanging until its timeout), or at a second signal, :class:`~hub.errors.Stopped`
    is raised in the main thread wherever it is: a kill at any instant loses nothing, and this way the run row
    is still closed. Outside the main thread (signals cannot be handled there) only the event is given.

    Args:
        grace: seconds a stop may take before the main thread is interrupted.
        restore: put the previous handlers back after the block. A command whose process ends with the block
            passes False: the signals are then ignored, so one arriving after the work is done lets the process
            finish and exit 0 (moments later) instead of dying by it.
    """
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    timers: list[threading.Timer] = []

    def handler(signum: int, _frame: FrameType | None) -> None:
        if event.is_set():
            raise Stopped(f"stopped ({signal.Signals(signum).name} again, or still running {grace:g} s after it)")
        event.set()
        logger.info("%s: stopping after the page in flight (it is committed first)", signal.Signals(signum).name)
        timer = threading.Timer(grace, os.kill, args=(os.getpid(), signum))
        timer.daemon = True
        timer.start()
        timers.append(timer)

    previous: dict[int, Any] = {}
    for which in (signal.SIGTERM, signal.SIGINT):
        previous[which] = signal.signal(which, handler)
    try:
        yield event
    finally:
        for timer in timers:
            timer.cancel()
        for signum, old in previous.items():
            signal.signal(signum, old if restore else signal.SIG_IGN)
