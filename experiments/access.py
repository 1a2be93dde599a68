"""Who is calling: API tokens and the principals they stand for.

Each token belongs to one role and one scope: an académie token is scoped to its
académie, an EdTech token to its ``resource_id``, a researcher or officer token to an
experiment id (or ``*``), an admin token to ``*`` (:func:`scope_problem`). Tokens are
random, shown once when issued, and stored only as SHA-256 hashes. Every HTTP entry
point (the gateway's event and enrollment APIs, the portal) turns a token into a
:class:`Principal` and checks it; the portal checks again on every request that the
token of a session is not revoked (:func:`still_valid`).

The command line has no tokens: a command that acts on the registry opens it with the
deployment's database credentials, and holding them is the administrator role. The
database refuses whoever does not hold them; the audit log names the operating-system
account (:func:`cli_actor`). ``tests/integration/test_role_matrix.py`` checks every
route and command against every role.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

import sqlalchemy as sa
from sqlalchemy import Engine

from experiments.database import RegistryBase

__all__ = [
    "AUDIT_ACTIONS",
    "ApiToken",
    "AuditAction",
    "Principal",
    "Role",
    "authenticate",
    "cli_actor",
    "issue_token",
    "reason_problem",
    "record_audit",
    "scope_problem",
    "still_valid",
]

Role = Literal["researcher", "academie", "edtech", "officer", "admin"]

AuditAction = Literal[
    "token.issue", "token.revoke",
    "protocol.registration", "protocol.update", "protocol.amendment", "experiment.transition",
    "enrollment.file", "enrollment.pupils_file", "enrollment.read", "enrollment.withdraw",
    "enrollment.correct",
    "assignment.read", "outcomes.import", "data.export",
    "retention.purge", "retention.erase_class", "retention.erase_pupil",
    "retention.remove_withdrawn_pupil",
    "portal.sign_in",
]
"""Every action the audit log records (``audit_log.action``): one closed list, so that a
reader of the log knows every value it can hold and a typo fails the type check."""
AUDIT_ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)
ROLES: tuple[Role, ...] = ("researcher", "academie", "edtech", "officer", "admin")

# The slugs of académies, resource ids and experiment ids (ingest.contract's _SLUG).
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: Roles whose token may cover every scope (``*``); an académie or an EdTech token is
#: always one académie's or one resource's, an admin token always ``*``.
_WILDCARD_ROLES: tuple[Role, ...] = ("researcher", "officer", "admin")


class ApiToken(RegistryBase):
    __tablename__ = "api_tokens"

    token_sha256: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(64), primary_key=True)
    role: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(16))
    scope: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(128))
    label: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(128))
    created_at: sa.orm.Mapped[datetime] = sa.orm.mapped_column(sa.DateTime(timezone=True))
    revoked: sa.orm.Mapped[bool] = sa.orm.mapped_column(sa.Boolean, default=False)


class AuditEntry(RegistryBase):
    __tablename__ = "audit_log"

    id: sa.orm.Mapped[int] = sa.orm.mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    at: sa.orm.Mapped[datetime] = sa.orm.mapped_column(sa.DateTime(timezone=True))
    actor: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(128))
    action: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(64))
    subject: sa.orm.Mapped[str] = sa.orm.mapped_column(sa.String(256))
    detail: sa.orm.Mapped[dict[str, object] | None] = sa.orm.mapped_column(sa.JSON, nullable=True)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a role and what it is scoped to."""

    role: Role
    scope: str
    label: str
    token_sha256: str = field(default="", repr=False, compare=False)
    """The hash of the token it signed in with (:func:`still_valid` checks it again)."""

    def can_act_for(self, scope: str) -> bool:
        """Whether this principal's scope covers ``scope`` (admins cover everything).

        ``*`` covers every scope only for the roles that may hold it: an EdTech or
        académie token scoped ``*`` (refused at issue, possible in an older registry)
        covers nothing.
        """
        if self.role == "admin" or self.scope == scope:
            return True
        return self.scope == "*" and self.role in _WILDCARD_ROLES

    @property
    def actor(self) -> str:
        """How the audit log names this principal (never a person's name)."""
        return f"{self.role}:{self.scope}:{self.label}"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cli_actor(on_behalf_of: str | None = None) -> str:
    """How the audit log names whoever runs a registry command on this machine.

    Opening the registry with the deployment's credentials is the administrator role;
    the label is the operating-system account, so that the log says who it was.
    ``on_behalf_of`` names whom an administrator acts for when the command narrows its
    own rights (``preuve enroll --academie versailles``: ``academie:versailles``); the
    role stays ``admin``, which is what the credentials allow.

    Examples
    --------
    >>> cli_actor().startswith("admin:*:") and cli_actor().endswith("@cli")
    True
    >>> cli_actor("academie:versailles").endswith("@cli for academie:versailles")
    True
    """
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = f"uid{os.getuid()}"
    actor = f"admin:*:{user}@cli"
    # AuditEntry.actor holds 128 characters: a user name (32) and a slug (63) fit.
    return actor if on_behalf_of is None else f"{actor} for {on_behalf_of}"[:128]


def issue_token(engine: Engine, role: Role, scope: str, label: str = "",
                actor: str = "admin:*:cli") -> str:
    """Create a token for ``role`` scoped to ``scope``; returns it (shown once).

    ``actor`` is who issues it, for the audit log (the CLI passes :func:`cli_actor`).

    Raises ``ValueError`` for an unknown role or a scope the role cannot have (see
    :func:`scope_problem`).
    """
    if role not in ROLES:
        raise ValueError(f"role: expecting one of {ROLES}, got {role!r}")
    problem = scope_problem(role, scope)
    if problem is not None:
        raise ValueError(problem)
    token = f"pv_{role}_{secrets.token_urlsafe(24)}"
    with sa.orm.Session(engine) as session, session.begin():
        session.add(
            ApiToken(
                token_sha256=_digest(token), role=role, scope=scope, label=label or scope,
                created_at=datetime.now(UTC), revoked=False,
            )
        )
        session.add(_audit(actor, "token.issue", f"{role}:{scope}", {"label": label}))
    return token


def scope_problem(role: Role, scope: str) -> str | None:
    """Why ``scope`` cannot be the scope of a ``role`` token, or None.

    An EdTech token scoped ``*`` would send events for every resource, an académie's
    would stand for every académie: those two are always one slug. An admin covers
    everything, so its scope is ``*`` and nothing else (a scoped admin would look
    limited and not be).

    Examples
    --------
    >>> scope_problem("academie", "versailles") is None
    True
    >>> scope_problem("edtech", "*")
    "scope: a token of role 'edtech' covers one slug (a-z, 0-9, dashes), got '*'"
    >>> scope_problem("admin", "versailles")
    "scope: an admin token covers everything: give '*', got 'versailles'"
    """
    if role == "admin":
        return None if scope == "*" else (
            f"scope: an admin token covers everything: give '*', got {scope!r}")
    if scope == "*" and role in _WILDCARD_ROLES:
        return None
    if _SLUG.fullmatch(scope) is None:
        either = " or '*'" if role in _WILDCARD_ROLES else ""
        return (f"scope: a token of role '{role}' covers one slug (a-z, 0-9, dashes)"
                f"{either}, got {scope!r}")
    return None


def authenticate(engine: Engine, token: str | None) -> Principal | None:
    """The principal of a token, or None if it is unknown or revoked."""
    if not token:
        return None
    with sa.orm.Session(engine) as session:
        row = session.get(ApiToken, _digest(token))
        if row is None or row.revoked:
            return None
        return Principal(role=row.role, scope=row.scope, label=row.label,  # type: ignore[arg-type]
                         token_sha256=row.token_sha256)


def still_valid(engine: Engine, principal: Principal) -> bool:
    """Whether the token ``principal`` signed in with is still known and not revoked.

    What outlives one request (a portal session) asks again, so that revoking a token
    ends its sessions at once rather than when they expire.
    """
    if not principal.token_sha256:
        return False
    with sa.orm.Session(engine) as session:
        row = session.get(ApiToken, principal.token_sha256)
        return row is not None and not row.revoked


def _audit(actor: str, action: AuditAction, subject: str,
           detail: dict[str, object] | None) -> AuditEntry:
    return AuditEntry(at=datetime.now(UTC), actor=actor, action=action, subject=subject,
                      detail=detail)


def reason_problem(reason: str) -> str | None:
    """Why a free-text reason (of a withdrawal, an erasure, a forced purge) cannot be
    recorded, or None. Reasons are kept in the registry and the audit log for years, so
    one that holds an e-mail address or a phone number is refused; a pupil's name cannot
    be told from other words, which is why the help of these commands says not to write
    one.

    Examples
    --------
    >>> reason_problem("parents object")
    >>> reason_problem("call the parents on 06 12 34 56 78").split(":")[0]
    'the reason looks like a phone number (direct identifiers are refused)'
    """
    from ingest.contract import identifying_text

    problem = identifying_text(reason)
    if problem is None:
        return None
    return f"the reason {problem}: describe the request without identifying anyone"


def record_audit(
    session: sa.orm.Session, actor: str, action: AuditAction, subject: str,
    detail: dict[str, object] | None = None,
) -> None:
    """Add an audit entry (who, what, when) to ``session``'s transaction."""
    session.add(_audit(actor, action, subject, detail))
