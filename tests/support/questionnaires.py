"""A protocol with questionnaires: the core example plus a pupils' motivation scale (a
secondary outcome, with its own pre-test) and a teachers' training scale (a covariate)."""

from __future__ import annotations

from pathlib import Path

from tests.support.decision import with_decision
from tests.support.trial import PROTOCOL

QUESTIONNAIRES = """\
questionnaires:
  - id: eleves
    respondent: pupil
    waves: [baseline, endline]
    items:
      - {id: m1, text: "J'aime lire.", min: 1, max: 4}
      - {id: m2, text: "Je lis en dehors de l'école.", min: 1, max: 4}
      - {id: m3, text: "Lire m'ennuie.", min: 1, max: 4, reverse: true}
      - {id: m4, text: "Je suis fier quand je lis.", min: 1, max: 4}
    scales:
      - {id: motivation, items: [m1, m2, m3, m4], label: Motivation pour la lecture,
         min_answered: 3}
  - id: enseignants
    respondent: teacher
    waves: [baseline]
    items:
      - {id: f1, text: "J'ai été formé à la ressource.", min: 1, max: 5}
      - {id: f2, text: "Je suis accompagné dans son usage.", min: 1, max: 5}
      - {id: f3, text: "L'équipement de la classe est suffisant.", min: 1, max: 5}
    scales:
      - {id: formation, items: [f1, f2, f3], label: Formation et accompagnement}
"""

PUPIL_ITEMS = {"m1": False, "m2": False, "m3": True, "m4": False}
"""Item → reverse-coded."""
TEACHER_ITEMS = ("f1", "f2", "f3")


def questionnaire_protocol(directory: Path) -> Path:
    """The core example with the questionnaires, ``motivation`` as a secondary outcome,
    the teachers' ``formation`` as a covariate and a decision rule; written to
    ``directory``."""
    text = PROTOCOL.read_text(encoding="utf-8")
    for old, new in (
        ("analysis:\n", "  - id: motivation\n    kind: attitude\n    baseline: motivation\n"
                        "    questionnaire: {questionnaire: eleves, scale: motivation}\n"
                        "analysis:\n"),
        ("covariates: []", "covariates: [formation]"),
    ):
        assert old in text, old
        text = text.replace(old, new, 1)
    path = directory / "questionnaires-protocol.yaml"
    # A decision rule, so that the experiment may run (issue 19).
    path.write_text(with_decision(text) + QUESTIONNAIRES, encoding="utf-8")
    return path
