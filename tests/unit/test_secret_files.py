"""Every secret setting from a file named by ``<VAR>_FILE`` (the Docker secrets way)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from experiments.cli.app import app
from experiments.secrets import SecretFileError, secret_variables
from experiments.settings import Settings

KEY = "k" * 40


def _secret(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.fixture(autouse=True)
def _no_secret_in_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in secret_variables(Settings):
        monkeypatch.delenv(variable, raising=False)
        monkeypatch.delenv(f"{variable}_FILE", raising=False)


def test_every_secret_field_takes_a_file() -> None:
    assert set(secret_variables(Settings)) == {
        "PREUVE_PSEUDONYM_KEY", "PREUVE_DATABASE_URL", "PREUVE_KAFKA__SECURITY__PASSWORD"}


@pytest.mark.parametrize(("variable", "read"), [
    ("PREUVE_PSEUDONYM_KEY", lambda s: s.pseudonym_key),
    ("PREUVE_DATABASE_URL", lambda s: s.database_url),
    ("PREUVE_KAFKA__SECURITY__PASSWORD", lambda s: s.kafka.security.password),
])
def test_a_secret_is_read_from_its_file_without_the_final_newline(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, read: object) -> None:
    value = KEY if "KEY" in variable else (
        "postgresql+psycopg://preuve_portal:s3cret@db/preuve" if "URL" in variable else "pw-1")
    monkeypatch.setenv(f"{variable}_FILE", str(_secret(tmp_path, "secret", value + "\n")))
    secret = read(Settings())  # type: ignore[operator]
    assert secret.get_secret_value() == value
    assert value not in repr(Settings()), "still a SecretStr"


def test_a_missing_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "nowhere" / "pseudonym_key"
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY_FILE", str(missing))
    with pytest.raises(SecretFileError) as error:
        Settings()
    assert str(error.value).startswith(f"PREUVE_PSEUDONYM_KEY_FILE: cannot read the file {missing}")
    assert "No such file" in str(error.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a file of mode 0000")
def test_an_unreadable_file_is_a_clear_error(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = _secret(tmp_path, "db_url", "postgresql://x", mode=0o000)
    monkeypatch.setenv("PREUVE_DATABASE_URL_FILE", str(path))
    with pytest.raises(SecretFileError, match="PREUVE_DATABASE_URL_FILE: cannot read the file"):
        Settings()


def test_a_directory_is_not_a_secret_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_DATABASE_URL_FILE", str(tmp_path))
    with pytest.raises(SecretFileError, match="is not a regular file"):
        Settings()


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_file_others_may_write_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            mode: int) -> None:
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY_FILE", str(_secret(tmp_path, "key", KEY, mode)))
    with pytest.raises(SecretFileError, match=f"may be written by other users \\(mode {mode:04o}"):
        Settings()


def test_a_file_others_may_read_is_accepted_as_docker_mounts_secrets(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY_FILE", str(_secret(tmp_path, "key", KEY, 0o444)))
    key = Settings().pseudonym_key
    assert key is not None and key.get_secret_value() == KEY


def test_a_variable_and_its_file_together_are_refused(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_KAFKA__SECURITY__PASSWORD", "pw")
    monkeypatch.setenv("PREUVE_KAFKA__SECURITY__PASSWORD_FILE",
                       str(_secret(tmp_path, "pw", "pw-2")))
    with pytest.raises(SecretFileError, match="both set: keep one"):
        Settings()


def test_a_short_key_from_a_file_is_refused_as_from_the_variable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_PSEUDONYM_KEY_FILE", str(_secret(tmp_path, "key", "\n")))
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings()


def test_the_cli_says_which_file_in_one_line(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREUVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("PREUVE_DATABASE_URL_FILE", str(tmp_path / "absent"))
    result = CliRunner().invoke(app, ["db", "migrate"])
    assert result.exit_code != 0, result.output
    assert result.output.strip().splitlines() == [
        f"error: PREUVE_DATABASE_URL_FILE: cannot read the file {tmp_path / 'absent'} "
        "(No such file or directory)"]


def test_a_path_through_a_file_is_a_clear_error_even_for_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = _secret(tmp_path, "plain", "x")
    monkeypatch.setenv("PREUVE_KAFKA__SECURITY__PASSWORD_FILE", str(blocker / "password"))
    with pytest.raises(SecretFileError, match=r"PREUVE_KAFKA__SECURITY__PASSWORD_FILE: cannot "
                                              r"read the file .*\(Not a directory\)"):
        Settings()
