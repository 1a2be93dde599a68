"""Helpers shared by the statistics tests: the reference trial through the real input path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.inputs import (
    AnalysisPlan,
    OutcomeSpec,
    OutcomeTable,
    UnitTable,
    read_outcomes,
    read_units,
)
from analysis.sample import AnalysisSample, build_sample

DATA = Path(__file__).parents[1] / "data" / "analysis"


def reference_trial() -> pd.DataFrame:
    """The pupils of ``tests/data/analysis/cluster_trial.csv`` (see make_reference.py)."""
    return pd.read_csv(DATA / "cluster_trial.csv", dtype={"unit_id": str})


def write_files(
    frame: pd.DataFrame, directory: Path, unit_columns: tuple[str, ...] = ("stratum", "class_cov")
) -> tuple[Path, Path]:
    """Write the units and long-format outcomes files of a pupil frame."""
    units = frame.groupby("unit_id", sort=False).first().reset_index()
    units_path = directory / "units.csv"
    units[["unit_id", "arm", *unit_columns]].to_csv(units_path, index=False)
    long = pd.concat([
        frame.assign(measure="score", wave="baseline", score=frame["baseline"]),
        frame.assign(measure="score", wave="endline", score=frame["endline"]),
    ])
    outcomes_path = directory / "outcomes.csv"
    long[["learner_id", "unit_id", "measure", "wave", "score"]].to_csv(outcomes_path, index=False)
    return units_path, outcomes_path


def plan_for(frame: pd.DataFrame, **changes: object) -> AnalysisPlan:
    """Plan of the reference trial: arms in file order of names, control ``usual``."""
    arms = ("usual", "lectio", "lectio_plus") if "lectio_plus" in set(frame["arm"]) else (
        "usual", "lectio")
    options: dict[str, object] = dict(
        experiment="reference", protocol_sha256="0" * 64, unit="class", arms=arms,
        control="usual", allocation=tuple(1.0 for _ in arms),
        outcomes=(OutcomeSpec("score", True, "score"),), strata=("stratum",),
        covariates=("class_cov",),
    )
    options.update(changes)
    return AnalysisPlan(**options)  # type: ignore[arg-type]


def load(frame: pd.DataFrame, directory: Path, plan: AnalysisPlan
         ) -> tuple[UnitTable, OutcomeTable, AnalysisSample]:
    """Read the files back with :mod:`analysis.inputs` and build the sample."""
    units_path, outcomes_path = write_files(frame, directory)
    units = read_units(units_path, plan)
    outcomes = read_outcomes(outcomes_path, units)
    return units, outcomes, build_sample(plan, units, outcomes, plan.outcomes[0])


def with_dummy_baseline(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns of the dummy-variable method, for the reference libraries' formulas."""
    missing = frame["baseline"].isna()
    return frame.assign(
        b0=np.where(missing, 0.0, frame["baseline"]), bmiss=missing.astype(float),
        t1=(frame["arm"] == "lectio").astype(float),
        t2=(frame["arm"] == "lectio_plus").astype(float),
        cluster=pd.factorize(frame["unit_id"])[0],
    )
