"""`preuve outcomes import`: results files into the experiment's store."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from typer.testing import CliRunner

from experiments.access import AuditEntry, cli_actor
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.settings import Settings

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"


def test_import_twice_stores_once_and_bad_files_exit_2(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state")}
    assert runner.invoke(app, ["protocol", "register", str(PROTOCOL)], env=env).exit_code == 0
    classes = tmp_path / "classes.csv"
    classes.write_text("class_id,school_uai,level,pupils,academie,education_priority\n"
                       + "".join(f"c{i},0781234T,CP,20,versailles,REP\n" for i in range(4)))
    enrolled = runner.invoke(app, ["enroll", "fluence-cp-2027", str(classes), "--no-publish"],
                             env=env)
    assert enrolled.exit_code in (0, 3), enrolled.output
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("learner_id,unit_id,measure,wave,score\n" + "".join(
        f"gar-{i}-{p},c{i},fluence,{wave},{40 + p}\n"
        for i in range(4) for p in range(3) for wave in ("baseline", "endline")
    ))
    first = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(outcomes)], env=env)
    assert first.exit_code == 0, first.output
    assert "24 results stored, 0 corrected, 0 already there" in first.output
    again = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(outcomes)], env=env)
    assert again.exit_code == 0
    assert "0 results stored, 0 corrected, 24 already there" in again.output

    missing = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027",
                                  str(tmp_path / "no.csv")], env=env)
    assert missing.exit_code == 2 and "no such file" in missing.output
    unknown = runner.invoke(app, ["outcomes", "import", "nope", str(outcomes)], env=env)
    assert unknown.exit_code == 2 and "Traceback" not in unknown.output

    # Each import that stored is audited: who, which file, how many rows, how many new.
    with sa.orm.Session(registry_engine(Settings(state_dir=tmp_path / "state"))) as session:
        entries = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "outcomes.import").order_by(AuditEntry.id)).all()
        assert [(e.actor, e.subject, e.detail) for e in entries] == [
            (cli_actor(), "fluence-cp-2027",
             {"file": str(outcomes), "rows": 24, "stored": 24, "corrected": 0, "already": 0}),
            (cli_actor(), "fluence-cp-2027",
             {"file": str(outcomes), "rows": 24, "stored": 0, "corrected": 0, "already": 24}),
        ]
    dispose_engines()


def _official_scores(store_dir: Path) -> dict[tuple[str, str], list[tuple[float, str | None]]]:
    """(class, wave) → stored imported scores with their authority, from the store."""
    from experiments.store import ExperimentStore, events_table

    store = ExperimentStore(Settings(state_dir=store_dir), "fluence-cp-2027")
    with store.engine.connect() as connection:
        rows = connection.execute(sa.select(
            events_table.c.class_id, events_table.c.extensions, events_table.c.score,
            events_table.c.authority)).all()
    out: dict[tuple[str, str], list[tuple[float, str | None]]] = {}
    for class_id, extensions, score, authority in rows:
        out.setdefault((class_id, extensions["wave"]), []).append((score, authority))
    return out


def test_a_different_score_is_refused_unless_corrected_with_a_reason(tmp_path: Path) -> None:
    """Issue 14, item 2: re-importing another score for the same pupil, measure and wave is
    never a silent "already there": refused without --correct (nothing stored), refused
    without a reason, and with both the new version is what the analysis reads while the
    old one stays in the store and the audit log names both."""
    from experiments.registry import registered_protocol
    from experiments.runs.inputs import write_analysis_files

    runner = CliRunner()
    state = tmp_path / "state"
    env = {"PREUVE_STATE_DIR": str(state)}
    assert runner.invoke(app, ["protocol", "register", str(PROTOCOL)], env=env).exit_code == 0
    classes = tmp_path / "classes.csv"
    classes.write_text("class_id,school_uai,level,pupils,academie,education_priority\n"
                       "c1,0781234T,CP,20,versailles,REP\n")
    assert runner.invoke(app, ["enroll", "fluence-cp-2027", str(classes), "--no-publish"],
                         env=env).exit_code in (0, 3)
    header = "learner_id,unit_id,measure,wave,score\n"
    official = tmp_path / "official.csv"
    official.write_text(header + "gar-1,c1,fluence,baseline,40\ngar-1,c1,fluence,endline,52\n")
    assert runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(official)],
                         env=env).exit_code == 0
    fixed = tmp_path / "fixed.csv"
    fixed.write_text(header + "gar-1,c1,fluence,baseline,40\ngar-1,c1,fluence,endline,57\n")

    refused = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(fixed)], env=env)
    assert refused.exit_code == 2, refused.output
    assert "already imported with the score 52.0, the file gives 57.0" in refused.output
    assert f"{fixed}:3: score" in refused.output and "--correct --reason" in refused.output
    no_reason = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(fixed),
                                    "--correct"], env=env)
    assert no_reason.exit_code == 2 and "states its reason" in no_reason.output
    assert _official_scores(state)[("c1", "endline")] == [(52.0, f"import:{cli_actor()}")]

    corrected = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(fixed),
                                    "--correct", "--reason", "erreur de saisie DEPP, lot 3"],
                              env=env)
    assert corrected.exit_code == 0, corrected.output
    assert "0 results stored, 1 corrected, 1 already there" in corrected.output
    # The old version stays in the store beside the new one.
    assert sorted(_official_scores(state)[("c1", "endline")]) == [
        (52.0, f"import:{cli_actor()}"), (57.0, f"import:{cli_actor()}")]
    again = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(fixed),
                                "--correct", "--reason", "erreur de saisie DEPP, lot 3"], env=env)
    assert "0 results stored, 0 corrected, 2 already there" in again.output

    settings = Settings(state_dir=state)
    registry = registry_engine(settings)
    protocol = registered_protocol(registry, "fluence-cp-2027").protocol
    files = write_analysis_files(settings, registry, protocol, tmp_path)
    endline = [line for line in files.outcomes.read_text().splitlines() if "endline" in line]
    assert len(endline) == 1 and endline[0].endswith(",57.0"), endline
    with sa.orm.Session(registry) as session:
        (entry,) = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.action == "outcomes.correct")).all()
    assert entry.detail is not None and entry.detail["reason"] == "erreur de saisie DEPP, lot 3"
    changes = entry.detail["corrections"]
    assert isinstance(changes, list) and len(changes) == 1
    change = changes[0]
    assert change["version"] == 2 and change["wave"] == "endline"
    assert change["corrects"] != change["event_id"]
    dispose_engines()


def test_one_file_giving_two_scores_for_one_result_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state")}
    assert runner.invoke(app, ["protocol", "register", str(PROTOCOL)], env=env).exit_code == 0
    classes = tmp_path / "classes.csv"
    classes.write_text("class_id,school_uai,level,pupils,academie,education_priority\n"
                       "c1,0781234T,CP,20,versailles,REP\n")
    runner.invoke(app, ["enroll", "fluence-cp-2027", str(classes), "--no-publish"], env=env)
    twice = tmp_path / "twice.csv"
    twice.write_text("learner_id,unit_id,measure,wave,score\n"
                     "gar-1,c1,fluence,endline,52\ngar-1,c1,fluence,endline,50\n")
    result = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(twice)], env=env)
    assert result.exit_code == 2 and "line 2 gives this pupil's fluence (endline) another" \
        in result.output, result.output
    assert _official_scores(tmp_path / "state") == {}
    dispose_engines()
