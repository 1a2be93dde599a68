"""Who is calling: API tokens and the principals they stand for.

Each token belongs to one role and one scope: an académie token is scoped to its
académie, an EdTech token to its ``resource_id``, an assessor token (the evaluation team,
a test provider such as the DEPP) to one experiment id, a researcher or officer token to
an experiment id (or ``*``), an admin token to ``*`` (:func:`scope_problem`). Tokens are
random, shown once when issued, and stored only as SHA-256 hashes. Every HTTP entry
point (the gateway's event and enrollment APIs, the portal) turns a token into a
:class:`Principal` and checks it: the APIs through one FastAPI dependency,
:func:`caller`, which reads the token from the headers before any body is read; the
portal checks again on every request that the token of a session is not revoked
(:func:`still_valid`).

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
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from experiments.database import RegistryBase
from experiments.refusals import Refused

__all__ = [
    "AUDIT_ACTIONS",
    "ApiToken",
    "AuditAction",
    "Principal",
    "Role",
    "authenticate",
    "caller",
    "cli_actor",
    "issue_token",
    "reason_problem",
    "record_audit",
    "scope_problem",
    "still_valid",
]

Role = Literal["researcher", "academie", "edtech", "officer", "admin", "assessor"]

AuditAction = Literal[
    "token.issue", "token.revoke",
    "protocol.registration", "protocol.update", "protocol.amendment", "experiment.transition",
    "enrollment.file", "enrollment.pupils_file", "enrollment.read", "enrollment.withdraw",
    "enrollment.correct", "enrollment.follow",
    "assignment.read", "outcomes.import", "outcomes.correct", "data.export",
    "retention.purge", "retention.erase_class", "retention.erase_pupil",
    "retention.remove_withdrawn_pupil",
    "portal.sign_in", "portal.sign_in_refused", "portal.sign_in_throttled",
    "sufficiency.alert",
]
"""Every action the audit log records (``audit_log.action``): one closed list, so that a
reader of the log knows every value it can hold and a typo fails the type check."""
AUDIT_ACTIONS: tuple[AuditAction, ...] = get_args(AuditAction)
ROLES: tuple[Role, ...] = ("researcher", "academie", "edtech", "officer", "admin", "assessor")

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
    expires_at: sa.orm.Mapped[datetime | None] = sa.orm.mapped_column(
        sa.DateTime(timezone=True), nullable=True)

    def usable(self, now: datetime) -> bool:
        """Not revoked, and not past its expiry (if it has one)."""
        if self.revoked:
            return False
        if self.expires_at is None:
            return True
        expires = self.expires_at
        if expires.tzinfo is None:  # SQLite keeps no offset; we store UTC
            expires = expires.replace(tzinfo=UTC)
        return now < expires


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
    def authority(self) -> str:
        """How a stored event names the principal that wrote it (``events.authority``, like
        xAPI's ``authority``): role, scope and the first 12 hex digits of the token's
        SHA-256, never the token itself (:mod:`experiments.runs.provenance`).

        Examples
        --------
        >>> Principal("assessor", "fluence-cp-2027", "DEPP", token_sha256="ab" * 32).authority
        'assessor:fluence-cp-2027:abababababab'
        """
        return f"{self.role}:{self.scope}:{self.token_sha256[:12]}"

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
                actor: str = "admin:*:cli", expires_at: datetime | None = None) -> str:
    """Create a token for ``role`` scoped to ``scope``; returns it (shown once).

    ``actor`` is who issues it, for the audit log (the CLI passes :func:`cli_actor`).
    ``expires_at`` (aware) ends it: past it, the token authenticates nobody.

    Raises ``ValueError`` for an unknown role or a scope the role cannot have (see
    :func:`scope_problem`).
    """
    if role not in ROLES:
        raise ValueError(f"role: expecting one of {ROLES}, got {role!r}")
    problem = scope_problem(role, scope)
    if problem is not None:
        raise ValueError(problem)
    if expires_at is not None and expires_at.tzinfo is None:
        raise ValueError("expires_at: give a time with its UTC offset")
    token = f"pv_{role}_{secrets.token_urlsafe(24)}"
    with sa.orm.Session(engine) as session, session.begin():
        session.add(
            ApiToken(
                token_sha256=_digest(token), role=role, scope=scope, label=label or scope,
                created_at=datetime.now(UTC), revoked=False, expires_at=expires_at,
            )
        )
        detail: dict[str, object] = {"label": label}
        if expires_at is not None:
            detail["expires_at"] = expires_at.isoformat()
        session.add(_audit(actor, "token.issue", f"{role}:{scope}", detail))
    return token


def scope_problem(role: Role, scope: str) -> str | None:
    """Why ``scope`` cannot be the scope of a ``role`` token, or None.

    An EdTech token scoped ``*`` would send events for every resource, an académie's
    would stand for every académie, an assessor's would send the outcomes of every
    experiment: those three are always one slug. An admin covers
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
    """The principal of a token, or None if it is unknown, revoked or expired."""
    if not token:
        return None
    with sa.orm.Session(engine) as session:
        row = session.get(ApiToken, _digest(token))
        if row is None or not row.usable(datetime.now(UTC)):
            return None
        return Principal(role=row.role, scope=row.scope, label=row.label,  # type: ignore[arg-type]
                         token_sha256=row.token_sha256)


_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer <token>`")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False,
                        description="The token (an EdTech's API key), as for events.")


async def caller(
    request: Request,
    bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
    api_key: str | None = Depends(_api_key),  # noqa: B008
) -> Principal:
    """The principal of the request's token (``Authorization: Bearer`` or ``X-API-Key``),
    checked against ``request.app.state.registry``: the one authentication of Preuve's
    HTTP APIs. A route's own checks (role, scope) come after; its body is read after.

    Raises
    ------
    Refused
        401, with ``WWW-Authenticate: Bearer``, without a known and unrevoked token.
    """
    token = api_key or (bearer.credentials if bearer is not None else None)
    registry: Engine = request.app.state.registry
    principal = await run_in_threadpool(authenticate, registry, token) if token else None
    if principal is None:
        reason = ("a token is required" if not token
                  else "the token is unknown, revoked or expired")
        raise Refused(401, f"{reason} (Authorization: Bearer <token> or X-API-Key)",
                      field="Authorization", headers={"WWW-Authenticate": "Bearer"})
    return principal


def still_valid(engine: Engine, principal: Principal) -> bool:
    """Whether the token ``principal`` signed in with is still known, not revoked and not
    expired.

    What outlives one request (a portal session) asks again, so that revoking a token
    ends its sessions at once rather than when they expire.
    """
    if not principal.token_sha256:
        return False
    with sa.orm.Session(engine) as session:
        row = session.get(ApiToken, principal.token_sha256)
        return row is not None and row.usable(datetime.now(UTC))


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
