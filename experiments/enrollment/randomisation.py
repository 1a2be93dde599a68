"""Randomisation: stratified permuted blocks, computed from the protocol and the enrollment order.

The platform, not a person, decides which unit gets which arm. The assignment is a pure
function of

- the **scheme**: experiment id, seed, arms and their integer allocation ratios, block size;
- the **stratum** of each unit (the values of the protocol's ``randomisation.strata``);
- the **enrollment order** within each stratum.

How a block is drawn
--------------------
Within a stratum, units are allocated in blocks of ``B = multiple * sum(ratios)`` slots;
a block holds exactly ``multiple * ratio`` slots of each arm (arms in protocol order).
Position ``p`` of block ``b`` is allocated by one uniform draw ``u`` in [0, 1) from the
block's generator: with ``k`` slots still free in the block (listed in arm order, earlier
positions removed), the slot taken is ``floor(u * k)``. The log keeps ``u``, so anyone can
re-derive the arm from the log alone.

Seed derivation (version 1, stable: changing it changes every assignment)
-------------------------------------------------------------------------
Each stratum ``s`` has its own stream::

    key = SHA-256(b"preuve/randomisation/v1\\0" + experiment_id + b"\\0" + s)
    rng = numpy.random.Generator(PCG64(SeedSequence([seed, int.from_bytes(key[:16], "big")])))

and block ``b`` uses draws ``b*B .. b*B + B - 1`` of that stream (one 64-bit output per
uniform draw, so ``PCG64.advance(b*B)`` jumps straight to the block). Strata are therefore
independent of each other, of how many strata exist and of the order they first appear
in; and a late enrollment simply continues its stratum's current block (the earlier
positions of the block are re-derived, never drawn differently).

Cluster randomisation
---------------------
A :class:`Unit` is a member (the enrolled class) of a cluster (the unit of randomisation:
the class itself, the school, or the learner for individual randomisation). Only the first
member of a cluster triggers an allocation; the others receive the cluster's arm, so all
classes of a school randomised by school share one arm.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import cached_property

import numpy as np

__all__ = [
    "Allocation",
    "Assignment",
    "Randomiser",
    "Scheme",
    "Unit",
    "block_generator",
    "integer_ratios",
    "stratum_key",
]

_DOMAIN = b"preuve/randomisation/v1\0"
# Allocations given as fractions (0.5, 0.333...) are turned into integer ratios; a
# denominator above this bound would make blocks absurdly long, so it is refused.
_MAX_DENOMINATOR = 100


def integer_ratios(allocations: Sequence[float | int | Fraction]) -> tuple[int, ...]:
    """Smallest integer ratios proportional to ``allocations``.

    Parameters
    ----------
    allocations
        Positive weights, integers (``1, 2``) or fractions (``0.5, 0.25``).

    Returns
    -------
    tuple[int, ...]
        Integers with no common divisor, in the same order.

    Raises
    ------
    ValueError
        A weight is not positive, or is not a simple fraction.

    Examples
    --------
    >>> integer_ratios([2, 2])
    (1, 1)
    >>> integer_ratios([2 / 3, 1 / 3])
    (2, 1)
    """
    if not allocations:
        raise ValueError("allocations: at least one arm is needed")
    fractions = []
    for index, weight in enumerate(allocations):
        value = Fraction(weight).limit_denominator(_MAX_DENOMINATOR)
        if value <= 0 or not math.isclose(float(value), float(weight), rel_tol=1e-9):
            raise ValueError(
                f"allocations[{index}]: expecting a positive simple ratio, got {weight!r}"
            )
        fractions.append(value)
    common = math.lcm(*(f.denominator for f in fractions))
    integers = [int(f * common) for f in fractions]
    divisor = math.gcd(*integers)
    return tuple(i // divisor for i in integers)


def stratum_key(strata: Sequence[str], attributes: Mapping[str, str]) -> str:
    """Canonical text of a unit's stratum: a JSON object of the strata values, in order.

    Parameters
    ----------
    strata
        Attribute names of ``randomisation.strata``, in protocol order.
    attributes
        The unit's attributes; each name of ``strata`` must be present.

    Returns
    -------
    str
        ``{}`` when the protocol has no strata.

    Examples
    --------
    >>> stratum_key(["education_priority", "level"], {"level": "CP", "education_priority": "REP"})
    '{"education_priority":"REP","level":"CP"}'
    """
    return json.dumps(
        {name: attributes[name] for name in strata}, ensure_ascii=False, separators=(",", ":")
    )


@dataclass(frozen=True)
class Scheme:
    """What the assignment depends on, besides the strata and the enrollment order.

    Examples
    --------
    >>> Scheme("fluence-cp", 20270901, ("lectio", "usual"), (2, 1)).block_size
    3
    """

    experiment_id: str
    seed: int
    arms: tuple[str, ...]
    ratios: tuple[int, ...]
    block_multiple: int = 1

    def __post_init__(self) -> None:
        if len(self.arms) != len(self.ratios) or len(self.arms) < 2:
            raise ValueError("arms and ratios: expecting at least two arms, one ratio each")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms: names must be unique, got {self.arms}")
        if any(r < 1 for r in self.ratios):
            raise ValueError(f"ratios: expecting positive integers, got {self.ratios}")
        if self.block_multiple < 1:
            raise ValueError(f"block_multiple: expecting >= 1, got {self.block_multiple}")
        if self.seed < 0:
            raise ValueError(f"seed: expecting a non-negative integer, got {self.seed}")

    @cached_property
    def block_size(self) -> int:
        """Slots per block: ``block_multiple * sum(ratios)``."""
        return self.block_multiple * sum(self.ratios)

    @cached_property
    def _slots(self) -> tuple[str, ...]:
        return tuple(
            arm
            for arm, ratio in zip(self.arms, self.ratios, strict=True)
            for _ in range(ratio * self.block_multiple)
        )

    def block_slots(self) -> list[str]:
        """The block's slots before drawing: each arm repeated ``multiple * ratio`` times."""
        return list(self._slots)


def block_generator(scheme: Scheme, stratum: str, block: int) -> np.random.Generator:
    """The stratum's PCG64 generator, positioned at the first draw of ``block``.

    Examples
    --------
    >>> s = Scheme("demo", 1, ("a", "b"), (1, 1))
    >>> stream = block_generator(s, "{}", 0).random(4)
    >>> bool((block_generator(s, "{}", 1).random(2) == stream[2:]).all())
    True
    """
    digest = hashlib.sha256(
        _DOMAIN + scheme.experiment_id.encode() + b"\0" + stratum.encode()
    ).digest()
    entropy = [scheme.seed, int.from_bytes(digest[:16], "big")]
    bits = np.random.PCG64(np.random.SeedSequence(entropy))
    if block:
        bits.advance(block * scheme.block_size)
    return np.random.Generator(bits)


def _draw_block(scheme: Scheme, rng: np.random.Generator) -> list[tuple[float, str]]:
    free = scheme.block_slots()
    drawn: list[tuple[float, str]] = []
    for u in rng.random(len(free)).tolist():
        # u < 1, so int(u * k) < k; the min only guards against rounding.
        drawn.append((u, free.pop(min(int(u * len(free)), len(free) - 1))))
    return drawn


@dataclass(frozen=True)
class Unit:
    """One enrolled member (a class, or a learner) and its cluster and stratum.

    ``cluster`` is the unit of randomisation: the member itself for class or individual
    randomisation, its school for school randomisation.
    """

    member: str
    cluster: str
    stratum: str


@dataclass(frozen=True)
class Allocation:
    """One draw of the allocation log: position ``position`` of block ``block`` of
    ``stratum`` went to ``arm`` because the uniform draw was ``draw``."""

    cluster: str
    stratum: str
    block: int
    position: int
    draw: float
    arm: str


@dataclass(frozen=True)
class Assignment:
    """The arm of one member; ``allocation`` is None when its cluster already had an arm."""

    member: str
    cluster: str
    arm: str
    allocation: Allocation | None


@dataclass
class Randomiser:
    """Allocates units in enrollment order, continuing from earlier enrollments.

    Parameters
    ----------
    scheme
        The experiment's scheme.
    allocated
        Clusters already allocated, with their arm (from the registry).
    counts
        Allocations already made in each stratum (from the allocation log).

    Examples
    --------
    >>> r = Randomiser(Scheme("demo", 7, ("t", "c"), (1, 1)))
    >>> arms = [r.assign(Unit(f"c{i}", f"c{i}", "{}")).arm for i in range(4)]
    >>> sorted(arms)
    ['c', 'c', 't', 't']
    """

    scheme: Scheme
    allocated: dict[str, str] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    _blocks: dict[str, tuple[int, list[tuple[float, str]]]] = field(
        default_factory=dict, repr=False
    )
    _streams: dict[str, tuple[np.random.Generator, int]] = field(
        default_factory=dict, repr=False
    )

    def next_slot(self, stratum: str) -> tuple[int, int, float, str]:
        """``(block, position, draw, arm)`` that the next allocation in ``stratum`` gets."""
        rank = self.counts.get(stratum, 0)
        block, position = divmod(rank, self.scheme.block_size)
        current = self._blocks.get(stratum)
        if current is None or current[0] != block:
            rng, next_block = self._streams.get(stratum, (None, -1))
            if rng is None or next_block != block:
                rng = block_generator(self.scheme, stratum, block)
            current = (block, _draw_block(self.scheme, rng))
            self._blocks[stratum] = current  # only the current block of each stratum is kept
            self._streams[stratum] = (rng, block + 1)
        draw, arm = current[1][position]
        return block, position, draw, arm

    def assign(self, unit: Unit) -> Assignment:
        """The arm of ``unit``: its cluster's arm, or a new allocation in its stratum."""
        known = self.allocated.get(unit.cluster)
        if known is not None:
            return Assignment(unit.member, unit.cluster, known, None)
        block, position, draw, arm = self.next_slot(unit.stratum)
        self.counts[unit.stratum] = self.counts.get(unit.stratum, 0) + 1
        self.allocated[unit.cluster] = arm
        allocation = Allocation(unit.cluster, unit.stratum, block, position, draw, arm)
        return Assignment(unit.member, unit.cluster, arm, allocation)

    def assign_all(self, units: Iterable[Unit]) -> list[Assignment]:
        """:meth:`assign` each unit, in order."""
        return [self.assign(unit) for unit in units]
