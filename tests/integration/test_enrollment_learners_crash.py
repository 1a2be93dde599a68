"""A process killed (SIGKILL) while enrolling a pupils file leaves all of the file's valid
pupils (and their classes and draws) or none; running the file again completes it.

Runs on SQLite and on PostgreSQL. The child is this file's ``__main__`` (same pattern as
enrollment_child.py for classes).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_pupils
from experiments.enrollment.transaction import enroll_learners
from experiments.protocol.language import load_protocol
from experiments.settings import Settings

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
KEY = b"crash-test-key"
N_VALID = 3000
PER_CLASS = 25

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_pupils(path: Path) -> None:
    lines = ["learner_id,class_id,school_uai,level,academie,education_priority,repeater"]
    for i in range(N_VALID):
        lines.append(f"gar-k{i:06d},cls-{i // PER_CLASS:04d},0781234T,CP,versailles,REP,"
                     f"{'oui' if i % 9 == 0 else 'non'}")
        if i % 100 == 0:
            lines.append(f"bad{i}@ecole.fr,cls-0000,0781234T,CP,versailles,REP,non")
    path.write_text("\n".join(lines) + "\n")


def _child(state_dir: str, url: str, pupils: str, marker: str, stage: str) -> None:
    settings = Settings(state_dir=Path(state_dir), database_url=None if url == "-" else url)
    engine = registry_engine(settings)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))

    def stop_here() -> None:
        Path(marker).write_text("reached")
        time.sleep(120)

    enroll_learners(engine, design, read_pupils(Path(pupils), design), key=KEY,
                    actor="test:crash", publish=lambda messages: len(messages),
                    before_commit=stop_here if stage == "commit" else None)
    Path(marker).write_text("done")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    yield Settings(state_dir=tmp_path / "state", database_url=url)
    dispose_engines()


def _run_child(settings: Settings, pupils: Path, marker: Path, stage: str
               ) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, __file__, str(settings.state_dir), settings.database_dsn() or "-",
         str(pupils), str(marker), stage],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _counts(settings: Settings) -> tuple[int, int, int]:
    with registry_engine(settings).connect() as c:
        pupils = c.execute(sa.text("SELECT count(*) FROM learner_enrollments")).scalar_one()
        distinct = c.execute(
            sa.text("SELECT count(DISTINCT learner_key) FROM learner_enrollments")
        ).scalar_one()
        log = c.execute(sa.text("SELECT count(*) FROM allocation_log")).scalar_one()
        classes = c.execute(sa.text("SELECT count(*) FROM enrollments")).scalar_one()
    assert pupils == distinct  # never twice
    return int(pupils), int(log), int(classes)


def _rerun(settings: Settings, pupils: Path) -> None:
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    outcome = enroll_learners(registry_engine(settings), design, read_pupils(pupils, design),
                              key=KEY, actor="test:rerun")
    assert len(outcome.enrolled) + len(outcome.already) == N_VALID
    assert len(outcome.refusals) == N_VALID // 100


ALL = (N_VALID, N_VALID, N_VALID // PER_CLASS)


def test_killed_inside_the_transaction_leaves_nothing_and_a_rerun_enrolls_all(
    database: Settings, tmp_path: Path
) -> None:
    pupils, marker = tmp_path / "pupils.csv", tmp_path / "marker"
    _write_pupils(pupils)
    child = _run_child(database, pupils, marker, "commit")
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert child.poll() is None, f"child exited early with {child.returncode}"
        assert time.monotonic() < deadline, "child never reached the kill point"
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert _counts(database) == (0, 0, 0)
    _rerun(database, pupils)
    assert _counts(database) == ALL
    _rerun(database, pupils)
    assert _counts(database) == ALL


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_killed_at_any_moment_leaves_all_or_none(
    database: Settings, tmp_path: Path, delay: float
) -> None:
    pupils, marker = tmp_path / "pupils.csv", tmp_path / "marker"
    _write_pupils(pupils)
    child = _run_child(database, pupils, marker, "none")
    time.sleep(delay)
    if child.poll() is None:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    assert _counts(database) in {(0, 0, 0), ALL}
    _rerun(database, pupils)
    assert _counts(database) == ALL


if __name__ == "__main__":
    _child(*sys.argv[1:])
