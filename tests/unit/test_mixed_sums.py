"""The mixed model's sufficient statistics (``analysis.mixed.GroupSums``) add up: the sums of
two disjoint sets of schools give the same fit as the sums of all rows at once."""

from __future__ import annotations

import numpy as np

from analysis.mixed import fit_random_intercepts, group_sums


def test_sums_of_two_chunks_of_schools_give_the_same_fit() -> None:
    rng = np.random.default_rng(8)
    school_of_class = np.repeat(np.arange(12), 3)
    klass = np.repeat(np.arange(36), rng.integers(8, 15, 36))
    x = np.column_stack([np.ones(klass.size), (klass % 2).astype(float),
                         rng.normal(size=klass.size)])
    y = (0.3 * x[:, 1] + 0.5 * x[:, 2] + rng.normal(0, 0.5, 12)[school_of_class][klass]
         + rng.normal(0, 0.4, 36)[klass] + rng.normal(size=klass.size))
    whole = group_sums(y, x, klass, 36, school_of_class)
    first = klass < 18  # schools 0-5 | 6-11
    part_a = group_sums(y[first], x[first], klass[first], 18, school_of_class[:18])
    part_b = group_sums(y[~first], x[~first], klass[~first] - 18, 18,
                        school_of_class[18:] - 6)
    added = part_a + part_b
    np.testing.assert_allclose(added.cross, whole.cross, rtol=1e-12)
    np.testing.assert_array_equal(added.sums, whole.sums)
    a, b = fit_random_intercepts(added), fit_random_intercepts(whole)
    np.testing.assert_allclose(a.params, b.params, rtol=1e-9)
    np.testing.assert_allclose(a.vcov, b.vcov, rtol=1e-8)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-8)
