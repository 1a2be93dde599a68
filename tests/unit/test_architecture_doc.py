"""docs/architecture.md stays true: every module it names exists, and every package is in it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")


def _newcomer_table() -> dict[str, str]:
    section = DOC.split("## A newcomer's test", 1)[1]
    return dict(re.findall(r"^\| ([^|]+?) \| `([^`]+)` \|$", section, re.M))


def test_the_newcomer_table_names_ten_concepts_each_with_an_existing_module() -> None:
    table = _newcomer_table()
    assert len(table) == 10
    missing = {concept: path for concept, path in table.items() if not (ROOT / path).is_file()}
    assert missing == {}


def test_every_subpackage_is_described() -> None:
    packages = sorted(str(p.parent.relative_to(ROOT)) for pkg in ("ingest", "experiments",
                                                                 "analysis")
                      for p in (ROOT / pkg).rglob("__init__.py")
                      if "migrations" not in p.parts and p.parent != ROOT / pkg)
    undocumented = [p for p in packages if f"`{p}/`" not in DOC]
    assert undocumented == []
