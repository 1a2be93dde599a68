"""axe-core (Deque, MPL-2.0), the accessibility engine, installed at test time.

Nothing is vendored into git: the pinned version is installed with npm into the user's
cache (``Settings().cache_dir / "axe-core" / VERSION``), as Kafka's jars are, and read
from there on later runs. Without npm (and no cached copy) the caller is skipped, except
in CI, where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from experiments.settings import Settings

VERSION = "4.14.1"  # npm view axe-core version, 2026-12-04

#: WCAG 2.0 and 2.1, levels A and AA (axe's rule tags): the RGAA's reference levels.
WCAG_AA_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]

RUN_AXE = """async (tags) => {
  const results = await axe.run(document, {runOnly: {type: "tag", values: tags}});
  return results.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" ")),
  }));
}"""


def axe_source() -> str:
    """The text of ``axe.min.js`` (installed into the cache on first use)."""
    folder = Settings().cache_dir / "axe-core" / VERSION
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            if os.environ.get("CI"):
                pytest.fail("npm is required in CI to install axe-core")
            pytest.skip("npm not found: cannot install axe-core for the accessibility checks")
        folder.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-save", "--no-audit", "--no-fund", "--prefix",
                        str(folder), f"axe-core@{VERSION}"], check=True, capture_output=True,
                       timeout=300)
    return Path(script).read_text(encoding="utf-8")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's WCAG 2.1 A and AA violations on the page (the context must bypass the
    portal's Content-Security-Policy, which forbids every script)."""
    page.add_script_tag(content=axe_source())
    violations: list[dict[str, Any]] = page.evaluate(RUN_AXE, WCAG_AA_TAGS)
    return violations
