"""Draws customer histories from the BG/NBD and Gamma-Gamma generative stories, to test the models against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True)
class Histories:
    """Simulated customers: calibration summary (x, t_x, T) and repeat purchases in the following window."""

    frequency: NDArray[np.float64]
    recency: NDArray[np.float64]
    T: NDArray[np.float64]
    holdout: NDArray[np.float64]


def simulate_bgnbd(
    rng: np.random.Generator, n: int, r: float, alpha: float, a: float, b: float, T: ArrayLike, horizon: float = 0.0
) -> Histories:
    """BG/NBD: the first purchase at time 0; repeat purchases at Poisson rate lambda ~ Gamma(r, alpha) (rate alpha);
    after each repeat purchase the customer drops out with probability p ~ Beta(a, b). The history is observed over
    (0, T], the holdout over (T, T + horizon].
    """
    age = np.broadcast_to(np.asarray(T, dtype=np.float64), (n,)).copy()
    rate = rng.gamma(r, 1.0 / alpha, n)
    dropout = rng.beta(a, b, n)
    # The customer is gone right after their K-th repeat purchase, K ~ Geometric(p) on 1, 2, ...
    last_purchase = rng.geometric(dropout)
    end = age + horizon
    # Poisson process on (0, end]: the count, then uniform event times, sorted within each customer.
    counts = rng.poisson(rate * end)
    owner = np.repeat(np.arange(n), counts)
    times = rng.uniform(0.0, end[owner])
    order = np.lexsort((times, owner))
    owner, times = owner[order], times[order]
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    nth = np.arange(len(owner)) - first[owner]
    made = nth < last_purchase[owner]
    owner, times = owner[made], times[made]
    observed = times <= age[owner]
    frequency = np.bincount(owner[observed], minlength=n).astype(np.float64)
    recency = np.zeros(n)
    np.maximum.at(recency, owner[observed], times[observed])
    holdout = np.bincount(owner[~observed], minlength=n).astype(np.float64)
    return Histories(frequency, recency, age, holdout)


def simulate_spend(
    rng: np.random.Generator, frequency: NDArray[np.float64], p: float, q: float, gamma: float
) -> NDArray[np.float64]:
    """Gamma-Gamma: each customer's transactions are Gamma(p, rate nu), nu ~ Gamma(q, rate gamma); returns the
    mean of each customer's ``frequency`` transactions (the sum of x Gamma(p, nu) draws is Gamma(p x, nu)).
    """
    nu = rng.gamma(q, 1.0 / gamma, len(frequency))
    return rng.gamma(p * frequency, 1.0 / nu) / frequency
