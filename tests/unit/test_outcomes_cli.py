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
    assert "24 results stored, 0 already there" in first.output
    again = runner.invoke(app, ["outcomes", "import", "fluence-cp-2027", str(outcomes)], env=env)
    assert again.exit_code == 0 and "0 results stored, 24 already there" in again.output

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
             {"file": str(outcomes), "rows": 24, "stored": 24, "already": 0}),
            (cli_actor(), "fluence-cp-2027",
             {"file": str(outcomes), "rows": 24, "stored": 0, "already": 24}),
        ]
    dispose_engines()
