"""``preuve protocol validate`` on real files: located problems, exit codes, meaning checks.

Broken protocols live in ``tests/data/protocols/broken/``; each is the core example
(``protocols/fluence-cp-2027.yaml``) with one or a few deliberate mistakes. Each case pins
the exact ``PATH:LINE:COL: field`` prefix of every problem the file must produce.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli.protocol import app
from experiments.errors import ProtocolError
from experiments.protocol.language import Protocol, load_protocol, parse_protocol

ROOT = Path(__file__).resolve().parents[2]
BROKEN = ROOT / "tests" / "data" / "protocols" / "broken"
EXAMPLES = sorted((ROOT / "protocols").glob("*.yaml"))
DESIGN_EXAMPLE = ROOT / "protocols" / "fluence-cp-2027.yaml"

runner = CliRunner()

# file → every expected problem: (line, col, field, a fragment of the message)
CASES: dict[str, list[tuple[int, int, str, str]]] = {
    "syntax_error": [(12, 5, "", "YAML syntax error")],
    # Nine levels of nine aliases (9**9 leaves from 342 bytes): refused at the first alias.
    "alias_bomb": [(2, 8, "", "alias *a is not allowed in a protocol: write the value out")],
    "duplicate_key": [(16, 3, "", 'duplicate key "seed"')],
    "not_a_mapping": [(1, 1, "", "a protocol is a mapping of sections, got list")],
    "wrong_types": [
        (15, 3, "randomisation.seed", "must be a valid integer, got 'vingt'"),
        (28, 3, "analysis.alpha", "must be a valid number, got '0.05'"),
        (34, 3, "power.icc", "must be a valid number, got a list"),
    ],
    "unknown_key": [
        (1, 1, "randomisation", "required, but missing"),
        (13, 1, "randomization", "unknown key 'randomization'; did you mean 'randomisation'?"),
    ],
    "impossible_date": [
        (17, 37, "periods.baseline.end", "2027-02-30 is not a date: day is out of range for month")
    ],
    "two_control_arms": [(12, 34, "arms[1].control", "exactly one control arm allowed")],
    "periods_out_of_order": [
        (19, 18, "periods.followup.start", "starts (2027-06-01) before intervention (2027-09-27)")
    ],
    "periods_overlap": [
        (18, 18, "periods.intervention.start", "before baseline ends (2027-09-24)")
    ],
    "final_before_intervention_end": [
        (43, 23, "schedule[2].at", "must come after the end of the intervention (2028-05-26)")
    ],
    "strata_not_attribute": [
        (14, 12, "randomisation.strata[0]", "'ecole' is not an attribute of a class")
    ],
    "subgroup_not_attribute": [
        (30, 15, "analysis.subgroups[0]", "'sexe' is not an attribute of a class")
    ],
    "unknown_niveau": [
        (7, 16, "population.levels[1]", "unknown niveau 'CE3'; did you mean 'CE2'?")
    ],
    "unknown_academie": [
        (8, 27, "population.academies[1]", "'rouen' is no longer an académie"),
        (8, 34, "population.academies[2]", "unknown académie 'creteill'; did you mean 'creteil'?"),
    ],
    "several_problems": [
        (6, 3, "population.unit", "must be 'learner', 'class' or 'school', got 'classe'"),
        (11, 20, "arms[0].allocation", "must be greater than 0, got 0"),
        (35, 3, "power.iccc", "unknown key 'iccc'; did you mean 'icc'?"),
        (45, 13, "retention.keep_until", "2030-06-31 is not a date"),
    ],
    "missing_sections": [
        (1, 1, section, "required, but missing")
        for section in (
            "resource", "population", "arms", "randomisation", "periods", "outcomes",
            "analysis", "schedule", "retention",
        )
    ],
}


def _prefix(path: Path, line: int, col: int, field: str) -> str:
    return f"{path}:{line}:{col}: {field}: " if field else f"{path}:{line}:{col}: "


def test_every_broken_file_has_a_case() -> None:
    assert sorted(p.stem for p in BROKEN.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_broken_protocol_exits_2_with_located_problems(name: str) -> None:
    path = BROKEN / f"{name}.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == len(CASES[name]), result.output
    for line, col, field, fragment in CASES[name]:
        prefix = _prefix(path, line, col, field)
        matching = [out for out in lines if out.startswith(prefix)]
        assert matching, f"no line starts with {prefix!r}:\n{result.output}"
        assert fragment in matching[0], matching[0]
    assert "Traceback" not in result.output


def test_problems_are_structured_on_the_error() -> None:
    path = BROKEN / "several_problems.yaml"
    with pytest.raises(ProtocolError) as caught:
        load_protocol(path)
    problems = caught.value.problems
    assert [(p.line, p.col, p.field) for p in problems] == [
        (6, 3, "population.unit"),
        (11, 20, "arms[0].allocation"),
        (35, 3, "power.iccc"),
        (45, 13, "retention.keep_until"),
    ]
    assert all(p.path == str(path) for p in problems)
    assert caught.value.line == 6 and caught.value.field == "population.unit"


def test_all_problems_of_all_files_in_one_run() -> None:
    files = [BROKEN / "two_control_arms.yaml", DESIGN_EXAMPLE, BROKEN / "unknown_niveau.yaml"]
    result = runner.invoke(app, ["validate", *map(str, files)])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == [
        f"{files[0]}:12:34: arms[1].control: exactly one control arm allowed; 'lectio' "
        "(arms[0]) is already the control",
        f"{files[1]}: valid",
        f"{files[1]}: warning: decision: not declared; no decision rule will be evaluated "
        "at the end, and the experiment cannot reach running until one is added by "
        "amendment (preuve protocol amend)",
        f"{files[2]}:7:16: population.levels[1]: unknown niveau 'CE3'; did you mean 'CE2'?",
    ]


def test_missing_file_is_a_problem_not_a_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "absent.yaml"
    result = runner.invoke(app, ["validate", str(missing)])
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"{missing}:1:1: cannot read the file")


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_protocols_are_valid(path: Path) -> None:
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    first, *warnings = result.output.splitlines()
    assert first == f"{path}: valid"
    # the core example declares no decision rule (as the design document writes it)
    assert all(w.startswith(f"{path}: warning: decision: not declared") for w in warnings)


def test_at_least_three_examples() -> None:
    assert len(EXAMPLES) >= 3


def test_design_example_means_what_its_comments_say() -> None:
    p = load_protocol(DESIGN_EXAMPLE)
    assert p.preuve == 1 and p.id == "fluence-cp-2027"
    assert p.resource.id == "lectio"
    assert p.population.unit == "class"
    assert p.population.levels == ["CP"]
    assert p.population.academies == ["versailles", "creteil"]
    assert p.population.criteria == {"education_priority": ["REP", "REP+"]}
    assert [(a.name, a.allocation, a.control) for a in p.arms] == [
        ("lectio", 1.0, False),
        ("usual", 1.0, True),
    ]
    assert p.control_arm.name == "usual"
    assert p.randomisation.strata == ["school_uai"] and p.randomisation.seed == 20270901
    assert str(p.periods.intervention.start) == "2027-09-27"
    assert str(p.periods.followup.end) == "2028-06-16"  # type: ignore[union-attr]
    outcome = p.outcomes[0]
    assert (outcome.id, outcome.primary, outcome.baseline) == ("fluence", True, "fluence")
    a = p.analysis
    assert (a.estimand, a.model, a.covariates, a.alpha) == ("ITT", "ancova", [], 0.05)
    assert a.multiple_comparisons == "holm" and a.subgroups == ["education_priority"]
    assert p.usage.compliance is not None and p.usage.compliance.min_active_minutes == 300
    assert p.power is not None and (p.power.icc, p.power.units) == (0.15, 80)
    assert [(s.analysis, s.every, str(s.at)) for s in p.schedule] == [
        ("monitoring", "week", "None"),
        ("interim", None, "2028-01-15"),
        ("final", None, "2028-06-30"),
    ]
    assert str(p.retention.keep_until) == "2030-06-30"


def test_hash_ignores_comments_and_layout() -> None:
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8")
    plain = "\n".join(line.split("  #")[0].rstrip() for line in text.splitlines()) + "\n"
    assert plain != text
    assert parse_protocol(plain).sha256 == load_protocol(DESIGN_EXAMPLE).sha256
    changed = text.replace("seed: 20270901", "seed: 20270902")
    assert parse_protocol(changed).sha256 != load_protocol(DESIGN_EXAMPLE).sha256


# Meaning checks beyond the broken files: (replacements in the DESIGN example, field, fragment).
MEANING = [
    ([("estimand: ITT", "estimand: CACE"),
      ("compliance: {min_active_minutes: 300}", "compliance: null")],
     "analysis.estimand", "CACE needs a compliance rule"),
    ([("schedule:", "enrollment: {opens: 2027-06-01, closes: 2027-09-30}\nschedule:")],
     "enrollment.closes", "units must be randomised before"),
    ([("analysis:\n", "hypotheses:\n  - {id: h1, outcome: fluency, "
       "statement: \"La fluence progresse.\"}\nanalysis:\n")], "hypotheses[0].outcome",
     "unknown outcome 'fluency'; did you mean 'fluence'?"),
    ([("resource: {id: lectio, name: Lectio}",
       "resource: {id: lectio, name: Lectio, cycles: [3]}")],
     "population.levels[0]", "CP is not a niveau of resource 'lectio'"),
    ([("  compliance: {min_active_minutes: 300}", "  compliance: {min_active_minutes: 300}\n  "
       "metrics:\n    - {id: logins, kind: login, verbs: [session_started]}\n    - {id: active, "
       "kind: active_use, verbs: [session_started, exercise_answered]}")],
     "usage.metrics[1].verbs[0]", "a login alone is not active use"),
    ([("  power: 0.8", "  power: 0.8\n  blocks: 10"), ("strata: [school_uai]", "strata: []")],
     "power.blocks", "randomisation.strata is empty"),
    ([("resource: {id: lectio, name: Lectio}", "resource: {id: lectio, name: Lectio}\ndesign:\n"
       "  type: waitlist\n  rollout:\n    - {arm: usual, starts: 2028-06-01}")],
     "design.rollout[0].starts", "before the endline measure ends (2028-06-16)"),
    ([("education_priority: [REP, REP+]", "education_priority: [REP, REP++]")],
     "population.criteria.education_priority[1]", "got 'REP++'; did you mean 'REP+'?"),
    ([("{analysis: interim, at: 2028-01-15}", "{analysis: interim, at: 2028-08-15}")],
     "schedule[1].at", "an interim analysis (2028-08-15) must come after"),
    ([("keep_until: 2030-06-30", "keep_until: 2028-06-01")], "retention.keep_until",
     "purged (2028-06-01) before the final analysis"),
    ([("{analysis: final, at: 2028-06-30}", "{analysis: final, every: week}")],
     "schedule[2].every", "the final analysis happens once"),
    ([("analysis:\n", "  - {id: vocabulaire, primary: true}\nanalysis:\n")],
     "outcomes[1].primary", "exactly one primary outcome allowed"),
]


@pytest.mark.parametrize(
    ("replacements", "field", "fragment"), MEANING, ids=[m[1] for m in MEANING]
)
def test_meaning_checks(
    tmp_path: Path, replacements: list[tuple[str, str]], field: str, fragment: str
) -> None:
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8")
    for old, new in replacements:
        assert old in text, old
        text = text.replace(old, new, 1)
    path = tmp_path / "protocol.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    hits = [line for line in result.output.splitlines() if f": {field}: " in line]
    assert hits, result.output
    assert fragment in hits[0], hits[0]
    assert hits[0].startswith(f"{path}:")


def test_protocol_model_refuses_what_the_loader_refuses() -> None:
    data = load_protocol(DESIGN_EXAMPLE).model_dump(mode="json")
    data["arms"][0]["control"] = True
    with pytest.raises(ValueError, match="exactly one control arm"):
        Protocol.model_validate(data)


def test_preuve_entry_point_routes_to_validate() -> None:
    from experiments.cli.app import app as preuve

    result = runner.invoke(preuve, ["protocol", "validate", str(DESIGN_EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == f"{DESIGN_EXAMPLE}: valid"


def test_added_sections_of_the_examples() -> None:
    maths = load_protocol(ROOT / "protocols" / "calcul-6e-rep-2027.yaml")
    assert maths.population.unit == "school"
    assert maths.population.criteria["education_priority"] == ["REP", "REP+"]
    assert maths.resource.all_levels() == ["CM1", "CM2", "6e"]  # cycle 3
    assert maths.budget is not None
    assert maths.budget.total == 81000 + 18000 + 45000
    assert round(maths.budget.cost_per_pupil, 2) == 53.33  # 144 000 € / 2 700 pupils
    assert [m.kind for m in maths.usage.metrics] == ["login", "active_use"]
    assert maths.decision is not None and maths.decision.min_active_share == 0.6
    waves = load_protocol(ROOT / "protocols" / "lecture-ce1-vagues-2027.yaml")
    assert waves.design.type == "staggered"
    assert [(s.arm, str(s.starts)) for s in waves.design.rollout] == [
        ("vague1", "2027-10-04"),
        ("vague2", "2028-01-08"),
        ("attente", "2028-09-01"),
    ]
    assert waves.control_arm.name == "attente"


def test_ancova_without_pretest_is_valid(tmp_path: Path) -> None:
    # Issue 15: an ancova outcome without `baseline` is analysed by regression adjustment
    # on the declared covariates and strata (or none); validation no longer refuses it.
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8")
    line = "    baseline: fluence            # pre-test measure (wave baseline) used as covariate\n"
    assert line in text
    path = tmp_path / "sans-pre-test.yaml"
    path.write_text(text.replace(line, ""), encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    protocol = load_protocol(path)
    assert protocol.analysis.model == "ancova" and protocol.outcomes[0].baseline is None


def test_a_misspelt_usage_verb_is_refused_with_a_suggestion(tmp_path: Path) -> None:
    # a verb no event carries would silently count nothing
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8").replace(
        "usage:\n",
        "usage:\n  metrics:\n    - {id: logins, kind: login, verbs: [session_started]}\n"
        "    - {id: actif, kind: active_use, verbs: [exercice_answered]}\n", 1)
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2, result.output
    assert "usage.metrics[1].verbs[0]: unknown verb 'exercice_answered'" in result.output
    assert "did you mean 'exercise_answered'?" in result.output


def test_validate_warns_of_what_defaults_would_pre_register(tmp_path: Path) -> None:
    text = DESIGN_EXAMPLE.read_text(encoding="utf-8").replace(
        "usage:\n  compliance: {min_active_minutes: 300}", "", 1)
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert f"{path}: warning: usage: not declared; the defaults apply" in result.output
    assert f"{path}: warning: decision: not declared" in result.output
    written = runner.invoke(app, ["validate", str(DESIGN_EXAMPLE)])
    assert "warning: usage" not in written.output
