"""Set-up of the docstring examples that pytest collects from the packages (--doctest-modules).

The examples name files relative to the repository (``protocols/fluence-cp-2027.yaml``), so
they run from its root; the alembic environments are scripts alembic runs, not modules.
Every example may use the helpers of the doctest namespace, instead of repeating the same
set-up lines in each docstring:

- ``fresh_settings()``: settings with a new, empty state directory;
- ``fresh_registry()``: the registry engine of such settings (migrated, empty);
- ``core_protocol()``: ``protocols/fluence-cp-2027.yaml``, the design document's core example;
- ``core_design()``: what that protocol asks of its enrollment files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent
collect_ignore_glob = ["experiments/migrations/*"]


@pytest.fixture(autouse=True)
def _doctest_helpers(doctest_namespace: dict[str, Any],
                     tmp_path_factory: pytest.TempPathFactory) -> None:
    from experiments.database import registry_engine
    from experiments.enrollment.files import EnrollmentDesign
    from experiments.protocol.language import Protocol, load_protocol
    from experiments.settings import Settings

    def fresh_settings() -> Settings:
        return Settings(state_dir=tmp_path_factory.mktemp("state"))

    def core_protocol() -> Protocol:
        return load_protocol(ROOT / "protocols" / "fluence-cp-2027.yaml")

    doctest_namespace.update(
        fresh_settings=fresh_settings,
        fresh_registry=lambda: registry_engine(fresh_settings()),
        core_protocol=core_protocol,
        core_design=lambda: EnrollmentDesign.from_protocol(core_protocol()),
    )


@pytest.fixture(autouse=True)
def _examples_run_from_the_repository(request: pytest.FixtureRequest,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    if type(request.node).__name__ == "DoctestItem":
        monkeypatch.chdir(ROOT)
