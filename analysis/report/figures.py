"""Figures of the impact report, drawn with matplotlib and returned as inline SVG.

Each figure is a function of aggregates only (effects, CONSORT counts, weekly shares per
arm): no figure can show a class or a pupil. The SVG keeps text as text
(``svg.fonttype = "none"``: searchable, smaller, read by screen readers), starts with a
``<title>`` and carries ``role="img"`` and an ``aria-label`` (RGAA 1.1). The same
:class:`matplotlib.figure.Figure` objects also go into the PDF export.

Matplotlib is used through its object API with the Agg canvas, never ``pyplot``: no
global state, no GUI backend, safe in worker threads.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before any other matplotlib import: never a GUI backend

from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

__all__ = [
    "ConsortBox",
    "ForestRow",
    "consort_figure",
    "forest_figure",
    "svg_of",
    "weekly_usage_figure",
]

# Colours with a contrast ratio of at least 4.5:1 on white (WCAG 2.1 AA / RGAA 3.2):
# dark blue #1f4e79 (8.6:1) and dark orange #a04000 (6.5:1); told apart by marker too.
ARM_COLOURS = ("#1f4e79", "#a04000", "#2e6b30", "#5b2a86")
ARM_MARKERS = ("o", "s", "^", "D")
INK = "#1b1b1b"


@dataclass(frozen=True)
class ForestRow:
    """One line of the forest plot."""

    label: str
    estimate: float
    low: float
    high: float
    primary: bool = False


@dataclass(frozen=True)
class ConsortBox:
    """The boxes of one arm in the CONSORT diagram (lines of text, top to bottom)."""

    arm: str
    lines: tuple[str, ...]


def _figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def svg_of(figure: Figure, title: str, description: str) -> str:
    """The figure as an inline ``<svg>`` element with a ``<title>`` and a description.

    Parameters
    ----------
    figure : Figure
    title : str
        Short title (``<title>``, first child, read as the accessible name).
    description : str
        Text alternative of the figure (``<desc>`` and ``aria-label``).
    """
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "preuve"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None},
                       bbox_inches="tight")
    text = buffer.getvalue()
    text = text[text.index("<svg"):]  # drop the XML declaration and DOCTYPE
    # Unique ids per figure: several inline SVGs share one HTML document.
    prefix = "f" + hashlib.sha256((title + description).encode()).hexdigest()[:8] + "-"
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', text)
    text = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m.group(1)})", text)
    text = re.sub(r'xlink:href="#([^"]+)"', lambda m: f'xlink:href="#{prefix}{m.group(1)}"',
                  text)
    # HTML5 parses inline SVG without namespace declarations: drop them, so that the
    # page names no URL at all (it must not look like it loads anything).
    text = re.sub(r'\s+xmlns(:xlink)?="[^"]*"', "", text)
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    head_end = text.index(">") + 1
    head = text[:head_end].replace(
        "<svg", f'<svg role="img" aria-label="{escape(description)}"', 1)
    return (f"{head}\n<title>{escape(title)}</title>\n<desc>{escape(description)}</desc>"
            f"{text[head_end:]}")


def forest_figure(rows: Sequence[ForestRow], x_label: str,
                  number: Callable[[float], str] | None = None) -> Figure:
    """Forest plot: one line per row, effect sizes with their intervals, a zero line.

    ``number`` formats the axis ticks (French: decimal comma).
    """
    height = 1.0 + 0.45 * max(1, len(rows))
    figure = _figure(7.5, height)
    axes = figure.add_subplot(1, 1, 1)
    ys = list(range(len(rows)))[::-1]
    for y, row in zip(ys, rows, strict=True):
        colour = ARM_COLOURS[0] if row.primary else INK
        axes.plot([row.low, row.high], [y, y], color=colour, linewidth=2)
        axes.plot([row.estimate], [y], marker="D" if row.primary else "o", color=colour,
                  markersize=8 if row.primary else 6)
    axes.axvline(0.0, color="#595959", linewidth=1, linestyle="--")
    axes.set_yticks(ys)
    axes.set_yticklabels([r.label for r in rows], color=INK)
    axes.set_xlabel(x_label, color=INK)
    if number is not None:
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: number(x)))
    axes.set_ylim(-0.7, len(rows) - 0.3)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    return figure


def consort_figure(boxes: Sequence[ConsortBox], top: str) -> Figure:
    """CONSORT flow: a top box, then one column of boxes per arm with arrows."""
    n_arms = max(1, len(boxes))
    depth = max((len(b.lines) for b in boxes), default=1)
    figure = _figure(3.4 * n_arms + 0.4, 1.5 + 0.95 * depth)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, n_arms)
    axes.set_ylim(0, depth + 1.35)
    axes.axis("off")
    style: dict[str, Any] = {"boxstyle": "round,pad=0.02", "facecolor": "#f2f5f9",
                             "edgecolor": INK, "linewidth": 1}
    top_y = depth + 1.05
    width = 0.6 * n_arms
    axes.add_patch(FancyBboxPatch((n_arms / 2 - width / 2, top_y - 0.2), width, 0.4, **style))
    axes.text(n_arms / 2, top_y, top, ha="center", va="center", fontsize=10, color=INK,
              fontweight="bold")
    for i, box in enumerate(boxes):
        x = i + 0.5
        axes.annotate("", xy=(x, depth + 0.6), xytext=(n_arms / 2, top_y - 0.21),
                      arrowprops={"arrowstyle": "->", "color": INK})
        axes.text(x, depth + 0.42, box.arm, ha="center", va="center", fontsize=10,
                  color=INK, fontweight="bold")
        for j, line in enumerate(box.lines):
            y = depth - 0.3 - j
            axes.add_patch(FancyBboxPatch((x - 0.44, y - 0.28), 0.88, 0.56, **style))
            axes.text(x, y, line, ha="center", va="center", fontsize=9, color=INK)
            if j + 1 < len(box.lines):
                axes.annotate("", xy=(x, y - 0.71), xytext=(x, y - 0.29),
                              arrowprops={"arrowstyle": "->", "color": INK})
    return figure


def weekly_usage_figure(series: Sequence[tuple[str, Sequence[str], Sequence[float | None]]],
                        x_label: str, y_label: str) -> Figure:
    """Share of active pupils per week, one line per arm (a gap where a cell is hidden)."""
    figure = _figure(7.5, 3.2)
    axes = figure.add_subplot(1, 1, 1)
    weeks: list[str] = []
    for _, arm_weeks, _ in series:
        weeks.extend(w for w in arm_weeks if w not in weeks)
    position = {w: i for i, w in enumerate(weeks)}
    for k, (arm, arm_weeks, shares) in enumerate(series):
        xs = [position[w] for w in arm_weeks]
        ys = [float("nan") if s is None else 100 * s for s in shares]
        axes.plot(xs, ys, color=ARM_COLOURS[k % 4], marker=ARM_MARKERS[k % 4], markersize=4,
                  linewidth=1.8, label=arm)
    step = max(1, len(weeks) // 12)
    axes.set_xticks(range(0, len(weeks), step))
    long_labels = max((len(w) for w in weeks), default=0) > 4  # ISO weeks: "2027-W39"
    axes.set_xticklabels(weeks[::step], color=INK, rotation=45 if long_labels else 0,
                         ha="right" if long_labels else "center")
    axes.set_ylim(0, 100)
    axes.set_xlabel(x_label, color=INK)
    axes.set_ylabel(y_label, color=INK)
    axes.legend(frameon=False)
    for side in ("top", "right"):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    return figure
