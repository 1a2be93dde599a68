"""The researchers' notebooks, executed with nbclient on generated data.

* ``01_reproduire_le_rapport.ipynb`` recomputes the primary ITT effect of every treated
  arm (statsmodels OLS with all arms in one model, cluster-robust), Hedges' g, months of
  progress, the adjusted p and attrition from the offline CSV files, on a two-arm trial
  and on the repository's three-arm protocol (``lecture-ce1-vagues-2027``); its numbers
  must equal the report's JSON. Tolerance: relative 1e-9. The notebook fits
  the same model with another library (statsmodels' dummy-variable OLS instead of the
  engine's absorbed strata in numpy), so only floating-point rounding may differ
  (observed ~1e-13).
* ``02_usage_hebdomadaire_du_magasin.ipynb`` opens an experiment store (SQLite file, and a
  PostgreSQL schema when the cluster can start) and derives weekly usage per arm; its
  table must equal an independent count over the events written to the store (exact:
  counts; minutes to 1e-9).

Parameters are injected after the cell tagged ``parameters``, as papermill does.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.report.document import render_report
from analysis.results import to_json_dict, write_json
from analysis.run import run_analysis
from analysis.simulate import simulate_trial
from experiments.protocol.language import load_protocol
from experiments.protocol.vocabulary import SCHOOL_TIMEZONE
from experiments.settings import Settings
from experiments.store import ExperimentStore, StoredEvent

REPOSITORY = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPOSITORY / "notebooks"
PROTOCOL = REPOSITORY / "protocols" / "fluence-cp-2027.yaml"
RTOL = 1e-9

pytestmark = pytest.mark.slow


def _execute(name: str, parameters: dict[str, Any]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    index = next(i for i, cell in enumerate(notebook.cells)
                 if "parameters" in cell.metadata.get("tags", []))
    source = "\n".join(f"{key} = {value!r}" for key, value in parameters.items())
    injected = nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]})
    injected["id"] = "injected-parameters"
    notebook.cells.insert(index + 1, injected)
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    return notebook


def test_notebooks_are_committed_without_outputs() -> None:
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        for cell in notebook.cells:
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name
        assert any("parameters" in c.metadata.get("tags", []) for c in notebook.cells), path


def _three_arm_files(directory: Path) -> tuple[Path, Any]:
    from tests.support.three_arms import THREE_ARM_PROTOCOL, simulate_three_arm_trial

    return THREE_ARM_PROTOCOL, simulate_three_arm_trial(directory)


def _two_arm_files(directory: Path) -> tuple[Path, Any]:
    return PROTOCOL, simulate_trial(directory, n_units=30, pupils_per_unit=15, effect=0.25,
                                    seed=11)


@pytest.mark.parametrize("make", [_two_arm_files, _three_arm_files],
                         ids=["two-arms", "three-arms"])
def test_reproduction_notebook_equals_the_report_json(make: Any, tmp_path: Path) -> None:
    path, files = make(tmp_path / "trial")
    protocol = load_protocol(path)
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    assert files.usage is not None
    results = run_analysis(plan, units, outcomes, read_usage(files.usage, outcomes, units))
    write_json(results, tmp_path / "results.json")  # what `preuve analyze --json` writes
    out = tmp_path / "notebook.json"
    _execute("01_reproduire_le_rapport.ipynb", {
        "PROTOCOL": str(path), "UNITS": str(files.units), "OUTCOMES": str(files.outcomes),
        "USAGE": str(files.usage), "RESULTS_JSON": str(tmp_path / "results.json"),
        "OUTPUT_JSON": str(out)})
    by_contrast = json.loads(out.read_text(encoding="utf-8"))["notebook"]
    report = to_json_dict(results)
    primary = {e["contrast"]: e for e in report["effects"] if e["role"] == "primary"
               and e["estimand"] == "ITT" and not e.get("subgroup")}
    treated = [a.name for a in protocol.arms if not a.control]
    assert sorted(by_contrast) == sorted(primary) and len(primary) == len(treated)
    for contrast, numbers in by_contrast.items():
        for key in ("estimate", "std_error", "ci_low", "ci_high", "p_value", "p_adjusted", "df",
                    "hedges_g", "hedges_g_ci_low", "hedges_g_ci_high", "months_progress"):
            assert numbers[key] == pytest.approx(primary[contrast][key], rel=RTOL, abs=1e-12), \
                f"{contrast}: notebook {key} != report {key}"
        attrition = {a["level"]: a for a in report["checks"]["attrition"]
                     if a["contrast"] == contrast}
        for level, name in (("learner", "learners"), ("unit", "units")):
            for kind in ("overall", "differential"):
                assert numbers[f"attrition_{name}_{kind}"] == pytest.approx(
                    attrition[level][kind], rel=RTOL, abs=1e-12), \
                    f"{contrast}: attrition {level} {kind}"
    # And the numbers the programme officer reads in the summary: one per treated arm.
    page = render_report(results, protocol=protocol)
    shown = re.findall(r"progressé de ([\d,]+) points? de (plus|moins)", page)
    assert len(shown) == len(treated)
    for (value, direction), arm in zip(shown, treated, strict=True):
        sign = 1 if direction == "plus" else -1
        estimate = by_contrast[f"{arm} vs {protocol.control_arm.name}"]["estimate"]
        assert sign * float(value.replace(",", ".")) == round(estimate, 1)


def _events() -> list[StoredEvent]:
    """Three weeks of events: treatment classes active, control pupils only logging in."""
    events = []
    start = datetime(2027, 9, 27, 8, 30, tzinfo=UTC)  # a Monday
    n = 0
    for learner in range(36):
        arm = "lectio" if learner < 24 else "usual"
        for week in range(3):
            if arm == "usual" and (learner + week) % 3:
                continue
            for day in range(1 + (learner + week) % 3):
                at = start + timedelta(weeks=week, days=day, minutes=learner)
                n += 1
                events.append(StoredEvent(
                    event_id=f"00000000-0000-4000-8000-{n:012d}", occurred_at=at,
                    resource_id="lectio", learner_key=f"k{learner:03d}",
                    class_id=f"classe-{learner // 12}", school_uai="0750001U", arm=arm,
                    verb="session_started", is_session=True))
                if arm == "lectio" and learner % 5:
                    n += 1
                    events.append(StoredEvent(
                        event_id=f"00000000-0000-4000-8000-{n:012d}",
                        occurred_at=at + timedelta(minutes=5), resource_id="lectio",
                        learner_key=f"k{learner:03d}", class_id=f"classe-{learner // 12}",
                        school_uai="0750001U", arm=arm, verb="activity_completed",
                        duration_s=60.0 * (5 + learner % 7), is_usage=True))
    return events


def _expected_weekly(events: list[StoredEvent]) -> dict[tuple[str, str], dict[str, Any]]:
    """Weekly usage per arm counted directly from the events (suppression under 10)."""
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    active: dict[tuple[str, str], set[str]] = defaultdict(set)
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for e in events:
        day = e.occurred_at.astimezone(SCHOOL_TIMEZONE).date()
        week = (day - timedelta(days=day.weekday())).isoformat()
        seen[(e.arm, week)].add(e.learner_key)
        if e.is_usage and (e.duration_s or 0) > 0:
            active[(e.arm, week)].add(e.learner_key)
            seconds[(e.arm, week)] += e.duration_s or 0.0
    out = {}
    for key, learners in seen.items():
        n_active = len(active[key])
        out[key] = {
            "learners_logged_in": len(learners) if len(learners) >= 10 else None,
            "learners_active": n_active if n_active >= 10 else None,
            "active_minutes": seconds[key] / 60 if n_active >= 10 else None,
        }
    return out


def _check_weekly(rows: list[dict[str, Any]], events: list[StoredEvent]) -> None:
    expected = _expected_weekly(events)
    got = {(r["arm"], r["week"]): r for r in rows}
    assert set(got) == set(expected)
    for key, want in expected.items():
        for column, value in want.items():
            shown = got[key][column]
            shown = None if shown is None or (isinstance(shown, float) and math.isnan(shown)) \
                else shown
            if value is None:
                assert shown is None, (key, column, shown)
            else:
                assert shown == pytest.approx(value, rel=RTOL), (key, column)
    # The control arm only logs in, and fewer than 10 pupils a week: all hidden.
    assert all(got[k]["learners_active"] is None for k in got if k[0] == "usual")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql",
                                                              marks=pytest.mark.integration)])
def test_store_notebook_derives_weekly_usage(backend: str, tmp_path: Path,
                                             request: pytest.FixtureRequest) -> None:
    database_url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    settings = Settings(state_dir=tmp_path / "state", database_url=database_url)
    events = _events()
    store = ExperimentStore(settings, "fluence-cp-2027")
    assert store.write_events(events, datetime.now(UTC)).inserted == len(events)
    location = database_url or str(tmp_path / "state" / "stores" / "fluence-cp-2027.sqlite")
    out = tmp_path / "weekly.json"
    _execute("02_usage_hebdomadaire_du_magasin.ipynb", {
        "EXPERIMENT": "fluence-cp-2027", "STORE": location, "OUTPUT_JSON": str(out)})
    _check_weekly(json.loads(out.read_text(encoding="utf-8")), events)
