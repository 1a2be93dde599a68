"""« Écarts au protocole »: what a report says about the changes since registration.

Every amendment recorded up to the protocol version a run followed is listed with its
date, the fields it changed and its reason, and so is every update (a re-registration
that changed fields outside the locked design, such as periods or the schedule), from
``ReportContext.amendments`` (the registry's versions:
:func:`analysis.report.context.amendments_from_versions`). So is every deviation recorded
in words, and every outcome measured by the evaluated resource itself
(``outcomes[].source`` in the protocol; ``design.developer_outcomes`` in the results
JSON), a threat to validity: a measure designed by the developer may favour the resource
it comes with (the WWC's standards do not accept an outcome measure over-aligned with
the intervention; Preuve keeps the estimate but flags it and the rating deducts).
« Aucun écart au protocole signalé » only when there is none of these and the run's
record is known. The section ends with how many assessment scores from an untrusted
source were counted as usage (the run's watermark, ``assessments_as_usage``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from analysis.report.context import ReportContext

__all__ = ["DEVIATION_MESSAGES", "deviation_lines"]

DEVIATION_MESSAGES: Final[dict[str, dict[str, str]]] = {
    "fr": {
        "amendment": "Avenant v{version} du {at} : {reason} (champs modifiés : {fields})",
        "update": "Mise à jour v{version} du {at}, hors du plan verrouillé, sans motif "
                  "déclaré (champs modifiés : {fields})",
        "no_fields": "champs non précisés",
        "developer_measure": "Menace pour la validité : la mesure « {outcome} » provient de "
                             "la ressource évaluée elle-même (une mesure conçue par "
                             "l'éditeur, déclarée comme telle par le protocole) ; elle peut "
                             "favoriser le groupe qui utilise la ressource.",
        "no_deviation": "Aucun écart au protocole signalé.",
        "unknown": "Écarts au protocole non connus : analyse produite hors du registre.",
        "as_usage": "{n} scores d'évaluation venus d'une source que le protocole ne reconnaît "
                    "pas pour les résultats (par exemple les quiz de la ressource) sont "
                    "comptés comme usage, jamais comme résultats.",
    },
    "en": {
        "amendment": "Amendment v{version} of {at}: {reason} (fields changed: {fields})",
        "update": "Update v{version} of {at}, outside the locked design, no reason stated "
                  "(fields changed: {fields})",
        "no_fields": "fields not stated",
        "developer_measure": "Threat to validity: the measure “{outcome}” comes from the "
                             "evaluated resource itself (a measure designed by the "
                             "developer, declared as such by the protocol); it may favour "
                             "the group that uses the resource.",
        "no_deviation": "No deviation from the protocol reported.",
        "unknown": "Deviations from the protocol unknown: analysis produced outside the "
                   "registry.",
        "as_usage": "{n} assessment scores from a source the protocol does not accept for "
                    "outcomes (for instance the resource's quizzes) are counted as usage, "
                    "never as outcomes.",
    },
}


def deviation_lines(context: ReportContext, results: Mapping[str, Any], lang: str
                    ) -> list[str]:
    """The lines of « Écarts au protocole » (after the protocol version line).

    Examples
    --------
    >>> from analysis.report.context import Amendment
    >>> deviation_lines(ReportContext(protocol_version=1), {}, "fr")
    ['Aucun écart au protocole signalé.']
    >>> deviation_lines(ReportContext(protocol_version=2, amendments=(Amendment(
    ...     2, "2027-10-02", "fenêtre prolongée", ("enrollment.closes",)),)), {}, "fr")
    ['Avenant v2 du 2027-10-02 : fenêtre prolongée (champs modifiés : enrollment.closes)']
    >>> deviation_lines(ReportContext(), {"design": {"developer_outcomes": ["fluence"]}},
    ...                 "fr")[0].startswith("Menace pour la validité")
    True
    """
    messages = DEVIATION_MESSAGES[lang]
    lines = [
        messages["update" if a.kind == "update" else "amendment"].format(
            version=a.version, at=a.recorded_at, reason=a.reason or "—",
            fields=", ".join(a.changed_fields) or messages["no_fields"])
        for a in context.amendments
    ]
    lines += [messages["developer_measure"].format(outcome=outcome)
              for outcome in (results.get("design") or {}).get("developer_outcomes", [])]
    lines += list(context.deviations)
    if not lines:
        lines.append(messages["no_deviation"] if context.protocol_version is not None
                     else messages["unknown"])
    # Not a deviation, but where the scores the analysis left aside went (provenance).
    as_usage = context.watermark.get("assessments_as_usage")
    if isinstance(as_usage, int) and as_usage > 0:
        lines.append(messages["as_usage"].format(n=as_usage))
    return lines
