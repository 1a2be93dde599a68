"""``preuve token ...``: API tokens for the gateway, the enrollment API and the portal.

Run by an administrator on the machine that holds the registry: a token is shown once,
when issued, and only its SHA-256 is kept. Whoever opens the registry with the
deployment's credentials is the administrator; the audit log names the operating-system
account (:func:`experiments.access.cli_actor`). Without those credentials the database
refuses, and the command says so in one line (exit 4, :mod:`experiments.cli.console`).
"""

from __future__ import annotations

import typer

from experiments.cli.console import database_errors

app = typer.Typer(help="Issue, list and revoke API tokens (administrators).", no_args_is_help=True)

ROLE_HELP = "researcher | academie | edtech | officer | admin | assessor"
SCOPE_HELP = (
    "What the token covers: an académie slug (academie), a resource id (edtech), "
    "an experiment id (assessor), an experiment id or * (researcher, officer), * (admin)."
)


@app.command("issue")
def issue(
    role: str = typer.Argument(..., help=ROLE_HELP),
    scope: str = typer.Argument(..., help=SCOPE_HELP),
    label: str = typer.Option("", "--label", help="Who holds it (an organisation, not a person)."),
) -> None:
    """Create a token; it is printed once and stored only as a hash."""
    from experiments.access import ROLES, cli_actor, issue_token, scope_problem
    from experiments.database import registry_engine
    from experiments.settings import Settings

    if role not in ROLES:
        typer.echo(f"error: role: expecting one of {', '.join(ROLES)}, got {role!r}", err=True)
        raise typer.Exit(2)
    problem = scope_problem(role, scope)
    if problem is not None:
        typer.echo(f"error: {problem}", err=True)
        raise typer.Exit(2)
    with database_errors():
        token = issue_token(registry_engine(Settings()), role, scope, label, actor=cli_actor())
    typer.echo(token)


@app.command("list")
def list_tokens() -> None:
    """The tokens of the registry: role, scope, label, date, revoked (never the secret)."""
    import sqlalchemy as sa

    from experiments.access import ApiToken
    from experiments.database import registry_engine
    from experiments.settings import Settings

    with database_errors(), sa.orm.Session(registry_engine(Settings())) as session:
        rows = session.scalars(sa.select(ApiToken).order_by(ApiToken.created_at)).all()
        for row in rows:
            state = "revoked" if row.revoked else "active"
            typer.echo(f"{row.token_sha256[:12]}\t{row.role}\t{row.scope}\t{row.label}\t"
                       f"{row.created_at:%Y-%m-%d}\t{state}")


@app.command("revoke")
def revoke(
    prefix: str = typer.Argument(..., help="The first characters of the token's hash (`list`)."),
) -> None:
    """Revoke a token by the prefix of its hash, as `preuve token list` shows it."""
    import sqlalchemy as sa

    from experiments.access import ApiToken, cli_actor, record_audit
    from experiments.database import registry_engine
    from experiments.settings import Settings

    with (database_errors(), sa.orm.Session(registry_engine(Settings())) as session,
          session.begin()):
        rows = session.scalars(
            sa.select(ApiToken).where(ApiToken.token_sha256.startswith(prefix))
        ).all()
        if len(rows) != 1 or len(prefix) < 6:
            typer.echo(f"error: prefix {prefix!r} matches {len(rows)} tokens; give at least 6 "
                       "characters that match exactly one", err=True)
            raise typer.Exit(2)
        rows[0].revoked = True
        record_audit(session, cli_actor(), "token.revoke", f"{rows[0].role}:{rows[0].scope}",
                     {"label": rows[0].label})
    typer.echo("revoked")
