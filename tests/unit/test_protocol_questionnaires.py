"""The ``questionnaires:`` section of the protocol language: validation located by file,
line and field, the outcome and covariate references, and unchanged hashes of protocols
written before the section existed."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.errors import ProtocolError
from experiments.protocol.language import dump_protocol, load_protocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]
DESIGN_EXAMPLE = ROOT / "protocols" / "fluence-cp-2027.yaml"

# SHA-256 of the core example before the questionnaires section existed (commit 5821798).
FLUENCE_SHA256 = "ad99397d2b3f2244e7743f31e15fd5af4791340254e1aae4a781b87a40b5ada6"

QUESTIONNAIRES = """\
questionnaires:
  - id: eleves
    respondent: pupil
    waves: [baseline, endline]
    items:
      - {id: m1, text: "J'aime lire.", min: 1, max: 4}
      - {id: m2, min: 1, max: 4}
      - {id: m3, min: 1, max: 4, reverse: true}
      - {id: m4, min: 1, max: 4}
    scales:
      - {id: motivation, items: [m1, m2, m3, m4], label: Motivation pour la lecture}
  - id: enseignants
    respondent: teacher
    waves: [baseline]
    items:
      - {id: f1, min: 1, max: 5}
      - {id: f2, min: 1, max: 5}
    scales:
      - {id: formation, items: [f1, f2], label: Formation reçue}
"""

MOTIVATION = ("analysis:\n", "  - id: motivation\n    kind: attitude\n    baseline: motivation\n"
              "    questionnaire: {questionnaire: eleves, scale: motivation}\nanalysis:\n")


def _text(*replacements: tuple[str, str], questionnaires: str = QUESTIONNAIRES) -> str:
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text + questionnaires


def _problems(text: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    return [str(p) for p in caught.value.problems]


def _line_of(text: str, fragment: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if fragment in line)


def test_existing_protocol_hashes_do_not_change() -> None:
    p = load_protocol(DESIGN_EXAMPLE)
    assert p.questionnaires == []
    assert "questionnaires" not in p.canonical_json()
    assert '"questionnaire"' not in p.canonical_json()
    assert p.sha256 == FLUENCE_SHA256


def test_a_valid_questionnaire_section() -> None:
    p = parse_protocol(_text(MOTIVATION, ("covariates: []", "covariates: [formation]")))
    eleves, enseignants = p.questionnaires
    assert (eleves.respondent, eleves.waves) == ("pupil", ["baseline", "endline"])
    assert [i.reverse for i in eleves.items] == [False, False, True, False]
    assert enseignants.scales[0].items == ["f1", "f2"]
    outcome = p.outcomes[1]
    assert outcome.questionnaire is not None and outcome.questionnaire.scale == "motivation"
    assert "questionnaires" in p.canonical_json()
    # what is dumped loads back to the same protocol
    again = parse_protocol(dump_protocol(p))
    assert again.sha256 == p.sha256


CASES = [
    # (what to change in QUESTIONNAIRES or the protocol, the line holding it, field, fragment)
    ("unknown item", [], ("items: [m1, m2, m3, m4]", "items: [m1, m2, m5, m4]"),
     "items: [m1, m2, m5, m4]", "questionnaires[0].scales[0].items[2]",
     "item 'm5' is not an item of questionnaire 'eleves'"),
    ("min not below max", [], ("{id: m2, min: 1, max: 4}", "{id: m2, min: 4, max: 1}"),
     "{id: m2, min: 4, max: 1}", "questionnaires[0].items[1].max", "must be above min (4)"),
    ("duplicate item", [], ("{id: m4, min: 1, max: 4}", "{id: m1, min: 1, max: 4}"),
     "- {id: m1, min: 1, max: 4}", "questionnaires[0].items[3]",
     "item 'm1' is declared more than once"),
    ("duplicate scale id", [],
     ("      - {id: formation, items: [f1, f2], label: Formation reçue}\n",
      "      - {id: formation, items: [f1, f2], label: Formation reçue}\n"
      "      - {id: formation, items: [f1]}\n"),
     "- {id: formation, items: [f1]}", "questionnaires[1].scales[1]",
     "scale 'formation' is declared more than once"),
    ("bad respondent", [], ("respondent: teacher", "respondent: parent"),
     "respondent: parent", "questionnaires[1].respondent", "'pupil' or 'teacher'"),
    ("pre-test not given at baseline", [MOTIVATION],
     ("waves: [baseline, endline]", "waves: [endline]"),
     "baseline: motivation", "outcomes[1].baseline",
     "pre-test 'motivation' needs questionnaire 'eleves' given at the baseline"),
    ("unknown scale", [(MOTIVATION[0], MOTIVATION[1].replace("scale: motivation", "scale: motiv"))],
     ("", ""), "questionnaire: {questionnaire: eleves, scale: motiv}",
     "outcomes[1].questionnaire.scale",
     "questionnaire 'eleves' has no scale 'motiv'; did you mean 'motivation'?"),
    ("teacher covariate not at baseline", [("covariates: []", "covariates: [formation]")],
     ("waves: [baseline]\n", "waves: [endline]\n"), "covariates: [formation]",
     "analysis.covariates[0]", "teacher scale 'formation' is a covariate but questionnaire"),
    ("pupil covariate not at baseline", [("covariates: []", "covariates: [motivation]")],
     ("waves: [baseline, endline]", "waves: [endline]"), "covariates: [motivation]",
     "analysis.covariates[0]", "pupil scale 'motivation' is a covariate but questionnaire"),
]


@pytest.mark.parametrize(("name", "protocol", "change", "line_of", "field", "fragment"), CASES,
                         ids=[c[0] for c in CASES])
def test_located_problems(tmp_path: Path, name: str, protocol: list[tuple[str, str]],
                          change: tuple[str, str], line_of: str, field: str,
                          fragment: str) -> None:
    questionnaires = QUESTIONNAIRES
    if change[0]:
        assert change[0] in questionnaires, change[0]
        questionnaires = questionnaires.replace(change[0], change[1], 1)
    text = _text(*protocol, questionnaires=questionnaires)
    problems = _problems(text, tmp_path)
    hits = [p for p in problems if f": {field}: " in p]
    assert hits, problems
    assert fragment in hits[0], hits[0]
    path = tmp_path / "protocol.yaml"
    assert hits[0].startswith(f"{path}:{_line_of(text, line_of)}:"), hits[0]


def test_outcome_on_a_teacher_scale_is_refused(tmp_path: Path) -> None:
    outcome = ("analysis:\n", "  - id: formation\n    kind: other\n"
               "    questionnaire: {questionnaire: enseignants, scale: formation}\nanalysis:\n")
    problems = _problems(_text(outcome), tmp_path)
    assert any(": outcomes[1].questionnaire.questionnaire: questionnaire 'enseignants' is "
               "answered by teachers" in p for p in problems), problems
    assert any("is not given at the endline" in p for p in problems), problems


def test_unknown_questionnaire_has_a_hint(tmp_path: Path) -> None:
    outcome = (MOTIVATION[0],
               MOTIVATION[1].replace("questionnaire: eleves", "questionnaire: eleve"))
    problems = _problems(_text(outcome), tmp_path)
    assert any("outcomes[1].questionnaire.questionnaire: no questionnaire 'eleve' is declared; "
               "did you mean 'eleves'?" in p for p in problems), problems


def test_questionnaires_are_part_of_the_locked_design(tmp_path: Path) -> None:
    """Their scales are outcomes and covariates: changing one after registration is an
    amendment with its reason, never a silent update."""
    from experiments.database import dispose_engines, registry_engine
    from experiments.errors import RegistryError
    from experiments.registry import amend_protocol, register_protocol
    from experiments.settings import Settings

    registry = registry_engine(Settings(state_dir=tmp_path / "state"))
    text = _text(MOTIVATION)
    register_protocol(registry, parse_protocol(text), text, actor="researcher:test")
    changed = text.replace("{id: m2, min: 1, max: 4}", "{id: m2, min: 1, max: 4, reverse: true}")
    with pytest.raises(RegistryError, match="questionnaires"):
        register_protocol(registry, parse_protocol(changed), changed, actor="researcher:test")
    amended = amend_protocol(registry, parse_protocol(changed), changed,
                             reason="item m2 est inversé", actor="researcher:test")
    assert amended.version == 2
    dispose_engines()


def test_the_preregistration_lists_the_questionnaires(tmp_path: Path) -> None:
    from experiments.database import dispose_engines, registry_engine
    from experiments.protocol.preregistration import preregistration_markdown
    from experiments.registry import get_experiment, register_protocol
    from experiments.settings import Settings

    text = _text(MOTIVATION)
    protocol = parse_protocol(text)
    registry = registry_engine(Settings(state_dir=tmp_path / "state"))
    register_protocol(registry, protocol, text)
    markdown = preregistration_markdown(protocol, get_experiment(registry, protocol.id), text)
    dispose_engines()
    assert "- Mesure secondaire `motivation` ; prétest `motivation` ; échelle `motivation` du " \
           "questionnaire `eleves`" in markdown
    assert "- Questionnaire élèves `eleves` (début et fin) : 4 items (`m1` de 1 à 4, `m2`" \
        in markdown
    assert "items inversés `m3` ; échelle `motivation` = moyenne de `m1`, `m2`, `m3`, `m4`." \
        in markdown
    assert "- Questionnaire enseignants `enseignants` (début) : 2 items" in markdown
