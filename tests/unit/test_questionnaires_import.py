"""`preuve questionnaires import`: answers files into the experiment's store, refusals
located by file, line and field, what a run reads from them, and the report's section in
French and English."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from analysis.report.context import ReportContext
from analysis.report.document import render_report
from experiments.access import AuditEntry, cli_actor
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.registry import registered_protocol
from experiments.runs.inputs import write_analysis_files
from experiments.settings import Settings
from tests.support.questionnaires import questionnaire_protocol

EXPERIMENT = "fluence-cp-2027"
HEADER = "respondent_id,unit_id,questionnaire,wave,m1,m2,m3,m4,f1,f2,f3\n"


@pytest.fixture
def trial(tmp_path: Path) -> tuple[CliRunner, dict[str, str], Path]:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state")}
    protocol = questionnaire_protocol(tmp_path)
    registered = runner.invoke(app, ["protocol", "register", str(protocol)], env=env)
    assert registered.exit_code == 0, registered.output
    classes = tmp_path / "classes.csv"
    classes.write_text("class_id,school_uai,level,pupils,academie,education_priority\n"
                       + "".join(f"c{i},0781234T,CP,20,versailles,REP\n" for i in range(4)))
    enrolled = runner.invoke(app, ["enroll", EXPERIMENT, str(classes), "--no-publish"], env=env)
    assert enrolled.exit_code in (0, 3), enrolled.output
    yield runner, env, tmp_path
    dispose_engines()


def _import(runner: CliRunner, env: dict[str, str], path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["questionnaires", "import", EXPERIMENT, str(path)], env=env)
    return result.exit_code, result.output


BAD = [
    ("p1,c9,eleves,baseline,1,2,3,4,,,\n", ":2: unit_id: not a class enrolled"),
    ("p1,c1,parents,baseline,1,2,3,4,,,\n", ":2: questionnaire: must be one of"),
    ("t1,c1,enseignants,endline,,,,,1,2,3\n", ":2: wave: questionnaire 'enseignants' is given"),
    ("p1,c1,eleves,baseline,1,2,3,5,,,\n", ":2: m4: must be a whole number from 1 to 4"),
    ("p1,c1,eleves,baseline,1,2,3,4,1,,\n", ":2: f1: is not an item of questionnaire 'eleves'"),
    ("p1,c1,eleves,baseline,1,deux,3,4,,,\n", ":2: m2: must be a number"),
]


@pytest.mark.parametrize(("row", "fragment"), BAD, ids=[b[1].split(":")[2] for b in BAD])
def test_bad_rows_are_refused_with_file_line_and_field(
        trial: tuple[CliRunner, dict[str, str], Path], row: str, fragment: str) -> None:
    runner, env, tmp_path = trial
    path = tmp_path / "answers.csv"
    path.write_text(HEADER + row)
    code, output = _import(runner, env, path)
    assert code == 2, output
    assert f"{path}{fragment}" in output, output


def test_an_unknown_item_column_is_refused_at_the_header(
        trial: tuple[CliRunner, dict[str, str], Path]) -> None:
    runner, env, tmp_path = trial
    path = tmp_path / "answers.csv"
    path.write_text("respondent_id,unit_id,questionnaire,wave,m1,m9\np1,c1,eleves,baseline,1,2\n")
    code, output = _import(runner, env, path)
    assert code == 2 and f"{path}:1: header: column(s) ['m9']" in output, output


def test_import_stores_once_refuses_a_changed_answer_and_feeds_the_run(
        trial: tuple[CliRunner, dict[str, str], Path]) -> None:
    runner, env, tmp_path = trial
    path = tmp_path / "answers.csv"
    rows = "".join(f"gar-{i}-{p},c{i},eleves,baseline,{1 + p % 4},{1 + (p + 1) % 4},"
                   f"{4 - p % 4},{'' if p == 0 else 2},,,\n" for i in range(4) for p in range(3))
    rows += "".join(f"ens-{i},c{i},enseignants,baseline,,,,,{1 + i},{2 + i},3\n"
                    for i in range(4))
    path.write_text(HEADER + rows)
    code, output = _import(runner, env, path)
    assert code == 0, output
    assert "16 respondents, 56 answers stored, 0 already there" in output  # 4*11 + 4*3
    code, output = _import(runner, env, path)
    assert code == 0 and "0 answers stored, 56 already there" in output, output

    changed = tmp_path / "changed.csv"
    changed.write_text(HEADER + rows.replace("gar-0-1,c0,eleves,baseline,2,", "gar-0-1,c0,"
                                             "eleves,baseline,3,", 1))
    code, output = _import(runner, env, changed)
    assert code == 2 and f"{changed}:3: m1: already stored with the answer 2.0" in output, output

    settings = Settings(state_dir=tmp_path / "state")
    registry = registry_engine(settings)
    with sa.orm.Session(registry) as session:
        details = [e.detail for e in session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "questionnaires.import").order_by(AuditEntry.id))]
        actors = {e.actor for e in session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "questionnaires.import"))}
    assert details == [{"file": str(path), "rows": 16, "stored": 56, "already": 0},
                       {"file": str(path), "rows": 16, "stored": 0, "already": 56}]
    assert actors == {cli_actor()}

    protocol = registered_protocol(registry, EXPERIMENT).protocol
    files = write_analysis_files(settings, registry, protocol, tmp_path)
    outcomes = files.outcomes.read_text().splitlines()
    motivation = [line for line in outcomes if ",motivation,baseline," in line]
    assert len(motivation) == 12  # every pupil answered at least 3 of the 4 items
    units = files.units.read_text().splitlines()
    column = units[0].split(",").index("formation")
    assert sorted(line.split(",")[column] for line in units[1:]) == [
        repr((1 + i + 2 + i + 3) / 3) for i in range(4)]
    # A pupils' baseline scale named as a covariate: a learner column of the outcomes file.
    variant = protocol.model_copy(update={"analysis": protocol.analysis.model_copy(
        update={"covariates": ["formation", "motivation"]})})
    (tmp_path / "variant").mkdir()
    with_pupils = write_analysis_files(settings, registry, variant, tmp_path / "variant")
    lines = with_pupils.outcomes.read_text().splitlines()
    assert lines[0] == "learner_id,unit_id,measure,wave,score,motivation"
    baseline_of = {line.split(",")[0]: line.split(",")[4] for line in lines[1:]
                   if ",motivation,baseline," in line}
    assert len(baseline_of) == 12
    assert all(line.split(",")[5] == baseline_of[line.split(",")[0]] for line in lines[1:])

    # 12 pupils at the baseline: their alpha is shown; two classes per arm (6 pupils),
    # 4 teachers and no endline: every other count is under 10, so nothing else is shown.
    summary = {(e["scale"], e["wave"]): e for e in files.questionnaire_summary}
    assert set(summary) == {("motivation", "baseline"), ("motivation", "endline"),
                            ("formation", "baseline")}
    shown = summary.pop(("motivation", "baseline"))
    assert shown["n_respondents"] == 12 and isinstance(shown["alpha"], float)
    for entry in [shown, *summary.values()]:
        assert all(a["n"] in (None, 0) and a["mean"] is None for a in entry["arms"])
    for entry in summary.values():
        assert entry["n_respondents"] in (None, 0) and entry["alpha"] is None


SECTION = (
    {"questionnaire": "eleves", "respondent": "pupil", "scale": "motivation",
     "label": "Motivation", "wave": "endline", "items": 4, "n_respondents": 180,
     "alpha": 0.81234, "alpha_n": 150,
     "arms": [{"arm": "lectio", "n": 90, "mean": 2.95}, {"arm": "usual", "n": 8, "mean": None}]},
    {"questionnaire": "enseignants", "respondent": "teacher", "scale": "formation",
     "label": None, "wave": "baseline", "items": 3, "n_respondents": 20, "alpha": 0.7,
     "alpha_n": 20, "arms": [{"arm": "lectio", "n": 10, "mean": 3.5},
                             {"arm": "usual", "n": 10, "mean": 2.25}]},
)


@pytest.mark.parametrize(("lang", "words"), [
    ("fr", ["Questionnaires", "Conditions de déploiement", "0,81", "2,95 (90)", "&lt; 10",
            "3,50 (10)", "fin", "Alpha de Cronbach"]),
    ("en", ["Questionnaires", "Deployment conditions", "0.81", "2.95 (90)", "&lt; 10",
            "3.50 (10)", "end", "Cronbach&#39;s alpha"]),
])
def test_the_report_section_in_both_languages(lang: str, words: list[str]) -> None:
    results = {"experiment": EXPERIMENT, "effects": [],
               "design": {"unit": "class", "arms": ["lectio", "usual"], "control": "usual"}}
    page = render_report(results, context=ReportContext(questionnaires=SECTION), lang=lang)
    assert 'id="questionnaires"' in page
    for word in words:
        assert word in page, word
    assert 'id="questionnaires"' not in render_report(results, lang=lang)
