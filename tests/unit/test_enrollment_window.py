"""Enrolling outside the window says so once, and exits 2 (nothing enrolled).

The issue: before the window opened, `preuve enroll` printed "enrollment is closed … it is
open from 2028-05-02" once per row (52 times) and exited 1 with nothing enrolled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.database import dispose_engines
from tests.support.uai import uai

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"


@pytest.fixture
def windowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, Path]]:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "state"))
    text = PROTOCOL.read_text(encoding="utf-8").replace(
        "periods:", "enrollment: {opens: 2027-05-02, closes: 2027-09-20}\nperiods:", 1)
    protocol = tmp_path / "windowed.yaml"
    protocol.write_text(text, encoding="utf-8")
    classes = tmp_path / "classes.csv"
    classes.write_text(HEADER + "".join(
        f"c{i:02d},{uai(f'078{i:04d}')},CP,20,versailles,REP\n" for i in range(52)),
        encoding="utf-8")
    yield protocol, classes
    dispose_engines()


def _enroll(protocol: Path, classes: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["enroll", "fluence-cp-2027", str(classes), "--protocol",
                                      str(protocol), "--no-publish"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


def test_before_the_window_one_message_and_exit_2(
    windowed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-04-01T09:00:00+02:00")
    code, output = _enroll(*windowed)
    assert code == 2, output
    assert output.count("not open yet") == 1, output
    assert "it opens on 2027-05-02" in output and "nothing was enrolled" in output
    assert "ne sont pas encore ouvertes" in output
    assert "-> " not in output  # no class printed with an arm


def test_after_the_window_one_message_and_exit_2(
    windowed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-09-21T09:00:00+02:00")
    code, output = _enroll(*windowed)
    assert code == 2 and output.count("enrollment closed on 2027-09-20") == 1, output


def test_inside_the_window_the_simulated_clock_enrolls(
    windowed: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREUVE_SIMULATED_NOW", "2027-06-01T09:00:00+02:00")
    code, output = _enroll(*windowed)
    assert code == 0, output
    assert output.count("\tCP\t20\t-> ") == 52


def test_help_documents_the_exit_code() -> None:
    result = CliRunner().invoke(app, ["enroll", "--help"], terminal_width=200)
    assert "window not open" in result.output, result.output
