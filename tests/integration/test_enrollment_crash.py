"""A process killed (SIGKILL) while enrolling leaves all of the file's valid rows or none,
never a partial or double enrollment; running the file again completes it.

Runs on SQLite and on PostgreSQL (the ``postgres_url`` fixture of tests/conftest.py).
Publishing is a callable the child injects; Kafka itself is covered by the lead's tests.
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
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import pending_messages
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from tests.support.uai import uai

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
CHILD = Path(__file__).with_name("enrollment_child.py")
N_VALID = 4000

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _write_classes(path: Path) -> None:
    lines = ["class_id,school_uai,level,pupils,academie,education_priority"]
    for i in range(N_VALID):
        academie = "versailles" if i % 2 else "creteil"
        school = uai(f"{780 + i % 7:03d}{i // 4 % 10000:04d}")
        lines.append(f"k{i:05d},{school},CP,{15 + i % 14},"
                     f"{academie},{'REP' if i % 3 else 'REP+'}")
        if i % 100 == 0:
            lines.append(f"bad{i},0781234T,CE2,20,versailles,REP")  # refused: niveau
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Settings]:
    url = request.getfixturevalue("postgres_url") if request.param == "postgresql" else None
    yield Settings(state_dir=tmp_path / "state", database_url=url)
    dispose_engines()


def _run_child(
    settings: Settings, classes: Path, marker: Path, stage: str
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(settings.state_dir), settings.database_dsn() or "-",
         str(PROTOCOL), str(classes), str(marker), stage],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def _wait_for(marker: Path, child: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert child.poll() is None, f"child exited early with {child.returncode}"
        assert time.monotonic() < deadline, "child never reached the kill point"
        time.sleep(0.02)


def _kill(child: subprocess.Popen[bytes]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)


def _counts(settings: Settings) -> tuple[int, int, int]:
    engine = registry_engine(settings)
    with engine.connect() as c:
        enrolled = c.execute(sa.text("SELECT count(*) FROM enrollments")).scalar_one()
        distinct = c.execute(
            sa.text("SELECT count(DISTINCT class_id) FROM enrollments")
        ).scalar_one()
        log = c.execute(sa.text("SELECT count(*) FROM allocation_log")).scalar_one()
    assert enrolled == distinct  # never twice
    return int(enrolled), int(log), len(pending_messages(engine, "fluence-cp-2027"))


def _rerun(settings: Settings, classes: Path) -> None:
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    outcome = enroll_classes(
        registry_engine(settings), design, read_classes(classes, design), actor="test:rerun",
        publish=lambda messages: len(messages),
    )
    assert len(outcome.enrolled) + len(outcome.already) == N_VALID
    assert len(outcome.refusals) == N_VALID // 100


def test_killed_inside_the_transaction_leaves_nothing_and_a_rerun_enrolls_all(
    database: Settings, tmp_path: Path
) -> None:
    classes, marker = tmp_path / "classes.csv", tmp_path / "marker"
    _write_classes(classes)
    child = _run_child(database, classes, marker, "commit")
    _wait_for(marker, child)  # every row inserted, commit not yet done
    _kill(child)
    assert _counts(database) == (0, 0, 0)
    _rerun(database, classes)
    assert _counts(database) == (N_VALID, N_VALID, 0)
    _rerun(database, classes)  # and once more: nothing doubles
    assert _counts(database) == (N_VALID, N_VALID, 0)


def test_killed_while_publishing_keeps_the_enrollment_pending_and_a_rerun_publishes(
    database: Settings, tmp_path: Path
) -> None:
    classes, marker = tmp_path / "classes.csv", tmp_path / "marker"
    _write_classes(classes)
    child = _run_child(database, classes, marker, "publish")
    _wait_for(marker, child)
    _kill(child)
    assert _counts(database) == (N_VALID, N_VALID, N_VALID)  # committed, not published
    _rerun(database, classes)
    assert _counts(database) == (N_VALID, N_VALID, 0)


@pytest.mark.parametrize("delay", [0.5, 1.5, 3.0])
def test_killed_at_any_moment_leaves_all_or_none(
    database: Settings, tmp_path: Path, delay: float
) -> None:
    classes, marker = tmp_path / "classes.csv", tmp_path / "marker"
    _write_classes(classes)
    child = _run_child(database, classes, marker, "none")
    time.sleep(delay)
    if child.poll() is None:
        _kill(child)
    enrolled, log, _ = _counts(database)
    assert (enrolled, log) in {(0, 0), (N_VALID, N_VALID)}
    _rerun(database, classes)
    assert _counts(database)[:2] == (N_VALID, N_VALID)


def test_two_concurrent_enrollments_never_share_a_block_position(
    database: Settings, tmp_path: Path
) -> None:
    # Both files put classes in the same strata (schools): without the per-experiment
    # lock two processes would read the same block counts and allocate one position twice.
    from experiments.enrollment.assignments import verify_allocations

    # Neither has enrolled anything yet: the first enrollment of the experiment races too.
    # The registry is migrated first: two processes migrating one fresh PostgreSQL database
    # at once collide in CREATE TABLE (experiments.database; reported to the lead).
    registry_engine(database)
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    header = "class_id,school_uai,level,pupils,academie,education_priority\n"
    children = []
    for name in ("a", "b"):
        path = tmp_path / f"{name}.csv"
        path.write_text(header + "".join(
            f"{name}{i:04d},{uai(f'078{i % 50:04d}')},CP,{15 + i % 10},versailles,REP\n"
            for i in range(1500)
        ))
        children.append(_run_child(database, path, tmp_path / f"{name}.done", "none"))
    for child in children:
        assert child.wait(timeout=300) == 0
    dispose_engines()
    assert _counts(database)[:2] == (3000, 3000)
    assert verify_allocations(registry_engine(database), design) == []
