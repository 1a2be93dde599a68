"""A simple, self-contained French results page (Jinja2, ``templates/resultats.html.j2``).

The full impact report is a later issue; this page shows the main effects with their
uncertainty, the months of progress, and the checks a reviewer reads first.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from analysis.results import AnalysisResults, to_json_dict

__all__ = ["render_html", "write_html"]


def _nombre(value: Any, digits: int = 2) -> str:
    """French number format (decimal comma); ``—`` when missing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, int):
        return f"{value:,}".replace(",", "\u202f")
    return f"{value:,.{digits}f}".replace(",", "\u202f").replace(".", ",")


def _p(value: Any) -> str:
    if value is None:
        return "—"
    return "< 0,001" if value < 0.001 else _nombre(value, 3)


def render_html(results: AnalysisResults) -> str:
    """The results page as an HTML string."""
    env = Environment(loader=PackageLoader("analysis", "templates"),
                      autoescape=select_autoescape(["html", "j2"]))
    env.filters["nombre"] = _nombre
    env.filters["p"] = _p
    data = to_json_dict(results)
    return env.get_template("resultats.html.j2").render(r=data)


def write_html(results: AnalysisResults, path: Path) -> None:
    """Write the results page to ``path`` (UTF-8)."""
    path.write_text(render_html(results), encoding="utf-8")
