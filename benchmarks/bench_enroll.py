"""Benchmark: enrolling 10,000 classes from one CSV file (goal: under 2 s).

    .venv/bin/python benchmarks/bench_enroll.py [--classes 10000] [--repeat 3]

What is timed, on a fresh SQLite registry each time (already migrated), median of the
repeats:

- **enroll**: the command's own work, ``read_classes`` (parse and check every row) then
  ``enroll_classes`` (randomise, one transaction with the enrollments, the allocation log
  and the audit entry, commit). Interpreter start-up and imports are excluded; so is
  Kafka: ``publish=None``.
- **publish (no broker)**: building the 10,000 ``preuve.enrollments`` records from the
  registry and marking them published, with a publish callable that only counts them,
  i.e. everything but the network. Real Kafka throughput is the ingest benchmark's job.
- **baseline**: parsing the same file with the ``csv`` module into dicts, nothing else.
  The ratio enroll / baseline says what the checks, randomisation and database cost.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.publishing import publish_pending
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.calendar import uai_check_letter
from experiments.protocol.language import load_protocol
from experiments.settings import Settings

REPO = Path(__file__).resolve().parents[1]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"


def write_classes(path: Path, n: int) -> None:
    """``n`` valid classes, 4 per school (the protocol stratifies by school)."""
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["class_id", "school_uai", "level", "pupils", "academie",
                         "education_priority"])
        for i in range(n):
            school = i // 4
            number = f"{780 + school // 10000:03d}{school % 10000:04d}"
            writer.writerow([f"cls-{i:06d}", number + uai_check_letter(number),
                             "CP", 15 + i % 14, "versailles" if school % 2 else "creteil",
                             "REP" if school % 3 else "REP+"])


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


cpu_time: list[float] = []


def _run_once(
    design: EnrollmentDesign, classes: Path, state: Path, n: int
) -> tuple[float, float, float]:
    engine = registry_engine(Settings(state_dir=state))  # migrated here, outside the timing

    read_time: list[float] = []

    def enroll_file() -> None:
        start = time.perf_counter()
        parsed = read_classes(classes, design)
        read_time.append(time.perf_counter() - start)
        outcome = enroll_classes(engine, design, parsed, actor="bench", publish=None)
        assert len(outcome.enrolled) == n, outcome.refusals[:3]

    def publish_all() -> None:
        report = publish_pending(engine, design.experiment_id, lambda messages: len(messages))
        assert report.published == n

    try:
        cpu = time.process_time()
        enroll_time = timed(enroll_file)
        cpu_time.append(time.process_time() - cpu)
        return enroll_time, read_time[0], timed(publish_all)
    finally:
        dispose_engines()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    design = EnrollmentDesign.from_protocol(load_protocol(PROTOCOL))
    with tempfile.TemporaryDirectory() as tmp:
        classes = Path(tmp) / "classes.csv"
        write_classes(classes, args.classes)
        baseline, enroll, read, publish = [], [], [], []
        for run in range(args.repeat):
            baseline.append(timed(lambda: list(csv.DictReader(classes.open(newline="")))))
            times = _run_once(design, classes, Path(tmp) / f"state-{run}", args.classes)
            enroll.append(times[0])
            read.append(times[1])
            publish.append(times[2])
    b, e, r, p = (statistics.median(x) for x in (baseline, enroll, read, publish))
    print(f"enroll {args.classes} classes (parse + check + randomise + one transaction): "
          f"{e:.3f} s  [goal < 2 s: {'met' if e < 2 else 'NOT met'}]")
    print(f"  CPU time of the same: {statistics.median(cpu_time):.3f} s (less sensitive to load)")
    print(f"  of which read_classes (parse + check): {r:.3f} s; randomise + transaction: "
          f"{e - r:.3f} s")
    print(f"baseline (csv.DictReader only): {b:.3f} s  -> enroll / baseline = {e / b:.1f}x")
    print(f"publish records, no broker (build + mark published): {p:.3f} s")
    load = os.getloadavg()[0]
    print(f"median of {args.repeat} runs, SQLite registry, fresh each run; "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (other work slows every figure)")


if __name__ == "__main__":
    main()
