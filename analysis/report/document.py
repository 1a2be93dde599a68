"""The impact report: a self-contained HTML document (and its PDF) from the results JSON.

Programme officers of the Banque des Territoires read it to decide whether a resource
keeps being funded; researchers read every number. Its sections (DOMAIN.md §5):

1. **Synthèse**: the question, the answer in one sentence per treated arm (named by its
   own label) with months of progress for attainment measures, how sure we are (the
   interval, said unadjusted when it is not the protocol's test, and the conclusion of
   that test: :func:`analysis.multiplicity.certainty`), the evidence rating
   (:mod:`analysis.report.rating`), cost per pupil and cost-effectiveness per arm, and the
   pre-registered decision rule evaluated;
2. **Usage**: the funnel from classes enrolled to pupils with real use, weekly active use
   per arm, and what the data cannot see (R22);
3. **Effet**: table and forest plot per outcome and subgroup, with the correction for
   multiple comparisons said;
4. **Crédibilité**: CONSORT flow, baseline balance, attrition against the WWC
   boundaries, protocol version, amendments and deviations;
5. **Annexe méthodologique**: estimand, model, protocol hash, data watermark, software.

Only aggregates by arm are shown: no class or teacher is named or ranked (R13), and every
pupil count under 10 is shown as « < 10 » (R12). Figures are inline SVG (no file, no
CDN, no script). French by default; ``lang="en"`` for English. Words come from
:mod:`analysis.report.text`, figures from :mod:`analysis.report.figures`, the PDF from
:mod:`analysis.report.pdf`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from analysis.multiplicity import Certainty, certainty
from analysis.report.context import ReportContext, software_versions
from analysis.report.deviations import deviation_lines
from analysis.report.figures import (
    ConsortBox,
    ForestRow,
    consort_figure,
    forest_figure,
    svg_of,
    weekly_usage_figure,
)
from analysis.report.rating import EvidenceRating, rate_evidence
from analysis.report.text import Text
from analysis.report.usage_levels import levels_section
from analysis.results import AnalysisResults, Effect, finite, to_json_dict
from analysis.suppression import is_suppressed
from analysis.warning_codes import SUMMARY_MESSAGES, summary_lines

if TYPE_CHECKING:
    from experiments.protocol.language import Protocol

__all__ = [
    "ReportView",
    "build_view",
    "decision_lines",
    "render_html",
    "render_report",
    "report_summary",
    "summary_sentence",
    "write_html",
    "write_report",
    "write_report_pdf",
]

ReportView = dict[str, Any]
"""The report's content, in words and numbers, as the templates and the PDF read it."""


def _results_dict(results: AnalysisResults | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(results, AnalysisResults):
        return to_json_dict(results)
    return dict(results)


def _names(data: Mapping[str, Any], protocol: Protocol | None, t: Text
           ) -> tuple[str, dict[str, str], dict[str, str]]:
    """The resource's name, arm display names, outcome display names."""
    design = data.get("design", {})
    arms = list(design.get("arms", []))
    control = design.get("control")
    treatment = [a for a in arms if a != control]
    resource = protocol.resource.name if protocol is not None else (
        treatment[0].capitalize() if treatment else "?")
    arm_names = {}
    for arm in arms:
        if arm == control:
            arm_names[arm] = t("arm_control")
        elif len(treatment) == 1:
            arm_names[arm] = resource
        else:
            arm_names[arm] = arm
    outcomes: dict[str, str] = {}
    if protocol is not None:
        outcomes = {o.id: o.label or o.id for o in protocol.outcomes}
    return resource, arm_names, outcomes


def _typed(data: Mapping[str, Any]) -> AnalysisResults:
    """The results JSON read back as objects (:meth:`AnalysisResults.from_json`)."""
    return AnalysisResults.from_json(data)


def _primary(data: Mapping[str, Any]) -> Effect | None:
    return next(iter(_typed(data).effects_where(role="primary", estimand="ITT")), None)


def _primary_effects(data: Mapping[str, Any]) -> list[Effect]:
    """The primary ITT effect of every treated arm (whole sample), in the arms' order."""
    results = _typed(data)
    effects = results.effects_where(role="primary", estimand="ITT", whole_sample=True)
    arms = list(results.design.get("arms", []))
    return sorted(effects, key=lambda e: arms.index(e.arm) if e.arm in arms else len(arms))


def _arm_label(arm: str, protocol: Protocol | None, resource: str, t: Text) -> str:
    """How the summary names a treated arm of a multi-arm trial: its name and, when the
    protocol describes it, its description (« Comprendo (groupe « vague1 » : Comprendo dès
    octobre) »)."""
    description = None
    if protocol is not None:
        description = next((a.description for a in protocol.arms if a.name == arm), None)
    return t("arm_label_described" if description else "arm_label", resource=resource,
             arm=arm, description=description or "")


def _reason(effect: Effect | Mapping[str, Any], t: Text) -> str:
    reason = str((effect.reason if isinstance(effect, Effect) else effect.get("reason")) or "")
    if reason.startswith("monitoring"):
        return t("reason_monitoring")
    if "suppressed" in reason or "fewer than 10" in reason:
        return t("reason_suppressed")
    return t("reason_other")


def summary_sentence(effect: Effect | Mapping[str, Any], *, resource: str, outcome: str,
                     unit: str, lang: str = "fr") -> str:
    """The answer in one sentence: points of progress and EEF months of progress.

    Parameters
    ----------
    effect : Effect or mapping
        The primary ITT effect (or its item of the results JSON ``effects``).
    resource, outcome : str
        Names as the reader knows them (``Lectio``, ``fluence``).
    unit : {"class", "school", "learner"}
        The unit of randomisation.
    lang : {"fr", "en"}

    Examples
    --------
    >>> e = {"estimate": 4.71, "months_progress": 3}
    >>> summary_sentence(e, resource="Lectio", outcome="fluence", unit="class")
    'Les élèves des classes ayant utilisé Lectio ont progressé de 4,7 points de plus en \
fluence que ceux des classes témoins, soit environ 3 mois de progrès supplémentaires.'
    """
    t = Text(lang)
    if not isinstance(effect, Effect):
        effect = Effect.from_json(effect)
    estimate = effect.estimate
    if not effect.estimable:
        return t("no_estimate", reason=_reason(effect, t))
    rounded = round(abs(estimate), 1)
    value = t.number(rounded, 1)
    points = t("points") if rounded >= 2 or lang == "en" and rounded != 1 else t("point")
    direction = "up" if estimate >= 0 else "down"
    key = f"sentence_{direction}" + ("_learner" if unit == "learner" else "")
    sentence = t(key, units=t(f"units_{unit}"), resource=resource, value=value,
                 points=points, outcome=outcome)
    months = effect.months_progress
    if months is None:
        return sentence + "."
    if months == 0:
        return sentence + t("months_zero")
    if abs(months) == 1:
        return sentence + t("months_one_more" if months > 0 else "months_one_less")
    return sentence + t("months_more" if months > 0 else "months_less", months=abs(months))


def _rating_lines(rating: EvidenceRating, unit: str, t: Text, boundary: str = "cautious"
                  ) -> list[str]:
    """One line per step of the rating, each with the source of its rule, then how the
    steps combine (:mod:`analysis.report.rating`)."""
    lines = []
    units = t(f"units_{unit}")
    for step in rating.steps:
        if step.key == "cap_power":
            line = (t("r_cap_power", value=t.number(step.value, 2), n=step.padlocks,
                      units=units)
                    if step.value is not None else t("r_cap_power_none", n=step.padlocks))
        elif step.key == "cap_attrition":
            line = (t("r_cap_attrition", value=t.number(100 * step.value, 1),
                      n=step.padlocks) if step.value is not None
                    else t("r_cap_attrition_none", n=step.padlocks))
        elif step.key == "minus_few_units":
            line = t("r_minus_few_units", units=units, value=int(step.value or 0))
        elif step.key == "minus_differential_attrition":
            line = t("r_minus_differential_attrition", boundary=t(f"boundary_{boundary}"))
        else:
            line = t(f"r_{step.key}", units=units)
        lines.append(f"{line} ({t(f'src_{step.source}')})")
    if len(rating.steps) > 1:
        lines.append(t("r_combination"))
    return lines


def _count(value: Any, t: Text) -> str:
    """A pupil count: « < 10 » when suppressed (``None``) or under 10."""
    if value is None or (isinstance(value, (int, float)) and is_suppressed(int(value))):
        return t("lt10")
    return t.number(int(value))


def _label_subgroup(subgroup: str | None, t: Text) -> str:
    if not subgroup:
        return t("all_pupils")
    name, _, level = subgroup.partition("=")
    level = t.attribute_value(name, level)
    return f"{t.attribute(name)} : {level}" if t.lang == "fr" else \
        f"{t.attribute(name)}: {level}"


def _cost(protocol: Protocol | None, primary: Effect | None,
          data: Mapping[str, Any], t: Text) -> list[tuple[str, str | None]]:
    """Cost lines as (words of the report, protocol data quoted in its own language)."""
    if protocol is None or protocol.budget is None:
        return [(t("no_cost"), None)]
    budget = protocol.budget
    funders: dict[str, float] = {}
    for item in budget.items:
        funders[item.funder] = funders.get(item.funder, 0.0) + item.amount
    separator = " ; " if t.lang == "fr" else "; "
    lines: list[tuple[str, str | None]] = [
        (t("cost_per_pupil", value=t.number(budget.cost_per_pupil, 0),
           total=t.number(budget.total, 0), pupils=t.number(budget.pupils)), None),
        (t("cost_by_funder"), separator.join(
            f"{name} {t.percent(amount / budget.total)}" for name, amount in funders.items())
         if budget.total else "—"),
    ]
    # Per treated arm: the budget declares one cost per pupil receiving the resource (it
    # has no split by arm), so each arm's cost-effectiveness divides that cost by the
    # arm's own months of progress, and only where the protocol's test establishes a
    # positive effect (analysis.multiplicity.certainty).
    usage_arms = {u.get("arm"): u for u in (data.get("usage") or {}).get("arms", [])}
    effects = _primary_effects(data)
    multi = len(effects) > 1
    weights = {a.name: a.allocation for a in protocol.arms if not a.control}
    for effect in effects:
        arm = effect.arm
        suffix = t("cost_arm", arm=arm) if multi else ""
        cost, pupils = budget.arm_cost(arm, weights.get(arm, 0.0) / sum(weights.values()))
        per_pupil = cost / pupils if pupils else budget.cost_per_pupil
        if multi and any(item.arm is not None for item in budget.items):
            lines.append((_with(t("cost_per_pupil_arm", value=t.number(per_pupil, 0)),
                                suffix), None))
        share = (usage_arms.get(arm) or {}).get("share_compliant")
        if share:
            lines.append((_with(t("cost_per_active",
                                  value=t.number(per_pupil / share, 0)), suffix),
                          None))
        months = effect.months_progress or 0
        if certainty(effect, data).claim == "positive" and months > 0:
            lines.append((_with(t("cost_per_month", value=t.number(
                per_pupil / months, 0)), suffix), None))
        else:
            lines.append((_with(t("cost_no_effect"), suffix), None))
    del primary
    if protocol.decision is not None:
        lines.append((t("decision_rule"), protocol.decision.rule))
        lines.extend((line, None) for line in _decision_lines(protocol, data, t))
    return lines


def _decision_lines(protocol: Protocol, data: Mapping[str, Any], t: Text) -> list[str]:
    """The pre-registered decision rule evaluated on this analysis, arm by arm: its
    criteria in numbers (an effect established by the protocol's test, and the declared
    ``min_effect_size`` and ``min_active_share``) and whether they are all met. The rule in
    words may say more (it is quoted above); the report evaluates what it can count."""
    decision = protocol.decision
    assert decision is not None
    usage_arms = {u.get("arm"): u for u in (data.get("usage") or {}).get("arms", [])}
    effects = _primary_effects(data)
    multi = len(effects) > 1
    yes, no = t("yes"), t("no")
    out = []
    for effect in effects:
        arm = effect.arm
        c = certainty(effect, data)
        suffix = t("cost_arm", arm=arm) if multi else ""
        if c.claim in ("descriptive", "none"):
            out.append(_with(t("decision_not_evaluated"), suffix))
            continue
        met = [c.claim == "positive"]
        parts = [t("decision_effect", answer=yes if met[0] else no)]
        if decision.min_effect_size is not None:
            g = finite(effect.hedges_g)
            met.append(g is not None and g >= decision.min_effect_size)
            parts.append(t("decision_g", threshold=t.number(decision.min_effect_size, 2),
                           answer=yes if met[-1] else no, value=t.number(g, 2)))
        if decision.min_active_share is not None:
            share = (usage_arms.get(arm) or {}).get("share_compliant")
            met.append(share is not None and share >= decision.min_active_share)
            parts.append(t("decision_share", threshold=t.percent(decision.min_active_share),
                           answer=yes if met[-1] else no, value=t.percent(share)))
        separator = " ; " if t.lang == "fr" else "; "
        verdict = t("decision_met" if all(met) else "decision_not_met")
        out.append(_with(t("decision_criteria", parts=separator.join(parts),
                           verdict=verdict), suffix))
    return out


def decision_lines(protocol: Protocol, results: AnalysisResults | Mapping[str, Any],
                   lang: str = "fr") -> list[str]:
    """The protocol's decision rule evaluated on ``results`` (the report's lines, in
    ``lang``): the rule in words, then its criteria arm by arm; empty without a rule."""
    if protocol.decision is None:
        return []
    t = Text(lang)
    data = _results_dict(results)
    return [f"{t('decision_rule')} {protocol.decision.rule}",
            *_decision_lines(protocol, data, t)]


def _with(sentence: str, suffix: str) -> str:
    """``suffix`` before the sentence's final full stop."""
    return sentence[:-1] + suffix + "." if suffix and sentence.endswith(".") else \
        sentence + suffix


def _in_sentence(label: str) -> str:
    """A label inside a sentence: « Automatismes en calcul » → « automatismes en calcul »
    (an acronym such as « ELFE » keeps its capitals)."""
    if len(label) > 1 and label[0].isupper() and label[1].islower():
        return label[0].lower() + label[1:]
    return label


def _rule(c: Certainty, t: Text) -> str:
    """The test the protocol prescribes, in words (« correction de Holm sur 2
    comparaisons, frontière d'O'Brien-Fleming : regard 1 sur 2 »)."""
    parts = []
    if c.family > 1 and c.method != "none":
        parts.append(t("rule_correction", method=t(f"method_{c.method}"), n=c.family))
    if c.look is not None:
        parts.append(t("rule_sequential", look=c.look, looks=c.looks))
    return ", ".join(parts) if parts else t("rule_plain")


def _sure(effect: Effect, c: Certainty, t: Text, *, level: str, resource: str,
          outcome: str) -> list[str]:
    """How sure we are of one arm's effect: the interval (said unadjusted when it is not
    the test's), then the conclusion of the protocol's test (:func:`certainty`)."""
    if not effect.estimable:
        return []
    lines = [t("interval", level=level, low=t.number(effect.ci_low, 1),
               high=t.number(effect.ci_high, 1), points=t("points"))]
    if c.interval_unadjusted:
        lines[0] = lines[0][:-1] + t("interval_unadjusted")
    p_shown = t.p_value(c.p)
    threshold = t.number(c.threshold, 4 if c.threshold < 0.01 else 3)
    excludes_zero = effect.ci_low > 0 or effect.ci_high < 0
    if c.claim == "descriptive":
        lines.append(t("certainty_descriptive"))
    elif c.established and not c.interval_unadjusted:
        lines.append(t("interval_positive" if c.claim == "positive" else "interval_negative",
                       level=level, p=p_shown))
    elif c.established:
        lines.append(t("certainty_positive" if c.claim == "positive" else
                       "certainty_negative", rule=_rule(c, t), p=p_shown, threshold=threshold))
    elif excludes_zero:
        lines.append(t("certainty_not_established", rule=_rule(c, t), p=p_shown,
                       threshold=threshold))
    else:
        lines.append(t("interval_zero", resource=resource, outcome=outcome))
    return lines


def _summary(data: Mapping[str, Any], protocol: Protocol | None, t: Text, resource: str,
             outcomes: Mapping[str, str], rating: EvidenceRating) -> dict[str, Any]:
    unit = data.get("design", {}).get("unit", "class")
    primary = _primary(data)
    effects = _primary_effects(data)
    outcome_id = primary.outcome if primary else "?"
    outcome = _in_sentence(outcomes.get(outcome_id, outcome_id))
    alpha = float(data.get("design", {}).get("alpha", 0.05))
    level = t.number(round(100 * (1 - alpha)), 0)
    sure: list[str] = []
    sentences: list[str] = []
    arms: list[dict[str, Any]] = []
    multi = len(effects) > 1
    for effect in effects:
        arm = effect.arm
        name = _arm_label(arm, protocol, resource, t) if multi else resource
        c = certainty(effect, data)
        sentence = summary_sentence(effect, resource=name, outcome=outcome, unit=unit,
                                    lang=t.lang)
        if multi and not effect.estimable:
            sentence = f"{name} : {sentence}" if t.lang == "fr" else f"{name}: {sentence}"
        lines = _sure(effect, c, t, level=level, resource=name, outcome=outcome)
        if multi:  # « Comprendo (groupe « vague1 ») : intervalle de confiance… »
            lines = [(f"{name} : " if t.lang == "fr" else f"{name}: ")
                     + line[0].lower() + line[1:] for line in lines]
        sentences.append(sentence)
        sure.extend(lines)
        arms.append({"arm": arm, "label": name, "sentence": sentence, "sure": lines,
                     "claim": c.claim, "p": c.p, "threshold": c.threshold})
    if not sentences:
        sentences.append(t("no_estimate", reason=t("reason_other")))
    established = [a for a in arms if a["claim"] in ("positive", "negative")]
    steps = _rating_lines(rating, unit, t,
                          str(data.get("design", {}).get("attrition_boundary") or "cautious"))
    if arms and not any(a["claim"] == "descriptive" for a in arms):
        steps.append(t("rating_and_test_established") if established
                     else t("rating_and_test_not_established"))
    cost = _cost(protocol, primary, data, t)
    return {
        "question": t("question_text", resource=resource, outcome=outcome,
                      units=t(f"units_{unit}")),
        "title": protocol.title if protocol is not None else None,
        "sentence": " ".join(sentences),
        "sentences": sentences,
        "arms": arms,
        "sure": sure,
        "padlocks": rating.padlocks,
        "rating": t("rating", n=rating.padlocks),
        "rating_steps": steps,
        "cost": [f"{text} {quoted}" if quoted else text for text, quoted in cost],
        "cost_parts": cost,
        "warnings": _warnings(data, t, outcomes),
    }


def _warnings(data: Mapping[str, Any], t: Text, outcomes: Mapping[str, str]) -> list[str]:
    """Points to watch: the volunteers' note, then the results' warnings the summary names,
    in the words of their one catalogue (:func:`analysis.warning_codes.summary_lines`)."""
    del outcomes
    return [t("volunteers"),
            *summary_lines(AnalysisResults.from_json(data).warnings, "en" if t.lang == "en"
                           else "fr")]


def _usage(data: Mapping[str, Any], context: ReportContext, t: Text,
           arm_names: Mapping[str, str]) -> dict[str, Any]:
    design = data.get("design", {})
    unit = design.get("unit", "class")
    units = t(f"units_{unit}")
    usage = data.get("usage") or {}
    minutes = usage.get("compliance_min_active_minutes")
    by_arm = {u["arm"]: u for u in usage.get("arms", [])}
    funnels = []
    for f in context.funnel:
        if f.arm == design.get("control"):
            continue
        steps = [(t("f_units_enrolled", units=units).capitalize(), t.number(f.units_enrolled)),
                 (t("f_units_activated", units=units).capitalize(),
                  t.number(f.units_activated))]
        # Nested by construction (analysis.report.context): randomised ⊇ followed ⊇
        # logged in ⊇ active ⊇ analysed and above the threshold.
        if f.learners_randomised is not None:
            steps.append((t("f_learners_randomised", units=units).capitalize(),
                          _count(f.learners_randomised, t)))
        if f.learners_on_record is not None:
            steps.append((t("f_learners_on_record").capitalize(),
                          _count(f.learners_on_record, t)))
        if f.learners_logged_in is not None:
            steps.append((t("f_learners_logged_in").capitalize(),
                          _count(f.learners_logged_in, t)))
        steps.append((t("f_learners_active").capitalize(), _count(f.learners_active, t)))
        arm_usage = by_arm.get(f.arm, {})
        if minutes and arm_usage.get("share_compliant") is not None and arm_usage.get(
                "learners"):
            steps.append((t("f_learners_compliant", minutes=t.number(minutes, 0))
                          .capitalize(), _count(round(arm_usage["share_compliant"]
                                                      * arm_usage["learners"]), t)))
        # The denominator: the first pupil step (randomised pupils when known).
        base = t("funnel_base", n=steps[2][1]) if len(steps) > 2 else None
        funnels.append({"caption": t("funnel_caption", arm=arm_names.get(f.arm, f.arm)),
                        "steps": steps, "base": base})
    rows = []
    for arm, u in by_arm.items():
        rows.append([arm_names.get(arm, arm), _count(u.get("learners"), t),
                     _count(u.get("learners_with_usage"), t),
                     t.number(u.get("mean_active_minutes"), 0),
                     t.number(u.get("median_active_minutes"), 0),
                     t.number(u.get("mean_active_weeks"), 1),
                     t.percent(u.get("share_compliant"))])
    figure = fig = None
    if context.weekly_usage:
        series = []
        for arm in design.get("arms", []):
            points = [w for w in context.weekly_usage if w.arm == arm]
            if points:
                series.append((arm_names.get(arm, arm), [p.week for p in points],
                               [p.share_active for p in points]))
        fig = weekly_usage_figure(series, t("weekly_x"), t("weekly_y"))
        figure = Markup(svg_of(fig, t("weekly"), t("weekly_alt")))
    coverage = []
    if usage:
        coverage += [t("cov_events"), t("cov_login")]
        # Logins are measured when the funnel has them, or when the levels of use saw
        # the resource opened (issue 19: session events were stored).
        opened = context.usage_levels is not None and context.usage_levels.observed[2]
        if not opened and not any(f.learners_logged_in is not None for f in context.funnel):
            coverage.append(t("cov_no_login"))
        coverage.append(t("cov_control"))
    else:
        coverage.append(t("cov_no_usage"))
    coverage.append(t("cov_suppressed"))
    wm = context.watermark
    if wm.get("cutoff") is not None:
        coverage.append(t("cov_cutoff", at=t.moment(str(wm["cutoff"])),
                          events=t.number(int(wm.get("stored_events", 0)))))
    elif wm.get("latest_event_at") is not None:
        coverage.append(t("cov_watermark", at=str(wm["latest_event_at"]),
                          events=t.number(int(wm.get("stored_events", 0)))))
    coverage.extend(context.unobserved)
    return {"funnels": funnels, "rows": rows, "weekly_svg": figure, "figure": fig,
            "coverage": coverage,
            "present": bool(usage),
            "levels": levels_section(context.usage_levels, t, arm_names)}


def _effects(data: Mapping[str, Any], t: Text, arm_names: Mapping[str, str],
             outcomes: Mapping[str, str]) -> dict[str, Any]:
    design = data.get("design", {})
    control = design.get("control")
    rows = []
    forest: list[ForestRow] = []
    shown_roles = ("primary", "secondary", "subgroup", "cace")
    results = _typed(data)
    for e in results.effects:
        if e.role not in shown_roles:
            continue
        arm = e.arm
        contrast = t("contrast", arm=arm_names.get(arm, arm),
                     control=arm_names.get(control, t("arm_control")))
        outcome = outcomes.get(e.outcome, e.outcome)
        group = _label_subgroup(e.subgroup, t)
        learners = " · ".join(f"{arm_names.get(a, a)} {_count(n, t)}"
                              for a, n in (e.n_learners or {}).items())
        estimable = e.estimable
        row = {
            "outcome": outcome, "contrast": contrast, "group": group,
            "role": t(f"role_{e.role}"), "estimable": estimable,
            "reason": None if estimable else t("not_shown", reason=_reason(e, t)),
            "estimate": t.number(e.estimate, 1, signed=True),
            "ci": t("ci_range", low=t.number(e.ci_low, 1), high=t.number(e.ci_high, 1)),
            "p": t.p_value(finite(e.p_value)),
            "p_adj": t.p_value(finite(e.p_adjusted)),
            "g": t.number(e.hedges_g, 2, signed=True),
            "months": t.number(e.months_progress, signed=True),
            "learners": learners, "primary": e.role == "primary",
        }
        rows.append(row)
        if estimable and finite(e.hedges_g) is not None and finite(e.hedges_g_ci_low) is not None:
            label = outcome if not e.subgroup else f"{outcome} — {group}"
            if e.role == "cace":
                label = f"{outcome} — {t('role_cace')}"
            if len({c for c in (design.get("arms") or [])}) > 2:
                label += f" ({arm_names.get(arm, arm)})"
            forest.append(ForestRow(label, e.hedges_g, e.hedges_g_ci_low, e.hedges_g_ci_high,
                                    e.role == "primary"))
    svg = figure = None
    if forest:
        figure = forest_figure(forest, t("forest_x"), lambda x: t.number(x, 1))
        svg = Markup(svg_of(figure, t("forest"), t("forest_alt")))
    method = design.get("multiple_comparisons", "none")
    correction = t("correction_none") if method in (None, "none") else t(
        "correction", method=t(f"method_{method}"))
    interactions = [t("interaction", attribute=t.attribute(i.attribute or ""),
                      p=t.p_value(finite(i.p_value)), p_adj=t.p_value(finite(i.p_adjusted)))
                    for i in results.checks.get("subgroup_interactions", [])
                    if finite(i.p_value) is not None]
    has_cace = any(e.role == "cace" for e in results.effects)
    return {"rows": rows, "forest_svg": svg, "figure": figure, "correction": correction,
            "sequential": _sequential_lines(data, t),
            "interactions": interactions, "cace_note": t("cace_note") if has_cace else None}


def _waves(context: ReportContext, t: Text, arm_names: Mapping[str, str]
           ) -> list[dict[str, Any]]:
    """Rows of « Effets par vague » (named waves: the primary outcome at each wave)."""
    rows = []
    for w in context.waves:
        estimable = w.get("estimate") is not None
        rows.append({
            "wave": w.get("label") or w["wave"], "primary": bool(w.get("primary")),
            "role": t("w_primary" if w.get("primary") else "w_secondary"),
            "contrast": " vs ".join(arm_names.get(a, a) for a in
                                    str(w.get("contrast", "")).split(" vs ")),
            "estimable": estimable, "reason": t("not_shown", reason=w.get("reason") or "—"),
            "estimate": t.number(w.get("estimate"), 1, signed=True),
            "ci": t("ci_range", low=t.number(w.get("ci_low"), 1),
                    high=t.number(w.get("ci_high"), 1)),
            "p": t.p_value(w.get("p_value")), "p_adj": t.p_value(w.get("p_adjusted")),
            "g": t.number(w.get("hedges_g"), 2, signed=True),
            "learners": _count(w.get("n_learners"), t),
        })
    return rows


def _sequential_lines(data: Mapping[str, Any], t: Text) -> list[str]:
    """The group-sequential boundary of the protocol, and where this analysis stands."""
    design = data.get("design", {})
    sequential = design.get("sequential")
    if not sequential:
        if data.get("analysis") == "interim":
            return [t("certainty_descriptive")]
        return []
    separator = " ; " if t.lang == "fr" else "; "
    looks = separator.join(
        t("seq_look", k=k + 1, t=t.number(info, 2), z=t.number(z, 3),
          p=t.number(p, 4 if p < 0.01 else 3), spent=t.number(spent, 4))
        for k, (info, z, p, spent) in enumerate(zip(
            sequential["information"], sequential["critical_values"],
            sequential["nominal_alpha"], sequential["alpha_spent"], strict=True)))
    return [t("seq_design", looks=sequential["looks"],
              alpha=t.number(sequential["alpha"], 2)),
            t("seq_boundary", items=looks),
            t("seq_this", look=sequential["look"], looks=sequential["looks"])]


def _credibility(data: Mapping[str, Any], protocol: Protocol | None, context: ReportContext,
                 t: Text, arm_names: Mapping[str, str], outcomes: Mapping[str, str]
                 ) -> dict[str, Any]:
    design = data.get("design", {})
    unit = design.get("unit", "class")
    units = t(f"units_{unit}")
    checks = _typed(data).checks
    consort_rows = []
    boxes = []
    for c in checks.get("consort", []):
        name = arm_names.get(c.arm, c.arm)
        counts = [t.number(c.units_allocated), t.number(c.units_analysed),
                  _count(c.learners_on_record, t), _count(c.learners_with_baseline, t),
                  _count(c.learners_analysed, t)]
        consort_rows.append([name, *counts])
        lines: tuple[str, ...]
        if unit == "learner":
            lines = (f"{t('c_on_record')} : {counts[2]}" if t.lang == "fr" else
                     f"{t('c_on_record')}: {counts[2]}",)
        else:
            lines = (f"{t('c_allocated', units=units)}: {counts[0]}",
                     f"{t('c_analysed_units', units=units)}: {counts[1]}",
                     f"{t('c_on_record')}: {counts[2]}")
        lines = (*lines, f"{t('c_baseline')}: {counts[3]}", f"{t('c_analysed')}: {counts[4]}")
        if t.lang == "fr":
            lines = tuple(line.replace(": ", " : ") for line in lines)
        boxes.append(ConsortBox(name, tuple(s[0].upper() + s[1:] for s in lines)))
    total_units = sum(c.units_allocated for c in checks.get("consort", []))
    top = (f"{t('c_allocated', units=units).capitalize()} : {t.number(total_units)}"
           if t.lang == "fr" else
           f"{t('c_allocated', units=units).capitalize()}: {t.number(total_units)}")
    figure = consort_figure(boxes, top) if boxes else None
    consort_svg = Markup(svg_of(figure, t("consort", units=units),
                                t("consort_alt", units=units))) if figure else None
    balance = []
    for b in checks.get("baseline_equivalence", []):
        name = str(b.characteristic or "")
        if name.endswith(" (baseline)"):
            base = name[: -len(" (baseline)")]
            name = t("baseline_of", outcome=outcomes.get(base, base))
        elif "=" in name:
            attr, _, level = name.partition("=")
            name = f"{t.attribute(attr)} = {t.attribute_value(attr, level)}"
        verdict = t(f"eq_{b.equivalence}") if b.equivalence else (
            t("reason_suppressed") if "suppressed" in str(b.reason) else t("eq_none"))
        if b.equivalence == "adjustment required" and b.adjusted_in_model:
            verdict = t("eq_adjusted")
        balance.append([outcomes.get(b.outcome, b.outcome), name, t.number(b.difference, 2),
                        verdict])
    attrition = []
    notes_unverified: list[str] = []
    for a in checks.get("attrition", []):
        # (a check stored before ``rating`` is rated under the cautious boundary: from_json)
        level = {"unit": units, "learner": t("units_learner")}.get(
            a.level, t("a_all_learners"))
        attrition.append([
            outcomes.get(a.outcome, a.outcome), level.capitalize(),
            t.percent(finite(a.overall), 1), t.percent(finite(a.differential), 1),
            t.percent(a.boundary, 1) if a.boundary is not None else "—",
            t(f"rating_{a.cautious}") if a.cautious else t("reason_suppressed"),
            t(f"rating_{a.rating}") if a.rating else t("reason_suppressed"),
        ])
        if a.unverified:
            notes_unverified.append(t("a_unverified", row=a.boundary_row))
    srm = checks.get("sample_ratio")
    notes = list(dict.fromkeys(notes_unverified))
    if srm:
        notes.append(t("srm", units=units, chi2=t.number(srm.chi2, 2),
                       p=t.p_value(finite(srm.p_value))))
        if srm.mismatch:
            notes.append(SUMMARY_MESSAGES["en" if t.lang == "en" else "fr"]["allocation"])
    for i in checks.get("icc", []):
        if finite(i.icc) is not None:
            notes.append(t("icc", unit=t(f"unit_{unit}"),
                           outcome=outcomes.get(i.outcome, i.outcome),
                           icc=t.number(i.icc, 3)))
    sha = context.protocol_sha256 or data.get("protocol_sha256", "")
    record = [t("protocol_version", version=context.protocol_version, sha=sha[:16])
              if context.protocol_version is not None else t("no_record")]
    record.extend(deviation_lines(context, data, t.lang))  # « Écarts au protocole »
    del protocol
    return {"consort_rows": consort_rows, "consort_svg": consort_svg, "figure": figure,
            "balance": balance,
            "attrition": attrition, "notes": notes, "record": record}


def _methods(data: Mapping[str, Any], context: ReportContext, t: Text,
             protocol: Protocol | None = None) -> list[str]:
    design = data.get("design", {})
    unit = design.get("unit", "class")
    lines = [t("m_estimand")]
    model = "m_model_mixed" if design.get("model") == "mixed" else "m_model_ancova"
    primary = _primary(data)
    pretest = design.get("pretest") or {}
    if (model == "m_model_ancova" and primary is not None and primary.outcome in pretest
            and pretest[primary.outcome] is None):
        model = "m_model_ancova_no_pretest"
    # Pupils randomised: the mixed model's random intercept is their class (effects.py).
    grouping = "class" if model == "m_model_mixed" and unit == "learner" else unit
    nested = t("m_mixed_nested") if unit == "class" else ""
    lines.append(t(model, units=t(f"units_{unit}"), unit=t(f"unit_{grouping}"),
                   nested=nested))
    variance = design.get("cluster_correction", "cr2")
    if model == "m_model_ancova" or design.get("estimands", ["ITT"]) != ["ITT"]:
        # the ancova and CACE models' variance estimator (the mixed model has its own)
        learner = "_learner" if unit == "learner" and variance != "cr1-strata" else ""
        lines.append(t(f"m_variance_{variance}{learner}", units=t(f"units_{unit}")))
    lines += [t("m_effect_size"), t("m_missing"),
              t("m_alpha", alpha=t.number(design.get("alpha"), 2))]
    boundary = str(design.get("attrition_boundary") or "cautious")
    lines.append(t("m_attrition", boundary=t(f"boundary_{boundary}")))
    planned = design.get("mdes_at_randomisation") or []
    lines.append(t("m_mdes_estimated" if any(m.get("source") == "estimated" for m in planned)
                   else "m_mdes"))
    lines.append(t("m_strata", strata=", ".join(t.attribute(s) for s in
                                                design.get("strata", [])) or t("none")))
    lines.append(t("m_covariates", covariates=", ".join(
        t.attribute(c) for c in design.get("covariates", [])) or t("none")))
    lines.append(t("m_protocol_hash", sha=data.get("protocol_sha256", "")))
    wm = context.watermark
    if wm:
        items = []
        for key, value in wm.items():
            if isinstance(value, (dict, list)):
                continue
            label = t.messages.get(f"wm_{key}", key)
            items.append(f"{label} {value}")
        lines.append(t("m_watermark", items=" ; ".join(items) if items else "—"))
    else:
        lines.append(t("m_no_watermark"))
    software = context.software or software_versions()
    lines.append(t("m_software", items=", ".join(f"{k} {v}" for k, v in software.items())))
    if context.periode is not None:
        lines.append(t("m_periode", number=context.periode[0], year=context.periode[1]))
    if protocol is not None and any(p is not None and p.periodes is not None
                                    for _, p in protocol.periods.ordered()):
        # The protocol wrote its periods in périodes: the report speaks as it did.
        colon = " : " if t.lang == "fr" else ": "
        lines.append(t("m_periods", periods=" ; ".join(
            f"{t(f'period_{name}')}{colon}{period.describe(t.lang)}"
            for name, period in protocol.periods.ordered() if period is not None)))
    if context.generated_at:
        lines.append(t("m_generated", at=context.generated_at))
    lines.append(t("m_suppression"))
    return lines


def report_summary(results: AnalysisResults | Mapping[str, Any], *,
                   protocol: Protocol | None = None, lang: str = "fr") -> dict[str, Any]:
    """The one-page summary alone, for pages that embed it (the portal), without figures.

    Returns
    -------
    dict
        ``question``, ``title``, ``sentence`` (the answer), ``sure`` (lines on the
        interval), ``padlocks`` (0-5), ``rating`` and ``rating_steps`` (in words), ``cost``
        and ``warnings`` (lines), all in ``lang``.

    Examples
    --------
    >>> report_summary({"design": {"unit": "class", "arms": ["a", "b"], "control": "b"},
    ...                 "effects": []})["padlocks"]
    0
    """
    t = Text(lang)
    data = _results_dict(results)
    resource, _, outcomes = _names(data, protocol, t)
    return _summary(data, protocol, t, resource, outcomes, rate_evidence(data))


def build_view(results: AnalysisResults | Mapping[str, Any], *,
               protocol: Protocol | None = None, context: ReportContext | None = None,
               lang: str = "fr") -> ReportView:
    """Everything the report says, in ``lang``, with figures as inline SVG.

    Parameters
    ----------
    results : AnalysisResults or mapping
        The results, or their JSON object (:func:`analysis.results.to_json_dict`).
    protocol : Protocol, optional
        Gives the resource's and outcomes' names, the title, the budget and decision rule.
    context : ReportContext, optional
        Protocol version, amendments, deviations, watermark, usage funnel and weekly use.
    lang : {"fr", "en"}

    Returns
    -------
    ReportView
    """
    t = Text(lang)
    data = _results_dict(results)
    context = context or ReportContext()
    resource, arm_names, outcomes = _names(data, protocol, t)
    rating = rate_evidence(data)
    unit = data.get("design", {}).get("unit", "class")
    return {
        "lang": lang,
        "m": t.messages,
        "title": f"{t('doc_title')} — {resource}",
        "experiment": data.get("experiment", ""),
        "protocol_title": protocol.title if protocol is not None else None,
        "analysis": _analysis_title(data, protocol, t),
        "units": t(f"units_{unit}"),
        "rating": rating,
        "summary": _summary(data, protocol, t, resource, outcomes, rating),
        "usage": _usage(data, context, t, arm_names),
        "effects": _effects(data, t, arm_names, outcomes),
        "credibility": _credibility(data, protocol, context, t, arm_names, outcomes),
        "methods": _methods(data, context, t, protocol),
        "waves": _waves(context, t, arm_names),
        "questionnaires": _questionnaires(context, t, arm_names),
    }


def _analysis_title(data: Mapping[str, Any], protocol: Protocol | None, t: Text) -> str:
    """The run's title: a monitoring run says its schedule's real frequency (« suivi
    mensuel » on ``every: month``), an interim run whether it is confirmatory."""
    analysis = str(data.get("analysis", "final"))
    if analysis == "monitoring" and protocol is not None:
        rhythms = {("cron" if e.cron is not None else e.every) for e in protocol.schedule
                   if e.analysis == "monitoring" and e.at is None}
        if len(rhythms) == 1:
            return t(f"analysis_monitoring_{rhythms.pop()}")
    if analysis == "interim" and "confirmatory" in data.get("design", {}):
        confirmatory = data["design"]["confirmatory"]
        return t("analysis_interim_confirmatory" if confirmatory
                 else "analysis_interim_descriptive")
    return t.messages.get(f"analysis_{analysis}", analysis)


def _environment() -> Environment:
    return Environment(loader=PackageLoader("analysis.report", "templates"),
                       autoescape=select_autoescape(["html", "j2"]),
                       trim_blocks=True, lstrip_blocks=True)


def render_report(results: AnalysisResults | Mapping[str, Any], *,
                  protocol: Protocol | None = None, context: ReportContext | None = None,
                  lang: str = "fr") -> str:
    """The impact report as one self-contained HTML string.

    Parameters
    ----------
    results, protocol, context, lang
        As for :func:`build_view`.

    Returns
    -------
    str
        HTML5 with inline CSS and inline SVG figures; no script, no external resource.
    """
    view = build_view(results, protocol=protocol, context=context, lang=lang)
    return _environment().get_template("rapport.html.j2").render(v=view)


def write_report(results: AnalysisResults | Mapping[str, Any], path: Path, *,
                 protocol: Protocol | None = None, context: ReportContext | None = None,
                 lang: str = "fr") -> None:
    """Write :func:`render_report` to ``path`` (UTF-8)."""
    Path(path).write_text(render_report(results, protocol=protocol, context=context,
                                        lang=lang), encoding="utf-8")


def write_report_pdf(results: AnalysisResults | Mapping[str, Any], path: Path, *,
                     protocol: Protocol | None = None, context: ReportContext | None = None,
                     lang: str = "fr") -> None:
    """Write the report as a multi-page PDF (matplotlib's PDF backend; works offline).

    The PDF holds the same words and figures as the HTML (:func:`build_view`), laid out
    page by page: summary, usage, effect, credibility, methods.
    """
    from analysis.report.pdf import write_pdf

    view = build_view(results, protocol=protocol, context=context, lang=lang)
    write_pdf(view, data=_results_dict(results), context=context or ReportContext(),
              path=Path(path))


def render_html(results: AnalysisResults, *, protocol: Protocol | None = None,
                context: ReportContext | None = None, lang: str = "fr") -> str:
    """The impact report (kept for callers of the former results page)."""
    return render_report(results, protocol=protocol, context=context, lang=lang)


def write_html(results: AnalysisResults, path: Path, *, protocol: Protocol | None = None,
               context: ReportContext | None = None, lang: str = "fr") -> None:
    """Write the impact report to ``path`` (what ``preuve analyze --html`` and the
    analysis workers call)."""
    write_report(results, path, protocol=protocol, context=context, lang=lang)


# --- « Questionnaires » (issue 19 item 4) ------------------------------------------------


def _questionnaires(context: ReportContext, t: Text, arm_names: Mapping[str, str]
                    ) -> list[dict[str, Any]]:
    """One table per respondent kind (pupils' scales, then teachers': the deployment
    conditions), a row per scale and wave; counts under 10 arrive suppressed (None)."""
    tables = []
    for respondent in ("pupil", "teacher"):
        entries = [e for e in context.questionnaires if e["respondent"] == respondent]
        if not entries:
            continue
        arms = [a["arm"] for a in entries[0]["arms"]]
        rows = []
        for e in entries:
            row = [e.get("label") or e["scale"], t(f"q_wave_{e['wave']}"), t.number(e["items"]),
                   _count(e["n_respondents"], t),
                   t.number(e["alpha"], 2) if e["alpha"] is not None else "—"]
            for a in e["arms"]:
                row.append(t("q_mean_n", mean=t.number(a["mean"], 2), n=_count(a["n"], t))
                           if a["n"] is not None else _count(None, t))
            rows.append(row)
        tables.append({"caption": t(f"q_caption_{respondent}"),
                       "header": [t("q_scale"), t("q_wave"), t("q_items"), t("q_respondents"),
                                  t("q_alpha"), *(arm_names.get(a, a) for a in arms)],
                       "rows": rows})
    return tables
