"""The forest plot of an evidence synthesis (``analysis/synthesis.py``), as metafor draws it.

One line per study (g with its normal 95 % interval, ``g ± 1.96 se``, the square's area
proportional to its random-effects weight, its evidence rating written on the right),
then the pooled effect as a diamond spanning its confidence interval and the prediction
interval as a line under it (metafor's ``forest(..., addpred = TRUE)``). With fewer than
three studies there is no diamond: the studies side by side only.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Polygon
from matplotlib.ticker import FuncFormatter

from analysis.report.figures import ARM_COLOURS, INK
from analysis.synthesis import Synthesis

__all__ = ["synthesis_forest_figure"]

_Z = 1.959963984540054  # qnorm(0.975)


def synthesis_forest_figure(synthesis: Synthesis, *, x_label: str, pooled_label: str,
                            number: Callable[[float], str] | None = None) -> Figure:
    """The forest plot of ``synthesis`` (pass it to :func:`analysis.report.figures.svg_of`).

    ``number`` formats the axis ticks (French: decimal comma).
    """
    studies = synthesis.studies
    rows = len(studies) + (2 if synthesis.estimable else 0)
    figure = Figure(figsize=(7.5, 1.2 + 0.42 * max(rows, 1)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    top = rows - 1
    weights = [w for w in synthesis.weights if math.isfinite(w)]
    biggest = max(weights, default=1.0)
    labels, ratings = [], []
    for i, study in enumerate(studies):
        y = top - i
        low, high = study.hedges_g - _Z * study.std_error, study.hedges_g + _Z * study.std_error
        axes.plot([low, high], [y, y], color=INK, linewidth=1.4)
        weight = synthesis.weights[i]
        size = 5 + 7 * math.sqrt(weight / biggest) if math.isfinite(weight) else 6
        axes.plot([study.hedges_g], [y], marker="s", color=ARM_COLOURS[0], markersize=size)
        labels.append((y, study.label))
        ratings.append((y, study.rating or "–"))
    if synthesis.estimable:
        y = 0
        mu, low, high = synthesis.estimate, synthesis.ci_low, synthesis.ci_high
        axes.add_patch(Polygon([(low, y), (mu, y + 0.3), (high, y), (mu, y - 0.3)],
                               closed=True, color=ARM_COLOURS[1]))
        axes.plot([synthesis.pi_low, synthesis.pi_high], [y - 0.45, y - 0.45],
                  color=ARM_COLOURS[1], linewidth=1.2, linestyle=":")
        labels.append((y, pooled_label))
        ratings.append((y, ""))
    axes.axvline(0.0, color="#595959", linewidth=1, linestyle="--")
    axes.set_yticks([y for y, _ in labels])
    axes.set_yticklabels([text for _, text in labels], color=INK)
    right = axes.secondary_yaxis("right")
    right.set_yticks([y for y, _ in ratings])
    right.set_yticklabels([text for _, text in ratings], color=INK)
    right.tick_params(length=0)
    axes.set_ylim(-0.9, top + 0.6)
    axes.set_xlabel(x_label, color=INK)
    if number is not None:
        axes.xaxis.set_major_formatter(FuncFormatter(lambda x, _: number(x)))
    for side in ("top",):
        axes.spines[side].set_visible(False)
    figure.tight_layout()
    return figure
