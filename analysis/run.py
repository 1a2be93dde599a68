"""One analysis run: every declared estimate and check, assembled into results.

:func:`run_analysis` is what ``preuve analyze`` and (later) the analysis workers call. It
never stops on one bad outcome: estimators return "not estimable" results with a reason.

Multiple comparisons (the protocol's ``analysis.multiple_comparisons``) are corrected
within two families: the primary family (every contrast of every primary outcome) and
the secondary family (contrasts of secondary outcomes and the subgroup interaction tests).
Subgroup effects within levels are descriptive and keep their unadjusted p-values.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from analysis.attrition import AttritionCheck, boundary_table, check_attrition
from analysis.balance import (
    BalanceCheck,
    check_sample_ratio,
    classify_difference,
    cox_index,
    standardized_difference,
)
from analysis.cace import estimate_cace
from analysis.consort import consort_flow
from analysis.design_mdes import DesignMdes, mdes_at_randomisation
from analysis.did import estimate_did
from analysis.dose_response import estimate_dose_response
from analysis.effects import (
    arm_counts,
    contrast_name,
    estimate_effects,
    variance_label,
    vcov_kind,
)
from analysis.icc import IccEstimate, estimate_icc
from analysis.inputs import AnalysisPlan, OutcomeTable, UnitTable, UsageTable
from analysis.multiplicity import adjust_p_values
from analysis.options import MIN_CELL_PUPILS, Role
from analysis.results import AnalysisResults, Effect, not_estimable
from analysis.sample import MISSING_LEVEL, AnalysisSample, attribute_codes, build_sample
from analysis.sequential import SequentialLook
from analysis.subgroups import InteractionTest, estimate_subgroups
from analysis.suppression import is_suppressed, suppress_count
from analysis.usage import summarise_usage
from analysis.warning_codes import AnalysisWarning, warnings_from_checks

__all__ = ["run_analysis"]

logger = logging.getLogger(__name__)


def run_analysis(
    plan: AnalysisPlan,
    units: UnitTable,
    outcomes: OutcomeTable,
    usage: UsageTable | None = None,
    analysis: str = "final",
    *,
    sequential: SequentialLook | None = None,
) -> AnalysisResults:
    """Run the protocol's analysis on tables read by :mod:`analysis.inputs`.

    Parameters
    ----------
    plan : AnalysisPlan
    units, outcomes, usage : tables
    analysis : str
        Name of the scheduled analysis. ``monitoring`` computes no effect (flow, attrition,
        balance, usage only); ``interim`` adds a warning that it is not confirmatory; any
        other name (``final``…) is the full analysis.
    sequential : SequentialLook, optional
        The look this analysis is in the protocol's group-sequential design
        (:func:`analysis.sequential.sequential_look`): its boundary goes to
        ``design.sequential`` of the results, and an interim analysis with a look is
        confirmatory (``design.confirmatory``). Without it an interim analysis is
        descriptive and the final one tests at ``alpha``.

    Returns
    -------
    AnalysisResults
    """
    effects: list[Effect] = []
    warnings: list[AnalysisWarning] = []
    attrition: list[AttritionCheck] = []
    balance: list[BalanceCheck] = []
    icc: list[IccEstimate] = []
    interactions: list[InteractionTest] = []
    primary_sample: AnalysisSample | None = None
    primary_spec = next((o for o in plan.outcomes if o.primary), plan.outcomes[0])

    blind = analysis == "monitoring"
    if analysis == "interim" and sequential is not None:
        warnings.append(AnalysisWarning("interim_confirmatory", {
            "look": sequential.look, "looks": sequential.looks,
            "nominal_alpha": sequential.nominal_alpha}))
    elif analysis == "interim":
        warnings.append(AnalysisWarning("interim_descriptive"))
    for spec in plan.outcomes:
        sample = build_sample(plan, units, outcomes, spec)
        if spec is primary_spec:
            primary_sample = sample
        role: Role = "primary" if spec.primary else "secondary"
        if blind:
            effects.extend(_monitoring_placeholders(plan, sample, role))
        else:
            effects.extend(estimate_effects(plan, sample, role=role))
        checks, imputed = _attrition(plan, units, outcomes, sample)
        attrition.extend(checks)
        if imputed and spec is primary_spec:
            warnings.append(AnalysisWarning("units_imputed", {"count": imputed}))
        balance.extend(_balance(plan, units, outcomes, sample, spec.baseline))
        icc.append(estimate_icc(spec.id, sample.y, sample.cluster, sample.n_clusters,
                                sample.arm) if plan.clustered else
                   IccEstimate(spec.id, math.nan, sample.n_clusters, suppress_count(sample.n), 1.0,
                               reason="learners are the unit of randomisation"))
        if spec is primary_spec and not blind:
            for attribute in plan.subgroups:
                sub_effects, tests = estimate_subgroups(plan, sample, units, outcomes, attribute)
                effects.extend(sub_effects)
                interactions.extend(tests)
            if "CACE" in plan.estimands:
                cace, cace_warnings = estimate_cace(plan, sample, usage)
                effects.extend(cace)
                warnings.extend(cace_warnings)
            if plan.design != "parallel":
                effects.extend(estimate_did(plan, sample))
            if usage is not None:
                effects.extend(estimate_dose_response(plan, sample, usage))
    assert primary_sample is not None

    effects = _months_for_attainment_only(plan, effects)
    effects, interactions = _adjust(plan, effects, interactions)
    srm = check_sample_ratio(
        {arm: int(np.count_nonzero(units.arm_code == i)) for i, arm in enumerate(plan.arms)},
        dict(zip(plan.arms, plan.allocation, strict=True)),
    )
    consort = consort_flow(plan, units, outcomes, primary_sample, primary_spec.baseline)
    span = boundary_table()["optimistic_unverified_rows"]
    assert isinstance(span, dict)
    warnings.extend(warnings_from_checks(effects, attrition, balance, srm.mismatch, span))
    usage_summary = None
    if usage is not None:
        usage_summary = {"arms": summarise_usage(plan, usage, primary_sample),
                         "compliance_min_active_minutes": plan.min_active_minutes}
    logger.info("analysis %s of experiment %s: %d effects", analysis, plan.experiment,
                len(effects))
    design = _design_summary(plan)
    design["mdes_at_randomisation"] = [
        dataclasses.asdict(m) for m in _design_mdes(plan, units, outcomes, icc)]
    return AnalysisResults(
        experiment=plan.experiment,
        protocol_sha256=plan.protocol_sha256,
        analysis=analysis,
        design={**design,
                "confirmatory": analysis != "monitoring" and (
                    analysis != "interim" or sequential is not None),
                "sequential": None if sequential is None else sequential.to_json()},
        effects=tuple(effects),
        checks={
            "consort": consort,
            "attrition": attrition,
            "baseline_equivalence": balance,
            "sample_ratio": srm,
            "icc": icc,
            "subgroup_interactions": interactions,
        },
        usage=usage_summary,
        warnings=tuple({(w.code, repr(sorted(w.params.items()))): w
                        for w in reversed(warnings)}.values())[::-1],
    )


def _monitoring_placeholders(plan: AnalysisPlan, sample: AnalysisSample, role: Role
                             ) -> list[Effect]:
    """Effects without numbers: a monitoring analysis does not compare outcomes between arms.

    Weekly looks at the effect would inflate the false-positive rate of the final analysis
    (and tempt stopping early); monitoring shows flow, attrition, balance and usage only.
    """
    counts = arm_counts(sample, len(plan.arms))
    control = plan.arms.index(plan.control)
    out = []
    for arm in plan.treatment_arms:
        t = plan.arms.index(arm)
        out.append(not_estimable(
            outcome=sample.outcome, contrast=contrast_name(arm, plan.control), estimand="ITT",
            role=role, model=plan.model,
            reason="monitoring analysis: effects are not estimated before the interim or "
                   "final analysis of the protocol (no unplanned looks)",
            n_units={plan.arms[a]: int(counts.units[a]) for a in (t, control)},
            n_learners={plan.arms[a]: suppress_count(int(counts.learners[a]))
                        for a in (t, control)},
        ))
    return out


def _design_summary(plan: AnalysisPlan) -> dict[str, Any]:
    return {
        "unit": plan.unit,
        "arms": list(plan.arms),
        "control": plan.control,
        "model": plan.model,
        "standard_errors": variance_label(plan, vcov_kind(plan)),
        "cluster_correction": plan.cluster_correction,
        "estimands": list(plan.estimands),
        "strata": list(plan.strata),
        "covariates": list(plan.covariates),
        "alpha": plan.alpha,
        "multiple_comparisons": plan.multiple_comparisons,
        "missing_baseline": "dummy-variable method (set to 0, missingness indicator)",
        "effect_size": "Hedges' g on the pooled within-arm SD of the outcome, "
                       "J = 1 - 3/(4N - 9) (WWC); months of progress: EEF Teaching and "
                       "Learning Toolkit conversion table (the EEF project-report table "
                       "could not be sourced)",
        "suppression": "cells of fewer than 10 pupils are not shown",
        "pretest": {o.id: o.baseline for o in plan.outcomes},
        "attrition_boundary": plan.attrition_assumption,
        "attrition_rounding": "overall attrition rounded up to the next whole percent to "
                              "read the WWC table; differential attrition compared unrounded",
        "developer_outcomes": list(plan.developer_outcomes),
    }


def _randomised_pupils(plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable
                       ) -> tuple[np.ndarray, int]:
    """Pupils randomised in each unit, and how many units had to be imputed.

    A unit counts the larger of its learners on record (any score) and its ``pupils``
    column (the enrolment count, when the units file has it). A unit with neither (lost
    entirely before any assessment, from files without ``pupils``) counts the mean of the
    units of its arm that have a count: règle propre à Preuve, stated in the warnings.
    """
    if plan.unit == "learner":
        return np.ones(units.n_units), 0
    on_record = np.bincount(outcomes.learner_unit[outcomes.learner_unit >= 0],
                            minlength=units.n_units).astype(float)
    counts = on_record
    if "pupils" in units.frame.columns:
        declared = pd.to_numeric(units.frame["pupils"], errors="coerce").to_numpy(dtype=float)
        counts = np.where(np.isfinite(declared), np.maximum(declared, on_record), on_record)
    unknown = counts <= 0
    for a in range(len(plan.arms)):
        mine = units.arm_code == a
        known = mine & ~unknown
        if known.any():
            counts[mine & unknown] = counts[known].mean()
    return counts, int(np.count_nonzero(unknown & (counts > 0)))


def _attrition(plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable,
               sample: AnalysisSample) -> tuple[list[AttritionCheck], int]:
    """WWC attrition checks of one outcome, and the units whose pupils were imputed."""
    n_arms = len(plan.arms)
    units_randomised = np.bincount(units.arm_code, minlength=n_arms)
    analysed_units = np.flatnonzero(np.bincount(sample.unit, minlength=units.n_units))
    units_analysed = np.bincount(units.arm_code[analysed_units], minlength=n_arms)
    if plan.clustered:
        # Learners on record in the units that remain (WWC: individual attrition within
        # the clusters that remain).
        retained = np.zeros(units.n_units, dtype=bool)
        retained[analysed_units] = True
        on_record = retained[outcomes.learner_unit]
        learners_randomised = np.bincount(units.arm_code[outcomes.learner_unit[on_record]],
                                          minlength=n_arms)
    else:
        # Pupils randomised one by one: every unit of the units file is a randomised pupil,
        # with or without a score.
        learners_randomised = units_randomised
    learners_analysed = np.bincount(sample.arm, minlength=n_arms)
    per_unit, imputed = _randomised_pupils(plan, units, outcomes)
    all_randomised = np.rint(np.bincount(units.arm_code, weights=per_unit, minlength=n_arms))
    control = plan.arms.index(plan.control)
    out = []
    for arm in plan.treatment_arms:
        t = plan.arms.index(arm)
        pair = (t, control)
        contrast = contrast_name(arm, plan.control)
        common = dict(outcome=sample.outcome, contrast=contrast,
                      assumption=plan.attrition_assumption)
        analysed = {plan.arms[a]: int(learners_analysed[a]) for a in pair}
        if plan.clustered:
            out.append(check_attrition(
                **common, level="unit",  # type: ignore[arg-type]
                randomised={plan.arms[a]: int(units_randomised[a]) for a in pair},
                analysed={plan.arms[a]: int(units_analysed[a]) for a in pair}))
        out.append(check_attrition(
            **common, level="learner",  # type: ignore[arg-type]
            randomised={plan.arms[a]: int(learners_randomised[a]) for a in pair},
            analysed=analysed))
        if plan.clustered:
            out.append(check_attrition(
                **common, level="all_learners",  # type: ignore[arg-type]
                randomised={plan.arms[a]: max(int(all_randomised[a]), analysed[plan.arms[a]])
                            for a in pair},
                analysed=analysed))
    return out, imputed


def _design_mdes(plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable,
                 icc: list[IccEstimate]) -> list[DesignMdes]:
    """MDES at randomisation of each contrast (:mod:`analysis.design_mdes`)."""
    per_unit, _ = _randomised_pupils(plan, units, outcomes)
    randomised = np.bincount(units.arm_code, minlength=len(plan.arms))
    primary = next((o for o in plan.outcomes if o.primary), plan.outcomes[0])
    estimated = next((i.icc for i in icc if i.outcome == primary.id), None)
    control = plan.arms.index(plan.control)
    out = []
    for arm in plan.treatment_arms:
        t = plan.arms.index(arm)
        mine = (units.arm_code == t) | (units.arm_code == control)
        mean_pupils = float(per_unit[mine].mean()) if mine.any() else 0.0
        out.append(mdes_at_randomisation(plan, contrast_name(arm, plan.control),
                                         int(randomised[t]), int(randomised[control]),
                                         mean_pupils, estimated))
    return out


def _balance(plan: AnalysisPlan, units: UnitTable, outcomes: OutcomeTable,
             sample: AnalysisSample, baseline: str | None) -> list[BalanceCheck]:
    control = plan.arms.index(plan.control)
    out: list[BalanceCheck] = []
    # (name, numeric values or None, level codes, levels, adjusted in the model)
    characteristics: list[tuple[str, np.ndarray | None, np.ndarray, tuple[str, ...], bool]] = []
    if baseline is not None and sample.covariate_names:
        b = sample.covariates[:, 0].copy()
        missing_col = f"{baseline}_baseline_manquant"
        if missing_col in sample.covariate_names:
            b[sample.covariates[:, sample.covariate_names.index(missing_col)] == 1.0] = np.nan
        characteristics.append((f"{baseline} (baseline)", b, np.zeros(0), (), True))
    for name in dict.fromkeys(plan.covariates + plan.subgroups):
        codes, levels = attribute_codes(name, units, outcomes, sample.learner)
        numeric = _level_numbers(levels)
        values = None if numeric is None else numeric[codes]
        characteristics.append((name, values, codes, levels, name in plan.covariates))
    for arm in plan.treatment_arms:
        t = plan.arms.index(arm)
        contrast = contrast_name(arm, plan.control)
        in_t, in_c = sample.arm == t, sample.arm == control
        n_t, n_c = int(in_t.sum()), int(in_c.sum())
        if n_t < MIN_CELL_PUPILS or n_c < MIN_CELL_PUPILS:  # too few to compare
            continue
        for name, values, codes, levels, adjusted in characteristics:
            if values is not None:
                d = standardized_difference(values[in_t], values[in_c])
                out.append(BalanceCheck(sample.outcome, contrast, name, "continuous", d,
                                        classify_difference(d), adjusted,
                                        None if math.isfinite(d) else "no variance"))
                continue
            hits_t = np.bincount(codes[in_t], minlength=len(levels))
            hits_c = np.bincount(codes[in_c], minlength=len(levels))
            # A two-level attribute has one Cox index (the other is its negative).
            for k in range(1, 2) if len(levels) == 2 else range(len(levels)):
                tag = f"{name}={levels[k]}"
                if is_suppressed(int(hits_t[k])) or is_suppressed(int(hits_c[k])):
                    out.append(BalanceCheck(sample.outcome, contrast, tag, "category", math.nan,
                                            None, adjusted,
                                            "suppressed: fewer than 10 learners in a cell"))
                    continue
                d = cox_index(hits_t[k] / n_t, hits_c[k] / n_c, n_t + n_c)
                out.append(BalanceCheck(sample.outcome, contrast, tag, "category", d,
                                        classify_difference(d), adjusted,
                                        None if math.isfinite(d) else "proportion 0 or 1"))
    return out


def _level_numbers(levels: tuple[str, ...]) -> np.ndarray | None:
    """Levels as numbers (missing → NaN), or None when the attribute is a category."""
    numbers = []
    for level in levels:
        if level == MISSING_LEVEL:
            numbers.append(math.nan)
            continue
        try:
            numbers.append(float(level))
        except ValueError:
            return None
    return np.asarray(numbers, dtype=float) if levels else None


def _months_for_attainment_only(plan: AnalysisPlan, effects: list[Effect]) -> list[Effect]:
    """No months of progress for an outcome the protocol does not declare an attainment
    measure: the EEF's conversion is calibrated on tests of learning, not on an attitude
    scale (``outcomes[].kind``)."""
    other = {spec.id for spec in plan.outcomes if spec.kind != "attainment"}
    return [dataclasses.replace(e, months_progress=None) if e.outcome in other else e
            for e in effects]


def _adjust(plan: AnalysisPlan, effects: list[Effect], interactions: list[InteractionTest]
            ) -> tuple[list[Effect], list[InteractionTest]]:
    """Adjust the p-values within the two families the report's methods text names.

    1. the ITT effects of the primary outcome(s), every treatment contrast;
    2. the ITT effects of the secondary outcomes together with the subgroup interaction
       tests (``analysis.multiple_comparisons`` of the protocol: "across secondary
       outcomes and subgroups").

    Subgroup effects are descriptive, CACE, DiD and dose-response estimates secondary or
    exploratory: they are not adjusted (the report says so, ``correction`` in
    ``analysis/report/text.py``).
    """
    method = plan.multiple_comparisons
    label = None if method == "none" else method
    primary = [i for i, e in enumerate(effects) if e.role == "primary" and e.estimand == "ITT"]
    secondary = [i for i, e in enumerate(effects) if e.role == "secondary"]
    out = list(effects)
    for p_adj, i in zip(adjust_p_values([effects[i].p_value for i in primary], method),
                        primary, strict=True):
        out[i] = dataclasses.replace(effects[i], p_adjusted=p_adj, adjustment=label)
    family = [effects[i].p_value for i in secondary] + [t.p_value for t in interactions]
    adjusted = adjust_p_values(family, method)
    for p_adj, i in zip(adjusted[: len(secondary)], secondary, strict=True):
        out[i] = dataclasses.replace(effects[i], p_adjusted=p_adj, adjustment=label)
    tests = [dataclasses.replace(t, p_adjusted=p) for t, p in
             zip(interactions, adjusted[len(secondary):], strict=True)]
    return out, tests
