"""README.md's settings table and command reference are generated from the code."""

from __future__ import annotations

from experiments.cli.reference import README, render_blocks


def test_readme_blocks_are_current() -> None:
    text = README.read_text()
    assert render_blocks(text) == text, (
        "README.md is stale: run `.venv/bin/python -m experiments.cli.reference`"
    )


def test_readme_starts_with_the_two_commands() -> None:
    text = README.read_text()
    assert text.index("make demo") < text.index("make test") < text.index("## How data flows")
