"""The closing report: what was decided at the end of an experiment, and on what.

Written when an experiment is closed (:func:`experiments.closing.close_experiment`),
in French and in English, from the final analysis' results (the pre-registered decision
rule evaluated arm by arm, as in the impact report: :func:`decision_lines`), the
researcher's post-experiment decision (généraliser, ajuster, arrêter, prolonger) with its
reason, who recorded it and when, and the programme officer's acknowledgement.
Self-contained HTML (inline style, no script), like the impact report.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, select_autoescape

from analysis.report.document import decision_lines, report_summary
from analysis.report.text import Text

if TYPE_CHECKING:
    from experiments.protocol.language import Protocol

__all__ = ["ClosingFacts", "closing_lines", "render_closing_report"]


@dataclass(frozen=True)
class ClosingFacts:
    """What the registry recorded of the end of an experiment (plain values: this
    package does not read the registry). Moments are ISO 8601 strings."""

    experiment_id: str
    title: str
    decision: str
    """One of ``generaliser``, ``ajuster``, ``arreter``, ``prolonger``."""
    reason: str
    decided_by: str
    decided_at: str
    acknowledged_by: str | None
    acknowledged_at: str | None
    closed_at: str | None = None
    final_at: str | None = None
    """When the final analysis was due (None: no final analysis recorded)."""
    final_version: int | None = None


def closing_lines(facts: ClosingFacts, protocol: Protocol | None,
                  results: Mapping[str, Any] | None, lang: str = "fr"
                  ) -> dict[str, list[str]]:
    """The closing report's sections, each a list of sentences in ``lang``: ``final``
    (which analysis), ``answer`` (its summary), ``rule`` (the rule evaluated) and
    ``decision`` (the decision, its reason, who and when, the acknowledgement).

    Examples
    --------
    >>> facts = ClosingFacts("x", "X", "arreter", "Pas d'effet mesurable.", "researcher:cli",
    ...                      "2028-07-02T10:00:00+00:00", None, None)
    >>> closing_lines(facts, None, None)["decision"][:2]
    ['Décision : arrêter.', "Motif : Pas d'effet mesurable."]
    """
    t = Text(lang)
    sections: dict[str, list[str]] = {"final": [], "answer": [], "rule": [], "decision": []}
    if results is None or facts.final_at is None:
        sections["final"].append(t("closing_no_final"))
    else:
        sections["final"].append(t("closing_final", moment=t.moment(facts.final_at),
                                   version=facts.final_version))
        brief = report_summary(results, protocol=protocol, lang=lang)
        sections["answer"] = [brief["sentence"], *brief["sure"], brief["rating"]]
    if protocol is None or protocol.decision is None:
        sections["rule"].append(t("closing_no_rule"))
    elif results is None:
        sections["rule"].append(f"{t('decision_rule')} {protocol.decision.rule}")
    else:
        sections["rule"] = decision_lines(protocol, results, lang)
    lines = sections["decision"]
    lines.append(t("closing_decision", decision=t(f"decision_choice_{facts.decision}")))
    lines.append(t("closing_reason", reason=facts.reason))
    lines.append(t("closing_decided", actor=facts.decided_by,
                   moment=t.moment(facts.decided_at)))
    if facts.acknowledged_at is None or facts.acknowledged_by is None:
        lines.append(t("closing_not_acknowledged"))
    else:
        lines.append(t("closing_acknowledged", actor=facts.acknowledged_by,
                       moment=t.moment(facts.acknowledged_at)))
    if facts.closed_at is not None:
        lines.append(t("closing_closed", moment=t.moment(facts.closed_at)))
    return sections


_TEMPLATE = """<!doctype html>
<html lang="{{ lang }}">
<head><meta charset="utf-8"><title>{{ heading }} — {{ facts.title }}</title>
<style>body{font-family:sans-serif;max-width:46em;margin:2em auto;line-height:1.5}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.5em}</style></head>
<body>
<h1>{{ heading }} — {{ facts.title }}</h1>
<p><code>{{ facts.experiment_id }}</code></p>
{% for p in s.final %}<p>{{ p }}</p>{% endfor %}
{% if s.answer %}<h2>{{ t("closing_answer_heading") }}</h2>
{% for p in s.answer %}<p>{{ p }}</p>{% endfor %}{% endif %}
<h2>{{ t("closing_rule_heading") }}</h2>
{% for p in s.rule %}<p>{{ p }}</p>{% endfor %}
<h2>{{ t("closing_decision_heading") }}</h2>
{% for p in s.decision %}<p>{{ p }}</p>{% endfor %}
</body>
</html>
"""


def render_closing_report(facts: ClosingFacts, protocol: Protocol | None,
                          results: Mapping[str, Any] | None, lang: str = "fr") -> str:
    """The closing report as one self-contained HTML page in ``lang``."""
    t = Text(lang)
    template = Environment(autoescape=select_autoescape(default_for_string=True)
                           ).from_string(_TEMPLATE)
    return template.render(lang=lang, facts=facts, t=t, heading=t("closing_title"),
                           s=closing_lines(facts, protocol, results, lang))
