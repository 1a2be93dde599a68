"""Variants of an example protocol written to a temporary file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML


def write_variant(source: Path, directory: Path, **changes: Any) -> Path:
    """Copy ``source`` with top-level keys replaced by ``changes``; returns the new path."""
    yaml = YAML()
    document = yaml.load(source.read_text())
    for key, value in changes.items():
        document[key] = value
    path = directory / source.name
    with path.open("w") as out:
        yaml.dump(document, out)
    return path
