"""Sufficient statistics (gbstats ``models/statistics.py``).

A :class:`SampleMeanStatistic` holds ``n``, the sum and the sum of squares of a sample; two
of them add up to the statistic of the pooled sample, so strata, arms and files combine
without going back to rows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["SampleMeanStatistic"]


@dataclass(frozen=True)
class SampleMeanStatistic:
    """Count, sum and sum of squares of a sample.

    Examples
    --------
    >>> s = SampleMeanStatistic.of([1.0, 2.0, 3.0]) + SampleMeanStatistic.of([4.0])
    >>> s.n, s.mean, round(s.variance, 6)
    (4, 2.5, 1.666667)
    """

    n: int
    sum: float
    sum_squares: float

    @classmethod
    def of(cls, values: npt.ArrayLike) -> SampleMeanStatistic:
        """Return the statistic of ``values`` (NaN values are ignored)."""
        x = np.asarray(values, dtype=float)
        x = x[~np.isnan(x)]
        return cls(n=int(x.size), sum=float(x.sum()), sum_squares=float(np.dot(x, x)))

    def __add__(self, other: SampleMeanStatistic) -> SampleMeanStatistic:
        return SampleMeanStatistic(
            n=self.n + other.n,
            sum=self.sum + other.sum,
            sum_squares=self.sum_squares + other.sum_squares,
        )

    @property
    def mean(self) -> float:
        """Sample mean (NaN when empty)."""
        return self.sum / self.n if self.n > 0 else math.nan

    @property
    def variance(self) -> float:
        """Unbiased sample variance, ``n - 1`` in the denominator (NaN when ``n < 2``)."""
        if self.n < 2:
            return math.nan
        # max(…, 0): the textbook one-pass formula can go a hair below 0 by rounding.
        return max((self.sum_squares - self.sum * self.sum / self.n) / (self.n - 1), 0.0)

    @property
    def sd(self) -> float:
        """Sample standard deviation."""
        return math.sqrt(self.variance) if self.n >= 2 else math.nan
