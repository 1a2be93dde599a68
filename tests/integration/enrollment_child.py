"""Child process of test_enrollment_crash.py: enrolls a file and stops where it is told.

    python enrollment_child.py STATE_DIR DATABASE_URL|- PROTOCOL CLASSES MARKER STAGE

STAGE ``commit``: writes MARKER inside the transaction, just before the commit, then
sleeps (the test kills it there); ``publish``: the same once the transaction committed,
while publishing; ``none``: runs to the end (the test kills it at a random moment).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from experiments.database import registry_engine
from experiments.enrollment.files import EnrollmentDesign, read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from ingest.contract import EnrollmentMessage


def main(argv: list[str]) -> None:
    state_dir, url, protocol, classes, marker, stage = argv
    settings = Settings(state_dir=Path(state_dir), database_url=None if url == "-" else url)
    engine = registry_engine(settings)
    design = EnrollmentDesign.from_protocol(load_protocol(protocol))
    parsed = read_classes(Path(classes), design)

    def stop_here() -> None:
        Path(marker).write_text("reached")
        time.sleep(120)

    def publish(messages: Sequence[EnrollmentMessage]) -> int:
        if stage == "publish":
            stop_here()
        return len(messages)

    enroll_classes(engine, design, parsed, actor="test:crash", publish=publish,
                   before_commit=stop_here if stage == "commit" else None)
    Path(marker).write_text("done")


if __name__ == "__main__":
    main(sys.argv[1:])
