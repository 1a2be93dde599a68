"""Invariants of the stratified permuted-block randomisation
(experiments.enrollment.randomisation)."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from experiments.enrollment.randomisation import Randomiser, Scheme, Unit, integer_ratios

ARM_NAMES = ("a", "b", "c", "d")

ratios_st = st.lists(st.integers(1, 4), min_size=2, max_size=4)
# Each unit: a stratum among a few (so strata get several units) and its own id.
strata_st = st.lists(st.sampled_from(["s0", "s1", "s2", "s3", "s4"]), min_size=0, max_size=120)


def _scheme(ratios: list[int], seed: int, multiple: int = 1) -> Scheme:
    return Scheme("prop-test", seed, ARM_NAMES[: len(ratios)], tuple(ratios), multiple)


def _units(strata: list[str]) -> list[Unit]:
    return [Unit(f"u{i}", f"u{i}", s) for i, s in enumerate(strata)]


@settings(max_examples=200, deadline=None)
@given(ratios=ratios_st, seed=st.integers(0, 2**63 - 1), strata=strata_st,
       multiple=st.integers(1, 3))
def test_each_stratum_is_as_balanced_as_the_ratio_allows(
    ratios: list[int], seed: int, strata: list[str], multiple: int
) -> None:
    scheme = _scheme(ratios, seed, multiple)
    assignments = Randomiser(scheme).assign_all(_units(strata))
    for stratum, n in Counter(strata).items():
        arms = Counter(a.arm for a, s in zip(assignments, strata, strict=True) if s == stratum)
        complete = n // scheme.block_size
        for arm, ratio in zip(scheme.arms, scheme.ratios, strict=True):
            # Complete blocks hold exactly multiple*ratio of each arm; the current block
            # (the remainder) adds between 0 and multiple*ratio more.
            extra = arms[arm] - complete * ratio * multiple
            assert 0 <= extra <= ratio * multiple, (stratum, arm, arms, n)


@settings(max_examples=100, deadline=None)
@given(ratios=ratios_st, seed=st.integers(0, 2**63 - 1), strata=strata_st)
def test_same_scheme_seed_and_order_give_the_same_assignment(
    ratios: list[int], seed: int, strata: list[str]
) -> None:
    first = Randomiser(_scheme(ratios, seed)).assign_all(_units(strata))
    again = Randomiser(_scheme(ratios, seed)).assign_all(_units(strata))
    assert first == again  # arms, blocks, positions and draws


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**62), strata=st.lists(st.sampled_from(["s0", "s1"]),
                                                   min_size=40, max_size=80))
def test_a_different_seed_gives_a_different_assignment(seed: int, strata: list[str]) -> None:
    # With >= 40 units in 1:1 blocks of 2, two seeds agree everywhere with probability
    # 2**-20 per comparison at most: "different" is certain for practical purposes.
    units = _units(strata)
    arms = [a.arm for a in Randomiser(_scheme([1, 1], seed)).assign_all(units)]
    other = [a.arm for a in Randomiser(_scheme([1, 1], seed + 1)).assign_all(units)]
    assert arms != other


@settings(max_examples=150, deadline=None)
@given(ratios=ratios_st, seed=st.integers(0, 2**63 - 1), strata=strata_st,
       split=st.integers(0, 120))
def test_late_enrollments_continue_the_blocks_without_changing_earlier_arms(
    ratios: list[int], seed: int, strata: list[str], split: int
) -> None:
    units = _units(strata)
    all_at_once = Randomiser(_scheme(ratios, seed)).assign_all(units)
    early = Randomiser(_scheme(ratios, seed)).assign_all(units[:split])
    # A new process that only knows what the registry stores: arms and per-stratum counts.
    allocated = {a.cluster: a.arm for a in early}
    counts = Counter(u.stratum for u in units[:split])
    late = Randomiser(_scheme(ratios, seed), allocated=allocated, counts=dict(counts))
    assert early + late.assign_all(units[split:]) == all_at_once


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**63 - 1), ratios=ratios_st,
       schools=st.lists(st.tuples(st.integers(0, 15), st.sampled_from(["REP", "REP+"])),
                        min_size=1, max_size=100))
def test_school_randomisation_gives_every_class_of_a_school_the_same_arm(
    seed: int, ratios: list[int], schools: list[tuple[int, str]]
) -> None:
    priority = {}
    units = []
    for i, (school, level) in enumerate(schools):
        stratum = priority.setdefault(school, level)  # a school's stratum is its own
        units.append(Unit(f"class{i}", f"school{school}", stratum))
    assignments = Randomiser(_scheme(ratios, seed)).assign_all(units)
    arm_of: dict[str, str] = {}
    for a in assignments:
        assert arm_of.setdefault(a.cluster, a.arm) == a.arm
    # one allocation per school, and only the school's first class carries it
    allocations = [a.allocation for a in assignments if a.allocation is not None]
    assert len(allocations) == len({u.cluster for u in units})


@given(seed=st.integers(0, 2**63 - 1), strata=strata_st)
def test_each_draw_reproduces_its_arm_from_the_log(seed: int, strata: list[str]) -> None:
    # The log alone (block, position, draw) re-derives the arm: slot floor(u * free slots).
    scheme = _scheme([2, 1], seed)
    free: dict[tuple[str, int], list[str]] = {}
    for a in Randomiser(scheme).assign_all(_units(strata)):
        assert a.allocation is not None
        slots = free.setdefault((a.allocation.stratum, a.allocation.block), scheme.block_slots())
        assert 0 <= a.allocation.draw < 1
        assert slots.pop(int(a.allocation.draw * len(slots))) == a.arm


@given(st.lists(st.integers(1, 6), min_size=2, max_size=4), st.integers(1, 5))
def test_integer_ratios_are_the_smallest_proportional_integers(
    weights: list[int], scale: int
) -> None:
    ratios = integer_ratios([w * scale for w in weights])
    assert integer_ratios([w / sum(weights) for w in weights]) == ratios
    assert all(r * weights[0] == w * ratios[0] for r, w in zip(ratios, weights, strict=True))
