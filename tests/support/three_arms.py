"""A simulated three-arm trial on the repository's own three-arm protocol
(``protocols/lecture-ce1-vagues-2027.yaml``: vague1, vague2, attente as control; units are
schools, strata académie × rural), written as the offline analysis files.

:func:`analysis.simulate.simulate_trial` makes the scores (the same true effect in both
treated arms, randomised within blocks of three units); this module adds the protocol's
unit attributes and names the baseline measure as the protocol does
(``comprehension_debut``). With ``seed=5`` the second arm's unadjusted p is below 0.05 and
its Holm-adjusted p above it: the case where a report must not claim certainty.
"""

from __future__ import annotations

import csv
from pathlib import Path

from analysis.simulate import SimulatedFiles, simulate_trial

REPOSITORY = Path(__file__).resolve().parents[2]
THREE_ARM_PROTOCOL = REPOSITORY / "protocols" / "lecture-ce1-vagues-2027.yaml"
ARMS = ("vague1", "vague2", "attente")


def _rewrite(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def simulate_three_arm_trial(directory: Path, *, seed: int = 5, n_units: int = 36,
                             pupils_per_unit: int = 15, effect: float = 0.25
                             ) -> SimulatedFiles:
    """Write ``units.csv``, ``outcomes.csv`` and ``usage.csv`` of a three-arm trial."""
    files = simulate_trial(directory, n_units=n_units, pupils_per_unit=pupils_per_unit,
                           arms=ARMS, effect=effect, measure="comprehension", seed=seed,
                           classes_per_school=3)
    with files.units.open(encoding="utf-8", newline="") as handle:
        units = list(csv.DictReader(handle))
    for i, row in enumerate(units):  # strata: académie × rural, blocks of 3 units
        row["academie"] = ("normandie", "la-reunion")[(i // 3) % 2]
        row["rural"] = ("oui", "non")[(i // 6) % 2]
    _rewrite(files.units, units)
    with files.outcomes.open(encoding="utf-8", newline="") as handle:
        outcomes = list(csv.DictReader(handle))
    for row in outcomes:
        if row["wave"] == "baseline":
            row["measure"] = "comprehension_debut"
    _rewrite(files.outcomes, outcomes)
    return files
