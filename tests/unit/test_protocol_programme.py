"""Programme, territories, funders and tags in the protocol (issue 22, item 1).

Each case is ``protocols/calcul-6e-rep-2027.yaml`` (which declares all four) with one
deliberate mistake appended or substituted; the problems are located like every other.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli.protocol import app
from experiments.errors import ProtocolError
from experiments.protocol.language import load_protocol, parse_protocol
from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "protocols" / "calcul-6e-rep-2027.yaml"
runner = CliRunner()


def _with(old: str, new: str) -> str:
    text = EXAMPLE.read_text(encoding="utf-8")
    assert old in text
    return text.replace(old, new)


def _problems(text: str, **kwargs: object) -> list[str]:
    with pytest.raises(ProtocolError) as caught:
        parse_protocol(text, "p.yaml", **kwargs)  # type: ignore[arg-type]
    return [str(p) for p in caught.value.problems]


def test_example_declares_programme_territories_funders_and_tags() -> None:
    protocol = load_protocol(EXAMPLE)
    assert protocol.programme is not None and protocol.programme.name == "TNE"
    assert protocol.territories is not None
    assert protocol.territories.departements == ["13", "59", "93"]
    assert [f.amount for f in protocol.funders] == [120000, 18000, 45000]
    assert protocol.tags == ["mathématiques", "cycle 3", "collège"]


def test_unknown_programme_is_located_with_a_hint() -> None:
    text = _with("programme: {name: TNE,", "programme: {name: eFRAM,")
    (problem,) = _problems(text)
    assert problem.startswith("p.yaml:")
    assert "programme.name: unknown programme 'eFRAM'; did you mean 'eFRAN'?" in problem


def test_configured_programme_is_accepted_only_when_configured() -> None:
    text = _with("programme: {name: TNE,", "programme: {name: Plan Lecture,")
    assert "unknown programme 'Plan Lecture'" in _problems(text)[0]
    settings = Settings(programmes=["Plan Lecture"])
    protocol = parse_protocol(text, programmes=settings.programme_names)
    assert protocol.programme is not None and protocol.programme.name == "Plan Lecture"
    # A registered protocol is read back without the vocabulary (checked at registration).
    assert parse_protocol(text, programmes=None).programme is not None


def test_cli_validate_reads_the_configured_programmes(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(_with("programme: {name: TNE,", "programme: {name: Plan Lecture,"),
                    encoding="utf-8")
    refused = runner.invoke(app, ["validate", str(path)])
    assert refused.exit_code == 2 and "unknown programme 'Plan Lecture'" in refused.output
    accepted = runner.invoke(app, ["validate", str(path)],
                             env={"PREUVE_PROGRAMMES": '["Plan Lecture"]'})
    assert accepted.exit_code == 0, accepted.output


def test_territory_outside_the_population_is_refused() -> None:
    text = _with("  academies: [aix-marseille, lille, creteil]\n  departements",
                 "  academies: [aix-marseille, versailles]\n  departements")
    problems = _problems(text)
    assert len(problems) == 1
    assert "territories.academies[1]: 'versailles' is not in population.academies" in problems[0]


def test_unknown_departement_is_refused() -> None:
    problems = _problems(_with('departements: ["13", "59", "93"]',
                               'departements: ["13", "20", "93"]'))
    assert "territories.departements[1]: unknown département (INSEE code) '20'" in problems[0]


def test_budget_item_funder_must_be_declared_and_covered() -> None:
    text = _with('- {name: "Départements", amount: 45000}',
                 '- {name: "Départements", amount: 40000}')
    (problem,) = _problems(text)
    assert "funders[2].amount: 'Départements' commits 40000 EUR but pays 45000 EUR" in problem
    text = _with('- {name: "Académies", amount: 18000}', '- {name: "Rectorats", amount: 18000}')
    (problem,) = _problems(text)
    assert "budget.items[1].funder: 'Académies' is not one of the funders" in problem


def test_tags_are_lower_case() -> None:
    problems = _problems(_with("tags: [mathématiques,", "tags: [Mathématiques,"))
    assert "tags[0]" in problems[0]
