"""The design freezes as the trial advances (issue 14, item 3): each frozen field, at each
state of an experiment, on a real registry (SQLite) with real enrollments.

After the first allocation: seed, strata, arms (name, allocation, control), unit and
population. Once the intervention has started (state running or later, or the start of
the intervention period reached): also the primary outcome, the estimand and the model.
Anything else stays open to a reasoned amendment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.design import enrollment_design
from experiments.enrollment.files import read_classes
from experiments.enrollment.transaction import enroll_classes
from experiments.errors import RegistryError
from experiments.protocol.language import parse_protocol
from experiments.registry import (
    amend_protocol,
    get_experiment,
    register_protocol,
    transition_experiment,
)
from experiments.settings import Settings
from tests.support.decision import with_decision
from tests.support.uai import uai

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"
# The example protocol with a secondary outcome, so that the primary one can be switched,
# and a decision rule, so that it may run (issue 19).
BASE = with_decision((ROOT / "protocols" / "fluence-cp-2027.yaml").read_text(
    encoding="utf-8").replace(
    "    baseline: fluence            # pre-test measure (wave baseline) used as covariate\n",
    "    baseline: fluence            # pre-test measure (wave baseline) used as covariate\n"
    "  - id: comprehension\n    baseline: comprehension\n", 1))
BEFORE_START = date(2027, 9, 1)   # the intervention period starts on 2027-09-27
AFTER_START = date(2027, 9, 27)

#: field named in the refusal → edits of the protocol text; which stage freezes it.
EDITS: dict[str, tuple[tuple[tuple[str, str], ...], str | None]] = {
    "randomisation.seed": ((("seed: 20270901", "seed: 7"),), "allocation"),
    "randomisation.strata": ((("strata: [school_uai]", "strata: []"),), "allocation"),
    "arms[0].name": ((("{name: lectio, allocation: 1}", "{name: lectio2, allocation: 1}"),),
                     "allocation"),
    "arms[0].allocation": ((("{name: lectio, allocation: 1}",
                             "{name: lectio, allocation: 2}"),), "allocation"),
    "arms[0].control": ((("{name: lectio, allocation: 1}",
                          "{name: lectio, allocation: 1, control: true}"),
                         ("{name: usual, allocation: 1, control: true}",
                          "{name: usual, allocation: 1}")), "allocation"),
    "arms": ((("  - {name: usual, allocation: 1, control: true}",
               "  - {name: usual, allocation: 1, control: true}\n"
               "  - {name: lectio2, allocation: 1}"),), "allocation"),
    "population.unit": ((("  unit: class ", "  unit: school"),
                         ("strata: [school_uai]", "strata: [academie]")), "allocation"),
    "population.academies": ((("academies: [versailles, creteil]", "academies: [versailles]"),),
                             "allocation"),
    "outcomes[].primary": ((("    primary: true\n", ""),
                            ("  - id: comprehension\n",
                             "  - id: comprehension\n    primary: true\n")), "intervention"),
    "analysis.estimand": ((("estimand: ITT", "estimand: CACE"),), "intervention"),
    "analysis.model": ((("model: ancova", "model: mixed"),), "intervention"),
    # Never frozen: a reasoned amendment stays possible at every open state.
    "analysis.subgroups": ((("subgroups: [education_priority]", "subgroups: []"),), None),
    "periods.followup.end": ((("end: 2028-06-16", "end: 2028-06-23"),), None),
}

#: scenario → (states to advance through, enroll?, today, frozen stages).
SCENARIOS: dict[str, tuple[tuple[str, ...], bool, date, frozenset[str]]] = {
    "registered, nothing allocated": ((), False, BEFORE_START, frozenset()),
    "registered, allocated": ((), True, BEFORE_START, frozenset({"allocation"})),
    "enrolling, nothing allocated": (("enrolling",), False, BEFORE_START, frozenset()),
    "enrolling, allocated": (("enrolling",), True, BEFORE_START, frozenset({"allocation"})),
    "enrolling, allocated, intervention period begun": (
        ("enrolling",), True, AFTER_START, frozenset({"allocation", "intervention"})),
    "enrolling, nothing allocated, intervention period begun": (
        ("enrolling",), False, AFTER_START, frozenset({"intervention"})),
    "running": (("enrolling", "running"), True, BEFORE_START,
                frozenset({"allocation", "intervention"})),
    "analysing": (("enrolling", "running", "analysing"), True, BEFORE_START,
                  frozenset({"allocation", "intervention"})),
}


def _edited(field: str) -> str:
    text = BASE
    for old, new in EDITS[field][0]:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def _trial(engine: Engine, states: tuple[str, ...], enroll: bool) -> None:
    register_protocol(engine, parse_protocol(BASE), BASE)
    for state in states[:1]:
        transition_experiment(engine, EXPERIMENT, state)  # type: ignore[arg-type]
    if enroll:
        design, _ = enrollment_design(engine, EXPERIMENT)
        rows = "class_id,school_uai,level,pupils,academie,education_priority\n" + "".join(
            f"c{i},{uai(f'078000{i // 2}')},CP,20,versailles,REP\n" for i in range(4))
        enroll_classes(engine, design, read_classes(rows, design, today=date(2027, 9, 1)),
                       actor="test")
    for state in states[1:]:
        transition_experiment(engine, EXPERIMENT, state)  # type: ignore[arg-type]


@pytest.mark.parametrize("field", list(EDITS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_frozen_field_at_each_state(make_settings: Callable[..., Settings],
                                         scenario: str, field: str) -> None:
    states, enroll, today, frozen = SCENARIOS[scenario]
    engine = registry_engine(make_settings())
    _trial(engine, states, enroll)
    text = _edited(field)
    changed = parse_protocol(text)
    stage = EDITS[field][1]
    if stage in frozen:
        with pytest.raises(RegistryError) as refused:
            amend_protocol(engine, changed, text, reason="Changement demandé par le comité",
                           today=today)
        assert field in refused.value.reason, refused.value.reason
        assert refused.value.field is not None and refused.value.field in refused.value.reason
        assert ("first allocation" in refused.value.reason) == (stage == "allocation")
        assert get_experiment(engine, EXPERIMENT).current_version == 1
    else:
        result = amend_protocol(engine, changed, text, reason="Changement demandé par le comité",
                                today=today)
        assert result.outcome == "amended" and result.version == 2
    dispose_engines()


def test_the_refusal_names_every_frozen_field_and_the_cli_exits_2(
        make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """The issue's case: a new seed after classes were randomised, together with a new
    primary outcome while the experiment is analysing: both named, nothing recorded."""
    from experiments.cli.app import app

    settings = make_settings()
    engine = registry_engine(settings)
    _trial(engine, ("enrolling", "running", "analysing"), True)
    text = _edited("outcomes[].primary").replace("seed: 20270901", "seed: 7")
    path = tmp_path / "amended.yaml"
    path.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(app, ["protocol", "amend", str(path), "--reason",
                                      "Nouvelle graine et nouveau critère principal"],
                                env={"PREUVE_STATE_DIR": str(settings.state_dir)})
    assert result.exit_code == 2, result.output
    assert "randomisation.seed" in result.output
    assert "outcomes[].primary (fluence → comprehension)" in result.output
    assert "Traceback" not in result.output
    assert get_experiment(engine, EXPERIMENT).current_version == 1
    dispose_engines()
