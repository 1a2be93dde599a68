"""Secret settings read from files: ``<VAR>_FILE`` (the Docker secrets convention).

Every secret setting (a :class:`~pydantic.SecretStr` field of
:class:`~experiments.settings.Settings`: ``PREUVE_PSEUDONYM_KEY``,
``PREUVE_DATABASE_URL``, ``PREUVE_KAFKA__SECURITY__PASSWORD``) may instead be given as
``PREUVE_PSEUDONYM_KEY_FILE=/run/secrets/pseudonym_key``: the file's content, without
its final newline, is the value. Setting both a variable and its ``_FILE`` is refused
(which would win is not obvious), as are a missing or unreadable file and a file that
another user may write (it could swap the key). A file others may *read* is accepted:
Docker mounts secrets 0444 inside a container that only its service runs.

Hand-written rather than pydantic-settings' ``secrets_dir``: that one reads a file
named after the field from one directory, with no way to name a file per variable as
``*_FILE`` does, and it silently ignores a missing file.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from experiments.errors import ExperimentError

__all__ = ["SecretFileError", "file_secrets", "read_secret_file", "secret_variables"]

_PREFIX = "PREUVE_"


class SecretFileError(ExperimentError):
    """A ``*_FILE`` secret cannot be used: missing, unreadable, writable by others, or
    given twice."""


def read_secret_file(path: Path, what: str) -> str:
    """The secret in ``path`` (its final newline removed).

    Raises
    ------
    SecretFileError
        The file is missing, unreadable, not a regular file, or writable by another user.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> (folder / "key").write_text("s3cret\\n")
    7
    >>> (folder / "key").chmod(0o600)
    >>> read_secret_file(folder / "key", "PREUVE_PSEUDONYM_KEY")
    's3cret'
    >>> read_secret_file(folder / "nope", "PREUVE_PSEUDONYM_KEY")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    experiments.secrets.SecretFileError: PREUVE_PSEUDONYM_KEY: cannot read the file ...
    """
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise SecretFileError(f"{what}: {path} is not a regular file", path=str(path))
        if status.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise SecretFileError(
                f"{what}: {path} may be written by other users (mode "
                f"{stat.S_IMODE(status.st_mode):04o}): chmod go-w it", path=str(path))
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise SecretFileError(f"{what}: cannot read the file {path} "
                              f"({error.strerror or error})", path=str(path)) from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{what}: {path} is not UTF-8 text", path=str(path)) from None
    return text[:-2] if text.endswith("\r\n") else text.removesuffix("\n")


def _secret_paths(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, info in model.model_fields.items():
        annotation = info.annotation
        variable = f"{prefix}{name.upper()}"
        if annotation is not None and _mentions(annotation, SecretStr):
            yield variable
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            yield from _secret_paths(nested, f"{variable}__")


def _mentions(annotation: Any, wanted: type) -> bool:
    if annotation is wanted:
        return True
    return any(_mentions(a, wanted) for a in getattr(annotation, "__args__", ()))


def secret_variables(settings_class: type[BaseModel]) -> tuple[str, ...]:
    """The environment variables of every secret field (those that take ``_FILE``).

    Examples
    --------
    >>> from experiments.settings import Settings
    >>> secret_variables(Settings)
    ('PREUVE_DATABASE_URL', 'PREUVE_PSEUDONYM_KEY', 'PREUVE_KAFKA__SECURITY__PASSWORD')
    """
    return tuple(_secret_paths(settings_class, _PREFIX))


def file_secrets(settings_class: type[BaseModel],
                 environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The values of the secret fields given by ``<VAR>_FILE``, as nested settings data
    (``{"kafka": {"security": {"password": ...}}}``).

    Raises
    ------
    SecretFileError
        Both ``VAR`` and ``VAR_FILE`` are set, or the file cannot be used.
    """
    environ = os.environ if environ is None else environ
    upper = {k.upper(): v for k, v in environ.items()}
    data: dict[str, Any] = {}
    for variable in secret_variables(settings_class):
        path = upper.get(f"{variable}_FILE")
        if not path:
            continue
        if upper.get(variable):
            raise SecretFileError(f"{variable} and {variable}_FILE are both set: keep one")
        value = read_secret_file(Path(path), f"{variable}_FILE")
        keys = variable.removeprefix(_PREFIX).lower().split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return data
