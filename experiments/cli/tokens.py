"""``preuve token ...``: API tokens for the gateway, the enrollment API and the portal.

Run by an administrator on the machine that holds the registry: a token is shown once,
when issued, and only its SHA-256 is kept. Whoever opens the registry with the
deployment's credentials is the administrator; the audit log names the operating-system
account (:func:`experiments.access.cli_actor`). Without those credentials the database
refuses, and the command says so in one line (exit 4, :mod:`experiments.cli.console`).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

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
    expires: str | None = typer.Option(
        None, "--expires", metavar="DATE|DAYSd",
        help="When the token stops working: a date (it works through that day, UTC), "
        "e.g. 2028-06-30, or a number of days from now, e.g. 90d. Default: never."),
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
    expires_at = None if expires is None else _expiry(expires)
    with database_errors():
        token = issue_token(registry_engine(Settings()), role, scope, label, actor=cli_actor(),
                            expires_at=expires_at)
    typer.echo(token)


def _expiry(text: str, now: datetime | None = None) -> datetime:
    """The end of a token given as ``YYYY-MM-DD`` (it works through that day, UTC) or
    ``Nd`` (N days from now).

    Examples
    --------
    >>> _expiry("2028-06-30").isoformat()
    '2028-07-01T00:00:00+00:00'
    >>> _expiry("90d", now=datetime(2028, 1, 1, tzinfo=UTC)).date().isoformat()
    '2028-03-31'
    """
    now = now or datetime.now(UTC)
    days = re.fullmatch(r"([1-9][0-9]{0,4})d", text)
    if days is not None:
        return now + timedelta(days=int(days.group(1)))
    try:
        day = datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        typer.echo(f"error: --expires: expecting a date (2028-06-30) or days (90d), got "
                   f"{text!r}", err=True)
        raise typer.Exit(2) from None
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=UTC)
    if end <= now:
        typer.echo(f"error: --expires: {text} is past", err=True)
        raise typer.Exit(2)
    return end


@app.command("list")
def list_tokens() -> None:
    """The tokens of the registry: role, scope, label, date, state (active, revoked,
    expired) and expiry (never the secret)."""
    import sqlalchemy as sa

    from experiments.access import ApiToken
    from experiments.database import registry_engine
    from experiments.settings import Settings

    with database_errors(), sa.orm.Session(registry_engine(Settings())) as session:
        rows = session.scalars(sa.select(ApiToken).order_by(ApiToken.created_at)).all()
        now = datetime.now(UTC)
        for row in rows:
            state = ("revoked" if row.revoked else "active" if row.usable(now) else "expired")
            until = "" if row.expires_at is None else f"\tuntil {row.expires_at:%Y-%m-%d %H:%M} UTC"
            typer.echo(f"{row.token_sha256[:12]}\t{row.role}\t{row.scope}\t{row.label}\t"
                       f"{row.created_at:%Y-%m-%d}\t{state}{until}")


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
