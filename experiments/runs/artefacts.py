"""The files of an analysis run (results JSON, HTML report), stored in the registry.

A run's artefacts are rows of ``run_artefacts`` (bytes, SHA-256, media type), written in
the transaction that records the run (:func:`experiments.runs.records.perform_run`), and
immutable like the record itself: the database refuses updates and deletes
(``migrations/registry/versions/artefacts_0001.py``). Whoever reads the registry database
reads the reports, whatever machine it runs on: an analysis worker and the portal need
no shared directory.

A reader gets the bytes with :func:`read_artefact`, which checks them against their
SHA-256 and against the run record's; the CLI writes them as files where users expect
files (:func:`write_artefacts`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from experiments.errors import SchedulerError

__all__ = [
    "MEDIA_TYPES",
    "Artefact",
    "ArtefactAltered",
    "insert_artefacts",
    "read_artefact",
    "run_artefacts_table",
    "write_artefacts",
]

Kind = Literal["json", "html"]

#: The media type of each kind of artefact.
MEDIA_TYPES: dict[str, str] = {"json": "application/json",
                               "html": "text/html; charset=utf-8"}

#: File name suffix of each kind, when the CLI writes artefacts as files.
_SUFFIXES: dict[str, str] = {"json": ".json", "html": ".html"}

_metadata = sa.MetaData()
#: A run's stored files (see ``migrations/registry/versions/artefacts_0001.py``).
run_artefacts_table = sa.Table(
    "run_artefacts",
    _metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),
    sa.Column("media_type", sa.String(100), nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("content", sa.LargeBinary, nullable=False),
    sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
)


class ArtefactAltered(SchedulerError):
    """Stored bytes that differ from their recorded SHA-256 (never served)."""


@dataclass(frozen=True)
class Artefact:
    """One stored file of a run."""

    kind: str
    """``json`` (the results) or ``html`` (the report)."""
    media_type: str
    sha256: str
    content: bytes

    @classmethod
    def of(cls, kind: Kind, content: bytes) -> Artefact:
        """An artefact of ``kind`` holding ``content`` (its hash computed here)."""
        return cls(kind, MEDIA_TYPES[kind], hashlib.sha256(content).hexdigest(), content)


def insert_artefacts(connection: Connection, run_id: str, artefacts: list[Artefact]) -> None:
    """Store a run's artefacts, in the caller's transaction (the one recording the run)."""
    if not artefacts:
        return
    now = datetime.now(UTC)
    connection.execute(sa.insert(run_artefacts_table), [
        {"run_id": run_id, "kind": a.kind, "media_type": a.media_type, "sha256": a.sha256,
         "size": len(a.content), "content": a.content, "stored_at": now}
        for a in artefacts])


def read_artefact(registry: Engine, run_id: str, kind: str,
                  recorded_sha256: str | None = None) -> Artefact | None:
    """A run's stored artefact, or None if the run stored none of this kind.

    Raises
    ------
    ArtefactAltered
        The bytes differ from their SHA-256, or from the hash the run record holds.
    """
    table = run_artefacts_table
    with registry.connect() as connection:
        row = connection.execute(
            sa.select(table.c.media_type, table.c.sha256, table.c.content)
            .where(table.c.run_id == run_id, table.c.kind == kind)).first()
    if row is None:
        return None
    content = bytes(row.content)
    digest = hashlib.sha256(content).hexdigest()
    if digest != row.sha256 or (recorded_sha256 is not None and digest != recorded_sha256):
        raise ArtefactAltered(f"run {run_id}: the stored {kind} differs from its recorded "
                              "SHA-256; it is not served", field="sha256")
    return Artefact(kind, row.media_type, digest, content)


def write_artefacts(registry: Engine, run_id: str, folder: Path) -> list[Path]:
    """Write a run's stored artefacts as new files ``folder/<run-id>.{json,html}``.

    Files are checked (:func:`read_artefact`) and never replace an existing file.

    Raises
    ------
    SchedulerError
        A file of that name exists already, or the run stored no artefact.
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("json", "html"):
        artefact = read_artefact(registry, run_id, kind)
        if artefact is None:
            continue
        path = folder / f"{run_id}{_SUFFIXES[kind]}"
        try:
            with path.open("xb") as handle:
                handle.write(artefact.content)
        except FileExistsError as exc:
            raise SchedulerError(f"{path}: exists already; not replaced",
                                 path=str(path), field="to") from exc
        written.append(path)
    if not written:
        raise SchedulerError(f"run {run_id}: no stored report or results (a failed run?)",
                             field="run")
    return written
