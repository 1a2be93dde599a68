"""``preuve analyze`` on real CSV files written in tmp_path (typer CliRunner).

The protocol is the core example (``protocols/fluence-cp-2027.yaml``); the data come
from :func:`analysis.simulate.simulate_trial`, then some files are broken on purpose.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from analysis.simulate import SimulatedFiles, simulate_trial
from experiments.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
PROTOCOL = ROOT / "protocols" / "fluence-cp-2027.yaml"
CONTRACT = ("outcome", "contrast", "estimand", "estimate", "std_error", "ci_low", "ci_high",
            "p_value", "hedges_g", "hedges_g_ci_low", "hedges_g_ci_high", "n_units",
            "n_learners")
NUMBERS = CONTRACT[3:11]

runner = CliRunner()


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> SimulatedFiles:
    return simulate_trial(tmp_path_factory.mktemp("trial"), n_units=40, pupils_per_unit=20)


def _analyze(files: SimulatedFiles, *extra: str, units: Path | None = None,
             outcomes: Path | None = None, protocol: Path = PROTOCOL) -> object:
    args = ["analyze", "--protocol", str(protocol), "--units", str(units or files.units),
            "--outcomes", str(outcomes or files.outcomes), *extra]
    return runner.invoke(app, args)


def test_json_holds_the_contract_with_plain_numbers(trial: SimulatedFiles, tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    assert trial.usage is not None
    result = _analyze(trial, "--usage", str(trial.usage), "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["experiment"] == "fluence-cp-2027"
    assert len(data["protocol_sha256"]) == 64
    assert data["analysis"] == "final"
    primary = [e for e in data["effects"] if e["role"] == "primary"]
    assert [e["contrast"] for e in primary] == ["lectio vs usual"]
    for effect in data["effects"]:
        assert set(CONTRACT) <= set(effect), effect
        for key in NUMBERS:
            value = effect[key]
            assert value is None or isinstance(value, (int, float)), (key, value)
            if value is None:
                assert effect["reason"], effect
        arms = {"lectio"} if effect["role"] == "exploratory" else {"lectio", "usual"}
        assert set(effect["n_units"]) == set(effect["n_learners"]) == arms
        assert all(isinstance(v, int) or v is None for v in effect["n_learners"].values())
    (itt,) = primary
    assert all(isinstance(itt[k], float) for k in NUMBERS)
    assert itt["ci_low"] < itt["estimate"] < itt["ci_high"]
    assert {e["estimand"] for e in data["effects"]} == {
        "ITT", "CACE", "dose-response (exploratory, not causal)"}
    assert set(data["checks"]) >= {"consort", "attrition", "baseline_equivalence",
                                   "sample_ratio", "icc"}


def test_html_page_is_french_and_self_contained(trial: SimulatedFiles, tmp_path: Path) -> None:
    out = tmp_path / "resultats.html"
    result = _analyze(trial, "--html", str(out))
    assert result.exit_code == 0, result.output
    page = out.read_text(encoding="utf-8")
    assert '<html lang="fr">' in page
    assert "Effets (intention de traiter)" in page and "mois de progrès" in page.lower()
    assert "<script" not in page and "http" not in page


def test_without_output_options_prints_json(trial: SimulatedFiles) -> None:
    result = _analyze(trial)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["effects"]


def _rewrite(source: Path, target: Path, line: int, new: str) -> Path:
    lines = source.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = new
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return target


def test_bad_score_exits_2_with_path_line_field(trial: SimulatedFiles, tmp_path: Path) -> None:
    bad = _rewrite(trial.outcomes, tmp_path / "outcomes.csv", 5,
                   '"L3","C0","fluence","baseline","douze"')
    result = _analyze(trial, outcomes=bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{bad}:5: score: must be a finite number"), result.stderr
    assert "'douze'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("line", "row", "expected"),
    [
        (1, "learner,unit_id,measure,wave,score", ":1: header: missing column(s) ['learner_id']"),
        (3, '"L1","C999","fluence","baseline","47.8"', ":3: unit_id: unknown unit"),
        (4, '"L2","C0","fluence","posttest","47.8"', ":4: wave: must be 'baseline' or 'endline'"),
        (6, '"L4","C0","fluence"', ":6: row: expected 5 fields, got 3"),
        (7, '"L0","C0","fluence","baseline","50"', ":7: learner_id: this learner already has"),
    ],
)
def test_broken_outcomes_file(trial: SimulatedFiles, tmp_path: Path, line: int, row: str,
                              expected: str) -> None:
    bad = _rewrite(trial.outcomes, tmp_path / "outcomes.csv", line, row)
    result = _analyze(trial, outcomes=bad)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"{bad}{expected}"), result.stderr
    assert "Traceback" not in result.output


def test_unknown_arm_in_units_file(trial: SimulatedFiles, tmp_path: Path) -> None:
    bad = _rewrite(trial.units, tmp_path / "units.csv", 2,
                   '"C0","placebo","0750000000","REP"')
    result = _analyze(trial, units=bad)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{bad}:2: arm: must be one of ['lectio', 'usual']")


def test_missing_file_and_bad_protocol_exit_2(trial: SimulatedFiles, tmp_path: Path) -> None:
    result = _analyze(trial, units=tmp_path / "absent.csv")
    assert result.exit_code == 2 and "file not found" in result.stderr
    broken = tmp_path / "protocol.yaml"
    broken.write_text(PROTOCOL.read_text(encoding="utf-8").replace("unit: class", "unit: lycee"),
                      encoding="utf-8")
    result = _analyze(trial, protocol=broken)
    assert result.exit_code == 2
    assert str(broken) in result.stderr and "Traceback" not in result.output


def test_tiny_trial_is_suppressed_not_crashed(tmp_path: Path) -> None:
    files = simulate_trial(tmp_path / "tiny", n_units=4, pupils_per_unit=4, usage_weeks=0)
    out = tmp_path / "results.json"
    result = _analyze(files, "--json", str(out))
    # No primary effect: exit 3, saying why; the JSON is written all the same.
    assert result.exit_code == 3, result.output
    assert "lectio vs usual: not estimated (suppressed: fewer than 10 learners" in result.stdout
    assert result.stdout.rstrip().endswith("no primary effect could be estimated")
    data = json.loads(out.read_text(encoding="utf-8"))
    for effect in data["effects"]:
        assert effect["estimate"] is None and effect["reason"]
        assert all(v is None for v in effect["n_learners"].values())
    for arm in data["checks"]["consort"]:
        assert arm["learners_analysed"] is None


def _protocol_with(tmp_path: Path, old: str, new: str) -> Path:
    text = PROTOCOL.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "protocol.yaml"
    path.write_text(text.replace(old, new), encoding="utf-8")
    return path


def test_mixed_model_runs_end_to_end(trial: SimulatedFiles, tmp_path: Path) -> None:
    protocol = _protocol_with(tmp_path, "model: ancova ", "model: mixed  ")
    out = tmp_path / "results.json"
    result = _analyze(trial, "--json", str(out), protocol=protocol)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    (itt,) = [e for e in data["effects"] if e["role"] == "primary"]
    assert itt["model"].startswith("mixed") and itt["reason"] is None
    assert itt["ci_low"] < itt["estimate"] < itt["ci_high"]
    # Same data under ancova: a random-intercept model and cluster-robust OLS estimate the
    # same effect with errors of the same size (school strata are the random school
    # intercept in the mixed model, fixed effects in ancova).
    ancova_out = tmp_path / "ancova.json"
    assert _analyze(trial, "--json", str(ancova_out)).exit_code == 0
    (ancova,) = [e for e in json.loads(ancova_out.read_text(encoding="utf-8"))["effects"]
                 if e["role"] == "primary"]
    assert abs(itt["estimate"] - ancova["estimate"]) < 0.5 * ancova["std_error"]
    assert 0.6 < itt["std_error"] / ancova["std_error"] < 1.4


def test_an_outcome_without_data_does_not_stop_the_others(trial: SimulatedFiles,
                                                          tmp_path: Path) -> None:
    protocol = _protocol_with(
        tmp_path, "    baseline: fluence            # pre-test",
        "    baseline: fluence\n  - id: comprehension\n    primary: false\n"
        "    baseline: comprehension  # pre-test")
    out = tmp_path / "results.json"
    result = _analyze(trial, "--json", str(out), protocol=protocol)
    assert result.exit_code == 0, result.output
    effects = json.loads(out.read_text(encoding="utf-8"))["effects"]
    (secondary,) = [e for e in effects if e["role"] == "secondary"]
    assert secondary["outcome"] == "comprehension" and secondary["estimate"] is None
    assert "no learner" in secondary["reason"]
    (primary,) = [e for e in effects if e["role"] == "primary"]
    assert isinstance(primary["estimate"], float)


def test_monitoring_shows_no_effect_and_interim_warns(trial: SimulatedFiles,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "monitoring.json"
    result = _analyze(trial, "--analysis", "monitoring", "--json", str(out))
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["analysis"] == "monitoring"
    assert data["effects"] and all(e["estimate"] is None for e in data["effects"])
    assert all("monitoring" in e["reason"] for e in data["effects"])
    assert data["checks"]["consort"] and data["checks"]["attrition"]
    out = tmp_path / "interim.json"
    assert _analyze(trial, "--analysis", "interim", "--json", str(out)).exit_code == 0
    data = json.loads(out.read_text(encoding="utf-8"))
    assert any(w["code"] == "interim_descriptive" for w in data["warnings"])
    assert any(isinstance(e["estimate"], float) for e in data["effects"])


def test_a_one_screen_summary_says_what_was_estimated(trial: SimulatedFiles,
                                                      tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    result = _analyze(trial, "--json", str(out))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert 3 <= len(lines) <= 24, lines  # one screen
    data = json.loads(out.read_text(encoding="utf-8"))
    (primary,) = [e for e in data["effects"] if e["role"] == "primary"]
    (line,) = [s for s in lines if s.startswith("primary fluence, lectio vs usual:")]
    assert f"{primary['estimate']:+.2f} points" in line and line.endswith(
        ("positive", "negative", "not established")), line
    # Without --json the JSON goes to standard output, the summary to standard error.
    bare = _analyze(trial)
    assert bare.exit_code == 0
    assert json.loads(bare.stdout)["effects"] and "primary fluence" in bare.stderr
    # A monitoring analysis estimates nothing by design: exit 0.
    monitoring = _analyze(trial, "--analysis", "monitoring", "--json", str(out))
    assert monitoring.exit_code == 0, monitoring.output
    assert "no effect is estimated by design" in monitoring.stdout
