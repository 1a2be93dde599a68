"""Make the small reference trials of ``tests/statistics`` (run from the repo root).

    .venv/bin/python tests/data/analysis/make_reference.py

Writes ``cluster_trial.csv``: a three-arm cluster-randomised trial of 36 classes in 6
strata (schools), 8-20 pupils per class, with a baseline score, a class covariate, missing
baselines, unequal class sizes and a compliance indicator for 2SLS. Deterministic (seed
20270901). The expected numbers are not stored: the tests compute them with pyfixest and
linearmodels, which CI installs (dev extra), and compare to 1e-6.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def make(seed: int = 20270901) -> pd.DataFrame:
    """Return the reference trial, one row per pupil."""
    rng = np.random.default_rng(seed)
    n_classes = 36
    stratum = np.arange(n_classes) % 6
    arm = np.empty(n_classes, dtype=int)
    for s in range(6):  # randomise within strata: 2 classes per arm per school
        idx = np.flatnonzero(stratum == s)
        arm[idx] = rng.permutation(np.arange(idx.size) % 3)
    sizes = rng.integers(8, 21, size=n_classes)
    unit = np.repeat(np.arange(n_classes), sizes)
    n = unit.size
    class_effect = rng.normal(0, 0.45, n_classes)
    class_cov = rng.normal(0, 1, n_classes)
    baseline = rng.normal(50, 10, n) + 3 * class_effect[unit]
    compliant = rng.random(n) < np.where(arm[unit] == 0, 0.0, 0.7)
    y = (
        20 + 0.6 * baseline + 2.0 * stratum[unit] + 1.5 * class_cov[unit]
        + 4.0 * compliant + 10 * class_effect[unit] + rng.normal(0, 8, n)
    )
    frame = pd.DataFrame({
        "learner_id": [f"L{i:04d}" for i in range(n)],
        "unit_id": [f"C{u:02d}" for u in unit],
        "stratum": [f"S{s}" for s in stratum[unit]],
        "arm": np.array(["usual", "lectio", "lectio_plus"])[arm[unit]],
        "class_cov": class_cov[unit].round(6),
        "baseline": baseline.round(3),
        "endline": y.round(3),
        "compliant": compliant.astype(int),
    })
    missing = rng.random(n) < 0.05
    frame.loc[missing, "baseline"] = np.nan
    return frame


if __name__ == "__main__":
    out = Path(__file__).with_name("cluster_trial.csv")
    make().to_csv(out, index=False)
    print(f"wrote {out}")
