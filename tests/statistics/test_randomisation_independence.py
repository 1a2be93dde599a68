"""Over 1,000 seeds, the assignment does not depend on unit attributes.

Population: 8 schools (the strata) of 6 classes, allocation 2:1 (lectio:usual), so each
school holds two complete blocks of 3 and every seed puts exactly 32 classes in lectio and
16 in usual. Classes enroll biggest first, and REP classes first (1 to 5 of them),
inside each school: the worst case for a scheme that would favour early positions. Under
a correct randomisation each class is in lectio with probability 2/3 whatever its size,
REP status or position, so the difference of means between arms has expectation exactly
0 across seeds.

Each check is a test at level 0.001 on a fixed set of seeds (0..999): deterministic, and a
failure means a real bias (or a 1-in-1000 coincidence that, with fixed seeds, is either
there forever or never; it is not there).
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from experiments.enrollment.randomisation import Randomiser, Scheme, Unit

SEEDS = range(1000)
ALPHA = 0.001
N_SCHOOLS, PER_SCHOOL = 8, 6

pytestmark = pytest.mark.statistics


def _population() -> tuple[list[Unit], np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2027)  # only to make the attributes; fixed
    units, pupils, rep, position = [], [], [], []
    for s in range(N_SCHOOLS):
        sizes = sorted(rng.integers(14, 31, PER_SCHOOL), reverse=True)  # biggest enroll first
        n_rep = int(rng.integers(1, PER_SCHOOL))  # the first n_rep classes are REP
        for p, size in enumerate(sizes):
            units.append(Unit(f"c{s}-{p}", f"c{s}-{p}", f'{{"school_uai":"s{s}"}}'))
            pupils.append(size)
            rep.append(1 if p < n_rep else 0)  # REP classes enroll first too
            position.append(p)
    return units, np.array(pupils, float), np.array(rep, float), np.array(position)


@pytest.fixture(scope="module")
def treated() -> np.ndarray:
    """treated[seed, unit] = 1 when the unit is in lectio under that seed."""
    units, *_ = _population()
    out = np.zeros((len(SEEDS), len(units)))
    for row, seed in enumerate(SEEDS):
        scheme = Scheme("fluence-cp-2027", seed, ("lectio", "usual"), (2, 1))
        arms = Randomiser(scheme).assign_all(units)
        out[row] = [a.arm == "lectio" for a in arms]
    assert (out.sum(axis=1) == 32).all()  # complete blocks: 32 lectio, 16 usual, every seed
    return out


def _difference_of_means(treated: np.ndarray, x: np.ndarray) -> np.ndarray:
    return (treated @ x) / treated.sum(axis=1) - ((1 - treated) @ x) / (1 - treated).sum(axis=1)


def test_no_arm_systematically_gets_the_bigger_classes(treated: np.ndarray) -> None:
    _, pupils, _, _ = _population()
    d = _difference_of_means(treated, pupils)
    result = stats.ttest_1samp(d, 0.0)
    assert result.pvalue > ALPHA, (d.mean(), result)
    assert abs(d.mean()) < 0.15  # pupils; the SD of d is ~1.5, its mean's SE ~0.05


def test_no_arm_systematically_gets_the_rep_classes(treated: np.ndarray) -> None:
    _, _, rep, _ = _population()
    d = _difference_of_means(treated, rep)
    result = stats.ttest_1samp(d, 0.0)
    assert result.pvalue > ALPHA, (d.mean(), result)


def test_every_enrollment_position_is_treated_two_thirds_of_the_time(treated: np.ndarray) -> None:
    _, _, _, position = _population()
    lectio = np.array([treated[:, position == p].sum() for p in range(PER_SCHOOL)])
    total = len(SEEDS) * N_SCHOOLS
    table = np.vstack([lectio, total - lectio])
    chi2, p_value, dof, _ = stats.chi2_contingency(table)
    assert dof == PER_SCHOOL - 1
    assert p_value > ALPHA, (lectio / total, chi2)


def test_strata_draw_independent_sequences(treated: np.ndarray) -> None:
    # Agreement between the first block of two schools is what independence predicts:
    # P(same arm at a position) = (2/3)^2 + (1/3)^2 = 5/9.
    same = (treated[:, 0:3] == treated[:, 6:9]).mean()
    se = np.sqrt(5 / 9 * 4 / 9 / (3 * len(SEEDS)))
    assert abs(same - 5 / 9) < 3.29 * se, same


def test_the_checks_catch_a_small_bias(treated: np.ndarray) -> None:
    # Power check, so that the tests above cannot pass vacuously: in 30% of the blocks
    # whose first (biggest, REP) class drew usual, i.e. about one block in ten, swap it
    # with a lectio class of the block; each statistic must then reject at the same level.
    _, pupils, rep, position = _population()
    biased = treated.copy()
    rng = np.random.default_rng(7)
    for block_start in np.flatnonzero(position % 3 == 0):
        block = slice(block_start, block_start + 3)
        for row in np.flatnonzero(rng.random(len(SEEDS)) < 0.30):
            if biased[row, block_start] == 0:
                first_lectio = block_start + int(np.argmax(biased[row, block]))
                biased[row, [block_start, first_lectio]] = biased[row, [first_lectio, block_start]]
    assert stats.ttest_1samp(_difference_of_means(biased, pupils), 0.0).pvalue < ALPHA
    assert stats.ttest_1samp(_difference_of_means(biased, rep), 0.0).pvalue < ALPHA
    lectio = np.array([biased[:, position == p].sum() for p in range(PER_SCHOOL)])
    total = len(SEEDS) * N_SCHOOLS
    assert stats.chi2_contingency(np.vstack([lectio, total - lectio]))[1] < ALPHA
