"""Re-keying of learner ids per experiment.

Learner ids arrive pseudonymous (as the GAR hands them to resources); Preuve re-keys them
with HMAC-SHA256 under a secret key and the experiment id, so that the same pupil has
unlinkable ids in two experiments and the raw id is never stored.

The key is ``PREUVE_PSEUDONYM_KEY`` (at least :data:`MIN_KEY_BYTES` bytes: a short key
lets anyone recompute every pseudonym) or, unset, a random key that the first process
to need it creates in ``state_dir/pseudonym.key`` (mode 0600). Creation is atomic: the
key is written to a temporary file and linked into place, so two processes starting at
once agree on one key and neither reads it half-written. :func:`pseudonym_key_id`
names a key without revealing it, for the day it is rotated: exports record it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

from experiments.settings import MIN_KEY_BYTES, Settings

__all__ = ["MIN_KEY_BYTES", "load_pseudonym_key", "pseudonym_key_id", "pseudonymise"]


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
