"""Clustered arrival times: a Hawkes process with an exponential kernel, sampled exactly.

Each arrival raises the intensity, which decays back to the baseline: trades come in bursts.
"""

from __future__ import annotations

import math
from random import Random

__all__ = ["Hawkes"]


class Hawkes:
    """Self-exciting arrivals with intensity ``mu + sum(alpha * exp(-beta * (t - t_i)))``.

    ``branching`` = alpha / beta is the mean number of arrivals each arrival triggers, so the
    long-run rate is ``rate`` whatever the clustering. Sampling follows Dassios & Zhao (2013):
    the next gap is the sooner of a baseline arrival and an excited one, both drawn exactly,
    so no thinning loop and no discretisation.
    """

    __slots__ = ("_alpha", "_beta", "_excess", "_mu", "_rng")

    def __init__(self, rng: Random, rate: float, branching: float = 0.6, beta: float = 1.5) -> None:
        if not (rate > 0 and 0 <= branching < 1 and beta > 0):
            raise ValueError("Hawkes needs rate > 0, 0 <= branching < 1 and beta > 0")
        self._rng = rng
        self._mu = rate * (1.0 - branching)
        self._beta = beta
        self._alpha = branching * beta
        self._excess = 0.0  # intensity above the baseline right after the last arrival

    @property
    def intensity(self) -> float:
        """Intensity right after the last arrival (per second)."""
        return self._mu + self._excess

    def next_gap(self, scale: float = 1.0) -> float:
        """Seconds to the next arrival; ``scale`` multiplies the baseline (activity regime)."""
        rng = self._rng
        beta = self._beta
        excess = self._excess
        gap = -math.log(1.0 - rng.random()) / (self._mu * scale)
        if excess > 1e-12:
            d = 1.0 + beta * math.log(1.0 - rng.random()) / excess
            if d > 0.0:
                gap = min(gap, -math.log(d) / beta)
        self._excess = excess * math.exp(-beta * gap) + self._alpha
        return gap
