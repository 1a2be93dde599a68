"""Simulated cluster-randomised trials written as the offline analysis files.

For tests, demos and the benchmark: classes nested in schools (the randomisation strata,
as in the core example protocol), arms assigned within each school, a baseline and an
endline score with a class-level variance share ``icc``, some missing scores, and weekly
usage for learners of the treatment arms. Vectorised, so a million pupils take seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

__all__ = ["SimulatedFiles", "simulate_trial"]


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
