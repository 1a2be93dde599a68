"""Seeded coverage of the ``mixed`` model (smaller version of
``benchmarks/simulation_coverage_mixed.py``, whose 500-trial figures are in
``benchmarks/README.md``).

200 trials per design, true effect 0.25 SD. Bar (as ``test_simulation_study.py``): the 95 %
intervals cover in [92 %, 98 %] (binomial sd 1.5 points at 200 trials) and at most 8 % of
trials reject at 5 % under no effect. Teeth: the same trials analysed with the class
intercept ignored (OLS, iid errors) must fail the bar; with ~20 pupils per class and a
class variance of 0.15 out of 1 the design effect is about 4, the iid intervals about
half as wide as they should be.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytestmark = [pytest.mark.statistics, pytest.mark.slow]

TRIALS = 200
SEED = 1


def _script() -> ModuleType:
    path = Path(__file__).parents[2] / "benchmarks" / "simulation_coverage_mixed.py"
    spec = importlib.util.spec_from_file_location("simulation_coverage_mixed", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("design", ["paired", "small-unbalanced", "pupil-randomised"])
def test_mixed_intervals_cover_and_control_false_positives(design: str) -> None:
    result = _script().mixed_coverage(design, TRIALS, SEED)
    assert result.not_estimable == 0
    assert 0.92 <= result.coverage <= 0.98, f"{design}: coverage {result.coverage:.3f}"
    assert result.rejection_under_null <= 0.08, (
        f"{design}: false-positive rate {result.rejection_under_null:.3f}")


def test_ignoring_the_classes_fails_the_same_bar() -> None:
    result = _script().mixed_coverage("paired", TRIALS, SEED, vcov="iid")
    assert result.coverage < 0.92, f"iid coverage {result.coverage:.3f} should fail the bar"
    assert result.rejection_under_null > 0.08
