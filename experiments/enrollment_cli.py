"""``preuve enroll``: an académie enrolls classes into an experiment."""

from __future__ import annotations

from pathlib import Path

from experiments.not_built import not_built


def enroll(experiment: str, classes_csv: Path) -> None:
    """Enroll the classes of CLASSES_CSV into EXPERIMENT and print each class's arm."""
    not_built("enroll", 4)
