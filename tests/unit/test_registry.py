"""Registration, the locked design, amendments and the lifecycle, on real databases.

Each test runs on SQLite (a file under tmp_path) and on PostgreSQL (a fresh database
of the throwaway cluster started by ``tests/conftest.py``; marked ``integration``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from experiments.cli.protocol import app
from experiments.database import registry_engine
from experiments.errors import RegistryError
from experiments.protocol.language import Protocol, load_protocol, parse_protocol
from experiments.registry import (
    STATES,
    amend_protocol,
    get_experiment,
    register_protocol,
    registered_protocol,
    save_draft,
    transition_experiment,
)
from experiments.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "protocols" / "fluence-cp-2027.yaml"
TEXT = EXAMPLE.read_text(encoding="utf-8")


def _edit(*pairs: tuple[str, str]) -> tuple[Protocol, str]:
    text = TEXT
    for old, new in pairs:
        assert old in text, old
        text = text.replace(old, new, 1)
    return parse_protocol(text), text


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    if request.param == "postgres":
        return make_settings(database_url=request.getfixturevalue("postgres_url"))
    return make_settings()


@pytest.fixture
def engine(settings: Settings) -> Engine:
    return registry_engine(settings)


def test_register_stores_hash_and_timestamp(engine: Engine) -> None:
    protocol = load_protocol(EXAMPLE)
    result = register_protocol(engine, protocol, TEXT)
    assert (result.outcome, result.version, result.sha256) == ("registered", 1, protocol.sha256)
    record = get_experiment(engine, "fluence-cp-2027")
    assert record.state == "registered" and record.registered_at is not None
    assert [(t.from_state, t.to_state) for t in record.transitions] == [
        (None, "draft"),
        ("draft", "registered"),
    ]
    stored = registered_protocol(engine, "fluence-cp-2027")
    assert stored.protocol == protocol and stored.source_yaml == TEXT
    assert stored.version.sha256 == protocol.sha256 == stored.protocol.sha256
    again = register_protocol(engine, protocol, TEXT)
    assert (again.outcome, again.version) == ("unchanged", 1)


def test_changed_design_is_refused_naming_the_fields(engine: Engine) -> None:
    register_protocol(engine, load_protocol(EXAMPLE), TEXT)
    changed, text = _edit(
        ("{name: lectio, allocation: 1}", "{name: lectio, allocation: 2}"),
        ("seed: 20270901", "seed: 7"),
    )
    with pytest.raises(RegistryError) as caught:
        register_protocol(engine, changed, text)
    message = caught.value.reason
    assert "the design is locked since registration" in message
    assert "arms[0].allocation" in message and "randomisation.seed" in message
    assert caught.value.field == "arms[0].allocation"
    assert get_experiment(engine, "fluence-cp-2027").current_version == 1


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("levels: [CP]", "levels: [CP, CE1]", "population.levels"),
        ("model: ancova", "model: mixed", "analysis.model"),
        ("    baseline: fluence ", "    baseline: phonologie ", "outcomes[0].baseline"),
        ("subgroups: [education_priority]", "subgroups: []", "analysis.subgroups"),
        ("{min_active_minutes: 300}", "{min_active_minutes: 200}", "usage.compliance"),
    ],
)
def test_every_design_section_is_locked(engine: Engine, old: str, new: str, field: str) -> None:
    register_protocol(engine, load_protocol(EXAMPLE), TEXT)
    changed, text = _edit((old, new))
    with pytest.raises(RegistryError, match=field.replace("[", r"\[").replace("]", r"\]")):
        register_protocol(engine, changed, text)


def test_change_outside_the_design_is_a_recorded_version(engine: Engine) -> None:
    register_protocol(engine, load_protocol(EXAMPLE), TEXT)
    changed, text = _edit(("keep_until: 2030-06-30", "keep_until: 2030-12-31"))
    result = register_protocol(engine, changed, text)
    assert (result.outcome, result.version) == ("updated", 2)
    assert result.changed_fields == ("retention.keep_until",)
    v2 = get_experiment(engine, "fluence-cp-2027").current
    assert (v2.kind, v2.changed_fields) == ("update", ("retention.keep_until",))


def test_amendment_is_a_new_version_with_its_reason(engine: Engine) -> None:
    original = load_protocol(EXAMPLE)
    register_protocol(engine, original, TEXT)
    changed, text = _edit(("levels: [CP]", "levels: [CP, CE1]"))
    with pytest.raises(RegistryError, match="states its reason"):
        amend_protocol(engine, changed, text, reason="  ")
    with pytest.raises(RegistryError, match="nothing to amend"):
        amend_protocol(engine, original, TEXT, reason="Aucune modification en fait")
    result = amend_protocol(engine, changed, text, reason="Extension au CE1 demandée par le CSEN")
    assert (result.outcome, result.version) == ("amended", 2)
    assert result.changed_fields == ("population.levels",)
    record = get_experiment(engine, "fluence-cp-2027")
    assert [(v.version, v.kind) for v in record.versions] == [(1, "registration"), (2, "amendment")]
    assert record.current.reason == "Extension au CE1 demandée par le CSEN"
    # the amended design is now the locked one
    assert register_protocol(engine, changed, text).outcome == "unchanged"
    assert registered_protocol(engine, "fluence-cp-2027", version=1).protocol == original


def test_lifecycle_moves_one_step_at_a_time(engine: Engine) -> None:
    protocol = load_protocol(EXAMPLE)
    save_draft(engine, protocol, TEXT)
    assert get_experiment(engine, protocol.id).state == "draft"
    with pytest.raises(RegistryError, match="only a registered, open experiment"):
        amend_protocol(engine, protocol, TEXT, reason="Trop tôt pour amender")
    with pytest.raises(RegistryError, match="cannot go from draft to enrolling"):
        transition_experiment(engine, protocol.id, "enrolling")
    assert register_protocol(engine, protocol, TEXT).outcome == "registered"
    with pytest.raises(RegistryError, match="cannot go from registered to running; the next"):
        transition_experiment(engine, protocol.id, "running")
    for state in ("enrolling", "running", "analysing", "closed"):
        transition_experiment(engine, protocol.id, state, note=f"vers {state}")
    record = get_experiment(engine, protocol.id)
    assert [t.to_state for t in record.transitions] == list(STATES)
    with pytest.raises(RegistryError, match="closed is final"):
        transition_experiment(engine, protocol.id, "analysing")
    changed, text = _edit(("keep_until: 2030-06-30", "keep_until: 2030-12-31"))
    with pytest.raises(RegistryError, match="closed"):
        register_protocol(engine, changed, text)
    with pytest.raises(RegistryError, match="closed"):
        amend_protocol(engine, changed, text, reason="Après la clôture, refusé")
    with pytest.raises(RegistryError, match="no such experiment"):
        transition_experiment(engine, "inconnue", "registered")


def test_cli_register_amend_show_export(settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"PREUVE_STATE_DIR": str(settings.state_dir)}
    if settings.database_url:
        env["PREUVE_DATABASE_URL"] = settings.database_url.get_secret_value()

    def run(*args: str) -> tuple[int, str]:
        result = runner.invoke(app, list(args), env=env)
        return result.exit_code, result.output

    code, out = run("register", str(EXAMPLE))
    assert code == 0, out
    assert "registered, version 1" in out and load_protocol(EXAMPLE).sha256 in out

    changed = tmp_path / "fluence-cp-2027.yaml"
    changed.write_text(TEXT.replace("levels: [CP]", "levels: [CP, CE1]"), encoding="utf-8")
    code, out = run("register", str(changed))
    assert code == 2, out
    assert "population.levels" in out and "amend" in out and "Traceback" not in out

    code, out = run("amend", str(changed), "--reason", "Extension au CE1 demandée par le CSEN")
    assert code == 0, out
    assert "amendment recorded, version 2" in out

    code, out = run("show", "fluence-cp-2027")
    assert code == 0, out
    assert "state: registered" in out and "version: 2" in out
    assert "v2 amendment" in out and "reason: Extension au CE1 demandée par le CSEN" in out
    assert "changed: population.levels" in out

    code, out = run("advance", "fluence-cp-2027", "running")
    assert code == 2 and "the next state is enrolling" in out
    code, out = run("advance", "fluence-cp-2027", "enrolling")
    assert code == 0, out

    target = tmp_path / "preregistration.md"
    code, out = run("export", "fluence-cp-2027", "--out", str(target))
    assert code == 0, out
    markdown = target.read_text(encoding="utf-8")
    assert markdown.startswith("# Effet d'un entraîneur de lecture sur la fluence au CP")
    for section in (
        "## Study information",
        "## Design plan",
        "## Sampling plan",
        "## Variables",
        "## Analysis plan",
        "## Amendments",
    ):
        assert section in markdown
    assert "Extension au CE1" in markdown and "levels: [CP, CE1]" in markdown
    # Issue 15: the pre-registered variance estimator is named.
    assert "Erreurs-types (ANCOVA, CACE) : CR2 groupées par unité" in markdown
    # Issue 19: fluence-cp-2027 writes only its compliance rule; the usage metrics it left
    # to defaults, their pause and the active-time rule are written out.
    assert "- Indicateur d'usage `active_minutes` (usage actif) : verbes activity_completed, " \
        "exercise_answered, assessment_scored, pause maximale 300 s (définition par défaut " \
        "de Preuve)" in markdown
    assert "- Temps actif : Le temps actif est reconstitué" in markdown
    assert "pause de plus de 5 min" in markdown
    written = markdown.split("valeurs par défaut écrites :", 1)[1]
    assert "idle_timeout_s: 300" in written and "min_active_minutes: 300" in written
    assert "session_started" in written

    code, out = run("show", "inconnue")
    assert code == 2 and "no such experiment" in out


def test_concurrent_first_registrations_one_wins(settings: Settings) -> None:
    # Two registrations of a new experiment at the same time: one wins, the other gets a
    # RegistryError (never a raw database error), and the registry holds one version.
    import threading

    protocol = load_protocol(EXAMPLE)
    engine = registry_engine(settings)
    barrier = threading.Barrier(4)
    outcomes: list[str] = []

    def register() -> None:
        barrier.wait()
        try:
            outcomes.append(register_protocol(engine, protocol, TEXT).outcome)
        except RegistryError as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=register) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("registered") == 1, outcomes
    assert all(o in ("registered", "unchanged") or "at the same time" in o for o in outcomes)
    assert get_experiment(engine, protocol.id).current_version == 1


def test_a_protocol_without_usage_is_refused_at_registration(engine: Engine) -> None:
    # usage is one of the two metrics of every experiment: its definition is pre-registered
    protocol, text = _edit(("usage:\n  compliance: {min_active_minutes: 300}", ""))
    assert "usage" not in protocol.model_fields_set
    with pytest.raises(RegistryError, match="usage: a registered protocol declares") as caught:
        register_protocol(engine, protocol, text)
    assert caught.value.field == "usage"
    with pytest.raises(RegistryError, match="no such experiment"):
        get_experiment(engine, "fluence-cp-2027")


def test_a_version_stored_before_a_key_was_added_is_unchanged_when_registered_again(
        engine: Engine) -> None:
    # The language gains keys with defaults (analysis.cluster_correction, outcomes[].kind):
    # a version stored before them lacks them, and its own file must still be "unchanged",
    # not a change of the locked design.
    import json

    import sqlalchemy as sa

    from experiments.registry import ProtocolVersionRow

    protocol = load_protocol(EXAMPLE)
    register_protocol(engine, protocol, TEXT)
    with engine.begin() as connection:
        table = ProtocolVersionRow.__table__
        stored = json.loads(connection.execute(sa.select(table.c.canonical_json)).scalar_one())
        del stored["analysis"]["cluster_correction"]
        for outcome in stored["outcomes"]:
            outcome.pop("kind", None)
        connection.execute(sa.update(table).values(canonical_json=json.dumps(stored),
                                                   sha256="0" * 64))
    assert register_protocol(engine, protocol, TEXT).outcome == "unchanged"
    changed, text = _edit(("alpha: 0.05", "alpha: 0.01"))
    with pytest.raises(RegistryError, match=r"changed: analysis\.alpha\. "):
        register_protocol(engine, changed, text)
