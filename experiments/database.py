"""Database engines and migrations for the registry and the per-experiment stores.

Two layouts, chosen by ``Settings.database_url``:

- unset (quick start): SQLite files, ``state_dir/registry.sqlite`` and
  ``state_dir/stores/<experiment>.sqlite``;
- a ``postgresql://`` URL (production): one database, the registry in schema
  ``preuve_registry`` and each experiment in its own schema ``exp_<experiment>``.

Schemas change only through Alembic migrations (``experiments/migrations/``); nothing
calls ``create_all`` outside tests. The registry's migrations are split into branches
(``core``, ``protocols``, ``enrollment``...) so that each concept owns its tables;
``migrate_registry`` upgrades to every head.

On PostgreSQL every experiment's store goes through one engine and one connection pool
per database: a store's engine is that engine with a ``schema_translate_map`` naming the
experiment's schema (SQLAlchemy renders the schema into each statement), so the number of
connections does not grow with the number of experiments. SQLite keeps one file, hence
one engine, per experiment.

Who migrates: ``preuve db migrate`` (the registry and every registered experiment's
store) is the explicit step, run with the owner's role (``preuve db roles``). Processes
with ``Settings.database_migrate`` on (the default: the quick start, the services that
own writes) also migrate on first use; off, and always in the portal (a read-only role),
an engine only checks that its schema is at the latest migration and otherwise says to
run ``preuve db migrate``: no DDL, no ``CREATE SCHEMA``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase

from experiments.errors import StoreError
from experiments.settings import Settings

__all__ = [
    "RegistryBase",
    "dispose_engines",
    "insert_for",
    "insert_for_dialect",
    "StoreBase",
    "check_current",
    "is_postgres",
    "migrate_all",
    "migrate_registry",
    "migrate_store",
    "registry_engine",
    "store_engine",
    "store_schema",
]

logger = logging.getLogger(__name__)

REGISTRY_SCHEMA = "preuve_registry"
_MIGRATIONS = Path(__file__).parent / "migrations"
_EXPERIMENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class RegistryBase(DeclarativeBase):
    """Declarative base of the registry's tables (experiments, enrollments, audit)."""

    metadata = MetaData()


class StoreBase(DeclarativeBase):
    """Declarative base of a per-experiment store's tables (events, usage)."""

    metadata = MetaData()


def insert_for(bind: Engine | Connection, table: Table) -> Any:
    """An INSERT on ``table`` in the bind's dialect, so that ``on_conflict_do_nothing`` and
    ``on_conflict_do_update`` (SQLite and PostgreSQL only) are available."""
    return insert_for_dialect(bind.dialect, table)


def insert_for_dialect(dialect: Dialect, table: Table) -> Any:
    """:func:`insert_for` when only the dialect is at hand."""
    module = postgresql if dialect.name == "postgresql" else sqlite
    return module.insert(table)


def is_postgres(settings: Settings) -> bool:
    """Whether the configured database is PostgreSQL."""
    dsn = settings.database_dsn()
    return dsn is not None and make_url(dsn).get_backend_name() == "postgresql"


def store_schema(experiment_id: str) -> str:
    """PostgreSQL schema name of an experiment's store (``fluence-cp`` → ``exp_fluence_cp``)."""
    if not _EXPERIMENT_ID.match(experiment_id):
        raise StoreError(
            f"experiment id {experiment_id!r} is not a slug (a-z, 0-9, dashes)", field="id"
        )
    return "exp_" + experiment_id.replace("-", "_")


def _sqlite_engine(path: Path) -> Engine:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)  # new directories: private
    engine = create_engine(f"sqlite:///{path}", future=True)

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # WAL lets readers (analysis, portal) work while the worker writes; NORMAL sync is
        # durable across process crashes (what we test), FULL only adds power-loss safety.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA temp_store=MEMORY")  # the worker's per-batch staging table
        cursor.close()

    return engine


def _postgres_engine(url: str, schema: str, *, create: bool = True) -> Engine:
    if create:  # a read-only role may not CREATE, even IF NOT EXISTS
        base = create_engine(url, future=True, pool_pre_ping=True)
        with base.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        base.dispose()
    return create_engine(
        url,
        future=True,
        pool_pre_ping=True,
        pool_size=2,
        max_overflow=4,
        connect_args={"options": f"-csearch_path={schema}"},
    )


_engines: dict[tuple[str, str], Engine] = {}
_migrated: set[tuple[str, str]] = set()  # engines this process migrated (or checked current)
_engines_lock = threading.Lock()
#: PostgreSQL: the one engine (and pool) of every store of a database, by URL.
_store_pools: dict[str, Engine] = {}

#: The store pool's size: shared by every experiment of the database (a stream worker
#: writes one store at a time per batch; readers are few).
_STORE_POOL_SIZE, _STORE_POOL_OVERFLOW = 4, 8


def _shared_store_engine(url: str) -> Engine:
    """The one engine of every experiment schema of a PostgreSQL database (lock held)."""
    engine = _store_pools.get(url)
    if engine is None:
        engine = create_engine(url, future=True, pool_pre_ping=True,
                               pool_size=_STORE_POOL_SIZE, max_overflow=_STORE_POOL_OVERFLOW)
        _store_pools[url] = engine
    return engine


def _postgres_store(url: str, schema: str, *, create: bool = True) -> Engine:
    """An experiment's store on the shared engine: its schema created (``create``: a
    read-only role may not CREATE, even IF NOT EXISTS), and the schema rendered into
    every statement (``schema_translate_map``)."""
    shared = _shared_store_engine(url)
    if create:
        with shared.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
    engine = shared.execution_options(schema_translate_map={None: schema})

    @event.listens_for(engine, "engine_connect")
    def _search_path(connection: Connection) -> None:
        # SQLAlchemy statements name the schema (the map above); text SQL, reflection and
        # migrations find it on the search path, set for the connection's session each
        # time this experiment takes it from the shared pool (events of this engine only).
        connection.exec_driver_sql(f'SET search_path TO "{schema}"')
        connection.commit()

    return engine


def _engine(settings: Settings, schema: str, sqlite_path: Path, location: str,
            what: str, *, migrate: bool | None = None) -> Engine:
    """The cached engine of one schema, migrated (``migrate``) or checked current."""
    migrate = settings.database_migrate if migrate is None else migrate
    key = (settings.database_dsn() or str(settings.state_dir), schema)
    with _engines_lock:
        engine = _engines.get(key)
        if engine is None:
            if is_postgres(settings):
                dsn = settings.database_dsn()
                assert dsn is not None
                # Stores share one pool per database (issue 20): connections do not grow
                # with the number of experiments.
                engine = (_postgres_store(dsn, schema, create=migrate) if location == "store"
                          else _postgres_engine(dsn, schema, create=migrate))
            else:
                if not migrate and not sqlite_path.exists():
                    raise StoreError(f"{what} does not exist yet ({sqlite_path}): run "
                                     "`preuve db migrate` first", field="database_url")
                engine = _sqlite_engine(sqlite_path)
            _engines[key] = engine
        if key not in _migrated:
            if migrate:
                _upgrade(engine, location,
                         schema=schema if location == "store" and is_postgres(settings)
                         else None)
            else:
                check_current(engine, location, what)
            _migrated.add(key)
    return engine


def registry_engine(settings: Settings, *, migrate: bool | None = None) -> Engine:
    """The registry's engine, migrated to the latest schema on first use, or only checked
    when ``migrate`` (default: ``settings.database_migrate``) is off."""
    return _engine(settings, REGISTRY_SCHEMA, settings.state_dir / "registry.sqlite",
                   "registry", "the registry", migrate=migrate)


def store_engine(settings: Settings, experiment_id: str, *,
                 migrate: bool | None = None) -> Engine:
    """The engine of one experiment's store (created and migrated on first use, or only
    checked when ``migrate``, default ``settings.database_migrate``, is off)."""
    schema = store_schema(experiment_id)
    return _engine(settings, schema,
                   settings.state_dir / "stores" / f"{experiment_id}.sqlite", "store",
                   f"the store of experiment {experiment_id!r}", migrate=migrate)


def check_current(engine: Engine, location: str, what: str) -> None:
    """Raise :class:`StoreError` unless ``engine``'s schema is at every migration head.

    Reads only (``alembic_version``): what a read-only role may do.
    """
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS / location))
    heads = set(ScriptDirectory.from_config(config).get_heads())
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except Exception as error:  # the schema or the database is absent or unreadable
        logger.warning("cannot read the migration state of %s: %s", what, error)
        current = set()
    if current != heads:
        raise StoreError(
            f"{what} is not at the latest migration (run `preuve db migrate` with the "
            "database owner's role; this process does not migrate)", field="database_url")


def migrate_all(settings: Settings) -> list[str]:
    """Migrate the registry and the store of every registered experiment (``preuve db
    migrate``); returns the experiment ids whose stores were migrated."""
    where = settings.database_dsn() or str(settings.state_dir)
    with _engines_lock:  # upgrade and grant again, even what this process did before
        _migrated.difference_update({k for k in _migrated if k[0] == where})
    registry = registry_engine(settings, migrate=True)
    with registry.connect() as connection:
        ids = sorted(connection.execute(text("SELECT id FROM experiments")).scalars())
    for experiment_id in ids:
        store_engine(settings, experiment_id, migrate=True)
    return ids


def dispose_engines() -> None:
    """Close every cached engine (tests and shutdown)."""
    with _engines_lock:
        for engine in [*_engines.values(), *_store_pools.values()]:
            engine.dispose()
        _engines.clear()
        _store_pools.clear()
        _migrated.clear()


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """Across processes, one migration of a SQLite file at a time.

    pysqlite runs DDL outside the transaction SQLAlchemy began, so two processes opening
    the same new store at once (a worker and a reader, two workers) both saw no
    ``alembic_version`` and the second failed with "table events already exists". An
    exclusive lock on a file beside the database serialises them; the second then finds
    the store migrated. (PostgreSQL takes an advisory lock instead, below.)
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        yield
        return
    descriptor = os.open(f"{database}.migrate-lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # closing releases the lock


def _upgrade(engine: Engine, location: str, schema: str | None = None) -> None:
    """Upgrade to every head of ``location``; on PostgreSQL, in ``schema`` if given (the
    migrations name no schema: ``SET LOCAL search_path`` puts them there, for this
    transaction only, so the pooled connection goes back unchanged), then grant."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS / location))
    with _sqlite_migration_lock(engine), engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Two processes migrating the same fresh schema at once would collide in
            # pg_type; a transaction-scoped advisory lock makes the second one wait.
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                               {"key": f"preuve-migrate-{location}"})
            if schema is not None:
                connection.execute(text(f'SET LOCAL search_path TO "{schema}"'))
        config.attributes["connection"] = connection
        command.upgrade(config, "heads")
        if connection.dialect.name == "postgresql":
            _grant(connection, location)


def _grant(connection: Connection, location: str) -> None:
    """Grant each service role that exists its privileges on the schema just migrated
    (:mod:`experiments.database_roles`), so that grants follow every migration."""
    from experiments.database_roles import ROLES, grants_sql

    names = [r.name for r in ROLES]
    existing = list(connection.execute(
        text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"),
        {"names": names}).scalars())
    if not existing:
        return  # one role for everything (the quick start, the tests' superuser)
    schema, owned = connection.execute(text(
        "SELECT nspname, pg_has_role(nspowner, 'USAGE') FROM pg_namespace "
        "WHERE nspname = current_schema()")).one()
    if not owned:
        return  # migrated already by its owner, who granted (a worker at a current registry)
    tables = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": schema}).scalars()
    for statement in grants_sql(location, schema, list(tables), existing):
        connection.execute(text(statement))


def migrate_registry(engine: Engine) -> None:
    """Upgrade the registry to every migration head."""
    _upgrade(engine, "registry")


def migrate_store(engine: Engine) -> None:
    """Upgrade an experiment store to the latest migration."""
    _upgrade(engine, "store")
