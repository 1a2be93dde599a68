"""One PostgreSQL role per service (``preuve db roles``), the portal read-only.

On the throwaway cluster: the roles of :mod:`experiments.database_roles` are created as
a superuser would (``preuve db roles``), the owner migrates and fills the registry and a
store (``preuve db migrate`` then the usual writes), and the portal runs with its own
role: its pages work and its sign-in is audited, while PostgreSQL refuses any other
write, any DDL, and any migration it would attempt.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ProgrammingError

from experiments.database import (
    REGISTRY_SCHEMA,
    dispose_engines,
    migrate_all,
    registry_engine,
    store_schema,
)
from experiments.database_roles import OWNER, create_roles_sql
from experiments.errors import StoreError
from experiments.portal.app import create_portal
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, NOW, PortalClient, build_world

pytestmark = pytest.mark.integration


def _as(url: str, role: str) -> str:
    """The same database as another login role (the test cluster trusts local logins)."""
    return make_url(url).set(username=role).render_as_string(hide_password=False)


def _create_roles(url: str) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as connection:
            for statement in create_roles_sql(make_url(url).database or "postgres"):
                connection.execute(sa.text(statement))
    finally:
        engine.dispose()


def _refused(engine: sa.Engine, statement: str) -> None:
    with pytest.raises(ProgrammingError, match="permission denied|must be owner"), \
            engine.begin() as connection:
        connection.execute(sa.text(statement))


def _with_role(settings: Settings, url: str, role: str, **update: object) -> Settings:
    return settings.model_copy(update={"database_url": SecretStr(_as(url, role)), **update})


def test_portal_reads_with_a_read_only_role_and_its_writes_are_refused(
        make_settings: Callable[..., Settings], postgres_url: str) -> None:
    _create_roles(postgres_url)
    owner = _with_role(make_settings(), postgres_url, OWNER)
    migrate_all(owner)  # `preuve db migrate`, as the owner
    world = build_world(owner)  # the writers' work, as the owner (register, enroll, store)

    portal_settings = _with_role(owner, postgres_url, "preuve_portal")
    client = PortalClient(create_portal(portal_settings, clock=lambda: NOW))
    try:
        officer = client.sign_in(world.tokens["officer"])  # audited: INSERT on audit_log
        portfolio = client.request("GET", "/api/experiences", officer).json()
        assert [e["id"] for e in portfolio] == [EXPERIMENT]
        page = client.request("GET", f"/experiences/{EXPERIMENT}", officer)
        assert page.status_code == 200 and all(r.run_id in page.text for r in world.runs)
        academie = client.sign_in(world.tokens["academie_a"])
        usage = client.request("GET", f"/api/usages/{EXPERIMENT}", academie).json()  # store
        assert {c["class_id"] for c in usage["classes"]} == set(world.class_ids["versailles"])
        assert usage["weeks"] == ["2027-10-04", "2027-10-11"]
    finally:
        client.close()

    portal = registry_engine(portal_settings)  # the portal's engine (checked, not migrated)
    with portal.connect() as connection:
        assert connection.execute(sa.text("SELECT current_user")).scalar_one() == "preuve_portal"
        actions = set(connection.execute(sa.text("SELECT action FROM audit_log")).scalars())
    assert "portal.sign_in" in actions
    store = f'"{store_schema(EXPERIMENT)}"'
    for statement in (
        "UPDATE experiments SET state = 'closed'",
        "DELETE FROM audit_log",
        "UPDATE audit_log SET actor = 'someone else'",
        "INSERT INTO api_tokens (token_sha256, role, scope, label, created_at) "
        "VALUES ('x', 'admin', '*', 'forged', now())",
        "DELETE FROM analysis_runs",
        f"DELETE FROM {store}.events",
        f"UPDATE {store}.daily_usage SET active_seconds = 0",
        "CREATE TABLE intruder (x int)",
        f'CREATE TABLE "{REGISTRY_SCHEMA}".intruder (x int)',
        "CREATE SCHEMA intruder",
        "DROP TABLE experiments",
    ):
        _refused(portal, statement)

    # Another service's role is refused what is not its own either.
    gateway = sa.create_engine(_as(postgres_url, "preuve_gateway"),
                               connect_args={"options": f"-csearch_path={REGISTRY_SCHEMA}"})
    reader = sa.create_engine(_as(postgres_url, "preuve_reader"),
                              connect_args={"options": f"-csearch_path={REGISTRY_SCHEMA}"})
    try:
        _refused(gateway, "UPDATE api_tokens SET revoked = true")
        _refused(gateway, "DELETE FROM experiments")
        _refused(gateway, f"SELECT count(*) FROM {store}.events")  # no store access at all
        with gateway.begin() as connection:  # its own: receipts
            connection.execute(sa.text("DELETE FROM gateway_receipts WHERE false"))
        _refused(reader, "SELECT count(*) FROM api_tokens")  # JupyterLab: no token digests
        _refused(reader, "SELECT count(*) FROM audit_log")
        with reader.connect() as connection:
            assert connection.execute(sa.text(f"SELECT count(*) FROM {store}.events")).scalar()
    finally:
        gateway.dispose()
        reader.dispose()


def test_portal_does_not_migrate_and_says_to_run_db_migrate(
        make_settings: Callable[..., Settings], postgres_url: str) -> None:
    _create_roles(postgres_url)
    portal_settings = _with_role(make_settings(), postgres_url, "preuve_portal")
    with pytest.raises(StoreError, match="preuve db migrate"):
        create_portal(portal_settings)
    # A service told not to migrate says the same rather than attempting DDL.
    gateway = _with_role(make_settings(), postgres_url, "preuve_gateway", database_migrate=False)
    with pytest.raises(StoreError, match="preuve db migrate"):
        registry_engine(gateway)


def test_db_roles_applies_the_roles_with_their_password_files_then_db_migrate_grants(
        tmp_path: Path, postgres_url: str) -> None:
    """The commands compose runs: `preuve db roles --apply --passwords DIR` as the
    superuser, then `preuve db migrate` as the owner."""
    from typer.testing import CliRunner

    from experiments.cli.app import app as preuve

    passwords = tmp_path / "secrets"
    passwords.mkdir()
    for name in (OWNER, "preuve_portal"):
        (passwords / f"{name}.password").write_text(f"pw-of-{name}\n")
        (passwords / f"{name}.password").chmod(0o600)
    env = {"PREUVE_STATE_DIR": str(tmp_path / "state"), "PREUVE_DATABASE_URL": postgres_url}
    printed = CliRunner().invoke(preuve, ["db", "roles"], env=env)
    assert printed.exit_code == 0 and "CREATE ROLE \"preuve_portal\" LOGIN" in printed.output
    applied = CliRunner().invoke(preuve, ["db", "roles", "--apply", "--passwords",
                                          str(passwords)], env=env)
    assert applied.exit_code == 0, applied.output
    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as connection:
            with_password = set(connection.execute(sa.text(
                "SELECT rolname FROM pg_authid WHERE rolname LIKE 'preuve\\_%' "
                "AND rolpassword IS NOT NULL")).scalars())
    finally:
        engine.dispose()
    assert {OWNER, "preuve_portal"} <= with_password
    dispose_engines()
    migrated = CliRunner().invoke(preuve, ["db", "migrate"],
                                  env={**env, "PREUVE_DATABASE_URL": _as(postgres_url, OWNER)})
    assert migrated.exit_code == 0, migrated.output
    portal = sa.create_engine(_as(postgres_url, "preuve_portal"))
    try:
        with portal.connect() as connection:
            assert connection.execute(sa.text(
                f'SELECT count(*) FROM "{REGISTRY_SCHEMA}".experiments')).scalar_one() == 0
        _refused(portal, f'DELETE FROM "{REGISTRY_SCHEMA}".experiments')
    finally:
        portal.dispose()
