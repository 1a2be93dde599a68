"""Re-keying of learner ids per experiment.

Learner ids arrive pseudonymous (as the GAR hands them to resources); Preuve re-keys them
with HMAC-SHA256 under a secret key and the experiment id, so that the same pupil has
unlinkable ids in two experiments and the raw id is never stored.

The key is ``PREUVE_PSEUDONYM_KEY`` (at least :data:`MIN_KEY_BYTES` bytes: a short key
lets anyone recompute every pseudonym) or, unset, a random key that the first process
to need it creates in ``state_dir/pseudonym.key`` (mode 0600). Creation is atomic: the
key is written to a temporary file and linked into place, so two processes starting at
once agree on one key and neither reads it half-written. :func:`pseudonym_key_id`
names a key without revealing it, for the day it is rotated: exports record it, and
the registry records it per experiment at its first pseudonymisation
(:func:`check_pseudonym_key`), after which another key is refused for that experiment.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

from experiments.database import RegistryBase, insert_for
from experiments.settings import MIN_KEY_BYTES, Settings
from ingest.errors import IngestError

__all__ = [
    "MIN_KEY_BYTES",
    "PseudonymKeyError",
    "check_pseudonym_key",
    "load_pseudonym_key",
    "pseudonym_key_id",
    "pseudonym_keys_table",
    "pseudonymise",
]

#: The key id of each experiment (migration ``trust_0002``).
pseudonym_keys_table = sa.Table(
    "pseudonym_keys", RegistryBase.metadata,
    sa.Column("experiment_id", sa.String(63), primary_key=True),
    sa.Column("key_id", sa.String(16), nullable=False),
    sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
)


class PseudonymKeyError(IngestError):
    """The pseudonymisation key differs from the one an experiment's pseudonyms were
    made with."""


_checked: set[tuple[str, str, str]] = set()
_checked_lock = threading.Lock()


def check_pseudonym_key(bind: sa.Engine | sa.Connection, experiment_id: str,
                        key: bytes) -> str:
    """Record ``key``'s id as the experiment's at its first pseudonymisation, or check
    that it is the recorded one; returns the key id.

    Raises
    ------
    PseudonymKeyError
        The experiment's pseudonyms were made with another key: new ones would not
        match them (the pupil would become someone else).
    """
    key_id = pseudonym_key_id(key)
    memo = (repr(bind.engine.url), experiment_id, key_id)
    with _checked_lock:
        if memo in _checked:
            return key_id
    table = pseudonym_keys_table

    def record(connection: sa.Connection) -> str:
        connection.execute(insert_for(connection, table).values(
            experiment_id=experiment_id, key_id=key_id, recorded_at=datetime.now(UTC),
        ).on_conflict_do_nothing(index_elements=["experiment_id"]))
        return str(connection.execute(sa.select(table.c.key_id).where(
            table.c.experiment_id == experiment_id)).scalar_one())

    if isinstance(bind, sa.Engine):
        with bind.begin() as connection:
            recorded = record(connection)
    else:
        recorded = record(bind)
    if recorded != key_id:
        raise PseudonymKeyError(
            f"experiment {experiment_id!r} was pseudonymised with the key of id {recorded}; "
            f"this process has the key of id {key_id} (PREUVE_PSEUDONYM_KEY or "
            "state_dir/pseudonym.key): its pseudonyms would not match the stored ones. "
            "Use the experiment's key; a rotation applies to new experiments only")
    with _checked_lock:
        _checked.add(memo)
    return key_id


def pseudonymise(key: bytes, experiment_id: str, learner_id: str) -> str:
    """The experiment-specific pseudonym of a learner (64 hex characters).

    Examples
    --------
    >>> a = pseudonymise(b"k", "exp-a", "L1"); b = pseudonymise(b"k", "exp-b", "L1")
    >>> a != b and len(a) == 64
    True
    """
    message = f"{experiment_id}\x1f{learner_id}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def pseudonym_key_id(key: bytes) -> str:
    """A short public name of ``key`` (16 hex characters): which key made a pseudonym,
    without revealing the key (an HMAC of a fixed label, not a hash of the key).

    Examples
    --------
    >>> pseudonym_key_id(b"k" * 32) == pseudonym_key_id(b"k" * 32) != pseudonym_key_id(b"j" * 32)
    True
    """
    return hmac.new(key, b"preuve pseudonym key id", hashlib.sha256).hexdigest()[:16]


def load_pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key: ``PREUVE_PSEUDONYM_KEY``, else the key of ``state_dir/pseudonym.key``,
    created (atomically, mode 0600) by the first process that needs it.

    Raises
    ------
    ValueError
        The key file holds fewer than :data:`MIN_KEY_BYTES` bytes (edited by hand).
    """
    if settings.pseudonym_key is not None:
        # Settings refuses a short PREUVE_PSEUDONYM_KEY.
        return settings.pseudonym_key.get_secret_value().encode()
    path: Path = settings.state_dir / "pseudonym.key"
    if not path.exists():
        _create_key_file(path)
    key = path.read_text().strip().encode()
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(f"{path}: the pseudonymisation key has {len(key)} bytes, at least "
                         f"{MIN_KEY_BYTES} are needed")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new random key to a temporary file, then link it to ``path``: the link
    fails if another process linked its key first, and then that key is kept (a rename
    would replace it, leaving two processes with two keys)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".pseudonym.key.")
    try:
        with os.fdopen(descriptor, "w") as handle:  # mkstemp creates it with mode 0600
            handle.write(secrets.token_hex(32))
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process created it first: its key is the key
    finally:
        os.unlink(temporary)
