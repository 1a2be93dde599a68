"""The README's settings table and command reference, generated from the code.

``python -m experiments.cli.reference`` rewrites the marked blocks of README.md;
``tests/unit/test_readme_reference.py`` fails when they are stale (like datasette's
``cog --check``), so the documentation cannot drift from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from experiments.settings import Settings

__all__ = ["command_reference", "render_blocks", "settings_table"]

README = Path(__file__).resolve().parents[2] / "README.md"


def _default(field: Any) -> str:
    if field.default_factory is not None:
        value = field.default_factory()
        if isinstance(value, Path):
            return "XDG dir" if "preuve" in str(value) else str(value)
        return "(group)" if isinstance(value, BaseModel) else repr(value)
    return "unset" if field.default is None else f"`{field.default}`"


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(annotation, f"{prefix}{name.upper()}__")
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{prefix}{name.upper()}` | {_default(field)} | {description} |")
    return rows


def settings_table() -> str:
    """Markdown table of every setting: environment variable, default, description."""
    header = ["| variable | default | what it is |", "|---|---|---|"]
    return "\n".join(header + _rows(Settings, "PREUVE_"))


def _commands(group: Any, path: str) -> list[str]:
    # typer vendors its own click, so groups are recognised by their ``commands``.
    rows = []
    for name in sorted(group.commands):
        command = group.commands[name]
        full = f"{path} {name}"
        if hasattr(command, "commands"):
            rows += _commands(command, full)
            continue
        summary = (command.get_short_help_str(limit=150) or "").replace("|", "\\|")
        rows.append(f"| `{full}` | {summary} |")
    return rows


def command_reference() -> str:
    """Markdown table of every `preuve` command and its one-line help."""
    from experiments.cli.app import app

    root = typer.main.get_command(app)
    return "\n".join(["| command | does |", "|---|---|"] + _commands(root, "preuve"))


def render_blocks(text: str) -> str:
    """``text`` with its generated blocks replaced by the current ones."""
    for name, content in (("settings", settings_table()), ("commands", command_reference())):
        pattern = re.compile(
            rf"(<!-- {name}:start -->\n).*?(<!-- {name}:end -->)", flags=re.DOTALL
        )
        if not pattern.search(text):
            raise ValueError(f"README.md has no <!-- {name}:start --> ... end block")
        def replace(match: re.Match[str], block: str = content) -> str:
            return match.group(1) + block + "\n" + match.group(2)

        text = pattern.sub(replace, text)
    return text


if __name__ == "__main__":
    README.write_text(render_blocks(README.read_text()))
    sys.stdout.write("README.md blocks regenerated\n")
