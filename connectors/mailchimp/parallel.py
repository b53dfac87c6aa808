"""Several listings at once, each strictly in order: how a sync uses Mailchimp's 10 connections.

A *chain* is an iterator whose every step sends one request and returns a processed page (the pages of one
audience slice, or of one campaign's reports). Chains are independent of each other, but a chain's pages
depend on the previous one (a keyset cursor, an offset). :func:`run_chains` advances up to ``workers`` chains
in worker threads, one step in flight per chain, and hands each finished step to the caller (in the calling
thread) in completion order. A step computes its checkpoint position itself, right after its page, so the
caller can store a consistent state with every page while the other chains carry on.

The number of simultaneous requests is capped by the account's :class:`hub.http.Pacer` (``max_concurrent``),
shared by every stream and sink of the account; ``workers`` only says how many chains may be busy.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

logger = logging.getLogger(__name__)

T = TypeVar("T")

_END = object()


@dataclass
class Chain(Generic[T]):
    """One listing: ``steps`` yields a processed page per request; ``key`` names it for the caller."""

    key: Hashable
    steps: Iterator[T]


def _step(steps: Iterator[T]) -> T | object:
    return next(steps, _END)


def run_chains(chains: Iterable[Chain[T]], workers: int) -> Iterator[tuple[Hashable, T]]:
    """Advance the chains concurrently; yield ``(chain key, page)`` as steps finish.

    Args:
        chains: the listings to run (started in this order as workers free up).
        workers: how many chains may have a request in flight at once (>= 1).

    Yields:
        Each step's result with its chain's key. A chain's results come in its own order.

    Raises:
        Whatever a step raised; the other chains stop (their requests in flight finish first).
    """
    pending = iter(chains)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="mailchimp") as pool:
        running: dict[Future[T | object], Chain[T]] = {}

        def start(chain: Chain[T]) -> None:
            running[pool.submit(_step, chain.steps)] = chain

        for chain in pending:
            start(chain)
            if len(running) >= workers:
                break
        try:
            while running:
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    chain = running.pop(future)
                    result = future.result()
                    if result is _END:
                        following = next(pending, None)
                        if following is not None:
                            start(following)
                        continue
                    # The chain's next request goes out before this page is handed over (and committed).
                    start(chain)
                    yield chain.key, cast(T, result)
        finally:
            for future in running:
                future.cancel()
