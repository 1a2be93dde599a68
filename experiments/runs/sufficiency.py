"""Data-sufficiency checks: will the data support the next analysis?

A week (``settings.scheduler.sufficiency_lead_days``) before each interim or final
analysis falls due, the scheduler reads the experiment's data **as it is now**, through
the same readers as the run itself (:func:`experiments.runs.inputs.read_analysis_inputs`),
and checks what the analysis will need:

``endline_by_arm``
    units with an endline score of the primary outcome, per arm. Fewer than two in an
    arm: the primary effect cannot be estimated (cluster-robust errors need at least two
    units an arm): **blocking**. Fewer than half of the arm's randomised units: a
    warning (the scores may still be on their way, or attrition is high).
``baseline_coverage``
    when the primary outcome has a pre-test: the share of pupils with an endline score
    who also have a baseline score. Under 80 %: a warning (the ANCOVA's precision rests
    on it, and the design's MDES assumed it).
``usage_coverage``
    in the treated arms, the share of pupils with an outcome record who have any active
    time, and (when ``usage.compliance`` is declared) the share who meet the compliance
    rule, against ``decision.min_active_share`` when the protocol declares one. Under
    half with any usage, or under the declared share: a warning.
``mdes``
    the minimum detectable effect size (PowerUp!,
    :func:`analysis.design_mdes.mdes_at_randomisation`) with the units and mean pupils
    that have an endline score now, beside the MDES of the units randomised. More than
    10 % above it, or above ``decision.min_effect_size``: a warning (the data now
    supports a weaker design than was planned).

Monitoring runs are not checked: they estimate no effect. The thresholds are Preuve's
own rules of thumb (« règle propre à Preuve »), stated in every message.

Each check is recorded once per run key in ``sufficiency_checks`` (the registry; two
schedulers cannot both record it), and a check with a warning or a blocking finding adds
an audit entry ``sufficiency.alert``. The researcher sees the latest checks on the
experiment's page in the portal and in ``preuve protocol status EXPERIMENT``, which also
checks the data live.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from typing import Protocol as Structural

import numpy as np
import sqlalchemy as sa
from sqlalchemy import Engine

from analysis.design_mdes import mdes_at_randomisation
from analysis.report.text import format_number
from experiments.access import record_audit
from experiments.database import insert_for
from experiments.errors import ExperimentError
from experiments.protocol.language import Protocol
from experiments.registry import registered_protocol
from experiments.runs.inputs import AnalysisInputs, read_analysis_inputs
from experiments.settings import Settings

__all__ = [
    "CHECKED_ANALYSES",
    "SufficiencyCheck",
    "SufficiencyReport",
    "UpcomingRun",
    "check_data",
    "check_upcoming",
    "recorded_checks",
    "sufficiency_table",
]

logger = logging.getLogger(__name__)

Status = Literal["ok", "warning", "blocking"]
Code = Literal["enrolled", "endline_by_arm", "baseline_coverage", "usage_coverage", "mdes"]
Language = Literal["fr", "en"]

#: Analyses that are checked before they fall due (monitoring estimates nothing).
CHECKED_ANALYSES: tuple[str, ...] = ("interim", "final")
#: Thresholds (Preuve's own rules of thumb, see the module docstring).
MIN_UNITS_PER_ARM = 2
MIN_SHARE_OF_UNITS = 0.5
MIN_BASELINE_COVERAGE = 0.8
MIN_ACTIVE_SHARE = 0.5
MDES_SLACK = 1.1

_ORDER: dict[Status, int] = {"ok": 0, "warning": 1, "blocking": 2}

_metadata = sa.MetaData()
#: One row per checked run (see ``migrations/registry/versions/scheduler_0002.py``).
sufficiency_table = sa.Table(
    "sufficiency_checks",
    _metadata,
    sa.Column("run_key", sa.String(160), primary_key=True),
    sa.Column("experiment_id", sa.String(63), nullable=False),
    sa.Column("analysis", sa.String(32), nullable=False),
    sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("checks", sa.Text, nullable=False),
)


class UpcomingRun(Structural):
    """What a check needs of a scheduled run (:class:`experiments.runs.scheduler.ScheduledRun`)."""

    @property
    def run_key(self) -> str: ...
    @property
    def experiment_id(self) -> str: ...
    @property
    def analysis(self) -> str: ...
    @property
    def due_at(self) -> datetime: ...
    @property
    def protocol_version(self) -> int: ...


def _pct(share: float | None, language: Language) -> str:
    if share is None or not math.isfinite(share):
        return "—"
    return format_number(100 * share, language, 0) + " %"


@dataclass(frozen=True)
class SufficiencyCheck:
    """One check: its code, status and figures; :meth:`message` words it."""

    code: Code
    status: Status
    figures: dict[str, Any] = field(default_factory=dict)

    def message(self, language: Language = "fr") -> str:
        """The finding in a sentence (French or English)."""
        f = self.figures
        fr = language == "fr"
        if self.code == "enrolled":
            return ("Aucune classe n'est inscrite : rien à analyser." if fr
                    else "No class is enrolled: nothing to analyse.")
        if self.code == "endline_by_arm":
            parts = [f"{arm} {c['units_with_endline']}/{c['units']}"
                     for arm, c in f["arms"].items()]
            counts = ", ".join(parts)
            if self.status == "blocking":
                short = ", ".join(f["short_arms"])
                return (f"Scores de fin de période du critère principal : unités avec un score "
                        f"par bras {counts}. Le bras {short} en a moins de {MIN_UNITS_PER_ARM} : "
                        f"l'effet principal ne pourra pas être estimé." if fr else
                        f"Endline scores of the primary outcome: units with a score per arm "
                        f"{counts}. Arm {short} has fewer than {MIN_UNITS_PER_ARM}: the "
                        f"primary effect cannot be estimated.")
            if self.status == "warning":
                return (f"Scores de fin de période du critère principal : unités avec un score "
                        f"par bras {counts} ; moins de la moitié des unités tirées au sort dans "
                        f"le bras {', '.join(f['short_arms'])} (règle propre à Preuve)." if fr
                        else f"Endline scores of the primary outcome: units with a score per "
                        f"arm {counts}; fewer than half of the randomised units in arm "
                        f"{', '.join(f['short_arms'])} (Preuve's own rule).")
            return (f"Scores de fin de période du critère principal : unités avec un score "
                    f"par bras {counts}." if fr else
                    f"Endline scores of the primary outcome: units with a score per arm "
                    f"{counts}.")
        if self.code == "baseline_coverage":
            share = _pct(f["share"], language)
            low = self.status != "ok"
            return (f"Pré-test : {share} des élèves ayant un score final ont aussi un score "
                    f"initial" + (f" (moins de {_pct(MIN_BASELINE_COVERAGE, language)}, "
                                  f"règle propre à Preuve)." if low else ".") if fr else
                    f"Pre-test: {share} of the pupils with an endline score also have a "
                    f"baseline score" + (f" (under {_pct(MIN_BASELINE_COVERAGE, language)}, "
                                         f"Preuve's own rule)." if low else "."))
        if self.code == "usage_coverage":
            active = _pct(f["active_share"], language)
            text = (f"Usage dans les bras traités : {active} des élèves ont du temps actif"
                    if fr else f"Usage in the treated arms: {active} of the pupils have active "
                    f"time")
            if f.get("compliant_share") is not None:
                compliant = _pct(f["compliant_share"], language)
                text += (f", {compliant} atteignent la règle d'exposition" if fr
                         else f", {compliant} meet the compliance rule")
                if f.get("expected_share") is not None:
                    expected = _pct(f["expected_share"], language)
                    text += (f" (le protocole en attend {expected})" if fr
                             else f" (the protocol expects {expected})")
            return text + ("." if self.status == "ok" else
                           (" : en dessous de ce que l'analyse suppose." if fr
                            else ": below what the analysis assumes."))
        # mdes
        now = f["mdes_now"]
        planned = f["mdes_planned"]
        words = format_number(now, language) if now is not None else "—"
        plan = format_number(planned, language) if planned is not None else "—"
        text = (f"Effet minimal détectable avec les données actuelles : {words} écart-type "
                f"(prévu au tirage : {plan})" if fr else
                f"Minimum detectable effect with the data now: {words} standard deviations "
                f"(at randomisation: {plan})")
        if f.get("min_effect_size") is not None:
            rule = format_number(f["min_effect_size"], language)
            text += (f" ; la règle de décision demande de détecter {rule}" if fr
                     else f"; the decision rule needs to detect {rule}")
        return text + ("." if self.status == "ok" else
                       (" : les données soutiennent un plan plus faible que prévu." if fr
                        else ": the data now supports a weaker design than planned."))

    def to_json(self) -> dict[str, Any]:
        """Plain JSON (code, status, figures, the French and English messages)."""
        return {"code": self.code, "status": self.status, "figures": self.figures,
                "message_fr": self.message("fr"), "message_en": self.message("en")}


@dataclass(frozen=True)
class SufficiencyReport:
    """The checks of one experiment's data for one analysis (``due_at`` None: live)."""

    experiment_id: str
    analysis: str
    due_at: datetime | None
    checked_at: datetime
    checks: tuple[SufficiencyCheck, ...]

    @property
    def status(self) -> Status:
        """The worst status of the checks."""
        return max((c.status for c in self.checks), key=_ORDER.__getitem__, default="ok")

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values (ISO 8601 times)."""
        return {
            "experiment": self.experiment_id,
            "analysis": self.analysis,
            "due_at": None if self.due_at is None else self.due_at.isoformat(),
            "checked_at": self.checked_at.isoformat(),
            "status": self.status,
            "checks": [c.to_json() for c in self.checks],
        }


def _endline_checks(protocol: Protocol, inputs: AnalysisInputs) -> list[SufficiencyCheck]:
    plan, units, outcomes = inputs.plan, inputs.units, inputs.outcomes
    primary = protocol.primary_outcome
    measure = np.asarray(outcomes.measure.astype(str)) if len(outcomes.score) else np.array([])
    scored = np.isfinite(outcomes.score)
    endline = outcomes.is_endline & scored & (measure == primary.id)
    unit_has = np.zeros(units.n_units, dtype=bool)
    unit_has[outcomes.unit[endline]] = True
    pupils_end = np.unique(outcomes.learner[endline])
    arms: dict[str, dict[str, int]] = {}
    short: list[str] = []
    low: list[str] = []
    for code, arm in enumerate(plan.arms):
        in_arm = units.arm_code == code
        n_units = int(in_arm.sum())
        with_end = int((unit_has & in_arm).sum())
        arms[arm] = {"units": n_units, "units_with_endline": with_end}
        if with_end < MIN_UNITS_PER_ARM:
            short.append(arm)
        elif with_end < MIN_SHARE_OF_UNITS * n_units:
            low.append(arm)
    status: Status = "blocking" if short else "warning" if low else "ok"
    checks = [SufficiencyCheck("endline_by_arm", status,
                               {"arms": arms, "short_arms": short or low,
                                "pupils_with_endline": int(len(pupils_end))})]
    if primary.baseline is not None and len(pupils_end):
        base = (~outcomes.is_endline) & scored & (measure == primary.baseline)
        with_base = np.isin(pupils_end, outcomes.learner[base])
        share = float(with_base.mean())
        checks.append(SufficiencyCheck(
            "baseline_coverage", "ok" if share >= MIN_BASELINE_COVERAGE else "warning",
            {"share": share, "pupils_with_endline": int(len(pupils_end))}))
    checks.append(_mdes_check(protocol, inputs, unit_has, endline))
    return checks


def _mdes_check(protocol: Protocol, inputs: AnalysisInputs, unit_has: Any, endline: Any
                ) -> SufficiencyCheck:
    """The weakest contrast's MDES now (units and pupils with an endline score) and at
    randomisation (every unit randomised, the protocol's pupils per unit)."""
    plan, units, outcomes = inputs.plan, inputs.units, inputs.outcomes
    control = plan.arms.index(plan.control)
    ended = unit_has & (units.arm_code == control)
    n_control, n_control_end = int((units.arm_code == control).sum()), int(ended.sum())
    per_unit = len(np.unique(outcomes.learner[endline])) / max(int(unit_has.sum()), 1)
    now_plan = plan if plan.power is None else replace(
        plan, power=replace(plan.power, pupils_per_unit=max(1, round(per_unit))))
    randomised_pupils = float(plan.power.pupils_per_unit) if plan.power else per_unit
    contrasts: list[tuple[float | None, float | None]] = []
    for code, arm in enumerate(plan.arms):
        if code == control:
            continue
        contrast = f"{arm} vs {plan.control}"
        treated = int((units.arm_code == code).sum())
        treated_end = int((unit_has & (units.arm_code == code)).sum())
        planned = mdes_at_randomisation(plan, contrast, treated, n_control,
                                        randomised_pupils).mdes
        now = (mdes_at_randomisation(now_plan, contrast, treated_end, n_control_end,
                                     per_unit).mdes
               if treated_end and n_control_end else None)
        contrasts.append((now, planned))
    # The weakest contrast: one not estimable now, else the largest MDES now.
    now, planned = max(contrasts, key=lambda c: math.inf if c[0] is None else c[0])
    rule = protocol.decision.min_effect_size if protocol.decision is not None else None
    weak = now is None or (planned is not None and now > MDES_SLACK * planned) or (
        rule is not None and now > rule)
    return SufficiencyCheck("mdes", "warning" if weak else "ok",
                            {"mdes_now": now, "mdes_planned": planned,
                             "min_effect_size": rule})


def _usage_check(protocol: Protocol, inputs: AnalysisInputs) -> SufficiencyCheck | None:
    plan, units, outcomes, usage = inputs.plan, inputs.units, inputs.outcomes, inputs.usage
    if not outcomes.n_learners:
        return None
    control = plan.arms.index(plan.control)
    learner_arm = units.arm_code[outcomes.learner_unit]
    treated = learner_arm != control
    if not treated.any():
        return None
    minutes = usage.minutes if usage is not None else np.zeros(outcomes.n_learners)
    active_share = float((minutes[treated] > 0).mean())
    compliance = protocol.usage.compliance
    compliant = (float((minutes[treated] >= compliance.min_active_minutes).mean())
                 if compliance is not None else None)
    expected = protocol.decision.min_active_share if protocol.decision is not None else None
    low = active_share < MIN_ACTIVE_SHARE or (
        compliant is not None and expected is not None and compliant < expected)
    return SufficiencyCheck("usage_coverage", "warning" if low else "ok",
                            {"active_share": active_share, "compliant_share": compliant,
                             "expected_share": expected, "pupils": int(treated.sum())})


def check_data(settings: Settings, registry: Engine, protocol: Protocol, analysis: str,
               now: datetime, due_at: datetime | None = None) -> SufficiencyReport:
    """Check an experiment's data as it is at ``now`` against what ``analysis`` needs.

    The data is read as a run would read it with ``now`` as its cut-off (files in a
    private temporary directory, removed after).
    """
    checks: list[SufficiencyCheck]
    with tempfile.TemporaryDirectory(prefix="preuve-check-") as directory:
        try:
            inputs = read_analysis_inputs(settings, registry, protocol, Path(directory),
                                          cutoff=now)
        except ExperimentError:
            checks = [SufficiencyCheck("enrolled", "blocking")]
        else:
            checks = _endline_checks(protocol, inputs)
            usage = _usage_check(protocol, inputs)
            if usage is not None:
                checks.insert(2 if len(checks) > 2 else 1, usage)
    return SufficiencyReport(protocol.id, analysis, due_at, now, tuple(checks))


def check_upcoming(settings: Settings, registry: Engine, runs: Iterable[UpcomingRun],
                   now: datetime, actor: str) -> list[SufficiencyReport]:
    """Check each interim or final run of ``runs`` (the scheduler's runs due within the
    lead time, :func:`experiments.runs.scheduler.upcoming_runs`) not checked yet; record
    each check (once per run key) and audit the alerts.

    Returns the reports this call recorded.
    """
    upcoming = [run for run in runs if run.analysis in CHECKED_ANALYSES]
    if not upcoming:
        return []
    with registry.connect() as connection:
        done = set(connection.scalars(
            sa.select(sufficiency_table.c.run_key)
            .where(sufficiency_table.c.run_key.in_([r.run_key for r in upcoming]))))
    recorded = []
    for run in upcoming:
        if run.run_key in done:
            continue
        protocol = registered_protocol(registry, run.experiment_id,
                                       run.protocol_version).protocol
        report = check_data(settings, registry, protocol, run.analysis, now, run.due_at)
        if _record(registry, run.run_key, report, actor):
            recorded.append(report)
    return recorded


def _record(registry: Engine, run_key: str, report: SufficiencyReport, actor: str) -> bool:
    row = {"run_key": run_key, "experiment_id": report.experiment_id,
           "analysis": report.analysis, "due_at": report.due_at,
           "checked_at": report.checked_at, "status": report.status,
           "checks": json.dumps([c.to_json() for c in report.checks], ensure_ascii=False)}
    with sa.orm.Session(registry) as session, session.begin():
        result: Any = session.execute(
            insert_for(registry, sufficiency_table).values(**row)
            .on_conflict_do_nothing(index_elements=["run_key"]))
        if not result.rowcount:
            return False  # another scheduler recorded it first
        if report.status != "ok":
            record_audit(session, actor, "sufficiency.alert", report.experiment_id,
                         {"run_key": run_key, "status": report.status,
                          "checks": [c.code for c in report.checks if c.status != "ok"]})
    if report.status != "ok":
        logger.warning("%s: the data may not support the %s analysis due %s: %s",
                       report.experiment_id, report.analysis, run_key.rsplit("/", 1)[-1],
                       " ".join(c.message("en") for c in report.checks if c.status != "ok"))
    return True


def recorded_checks(registry: Engine, experiment_id: str, *, since: datetime | None = None
                    ) -> list[SufficiencyReport]:
    """The recorded checks of an experiment, latest due time first (``since``: only runs
    due after it, e.g. the runs still to come)."""
    query = (sa.select(sufficiency_table)
             .where(sufficiency_table.c.experiment_id == experiment_id)
             .order_by(sufficiency_table.c.due_at.desc()))
    if since is not None:
        query = query.where(sufficiency_table.c.due_at > since)
    with registry.connect() as connection:
        rows = connection.execute(query).all()
    return [SufficiencyReport(
        row.experiment_id, row.analysis, _aware(row.due_at), _aware(row.checked_at),
        tuple(SufficiencyCheck(c["code"], c["status"], c["figures"])
              for c in json.loads(row.checks))) for row in rows]


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def worst(reports: Sequence[SufficiencyReport]) -> Status:
    """The worst status among reports."""
    return max((r.status for r in reports), key=_ORDER.__getitem__, default="ok")
