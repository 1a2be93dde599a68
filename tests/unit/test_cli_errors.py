"""Every ``preuve`` command that opens a database ends in one line and exit code 4 when
the database cannot serve it, and its audit entries name the account that ran it.

The refusal of a PostgreSQL role without rights is checked on the real cluster by
``tests/integration/test_role_matrix.py``; here the database is one that is not there
(a PostgreSQL URL on a port nothing listens on, an unreadable SQLite file).
"""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from experiments.access import AuditEntry, cli_actor
from experiments.cli.app import app
from experiments.cli.console import EXIT_DATABASE, database_errors, user_errors
from experiments.database import dispose_engines, registry_engine
from experiments.errors import RegistryError
from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "protocols" / "fluence-cp-2027.yaml"
EXPERIMENT = "fluence-cp-2027"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _registry_commands(tmp_path: Path) -> dict[str, list[str]]:
    classes = tmp_path / "classes.csv"
    classes.write_text(HEADER + "c1,0781234T,CP,20,versailles,REP\n", encoding="utf-8")
    outcomes = tmp_path / "outcomes.csv"
    outcomes.write_text("learner_id,unit_id,measure,wave,score\ngar-1,c1,fluence,baseline,40\n",
                        encoding="utf-8")
    return {
        "token issue": ["token", "issue", "officer", "*"],
        "token list": ["token", "list"],
        "token revoke": ["token", "revoke", "abcdef"],
        "protocol register": ["protocol", "register", str(PROTOCOL)],
        "protocol amend": ["protocol", "amend", str(PROTOCOL), "--reason", "r"],
        "protocol show": ["protocol", "show", EXPERIMENT],
        "protocol export": ["protocol", "export", EXPERIMENT],
        "protocol advance": ["protocol", "advance", EXPERIMENT, "enrolling"],
        "enroll": ["enroll", EXPERIMENT, str(classes), "--no-publish"],
        "outcomes import": ["outcomes", "import", EXPERIMENT, str(outcomes)],
        "export": ["export", EXPERIMENT, "--out", str(tmp_path / "out"), "--format", "csv"],
        "erase": ["erase", EXPERIMENT, "--class", "c1", "--reason", "r"],
        "purge": ["purge", EXPERIMENT, "--force", "--reason", "r"],
    }


def test_a_database_that_is_not_there_is_one_line_and_exit_4(tmp_path: Path) -> None:
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state"), "PREUVE_PSEUDONYM_KEY": "k" * 32,
           "PREUVE_KAFKA_BOOTSTRAP": f"127.0.0.1:{_closed_port()}",
           "PREUVE_DATABASE_URL": f"postgresql+psycopg://preuve@127.0.0.1:{_closed_port()}/x"}
    runner = CliRunner()
    for command, args in _registry_commands(tmp_path).items():
        result = runner.invoke(app, args, env=env)
        dispose_engines()
        assert isinstance(result.exception, SystemExit), (command, result.exception)
        assert result.exit_code == EXIT_DATABASE, (command, result.output)
        (line,) = result.output.splitlines()
        assert line.startswith("error: the database could not serve the command: "
                               "connection failed"), (command, line)
        assert "Traceback" not in result.output


def test_an_unreadable_sqlite_registry_is_one_line_and_exit_4(tmp_path: Path) -> None:
    # A directory where the registry's file should be: SQLite cannot open it.
    (tmp_path / "registry.sqlite").mkdir()
    result = CliRunner().invoke(app, ["protocol", "show", EXPERIMENT],
                                env={"PREUVE_STATE_DIR": str(tmp_path)})
    dispose_engines()
    assert result.exit_code == EXIT_DATABASE, result.output
    assert result.output.startswith("error: the database could not serve the command: ")
    assert len(result.output.splitlines()) == 1, result.output


def test_a_database_url_sqlalchemy_cannot_read_is_a_message() -> None:
    for url, said in (("not a url", "Could not parse"), ("postgresql+nodriver://h/db",
                                                          "Can't load plugin")):
        result = CliRunner().invoke(app, ["token", "list"], env={"PREUVE_DATABASE_URL": url})
        assert result.exit_code == EXIT_DATABASE, result.output
        assert f"PREUVE_DATABASE_URL: {said}" in result.output


def test_the_detail_is_logged_at_debug_without_the_parameters(
        caplog: pytest.LogCaptureFixture) -> None:
    engine = sa.create_engine("sqlite://")
    with caplog.at_level(logging.DEBUG, logger="experiments.cli.console"), \
            pytest.raises(typer.Exit) as raised:
        with database_errors(), engine.connect() as connection:
            connection.execute(sa.text("SELECT * FROM no_such_table WHERE x = :secret"),
                               {"secret": "gar-7f3a9c"})
    assert raised.value.exit_code == EXIT_DATABASE
    (record,) = [r for r in caplog.records if r.name == "experiments.cli.console"]
    assert record.levelno == logging.DEBUG
    text = record.getMessage()
    assert "no such table: no_such_table" in text and "SELECT * FROM no_such_table" in text
    assert "gar-7f3a9c" not in text, "a statement's parameters may hold learner ids"
    assert "test_cli_errors.py" in text, "the stack says where it was raised"


def test_errors_that_are_not_the_database_keep_their_traceback() -> None:
    # A misused SQLAlchemy API is a bug, not a refusal; so is any other exception.
    with pytest.raises(sa.exc.InvalidRequestError), database_errors():
        raise sa.exc.InvalidRequestError("a bug")
    with pytest.raises(KeyError), user_errors():
        raise KeyError("a bug")


def test_user_errors_keep_their_exit_code_and_database_errors_exit_4() -> None:
    with pytest.raises(typer.Exit) as own, user_errors(exit_code=2):
        raise RegistryError("fluence: no such experiment")
    assert own.value.exit_code == 2
    with pytest.raises(typer.Exit) as database, user_errors(exit_code=2), \
            sa.create_engine("sqlite:////nonexistent/dir/r.sqlite").connect():
        pass
    assert database.value.exit_code == EXIT_DATABASE


def test_the_audit_log_names_who_ran_each_registry_write(tmp_path: Path) -> None:
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state"), "PREUVE_PSEUDONYM_KEY": "k" * 32}
    runner = CliRunner()
    classes = tmp_path / "classes.csv"
    classes.write_text(HEADER + "".join(f"c{i},0781234T,CP,20,versailles,REP\n"
                                        for i in range(4)), encoding="utf-8")
    steps = [
        ["protocol", "register", str(PROTOCOL)],
        ["protocol", "advance", EXPERIMENT, "enrolling"],
        ["enroll", EXPERIMENT, str(classes), "--academie", "versailles", "--no-publish"],
        ["enroll", EXPERIMENT, "--withdraw", "c0", "--reason", "r", "--no-publish"],
    ]
    for args in steps:
        result = runner.invoke(app, args, env=env)
        # 3: committed, published later (no broker here).
        assert result.exit_code in (0, 3), (args, result.output)
    with sa.orm.Session(registry_engine(Settings(state_dir=tmp_path / "state"))) as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        actors = {e.action: e.actor for e in entries}
    dispose_engines()
    assert actors == {
        "protocol.registration": cli_actor(),
        "experiment.transition": cli_actor(),
        "enrollment.file": cli_actor("academie:versailles"),
        "enrollment.withdraw": cli_actor(),
    }, actors
