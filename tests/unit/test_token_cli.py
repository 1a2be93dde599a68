"""`preuve token issue | list | revoke`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from experiments.access import authenticate
from experiments.cli.app import app
from experiments.database import dispose_engines, registry_engine
from experiments.settings import Settings


def test_issue_list_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path)}
    issued = runner.invoke(app, ["token", "issue", "academie", "versailles", "--label", "DRANE"],
                           env=env)
    assert issued.exit_code == 0, issued.output
    token = issued.output.strip()
    engine = registry_engine(Settings(state_dir=tmp_path))
    principal = authenticate(engine, token)
    assert principal is not None and (principal.role, principal.scope) == ("academie", "versailles")

    listed = runner.invoke(app, ["token", "list"], env=env)
    assert listed.exit_code == 0 and "academie\tversailles\tDRANE" in listed.output
    assert token not in listed.output, "the secret is never shown again"
    prefix = listed.output.split("\t")[0]

    revoked = runner.invoke(app, ["token", "revoke", prefix], env=env)
    assert revoked.exit_code == 0, revoked.output
    assert authenticate(engine, token) is None
    dispose_engines()


def test_unknown_role_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["token", "issue", "teacher", "x"],
                                env={"PREUVE_STATE_DIR": str(tmp_path)})
    assert result.exit_code == 2 and "expecting one of" in result.output


def test_a_scope_the_role_cannot_have_is_refused(tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path)}
    # An EdTech token for every resource, an académie token for every académie, a
    # "scoped" admin (admins cover everything), a scope that is no slug: all refused.
    for role, scope in (("edtech", "*"), ("academie", "*"), ("admin", "versailles"),
                        ("researcher", "Fluence CP"), ("edtech", "")):
        result = runner.invoke(app, ["token", "issue", role, scope], env=env)
        assert result.exit_code == 2, (role, scope, result.output)
        assert "scope:" in result.output
    listed = runner.invoke(app, ["token", "list"], env=env)
    assert listed.exit_code == 0 and listed.output == "", "nothing was issued"
    for role, scope in (("researcher", "*"), ("officer", "fluence-cp-2027"), ("admin", "*")):
        result = runner.invoke(app, ["token", "issue", role, scope], env=env)
        assert result.exit_code == 0, result.output
    dispose_engines()


def test_a_wildcard_covers_everything_only_for_the_roles_that_may_hold_it() -> None:
    from experiments.access import Principal

    assert Principal("researcher", "*", "lab").can_act_for("fluence-cp-2027")
    assert Principal("officer", "*", "bdt").can_act_for("fluence-cp-2027")
    # Issued before issue_token refused them: an EdTech or académie "*" covers nothing.
    assert not Principal("edtech", "*", "old").can_act_for("lectio")
    assert not Principal("academie", "*", "old").can_act_for("versailles")
    assert Principal("edtech", "lectio", "lectio").can_act_for("lectio")
    assert not Principal("edtech", "lectio", "lectio").can_act_for("scriptum")


def test_the_audit_log_names_the_account_that_ran_the_command(tmp_path: Path) -> None:
    import sqlalchemy as sa

    from experiments.access import AuditEntry, cli_actor

    env = {"PREUVE_STATE_DIR": str(tmp_path)}
    runner = CliRunner()
    assert runner.invoke(app, ["token", "issue", "officer", "*"], env=env).exit_code == 0
    prefix = runner.invoke(app, ["token", "list"], env=env).output.split("\t")[0]
    assert runner.invoke(app, ["token", "revoke", prefix], env=env).exit_code == 0
    with sa.orm.Session(registry_engine(Settings(state_dir=tmp_path))) as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.actor, e.action, e.subject) for e in entries] == [
            (cli_actor(), "token.issue", "officer:*"), (cli_actor(), "token.revoke", "officer:*")]
        assert all(e.at is not None for e in entries)
    dispose_engines()


def test_a_token_issued_with_an_expiry_stops_working_after_it(tmp_path: Path) -> None:
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from experiments.access import ApiToken, Principal, issue_token, still_valid

    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(tmp_path)}
    issued = runner.invoke(app, ["token", "issue", "officer", "*", "--expires", "30d"], env=env)
    assert issued.exit_code == 0, issued.output
    engine = registry_engine(Settings(state_dir=tmp_path))
    assert authenticate(engine, issued.output.strip()) is not None
    listed = runner.invoke(app, ["token", "list"], env=env)
    soon = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    assert f"\tactive\tuntil {soon}" in listed.output, listed.output
    for bad in ("2001-01-01", "tomorrow", "0d"):
        refused = runner.invoke(app, ["token", "issue", "officer", "*", "--expires", bad],
                                env=env)
        assert refused.exit_code == 2 and "--expires" in refused.output, refused.output
    # A token past its expiry authenticates nobody, and its portal sessions end.
    token = issue_token(engine, "officer", "*", expires_at=datetime.now(UTC) + timedelta(days=1))
    principal = authenticate(engine, token)
    assert isinstance(principal, Principal) and still_valid(engine, principal)
    with sa.orm.Session(engine) as session, session.begin():
        row = session.scalars(sa.select(ApiToken).where(
            ApiToken.token_sha256 == principal.token_sha256)).one()
        row.expires_at = datetime.now(UTC) - timedelta(seconds=1)
    assert authenticate(engine, token) is None
    assert not still_valid(engine, principal)
    assert "\texpired\tuntil " in runner.invoke(app, ["token", "list"], env=env).output
    dispose_engines()
