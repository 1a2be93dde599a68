"""Re-keying of learner ids per experiment.

Learner ids arrive pseudonymous (as the GAR hands them to resources); Preuve re-keys them
with HMAC-SHA256 under a secret key and the experiment id, so that the same pupil has
unlinkable ids in two experiments and the raw id is never stored.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from experiments.settings import Settings

__all__ = ["load_pseudonym_key", "pseudonymise"]


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


def load_pseudonym_key(settings: Settings) -> bytes:
    """The HMAC key: ``PREUVE_PSEUDONYM_KEY``, else a random key created once in
    ``state_dir/pseudonym.key`` with mode 0600."""
    if settings.pseudonym_key is not None:
        return settings.pseudonym_key.get_secret_value().encode()
    path: Path = settings.state_dir / "pseudonym.key"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as handle:
            handle.write(secrets.token_hex(32))
    return path.read_text().strip().encode()
