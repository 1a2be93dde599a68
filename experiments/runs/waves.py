"""The effect at each named wave of a protocol (cohorts over school years).

A protocol with ``waves:`` names its outcome waves (``debut-CP``, ``fin-CP``,
``fin-CE1``...). A run analyses the **primary wave** as its main analysis (the effects of
its results); then each other non-baseline wave the same way, with that wave's scores
as the endline and the same baseline wave (:func:`experiments.runs.inputs.write_analysis_files`,
``wave=``). The primary outcome's ITT effect of every wave is gathered here, one row per
wave × contrast: the primary wave's is confirmatory; the others are secondary, their
p-values adjusted across waves with the protocol's multiple-comparison method (Holm by
default), as the secondary outcomes are. The rows go into the results JSON (``waves``) and
the report (« Effets par vague »).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from analysis.errors import AnalysisError
from analysis.multiplicity import adjust_p_values
from analysis.results import AnalysisResults, Effect
from analysis.run import run_analysis
from experiments.errors import ExperimentError
from experiments.protocol.language import Protocol
from experiments.runs.inputs import read_analysis_inputs
from experiments.settings import Settings

__all__ = ["WaveEffect", "wave_effects"]


@dataclass(frozen=True)
class WaveEffect:
    """The primary outcome's ITT effect of one contrast at one wave."""

    wave: str
    label: str | None
    primary: bool
    contrast: str
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    p_adjusted: float | None
    hedges_g: float | None
    n_learners: int | None
    reason: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (NaN as null)."""
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in asdict(self).items()}


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _primary_effects(results: AnalysisResults, outcome: str) -> list[Effect]:
    return [e for e in results.effects if e.outcome == outcome and e.estimand == "ITT"
            and e.subgroup is None]


def _row(wave: Any, effect: Effect, primary: bool) -> WaveEffect:
    learners = sum(n for n in effect.n_learners.values() if n is not None) \
        if effect.n_learners else None
    return WaveEffect(wave.id, wave.label, primary, effect.contrast, _number(effect.estimate),
                      _number(effect.ci_low), _number(effect.ci_high), _number(effect.p_value),
                      _number(effect.p_value) if primary else None, _number(effect.hedges_g),
                      learners, effect.reason)


def wave_effects(settings: Settings, registry: Engine, protocol: Protocol, directory: Path,
                 cutoff: datetime | None, main: AnalysisResults, analysis: str
                 ) -> tuple[WaveEffect, ...]:
    """The rows of every non-baseline wave (module docstring); () without named waves.

    ``main`` is the run's results (the primary wave); ``directory`` a private directory
    for the other waves' files.
    """
    primary_wave = protocol.primary_wave
    if primary_wave is None:
        return ()
    outcome = protocol.primary_outcome.id
    rows = [_row(primary_wave, e, True) for e in _primary_effects(main, outcome)]
    secondary: list[WaveEffect] = []
    for wave in protocol.waves:
        if wave.baseline or wave.primary:
            continue
        folder = directory / f"wave-{wave.id}"
        folder.mkdir()
        try:
            inputs = read_analysis_inputs(settings, registry, protocol, folder, cutoff,
                                          wave=wave.id)
            results = run_analysis(inputs.plan, inputs.units, inputs.outcomes, inputs.usage,
                                   analysis=analysis)
        except (AnalysisError, ExperimentError) as error:
            secondary.append(WaveEffect(wave.id, wave.label, False, "", None, None, None,
                                        None, None, None, None, str(error)))
            continue
        secondary += [_row(wave, e, False) for e in _primary_effects(results, outcome)]
    # Secondary waves: adjusted across waves, per contrast, by the protocol's method.
    by_contrast: dict[str, list[int]] = defaultdict(list)
    for i, row in enumerate(secondary):
        if row.p_value is not None:
            by_contrast[row.contrast].append(i)
    adjusted = list(secondary)
    for indices in by_contrast.values():
        values = adjust_p_values([secondary[i].p_value or 0.0 for i in indices],
                                 protocol.analysis.multiple_comparisons)
        for i, value in zip(indices, values, strict=True):
            adjusted[i] = WaveEffect(**{**asdict(secondary[i]), "p_adjusted": value})
    order = {w.id: i for i, w in enumerate(protocol.waves)}
    return tuple(sorted(rows + adjusted, key=lambda r: (order[r.wave], r.contrast)))
