"""One PostgreSQL role per service, each with only the privileges it needs.

``preuve db roles`` (as a superuser, once) creates the login roles; ``preuve db migrate``
(as the owner) migrates the schemas and then grants each existing role its privileges on
them, so that the grants always follow the schema (a migration that adds a table is
followed by its grants). The same SQL serves compose and operators.

=====================  ================================================================
role                   may
=====================  ================================================================
``preuve_owner``       own every schema (registry, stores): migrations, the
                       administrator's CLI (register, enroll, tokens, purge, export), the
                       scheduler (its retention purge drops an expired store's schema)
``preuve_gateway``     read the registry; write receipts, the enrollment tables (it serves
                       the enrollment API) and audit entries
``preuve_worker``      read the registry; write parked events; create the store of a new
                       experiment (it owns the stores it creates) and write their rows
``preuve_analysis``    read the registry and stores; write run records and claims, audit
``preuve_portal``      read the registry and stores; add audit entries (sign-ins and
                       refused sign-ins are audited), nothing else
``preuve_reader``      JupyterLab: read the stores and the registry's protocols,
                       enrollments and runs; not the tokens nor the audit log
=====================  ================================================================

No role but the owner may create, alter or drop anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["OWNER", "ROLES", "ServiceRole", "create_roles_sql", "grants_sql"]

OWNER = "preuve_owner"

_ENROLLMENT_TABLES = ("enrollments", "enrollment_designs", "allocation_log",
                      "learner_enrollments", "withdrawals", "enrollment_corrections")
_DML = "SELECT, INSERT, UPDATE, DELETE"


@dataclass(frozen=True)
class ServiceRole:
    """A login role: what it reads in the registry and writes there and in the stores."""

    name: str
    purpose: str
    #: registry tables it may read (None: all of them)
    registry_reads: tuple[str, ...] | None = None
    #: registry table → privileges beyond SELECT
    registry_writes: dict[str, str] = field(default_factory=dict)
    #: privileges on every table of every store ("" : none)
    store: str = "SELECT"


ROLES: tuple[ServiceRole, ...] = (
    ServiceRole("preuve_gateway", "events in, receipts, the enrollment API",
                registry_writes={"gateway_receipts": "INSERT, UPDATE, DELETE",
                                 "audit_log": "INSERT", "pseudonym_keys": "INSERT",
                                 **{t: "INSERT, UPDATE, DELETE" for t in _ENROLLMENT_TABLES}},
                store=""),
    ServiceRole("preuve_worker", "the stream workers",
                registry_writes={"unrouted_events": "INSERT, UPDATE, DELETE",
                                 "pseudonym_keys": "INSERT",
                                 # the EdTech console's index of dead letters, kept as long
                                 # as the dead-letter topic (ingest/deadletters.py)
                                 "dead_letters": "INSERT, DELETE"}, store=_DML),
    ServiceRole("preuve_analysis", "the analysis workers",
                registry_writes={"analysis_runs": "INSERT, UPDATE",
                                 "scheduled_runs": "INSERT, UPDATE", "audit_log": "INSERT"}),
    ServiceRole("preuve_portal", "the portal (reads; writes only its sign-in audit and an "
                "EdTech's own keys, created and revoked in its console)",
                registry_writes={"audit_log": "INSERT", "api_tokens": "INSERT, UPDATE"}),
    ServiceRole("preuve_reader", "JupyterLab and researchers' read-only sessions",
                registry_reads=("experiments", "protocol_versions", "experiment_transitions",
                                "enrollments", "enrollment_designs", "withdrawals",
                                "analysis_runs", "scheduled_runs")),
)


def _quote(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return f'"{name}"'


def create_roles_sql(database: str) -> list[str]:
    """SQL (for a superuser; idempotent) creating the owner and the service roles as
    login roles without passwords (``preuve db roles --passwords DIR`` sets them).

    Examples
    --------
    >>> create_roles_sql("preuve")[-1]
    'REVOKE CREATE ON SCHEMA public FROM PUBLIC'
    """
    statements = []
    for name in (OWNER, *(r.name for r in ROLES)):
        statements.append(
            "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = "
            f"'{name}') THEN CREATE ROLE {_quote(name)} LOGIN; END IF; END $$")
    db = _quote(database)
    statements += [
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT, TEMPORARY ON DATABASE {db} TO "
        + ", ".join(_quote(n) for n in (OWNER, *(r.name for r in ROLES))),
        f"GRANT CREATE ON DATABASE {db} TO {_quote(OWNER)}, \"preuve_worker\"",
        # The owner may drop (purge) and migrate the stores the worker created.
        f"GRANT \"preuve_worker\" TO {_quote(OWNER)}",
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC",
    ]
    return statements


def grants_sql(kind: str, schema: str, tables: Iterable[str],
               existing: Iterable[str]) -> list[str]:
    """GRANTs (run by the owner after migrating ``schema``) to each role in ``existing``.

    ``kind`` is ``registry`` or ``store``; ``tables`` are the schema's tables.

    Examples
    --------
    >>> grants = grants_sql("registry", "preuve_registry", ["audit_log", "experiments"],
    ...                     ["preuve_portal"])
    >>> [g for g in grants if "INSERT" in g]
    ['GRANT INSERT ON "preuve_registry"."audit_log" TO "preuve_portal"']
    """
    tables = sorted(tables)
    wanted = set(existing)
    s = _quote(schema)
    out: list[str] = []
    for role in ROLES:
        if role.name not in wanted:
            continue
        who = _quote(role.name)
        if kind == "store" and not role.store:
            continue
        out.append(f"GRANT USAGE ON SCHEMA {s} TO {who}")
        out.append(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {who}")
        if kind == "store":
            out.append(f"GRANT {role.store} ON ALL TABLES IN SCHEMA {s} TO {who}")
            continue
        reads = [t for t in tables if role.registry_reads is None
                 or t in role.registry_reads or t == "alembic_version"]
        out += [f"GRANT SELECT ON {s}.{_quote(t)} TO {who}" for t in reads]
        out += [f"GRANT {privileges} ON {s}.{_quote(t)} TO {who}"
                for t, privileges in sorted(role.registry_writes.items()) if t in tables]
    return out
