"""A registered protocol as a pre-registration document (Markdown, for OSF).

Sections follow the OSF Preregistration template (Study information, Design plan,
Sampling plan, Variables, Analysis plan, Other), so each can be pasted into the form's
field of the same name. The registered YAML is appended verbatim with its SHA-256:
it, not this rendering, is the contract.
"""

from __future__ import annotations

from analysis.sessions import rule_text
from experiments.protocol.language import Protocol
from experiments.protocol.power import protocol_power
from experiments.protocol.source import dump_yaml
from experiments.registry import ExperimentRecord

__all__ = ["preregistration_markdown"]

_UNITS = {"learner": "élève", "class": "classe", "school": "établissement"}
_DIRECTION = {"increase": "hausse", "decrease": "baisse"}
_DESIGN = {
    "parallel": "bras parallèles",
    "waitlist": "liste d'attente",
    "staggered": "déploiement échelonné",
}
_ANALYSIS = {"monitoring": "suivi", "interim": "intermédiaire", "final": "finale"}
def _at_words(at: object) -> str:
    """``le 2028-01-15``, or ``à la fin de la période 2 (2027-2028)``."""
    if isinstance(at, str):
        number, _, year = at.removeprefix("fin-periode-").partition("-")
        return f"à la fin de la période {number}" + (f" ({year})" if year else "")
    return f"le {at}"


_EVERY = {"week": "chaque semaine", "month": "chaque mois", "period": "chaque période",
          "periode": "à la fin de chaque période scolaire"}
_MODEL = {
    "ancova": "ANCOVA (OLS), erreurs standard robustes groupées par unité",
    "mixed": "modèle mixte à intercepts aléatoires",
}
_STANDARD_ERRORS = {  # analysis.cluster_correction (analysis/_ols.py)
    "cr2": "CR2 groupées par unité (Bell et McCaffrey 2002), degrés de liberté de "
           "Satterthwaite (Pustejovsky et Tipton 2018)",
    "cr1": "CR1 groupées par unité, G − 1 degrés de liberté",
    "cr1-strata": "CR1 avec le facteur G/(G − S) propre à Preuve (non publié), G − S degrés "
                  "de liberté",
}


def _euros(amount: float, decimals: int) -> str:
    # French typography: narrow no-break space between thousands, decimal comma.
    text = f"{amount:,.{decimals}f}"
    return text.replace(",", "\u202f").replace(".", ",") + "\u00a0€"


def _items(values: list[str]) -> str:
    return ", ".join(values) if values else "aucun"


def preregistration_markdown(protocol: Protocol, record: ExperimentRecord, source_yaml: str) -> str:
    """Render the pre-registration of a registered protocol.

    Parameters
    ----------
    protocol:
        The version in force (``registry.registered_protocol``).
    record:
        The registry's record (versions, amendments, registration date).
    source_yaml:
        The registered YAML, appended verbatim.

    Returns
    -------
    str
        Markdown.
    """
    p = protocol
    v = record.current
    lines = [
        f"# {p.title}",
        "",
        f"- Expérience : `{p.id}` — version {v.version} du protocole, état « {record.state} »",
        f"- SHA-256 du protocole : `{p.sha256}`",
        f"- Enregistré le : {record.registered_at.isoformat() if record.registered_at else '—'}",
        f"- Ressource évaluée : {p.resource.name} (`{p.resource.id}`)",
        "",
        "## Study information",
        "",
    ]
    if p.summary:
        lines += [p.summary, ""]
    if p.investigators:
        lines += ["**Équipe**", ""]
        lines += [
            f"- {i.name}"
            + (f", {i.affiliation}" if i.affiliation else "")
            + (f" ({i.role})" if i.role else "")
            for i in p.investigators
        ]
        lines.append("")
    lines += ["**Hypothèses**", ""]
    if p.hypotheses:
        for h in p.hypotheses:
            kind = "confirmatoire" if h.confirmatory else "exploratoire"
            lines.append(
                f"- {h.id} ({kind}, mesure `{h.outcome}`, effet attendu : "
                f"{_DIRECTION[h.direction]}) : {h.statement}"
            )
    else:
        lines.append(f"- Effet de {p.resource.name} sur `{p.primary_outcome.id}` (test bilatéral).")
    arms = "; ".join(
        f"`{a.name}` (poids {a.allocation:g}{', témoin' if a.control else ''})"
        + (f" : {a.description}" if a.description else "")
        for a in p.arms
    )
    lines += [
        "",
        "## Design plan",
        "",
        f"- Essai randomisé contrôlé, plan « {_DESIGN[p.design.type]} », unité de randomisation : "
        f"{_UNITS[p.population.unit]}.",
        f"- Bras : {arms}.",
        f"- Randomisation dans les strates : {_items(p.randomisation.strata)} ; "
        f"graine {p.randomisation.seed}.",
    ]
    for step in p.design.rollout:
        lines.append(f"- Le bras `{step.arm}` reçoit la ressource à partir du {step.starts}.")
    lines += [
        "",
        "## Sampling plan",
        "",
        f"- Niveaux : {_items(p.population.levels)} ; "
        f"académies : {_items(p.population.academies)}.",
    ]
    for name, values in p.population.criteria.items():
        lines.append(f"- Critère d'éligibilité `{name}` : {_items([str(x) for x in values])}.")
    if p.enrollment:
        lines.append(f"- Inscriptions du {p.enrollment.opens} au {p.enrollment.closes}.")
    for name, period in p.periods.ordered():
        if period is not None:
            lines.append(f"- Période `{name}` : {period.describe('fr')}.")
    if p.power is not None:
        pw, report = p.power, protocol_power(p)
        head = report.headline.result
        shown = f"{head.mdes:.3f}" if head.mdes is not None else f"non calculable ({head.reason})"
        lines.append(
            f"- Puissance (PowerUp!, {report.design}) : {pw.units} unités, "
            f"{pw.pupils_per_unit} élèves par unité, CCI {pw.icc}, R² {pw.r2_learner} / "
            f"{pw.r2_unit}, puissance {pw.power}, α {p.analysis.alpha} : effet minimal "
            f"détectable {shown} écart-type ({head.df} degrés de liberté)."
        )
    lines += ["", "## Variables", ""]
    for o in p.outcomes:
        role = "principale" if o.primary else "secondaire"
        lines.append(
            f"- Mesure {role} `{o.id}`"
            + (f" — {o.label}" if o.label else "")
            + (f" ({o.instrument})" if o.instrument else "")
            + (f" ; prétest `{o.baseline}`" if o.baseline else "")
        )
    defaulted = "metrics" not in p.usage.model_fields_set
    for m in p.usage.metrics:
        kind = "connexion (utilisation)" if m.kind == "login" else "usage actif"
        lines.append(
            f"- Indicateur d'usage `{m.id}` ({kind}) : verbes {_items(m.verbs)}"
            + (f", pause maximale {m.idle_timeout_s} s" if m.idle_timeout_s else "")
            + (f" — {m.description}" if m.description else "")
            + (" (définition par défaut de Preuve)" if defaulted else "")
        )
    lines.append(f"- Temps actif : {rule_text(p.usage.idle_timeout_s, 'fr')}")
    if p.usage.compliance:
        lines.append(
            f"- Observance : au moins {p.usage.compliance.min_active_minutes} minutes "
            "d'usage actif par élève pendant l'intervention."
        )
    a = p.analysis
    lines += [
        "",
        "## Analysis plan",
        "",
        f"- Estimand : {a.estimand} (intention de traiter d'abord"
        + ("; CACE avec la règle d'observance" if p.usage.compliance else "")
        + ").",
        f"- Modèle : {_MODEL[a.model]} ; effets de strate ; covariables : {_items(a.covariates)}.",
        f"- Erreurs-types (ANCOVA, CACE) : {_STANDARD_ERRORS[a.cluster_correction]}.",
        f"- Seuil α = {a.alpha} ; comparaisons multiples : {a.multiple_comparisons} ; "
        f"sous-groupes : {_items(a.subgroups)}.",
        "- Tailles d'effet : g de Hedges avec correction pour petits échantillons.",
        "- Analyses programmées : "
        + "; ".join(
            f"{_ANALYSIS[s.analysis]} " + (_at_words(s.at) if s.at else _EVERY[s.every or "week"])
            for s in p.schedule
        )
        + ".",
        "",
        "## Other",
        "",
        f"- Conservation des données jusqu'au {p.retention.keep_until}, puis purge.",
    ]
    if p.deployment:
        d = p.deployment
        sizes = ", ".join(
            f"{n} {w}"
            for n, w in (
                (d.schools, "établissements"),
                (d.classes, "classes"),
                (d.pupils, "élèves"),
            )
            if n
        )
        lines.append(
            f"- Conditions de déploiement : {sizes or '—'}"
            + (f" ; formation {d.teacher_training.hours:g} h" if d.teacher_training else "")
            + (f" ; accompagnement : {d.support}" if d.support else "")
            + "."
        )
    if p.budget:
        lines.append(
            f"- Budget : {_euros(p.budget.total, 0)} ; coût par élève : "
            f"{_euros(p.budget.cost_per_pupil, 2)}."
        )
    if p.decision:
        lines.append(
            f"- Décision après l'expérimentation (le {p.decision.at}, "
            f"{_items(p.decision.deciders)}) : {p.decision.rule}"
        )
    amendments = [x for x in record.versions if x.kind != "registration"]
    if amendments:
        lines += ["", "## Amendments", ""]
        for x in amendments:
            lines.append(
                f"- Version {x.version} ({x.kind}, {x.recorded_at.date()}) : "
                f"{x.reason or 'mise à jour hors design'} — champs : "
                f"{_items(list(x.changed_fields))}"
            )
    lines += ["", "## Registered protocol", "", "```yaml", source_yaml.rstrip("\n"), "```", ""]
    # The file as written may leave usage to defaults: what they were at registration is
    # part of what was pre-registered (and of the hash), so it is written out here.
    lines += ["Section `usage` telle qu'enregistrée, valeurs par défaut écrites :", "",
              "```yaml", dump_yaml({"usage": p.usage.model_dump(mode="json")}).rstrip("\n"),
              "```", ""]
    return "\n".join(lines)
