"""Set-up of the docstring examples that pytest collects from the packages (--doctest-modules).

The examples name files relative to the repository (``protocols/fluence-cp-2027.yaml``), so
they run from its root; the alembic environments are scripts alembic runs, not modules.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent
collect_ignore_glob = ["experiments/migrations/*"]


@pytest.fixture(autouse=True)
def _examples_run_from_the_repository(request: pytest.FixtureRequest,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)
