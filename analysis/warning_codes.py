"""The analysis's warnings as codes, and the one message catalogue that renders them.

An analysis run (:mod:`analysis.run`) says what to watch as :class:`AnalysisWarning`
values: a code and its parameters, no prose. The results JSON carries each one as
``{"code", "params", "message"}`` (the message is the English rendering, for readers of
the JSON); the report and the portal render the codes in their own language with
:func:`render_warning`. The words are written here once, in French and in English.

:func:`warnings_from_checks` derives the warnings that the checks imply: the analysis
calls it, and :meth:`analysis.results.AnalysisResults.from_json` calls it for results
stored before the warnings were codes (their warnings were French sentences).

:func:`summary_lines` gives the report's summary (« Points d'attention ») its short lines,
one per kind of warning (:data:`SUMMARY`), also written here; the details are in the
report's credibility section.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "MESSAGES",
    "SUMMARY",
    "SUMMARY_MESSAGES",
    "AnalysisWarning",
    "render_warning",
    "summary_lines",
    "warnings_from_checks",
]

Lang = Literal["fr", "en"]


@dataclass(frozen=True)
class AnalysisWarning:
    """One point to watch: a code of :data:`MESSAGES` and the values its message names.

    Examples
    --------
    >>> w = AnalysisWarning("sample_ratio_mismatch")
    >>> render_warning(w, "en")
    'Allocation of units between the arms differs from the protocol (χ² test, p < 0.001).'
    """

    code: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def message(self, lang: Lang = "en") -> str:
        """The warning in words (:func:`render_warning`)."""
        return render_warning(self, lang)


# Each message is a str.format template over the warning's params. The French wording is
# the one the analysis wrote before the codes (byte for byte), read by programme officers.
MESSAGES: dict[Lang, dict[str, str]] = {
    "fr": {
        "interim_confirmatory":
            "Analyse intermédiaire confirmatoire (regard {look} sur {looks}) : un effet n'est "
            "établi que si sa p ajustée est au plus {nominal_alpha:.5f} (frontière "
            "d'O'Brien-Fleming, dépense d'alpha de Lan-DeMets).",
        "interim_descriptive":
            "Analyse intermédiaire : les intervalles et les p ne tiennent pas compte des "
            "analyses répétées ; seule l'analyse finale est confirmatoire.",
        "units_imputed":
            "{count} unité(s) sans élève connu (ni score, ni effectif `pupils` dans le "
            "fichier des unités) : comptée(s) avec l'effectif moyen des unités de leur bras "
            "dans l'attrition de tous les élèves tirés au sort.",
        "cace_control_compliers":
            "CACE : des élèves du groupe témoin ont atteint le seuil d'usage ; avec plusieurs "
            "bras, cet usage n'entre pas dans le modèle.",
        "sample_ratio_mismatch":
            "Répartition des unités entre les bras différente de celle du protocole "
            "(test du χ², p < 0,001).",
        "attrition_high":
            "{outcome}, {contrast} : attrition {level_fr} élevée selon la borne {bound_fr} du "
            "What Works Clearinghouse.",
        "attrition_unverified":
            "{outcome}, {contrast} : borne optimiste du WWC lue à la ligne {row} %, non "
            "vérifiée (lignes {first} à {last} de cette colonne non vérifiées contre le "
            "Handbook).",
        "imbalance_large":
            "{outcome}, {contrast} : écart initial sur {characteristic} supérieur à 0,25 "
            "écart-type ; équivalence initiale non établie (WWC).",
        "imbalance_unadjusted":
            "{outcome}, {contrast} : écart initial sur {characteristic} entre 0,05 et 0,25 "
            "écart-type, non pris en compte dans le modèle.",
        "primary_not_estimable":
            "{outcome}, {contrast} : effet principal non estimable ({reason}).",
    },
    "en": {
        "interim_confirmatory":
            "Confirmatory interim analysis (look {look} of {looks}): an effect is established "
            "only if its adjusted p is at most {nominal_alpha:.5f} (O'Brien-Fleming boundary, "
            "Lan-DeMets alpha spending).",
        "interim_descriptive":
            "Interim analysis: the intervals and p-values do not account for repeated "
            "analyses; only the final analysis is confirmatory.",
        "units_imputed":
            "{count} unit(s) without any known pupil (no score, no `pupils` count in the "
            "units file): counted with the mean size of their arm's units in the attrition "
            "of all randomised pupils.",
        "cace_control_compliers":
            "CACE: pupils of the control group reached the usage threshold; with several "
            "arms, that use does not enter the model.",
        "sample_ratio_mismatch":
            "Allocation of units between the arms differs from the protocol (χ² test, "
            "p < 0.001).",
        "attrition_high":
            "{outcome}, {contrast}: high {level_en} attrition under the What Works "
            "Clearinghouse's {bound_en} boundary.",
        "attrition_unverified":
            "{outcome}, {contrast}: WWC optimistic boundary read at row {row} %, unverified "
            "(rows {first} to {last} of that column not checked against the Handbook).",
        "imbalance_large":
            "{outcome}, {contrast}: baseline difference on {characteristic} above 0.25 "
            "standard deviation; baseline equivalence not established (WWC).",
        "imbalance_unadjusted":
            "{outcome}, {contrast}: baseline difference on {characteristic} between 0.05 and "
            "0.25 standard deviation, not adjusted for in the model.",
        "primary_not_estimable":
            "{outcome}, {contrast}: primary effect not estimable ({reason}).",
    },
}

# Words the templates name from a parameter's value.
_WORDS: dict[str, dict[str, str]] = {
    "level_fr": {"unit": "des unités", "learner": "des élèves"},
    "level_en": {"unit": "unit", "learner": "pupil"},
    "bound_fr": {"cautious": "prudente", "optimistic": "optimiste"},
    "bound_en": {"cautious": "cautious", "optimistic": "optimistic"},
}

SUMMARY: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("allocation", ("sample_ratio_mismatch",)),
    ("attrition", ("attrition_high",)),
    ("imbalance", ("imbalance_large",)),
    ("interim", ("interim_confirmatory", "interim_descriptive")),
)
"""The lines of the report's summary and the codes each stands for, in the report's order."""

SUMMARY_MESSAGES: dict[Lang, dict[str, str]] = {
    "fr": {
        "allocation": "Cette répartition s'écarte de celle prévue par le protocole.",
        "attrition": "Attrition élevée selon la borne {bound_fr} du What Works Clearinghouse.",
        "imbalance": "Groupes inégaux au départ (écart de plus de 0,25 écart-type ; non compté "
                     "sur une caractéristique dont le modèle tient compte quand l'attrition "
                     "est faible).",
        "interim": "Analyse intermédiaire : seule l'analyse finale est confirmatoire.",
    },
    "en": {
        "allocation": "This allocation departs from the protocol's.",
        "attrition": "High attrition against the What Works Clearinghouse {bound_en} boundary.",
        "imbalance": "Groups unequal at the start (difference above 0.25 standard deviations; "
                     "not counted on a characteristic the model adjusts for when attrition is "
                     "low).",
        "interim": "Interim analysis: only the final analysis is confirmatory.",
    },
}
"""The report's short wording of the warnings it names in its summary."""


def summary_lines(warnings: Iterable[AnalysisWarning], lang: Lang = "fr") -> list[str]:
    """The report summary's lines for these warnings: one per kind, in :data:`SUMMARY`
    order (the details are in the report's credibility section).

    Examples
    --------
    >>> for line in summary_lines([AnalysisWarning("interim_descriptive"),
    ...                            AnalysisWarning("sample_ratio_mismatch")], "en"):
    ...     print(line)
    This allocation departs from the protocol's.
    Interim analysis: only the final analysis is confirmatory.
    """
    warnings = list(warnings)
    out = []
    for key, codes in SUMMARY:
        first = next((w for w in warnings if w.code in codes), None)
        if first is not None:
            out.append(SUMMARY_MESSAGES[lang][key].format(**_params(first)))
    return out


def _params(warning: AnalysisWarning) -> dict[str, Any]:
    """The warning's params and the words its templates name from them."""
    params = dict(warning.params)
    for name, words in _WORDS.items():
        key = "level" if name.startswith("level") else "assumption"
        params[name] = words.get(str(params.get(key)), "")
    return params


def render_warning(warning: AnalysisWarning, lang: Lang = "en") -> str:
    """A warning in words, from the one catalogue (:data:`MESSAGES`).

    Examples
    --------
    >>> w = AnalysisWarning("attrition_high", {"outcome": "fluence", "contrast": "a vs b",
    ...                     "level": "unit", "assumption": "cautious"})
    >>> print(render_warning(w, "fr"))  # doctest: +NORMALIZE_WHITESPACE
    fluence, a vs b : attrition des unités élevée selon la borne prudente du What Works
    Clearinghouse.
    >>> print(render_warning(w, "en"))  # doctest: +NORMALIZE_WHITESPACE
    fluence, a vs b: high unit attrition under the What Works Clearinghouse's cautious
    boundary.
    """
    template = MESSAGES[lang].get(warning.code)
    if template is None:  # a code this version does not know (newer results)
        return f"{warning.code}: {dict(warning.params)}"
    return template.format(**_params(warning))


def warnings_from_checks(effects: Iterable[Any], attrition: Iterable[Any],
                         balance: Iterable[Any], srm_mismatch: bool,
                         unverified_rows: Mapping[str, Any] | None = None
                         ) -> list[AnalysisWarning]:
    """The warnings the checks imply: allocation, attrition, baseline balance, a primary
    effect that could not be estimated.

    ``effects``, ``attrition`` and ``balance`` are :class:`~analysis.results.Effect`,
    :class:`~analysis.attrition.AttritionCheck` and :class:`~analysis.balance.BalanceCheck`
    values; ``unverified_rows`` the ``first`` and ``last`` unverified rows of the WWC table
    (:func:`analysis.attrition.boundary_table`).
    """
    out = []
    if srm_mismatch:
        out.append(AnalysisWarning("sample_ratio_mismatch"))
    for a in attrition:
        if a.level == "all_learners":
            continue  # not one of the WWC's cluster-design checks (see analysis.attrition)
        where = {"outcome": a.outcome, "contrast": a.contrast}
        if a.rating == "high":
            out.append(AnalysisWarning("attrition_high", {**where, "level": a.level,
                                                          "assumption": a.assumption}))
        if a.unverified:
            span = unverified_rows or {}
            out.append(AnalysisWarning("attrition_unverified", {
                **where, "row": a.boundary_row, "first": span.get("first"),
                "last": span.get("last")}))
    for b in balance:
        where = {"outcome": b.outcome, "contrast": b.contrast,
                 "characteristic": b.characteristic}
        if b.equivalence == "not satisfied":
            out.append(AnalysisWarning("imbalance_large", where))
        elif b.equivalence == "adjustment required" and not b.adjusted_in_model:
            out.append(AnalysisWarning("imbalance_unadjusted", where))
    for e in effects:
        if e.role == "primary" and not e.estimable and not (e.reason or "").startswith("monitor"):
            out.append(AnalysisWarning("primary_not_estimable", {
                "outcome": e.outcome, "contrast": e.contrast, "reason": e.reason}))
    return out
