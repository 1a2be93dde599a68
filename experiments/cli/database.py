"""``preuve db``: the explicit database steps (migrations, one role per service)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Database schemas and roles (PostgreSQL: one role per service).",
                  no_args_is_help=True)


@app.command("migrate")
def migrate() -> None:
    """Migrate the registry and every registered experiment's store to the latest schema,
    then grant each service role its privileges (run it with the owner's role, after
    `preuve db roles` and after each upgrade of Preuve)."""
    from experiments.cli.console import user_errors
    from experiments.database import migrate_all
    from experiments.settings import Settings

    with user_errors():
        ids = migrate_all(Settings())
    typer.echo(f"registry and {len(ids)} stores at the latest migration")


@app.command("roles")
def roles(
    apply: Annotated[bool, typer.Option(
        "--apply", help="Run the SQL on PREUVE_DATABASE_URL (a superuser's) instead of "
        "printing it.")] = False,
    passwords: Annotated[Path | None, typer.Option(
        help="With --apply: a directory of ROLE.password files (Docker secrets); each "
        "role found there gets that password.")] = None,
) -> None:
    """Create the owner and one login role per service (gateway, worker, analysis,
    portal, reader): print the SQL, or run it with --apply."""
    import sqlalchemy as sa

    from experiments.cli.console import user_errors
    from experiments.database_roles import OWNER, ROLES, create_roles_sql
    from experiments.errors import ExperimentError
    from experiments.secrets import read_secret_file
    from experiments.settings import Settings

    settings = Settings()
    with user_errors():
        dsn = settings.database_dsn()
        if dsn is None or not dsn.startswith("postgresql"):
            raise ExperimentError("roles exist only in PostgreSQL: set PREUVE_DATABASE_URL "
                            "(or PREUVE_DATABASE_URL_FILE)")
        url = sa.engine.make_url(dsn)
        statements = create_roles_sql(url.database or "postgres")
        if not apply:
            typer.echo(";\n".join(statements) + ";")
            return
        engine = sa.create_engine(dsn)
        try:
            with engine.begin() as connection:
                for statement in statements:
                    connection.execute(sa.text(statement))
                for name in (OWNER, *(r.name for r in ROLES)):
                    file = None if passwords is None else passwords / f"{name}.password"
                    if file is None or not file.exists():
                        continue
                    secret = read_secret_file(file, f"password of {name}")
                    quoted = connection.exec_driver_sql(
                        "SELECT quote_literal(%(p)s)", {"p": secret}).scalar_one()
                    connection.exec_driver_sql(f'ALTER ROLE "{name}" PASSWORD {quoted}')
        finally:
            engine.dispose()
        typer.echo(f"roles {', '.join((OWNER, *(r.name for r in ROLES)))} ready; run "
                   "`preuve db migrate` as the owner")
