"""Secrets and state: a pseudonymisation key of at least 32 bytes, created atomically (one
key however many processes start at once), files of a service readable by its user only,
and Preuve's INFO lines written once a service has started."""

from __future__ import annotations

import logging
import multiprocessing
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from experiments.cli.console import configure_logging, start_service
from experiments.database import dispose_engines, registry_engine
from experiments.settings import Settings
from ingest.pseudonym import load_pseudonym_key, pseudonym_key_id


@pytest.mark.parametrize("key", ["", "k", "x" * 31])
def test_a_short_pseudonymisation_key_is_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValidationError, match="at least 32 bytes"):
        Settings(state_dir=tmp_path, pseudonym_key=key)


def test_a_short_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "pseudonym.key").write_text("abc\n")
    with pytest.raises(ValueError, match="3 bytes, at least 32"):
        load_pseudonym_key(Settings(state_dir=tmp_path))


def _load(state_dir: str, start: object, out: object) -> None:
    start.wait()  # type: ignore[attr-defined]
    out.put(load_pseudonym_key(Settings(state_dir=Path(state_dir))))  # type: ignore[attr-defined]


def test_processes_starting_at_once_agree_on_one_whole_key(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    start, out = context.Event(), context.Queue()
    processes = [context.Process(target=_load, args=(str(tmp_path), start, out))
                 for _ in range(8)]
    for process in processes:
        process.start()
    start.set()
    keys = {out.get(timeout=60) for _ in processes}
    for process in processes:
        process.join(timeout=60)
    assert len(keys) == 1, "two processes made two keys"
    (key,) = keys
    assert len(key) == 64 and key == (tmp_path / "pseudonym.key").read_text().encode()
    assert [p.name for p in tmp_path.iterdir()] == ["pseudonym.key"], "a temporary file is left"
    assert stat.S_IMODE((tmp_path / "pseudonym.key").stat().st_mode) == 0o600
    assert len(pseudonym_key_id(key)) == 16 and pseudonym_key_id(key) not in key.decode()


@pytest.fixture
def restored_process() -> Iterator[None]:
    """start_service changes the umask and the root logger's level: put them back."""
    umask = os.umask(0o022)
    os.umask(umask)
    level = logging.getLogger().level
    yield
    os.umask(umask)
    logging.getLogger().setLevel(level)
    dispose_engines()


def test_a_service_keeps_its_state_directory_and_files_private(
    tmp_path: Path, restored_process: None
) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    settings = Settings(state_dir=state)
    start_service(settings)
    registry_engine(settings).connect().close()
    load_pseudonym_key(settings)
    (state / "reports").mkdir()
    (state / "reports" / "r.html").write_text("x")
    assert stat.S_IMODE(state.stat().st_mode) == 0o700
    files = [p for p in state.rglob("*") if p.is_file()]
    assert len(files) >= 3, files
    modes = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files}
    assert set(modes.values()) == {"0o600"}, modes
    assert stat.S_IMODE((state / "reports").stat().st_mode) == 0o700


def test_a_service_writes_its_info_lines_after_the_cli_set_warning(
    tmp_path: Path, restored_process: None
) -> None:
    configure_logging("WARNING")  # what `preuve` does for every command
    start_service(Settings(state_dir=tmp_path, log_level="INFO"))
    for name in ("ingest.gateway", "experiments.portal.app", "ingest.stream.worker"):
        assert logging.getLogger(name).isEnabledFor(logging.INFO), name


def test_the_database_url_is_a_secret(tmp_path: Path) -> None:
    url = "postgresql+psycopg://owner:s3cret-pw@db.internal:5432/preuve"
    settings = Settings(state_dir=tmp_path, database_url=url)
    assert "s3cret-pw" not in repr(settings) and "s3cret-pw" not in str(settings)
    assert "s3cret-pw" not in settings.model_dump_json()
    assert settings.database_dsn() == url
    assert Settings(state_dir=tmp_path).database_dsn() is None
