"""Simulated cluster-randomised trials written as the offline analysis files.

For tests, demos and the benchmark: classes nested in schools (the randomisation strata,
as in the core example protocol), arms assigned within each school, a baseline and an
endline score with a class-level variance share ``icc``, some missing scores, and weekly
usage for learners of the treatment arms. Vectorised, so a million pupils take seconds.

:func:`simulate_design` draws the small trials of the four designs the estimators are
checked on (against R in ``tests/statistics/test_cr2_vs_r.py``, for coverage in
``benchmarks/simulation_coverage.py``): pairs of classes in schools, small unbalanced
strata, large strata, and pupils randomised within schools.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, get_args

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = [
    "DESIGNS",
    "DesignName",
    "DesignTrial",
    "SimulatedFiles",
    "simulate_design",
    "simulate_trial",
    "write_design_files",
]

DesignName = Literal["paired", "small-unbalanced", "large-strata", "pupil-randomised"]
"""The four designs of the reference and coverage studies (see :func:`simulate_design`)."""

DESIGNS: Final[tuple[DesignName, ...]] = get_args(DesignName)


@dataclass(frozen=True)
class SimulatedFiles:
    """Paths of the files written, and the true effect used."""

    units: Path
    outcomes: Path
    usage: Path | None
    effect: float
    n_learners: int
    n_units: int


def simulate_trial(
    directory: Path,
    *,
    n_units: int = 40,
    pupils_per_unit: int = 20,
    arms: tuple[str, ...] = ("lectio", "usual"),
    effect: float = 0.2,
    icc: float = 0.2,
    classes_per_school: int = 2,
    baseline_correlation: float = 0.6,
    missing_endline: float = 0.05,
    missing_baseline: float = 0.03,
    usage_weeks: int = 4,
    measure: str = "fluence",
    seed: int = 20270901,
) -> SimulatedFiles:
    """Write ``units.csv``, ``outcomes.csv`` (and ``usage.csv``) of a simulated trial.

    Scores are on a standardised scale (total variance 1) times 10 plus 50. Every treatment
    arm has the same true ``effect`` in SD units; the last arm is the control. Learners of
    treatment arms use the resource about 300 minutes in total; control learners do not.
    """
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    n_arms = len(arms)
    school = np.arange(n_units) // classes_per_school
    arm = np.empty(n_units, dtype=np.int64)
    for start in range(0, n_units, classes_per_school):  # randomise within school
        stop = min(start + classes_per_school, n_units)
        arm[start:stop] = rng.permutation(np.arange(stop - start) % n_arms)
    control = n_arms - 1
    n = n_units * pupils_per_unit
    unit = np.repeat(np.arange(n_units), pupils_per_unit)
    class_effect = rng.normal(0.0, np.sqrt(icc), n_units)[unit]
    pupil = rng.normal(0.0, np.sqrt(1 - icc), n)
    ability = class_effect + pupil
    rho = baseline_correlation
    baseline = rho * ability + np.sqrt(1 - rho**2) * rng.normal(0.0, 1.0, n)
    treated = arm[unit] != control
    endline = ability + effect * treated
    base_score = np.round(50 + 10 * baseline, 2)
    end_score = np.round(50 + 10 * endline, 2)
    base_text = base_score.astype(str).astype(object)
    end_text = end_score.astype(str).astype(object)
    base_text[rng.random(n) < missing_baseline] = ""
    end_text[rng.random(n) < missing_endline] = ""
    priority = np.where(rng.random(n_units) < 0.5, "REP", "REP+")
    unit_ids = np.char.add("C", np.arange(n_units).astype(str))
    learner_ids = np.char.add("L", np.arange(n).astype(str))
    pacsv.write_csv(pa.table({
        "unit_id": unit_ids,
        "arm": np.asarray(arms)[arm],
        "school_uai": np.char.add("0750", np.char.zfill(school.astype(str), 6)),
        "education_priority": priority,
    }), directory / "units.csv")
    pacsv.write_csv(pa.table({
        "learner_id": np.concatenate([learner_ids, learner_ids]),
        "unit_id": np.concatenate([unit_ids[unit], unit_ids[unit]]),
        "measure": np.full(2 * n, measure),
        "wave": np.repeat(np.array(["baseline", "endline"]), n),
        "score": pa.array(np.concatenate([base_text, end_text]).tolist(), type=pa.string()),
    }), directory / "outcomes.csv")
    usage_path = None
    if usage_weeks > 0:
        users = np.flatnonzero(treated)
        minutes = rng.gamma(4.0, 300.0 / 4.0 / usage_weeks, (users.size, usage_weeks))
        usage_path = directory / "usage.csv"
        pacsv.write_csv(pa.table({
            "learner_id": np.repeat(learner_ids[users], usage_weeks),
            "unit_id": np.repeat(unit_ids[unit[users]], usage_weeks),
            # ISO weeks from the rentrée 2027 (2027-W36): the usage file's format.
            "week": np.tile([f"2027-W{36 + w:02d}" if 36 + w <= 52 else f"2028-W{w - 16:02d}"
                             for w in range(usage_weeks)], users.size),
            "active_minutes": np.round(minutes.ravel(), 1),
        }), usage_path)
    return SimulatedFiles(directory / "units.csv", directory / "outcomes.csv", usage_path,
                          effect * 10.0, n, n_units)


@dataclass(frozen=True)
class DesignTrial:
    """One simulated trial of a design, one entry per pupil (all arrays of length ``n``).

    ``arm`` is 0 for the treatment and 1 for the control (``ARMS`` order of the plan:
    ``("resource", "usual")``); ``unit`` is the unit of randomisation (the class, or the
    pupil when pupils are randomised), ``school`` the randomisation stratum; ``priority``
    a unit attribute (0/1) for subgroups; ``complied`` whether the pupil reached the
    compliance threshold (treated pupils mostly, some control pupils too); ``baseline`` is
    NaN where missing.
    """

    design: DesignName
    unit_level: Literal["class", "learner"]
    unit: npt.NDArray[np.intp]
    school: npt.NDArray[np.intp]
    arm: npt.NDArray[np.int8]
    priority: npt.NDArray[np.int8]
    baseline: npt.NDArray[np.float64]
    endline: npt.NDArray[np.float64]
    complied: npt.NDArray[np.bool_]

    @property
    def n(self) -> int:
        """Number of pupils."""
        return int(self.unit.size)


def _classes(design: DesignName, rng: np.random.Generator
             ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.int8], npt.NDArray[np.intp]]:
    """``(school, arm, size)`` of each class of a clustered design."""
    if design == "paired":  # 20 schools of 2 classes, one per arm
        per_school = np.full(20, 2)
    elif design == "small-unbalanced":  # 14 schools of 2 to 5 classes
        per_school = np.array([3, 2, 5, 4, 3, 2, 5, 3, 4, 2, 3, 5, 2, 3])
    else:  # large strata: 4 schools of 15 classes
        per_school = np.full(4, 15)
    school = np.repeat(np.arange(per_school.size), per_school).astype(np.intp)
    # Within each school, arms alternate from a random start: odd strata are unbalanced.
    arm = np.concatenate([rng.permutation(np.arange(k) % 2) for k in per_school])
    size = rng.integers(12, 29, school.size) if design != "paired" else np.full(school.size, 20)
    return school, arm.astype(np.int8), size.astype(np.intp)


def simulate_design(design: DesignName, rng: np.random.Generator, *, effect: float = 0.25,
                    icc: float = 0.2, missing_baseline: float = 0.03) -> DesignTrial:
    """Draw one trial of ``design`` (scores in SD units; true ITT effect ``effect``).

    Designs: ``paired``, 20 schools of 2 classes of 20 pupils, one class per arm;
    ``small-unbalanced``, 14 schools of 2 to 5 classes (arms 2:1, 3:2 in odd schools) of
    12 to 28 pupils; ``large-strata``, 4 schools of 15 classes of 12 to 28 pupils;
    ``pupil-randomised``, 300 pupils in 10 schools, randomised individually within
    school (the pupil is the unit). A class-level share ``icc`` of the variance, a school
    effect (absorbed by the strata), a baseline correlated 0.6 with the ability, errors
    with a variance that differs by arm (heteroskedastic), and a missing baseline for
    about 3% of pupils.

    Examples
    --------
    >>> trial = simulate_design("paired", np.random.default_rng(1))
    >>> trial.n, int(trial.unit.max()) + 1, int(trial.school.max()) + 1
    (800, 40, 20)
    """
    if design not in DESIGNS:
        raise ValueError(f"design: expecting one of {list(DESIGNS)}. Got {design!r}")
    if design == "pupil-randomised":
        n = 300
        school = np.repeat(np.arange(10), n // 10).astype(np.intp)
        arm = np.concatenate([rng.permutation(np.arange(n // 10) % 2) for _ in range(10)])
        arm = arm.astype(np.int8)
        unit = np.arange(n, dtype=np.intp)
        shared = np.zeros(n)
        priority = (rng.random(n) < 0.4).astype(np.int8)
        unit_level: Literal["class", "learner"] = "learner"
    else:
        class_school, class_arm, size = _classes(design, rng)
        unit = np.repeat(np.arange(class_school.size), size).astype(np.intp)
        school = class_school[unit]
        arm = class_arm[unit]
        n = unit.size
        shared = rng.normal(0.0, np.sqrt(icc), class_school.size)[unit]
        priority = (rng.random(class_school.size) < 0.4).astype(np.int8)[unit]
        unit_level = "class"
    school_effect = rng.normal(0.0, 0.5, int(school.max()) + 1)[school]
    pupil_sd = np.where(arm == 0, 1.2, 0.8) * np.sqrt(1.0 - icc)
    ability = shared + rng.normal(0.0, 1.0, n) * pupil_sd
    baseline = 0.6 * ability + 0.8 * rng.normal(0.0, 1.0, n) + school_effect
    treated = arm == 0
    complied = np.where(treated, rng.random(n) < 0.7, rng.random(n) < 0.1)
    endline = ability + school_effect + effect * treated
    baseline[rng.random(n) < missing_baseline] = np.nan
    return DesignTrial(design, unit_level, unit, school, arm, priority, baseline, endline,
                       complied)


def write_design_files(trial: DesignTrial, directory: Path) -> tuple[Path, Path, Path]:
    """Write ``units.csv``, ``outcomes.csv`` and ``usage.csv`` of a :class:`DesignTrial`.

    Arms ``resource`` (treatment) and ``usual``; unit attributes ``school_uai`` (the
    stratum) and ``education_priority`` (``REP`` or ``REP+``); the outcome measure is
    ``score``; compliers have 400 active minutes, others 100.
    """
    directory.mkdir(parents=True, exist_ok=True)
    n_units = int(trial.unit.max()) + 1
    first = np.unique(trial.unit, return_index=True)[1]
    unit_ids = np.char.add("U", np.arange(n_units).astype(str))
    learner_ids = (unit_ids[trial.unit] if trial.unit_level == "learner"
                   else np.char.add("L", np.arange(trial.n).astype(str)))
    pacsv.write_csv(pa.table({
        "unit_id": unit_ids,
        "arm": np.array(["resource", "usual"])[trial.arm[first]],
        "school_uai": np.char.add("S", trial.school[first].astype(str)),
        "education_priority": np.array(["REP", "REP+"])[trial.priority[first]],
    }), directory / "units.csv")
    base = np.where(np.isnan(trial.baseline), "", np.char.mod("%.17g", trial.baseline))
    end = np.char.mod("%.17g", trial.endline)
    pacsv.write_csv(pa.table({
        "learner_id": np.concatenate([learner_ids, learner_ids]),
        "unit_id": np.concatenate([unit_ids[trial.unit]] * 2),
        "measure": np.full(2 * trial.n, "score"),
        "wave": np.repeat(np.array(["baseline", "endline"]), trial.n),
        "score": pa.array(np.concatenate([base, end]).tolist(), type=pa.string()),
    }), directory / "outcomes.csv")
    pacsv.write_csv(pa.table({
        "learner_id": learner_ids,
        "unit_id": unit_ids[trial.unit],
        "week": np.full(trial.n, "2027-W40"),  # one ISO week (the usage file's format)
        "active_minutes": np.where(trial.complied, 400.0, 100.0),
    }), directory / "usage.csv")
    return directory / "units.csv", directory / "outcomes.csv", directory / "usage.csv"
