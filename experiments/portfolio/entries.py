"""A programme's portfolio, assembled from the registry: one entry per experiment, and the
evidence syntheses of its closed experiments (issue 22).

Only aggregates leave this module: counts of classes and pupils, effects, ratings, costs.
An experiment enters a synthesis only when it is closed and its final analysis holds an
estimable primary ITT effect (the confirmatory one, ``role == "primary"``); interim and
monitoring runs never do.

Portfolio pages are loaded often and protocols change rarely: an experiment's parsed
protocol is cached per registered version (experiment, version, SHA-256), and what an
entry takes from a run's results per run (run id, results SHA-256); both are immutable
once recorded, so a cached value is never stale, and a new version or a new final run
is a new key. The rest of an entry (state, enrolled classes, which run is the latest) is
read from the registry at each load.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine

from analysis.multiplicity import Claim, certainty
from analysis.report.rating import rate_evidence
from analysis.results import AnalysisResults, Effect, finite
from analysis.synthesis import StudyEffect, Synthesis, synthesise
from analysis.usage import ArmUsage
from experiments.closing import DECISION_WORDS, latest_decision
from experiments.enrollment.assignments import enrolled_classes
from experiments.protocol.calendar import departement_of_uai
from experiments.protocol.language import Protocol
from experiments.registry import (
    ExperimentRecord,
    ExperimentRow,
    get_experiment,
    registered_protocol,
)
from experiments.runs.records import RunRecord, list_runs

__all__ = [
    "NO_PROGRAMME",
    "ArmVerdict",
    "PortfolioEntry",
    "SynthesisScope",
    "arm_verdicts",
    "clear_portfolio_cache",
    "confirmatory_effect",
    "portfolio_entries",
    "portfolio_syntheses",
]

NO_PROGRAMME = "sans programme"
"""The programme of an experiment whose protocol names none."""


@dataclass(frozen=True)
class ArmVerdict:
    """The verdict of one treated arm of a final analysis, as the report states it: the
    claim of the protocol's test (:func:`analysis.multiplicity.certainty`: adjusted for
    multiplicity and sequential looks), never more."""

    arm: str
    claim: Claim
    hedges_g: float | None
    p: float | None
    """The p-value the protocol's rule tests (adjusted when a correction applies)."""
    threshold: float


def arm_verdicts(results: AnalysisResults | Mapping[str, Any]) -> tuple[ArmVerdict, ...]:
    """One verdict per treated arm: the primary ITT effect of each, in the arms' order.

    Examples
    --------
    >>> results = {"analysis": "final", "design": {"alpha": 0.05, "arms": ["a", "b", "c"],
    ...     "multiple_comparisons": "holm"}, "effects": [
    ...     {"role": "primary", "estimand": "ITT", "contrast": "b vs c", "estimate": 0.4,
    ...      "hedges_g": 0.04, "p_value": 0.8, "p_adjusted": 0.8},
    ...     {"role": "primary", "estimand": "ITT", "contrast": "a vs c", "estimate": 6.6,
    ...      "hedges_g": 0.3, "p_value": 0.043, "p_adjusted": 0.087}]}
    >>> [(v.arm, v.claim) for v in arm_verdicts(results)]
    [('a', 'not established'), ('b', 'not established')]
    """
    if not isinstance(results, AnalysisResults):
        results = AnalysisResults.from_json(results)
    effects = results.effects_where(role="primary", estimand="ITT", whole_sample=True)
    arms = list(results.design.get("arms", []))
    effects.sort(key=lambda e: arms.index(e.arm) if e.arm in arms else len(arms))
    verdicts = []
    for effect in effects:
        c = certainty(effect, results)
        verdicts.append(ArmVerdict(effect.arm, c.claim, finite(effect.hedges_g), c.p,
                                   c.threshold))
    return tuple(verdicts)


@dataclass(frozen=True)
class PortfolioEntry:
    """One experiment of a programme's portfolio (aggregates only)."""

    id: str
    title: str
    state: str
    programme: str
    academies: tuple[str, ...]
    departements: tuple[str, ...]
    """The protocol's ``territories.departements``; when it names none, the départements
    of the enrolled classes' schools (UAI prefixes); empty when neither is known."""
    tags: tuple[str, ...]
    resource_id: str
    resource: str
    classes: int
    """Units (classes) in the final analysis (both arms), else classes enrolled."""
    pupils: int | None
    """Pupils in the final analysis (both arms), else pupils of the enrolled classes."""
    budget_total: float | None
    cost_per_pupil: float | None
    funders: tuple[tuple[str, float], ...]
    protocol_sha256: str
    effect: Effect | None
    """The primary ITT effect of the final analysis (its results read back), when there is
    one."""
    padlocks: int | None
    verdicts: tuple[ArmVerdict, ...]
    """Per treated arm of the final analysis, what the protocol's test concludes."""
    usage: tuple[tuple[str, float | None, float | None], ...]
    """Per treatment arm of the final analysis: mean active minutes per pupil and the
    share of pupils meeting the protocol's compliance rule (``None``: not measured or
    suppressed)."""
    run_id: str | None
    json_sha256: str | None
    data_as_of: datetime | None
    """Due date of the final analysis: the data it read (DESIGN: an analysis reads the
    data of its due date)."""
    decision_rule: str | None
    min_effect_size: float | None
    closing_note: str | None
    """The decision taken: the researcher's recorded post-experiment decision and its
    reason (:mod:`experiments.closing`), else the note of the closing transition."""

    @property
    def closed(self) -> bool:
        return self.state == "closed"

    @property
    def study(self) -> StudyEffect | None:
        """The study this experiment brings to a synthesis, if it brings one."""
        e = self.effect
        if not self.closed or e is None or finite(e.hedges_g) is None:
            return None
        width, g_width = e.ci_high - e.ci_low, e.hedges_g_ci_high - e.hedges_g_ci_low
        if not width or not math.isfinite(width):
            return None
        return StudyEffect(study=self.id, label=f"{self.resource} ({self.id})",
                           hedges_g=float(e.hedges_g),
                           std_error=float(e.std_error) * g_width / width,
                           n_learners=self.pupils, n_units=self.classes,
                           rating=None if self.padlocks is None else f"{self.padlocks}/5")

    @property
    def meets_threshold(self) -> bool | None:
        """Whether g reached the protocol's ``decision.min_effect_size`` (None: no rule)."""
        if self.min_effect_size is None or self.effect is None:
            return None
        g = finite(self.effect.hedges_g)
        return None if g is None else bool(g >= self.min_effect_size)


def confirmatory_effect(results: AnalysisResults) -> Effect | None:
    """The estimated primary ITT effect of the results (first contrast in arm order).

    Examples
    --------
    >>> results = AnalysisResults.from_json({"effects": [
    ...     {"role": "secondary", "estimand": "ITT", "estimate": 2.0},
    ...     {"role": "primary", "estimand": "ITT", "subgroup": None, "estimate": 1.0}]})
    >>> confirmatory_effect(results).estimate
    1.0
    """
    return results.primary_effect(estimable=True)


class _Cache:
    """A bounded least-recently-used map, safe across the portal's threads.

    Hand-written because ``functools.lru_cache`` keys on every argument, the registry's
    engine included, and the keys here are content identities (a protocol version's
    SHA-256, a run id) that hold whatever engine reads them.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
        value = compute()  # outside the lock: two threads may compute the same value
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._size:
                self._values.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


_protocols = _Cache(4096)
_run_summaries = _Cache(4096)


def clear_portfolio_cache() -> None:
    """Forget the cached protocols and run summaries (tests)."""
    _protocols.clear()
    _run_summaries.clear()


def _protocol(registry: Engine, record: ExperimentRecord) -> Protocol:
    """The protocol in force, parsed once per registered version."""
    current = next(v for v in record.versions if v.version == record.current_version)
    key = (record.id, current.version, current.sha256)
    protocol: Protocol = _protocols.get(
        key, lambda: registered_protocol(registry, record.id, current.version).protocol)
    return protocol


_Usage = tuple[tuple[str, float | None, float | None], ...]


def _run_summary(run: RunRecord, control_arm: str
                 ) -> tuple[Effect | None, int | None, tuple[ArmVerdict, ...], _Usage]:
    """The confirmatory effect, the padlocks, the verdict of each treated arm and the
    treatment arms' usage of a final run, computed once per run."""
    def compute() -> tuple[Effect | None, int | None, tuple[ArmVerdict, ...], _Usage]:
        results = AnalysisResults.from_json(json.loads(run.results_json or "{}"))
        arms: list[ArmUsage] = list((results.usage or {}).get("arms", []))
        usage = tuple((a.arm, a.mean_active_minutes, a.share_compliant) for a in arms
                      if a.arm != control_arm)
        return (confirmatory_effect(results), rate_evidence(results).padlocks,
                arm_verdicts(results), usage)

    summary: tuple[Effect | None, int | None, tuple[ArmVerdict, ...], _Usage] = (
        _run_summaries.get((run.run_id, run.json_sha256, control_arm), compute))
    return summary


def _final_run(runs: Sequence[RunRecord]) -> RunRecord | None:
    done = [r for r in runs if r.analysis == "final" and r.status == "done" and r.results_json]
    return max(done, key=lambda r: (r.due_at, r.sequence), default=None)


def _entry(registry: Engine, experiment_id: str) -> PortfolioEntry:
    record = get_experiment(registry, experiment_id)
    protocol = _protocol(registry, record)
    enrolled = [c for c in enrolled_classes(registry, experiment_id) if c.status == "enrolled"]
    run = _final_run(list_runs(registry, experiment_id))
    effect = padlocks = None
    verdicts: tuple[ArmVerdict, ...] = ()
    usage: tuple[tuple[str, float | None, float | None], ...] = ()
    classes = len(enrolled)
    pupils: int | None = sum(c.pupils for c in enrolled) or None
    if run is not None and run.results_json:
        effect, padlocks, verdicts, usage = _run_summary(run, protocol.control_arm.name)
        if effect is not None:
            counts = list(effect.n_learners.values())
            pupils = None if None in counts else sum(n or 0 for n in counts)
            classes = sum(n for n in effect.n_units.values() if n is not None)
    territories = protocol.territories
    closing = next((t.note for t in reversed(record.transitions) if t.to_state == "closed"), None)
    decided = latest_decision(registry, experiment_id) if record.state == "closed" else None
    if decided is not None:  # the researcher's recorded decision (issue 19), with its reason
        closing = f"{DECISION_WORDS[decided.decision]} — {decided.reason}"
    return PortfolioEntry(
        id=experiment_id, title=protocol.title, state=record.state,
        programme=protocol.programme.name if protocol.programme else NO_PROGRAMME,
        academies=tuple(territories.academies if territories and territories.academies
                        else protocol.population.academies),
        departements=tuple(territories.departements if territories and territories.departements
                           else sorted({departement_of_uai(c.school_uai) for c in enrolled})),
        tags=tuple(protocol.tags), resource_id=protocol.resource.id,
        resource=protocol.resource.name or protocol.resource.id, classes=classes,
        pupils=pupils,
        budget_total=protocol.budget.total if protocol.budget else None,
        cost_per_pupil=protocol.budget.cost_per_pupil if protocol.budget else None,
        funders=tuple((f.name, f.amount) for f in protocol.funders),
        protocol_sha256=record.current.sha256, effect=effect, padlocks=padlocks, verdicts=verdicts,
        usage=usage,
        run_id=run.run_id if run else None, json_sha256=run.json_sha256 if run else None,
        data_as_of=run.due_at if run else None,
        decision_rule=protocol.decision.rule if protocol.decision else None,
        min_effect_size=protocol.decision.min_effect_size if protocol.decision else None,
        closing_note=closing,
    )


def portfolio_entries(registry: Engine, programme: str | None = None, *,
                      academie: str | None = None) -> list[PortfolioEntry]:
    """Every experiment of the registry (of one ``programme``; of one ``academie``'s
    territory), by id."""
    with registry.connect() as connection:
        ids = list(connection.scalars(sa.select(ExperimentRow.id).order_by(ExperimentRow.id)))
    entries = [_entry(registry, i) for i in ids]
    return [e for e in entries
            if (programme is None or e.programme == programme)
            and (academie is None or academie in e.academies)]


@dataclass(frozen=True)
class SynthesisScope:
    """One synthesis of the portfolio: what it pools (a programme, a resource, a tag)."""

    kind: str
    """``programme``, ``resource`` or ``tag``."""
    name: str
    synthesis: Synthesis
    excluded: tuple[str, ...]
    """Experiments of the scope that bring no study (not closed, no final effect)."""


def portfolio_syntheses(entries: Sequence[PortfolioEntry], programme: str) -> list[SynthesisScope]:
    """The syntheses of a programme: all its closed trials, then per resource tried more
    than once, then per tag shared by more than one experiment."""
    def scope(kind: str, name: str, members: Sequence[PortfolioEntry]) -> SynthesisScope:
        studies = [e.study for e in members if e.study is not None]
        excluded = tuple(e.id for e in members if e.study is None)
        return SynthesisScope(kind, name, synthesise(studies), excluded)

    scopes = [scope("programme", programme, entries)]
    resources = sorted({e.resource_id for e in entries})
    for resource in resources:
        members = [e for e in entries if e.resource_id == resource]
        if len(members) > 1:
            scopes.append(scope("resource", members[0].resource, members))
    for tag in sorted({t for e in entries for t in e.tags}):
        members = [e for e in entries if tag in e.tags]
        if len(members) > 1:
            scopes.append(scope("tag", tag, members))
    return scopes
