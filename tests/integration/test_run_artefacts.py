"""Run files live in the registry database (issue 20, item 3): a report an analysis worker
produced with its own state directory is served by a portal with another, and written as
files by ``preuve runs files``; the stored bytes are immutable."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from experiments.cli.app import app as preuve
from experiments.database import dispose_engines, registry_engine
from experiments.portal.app import create_portal
from experiments.runs.artefacts import read_artefact, run_artefacts_table
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, NOW, PortalClient, build_world


def test_a_report_from_a_worker_is_served_by_a_portal_with_another_state_dir(
        tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    key = "artefacts-key" * 4
    worker = Settings(state_dir=tmp_path / "worker", database_url=postgres_url,
                      pseudonym_key=key)
    portal = Settings(state_dir=tmp_path / "portal", database_url=postgres_url,
                      pseudonym_key=key)
    try:
        world = build_world(worker)  # records two runs, as an analysis worker does
        final = next(r for r in world.runs if r.analysis == "final")
        assert final.html_path is not None and final.json_path is not None
        html = Path(final.html_path).read_bytes()
        json_bytes = Path(final.json_path).read_bytes()
        # The worker's machine is gone: nothing of its state directory remains.
        dispose_engines()
        shutil.rmtree(worker.state_dir)

        client = PortalClient(create_portal(portal, clock=lambda: NOW))
        try:
            session = client.sign_in(world.tokens["researcher"])
            page = client.request("GET", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}",
                                  session)
            assert page.status_code == 200 and page.content == html
            assert hashlib.sha256(page.content).hexdigest() == final.html_sha256
            results = client.request(
                "GET", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}/resultats.json",
                session)
            assert results.status_code == 200 and results.content == json_bytes
        finally:
            client.close()
        assert not (portal.state_dir / "reports").exists()

        # The CLI writes them as files where users expect files, from the registry.
        from typer.testing import CliRunner

        monkeypatch.setenv("PREUVE_STATE_DIR", str(portal.state_dir))
        monkeypatch.setenv("PREUVE_DATABASE_URL", postgres_url)
        monkeypatch.setenv("PREUVE_PSEUDONYM_KEY", key)
        out = tmp_path / "out"
        answer = CliRunner().invoke(preuve, ["runs", "files", final.run_id, "--experiment",
                                             EXPERIMENT, "--to", str(out)])
        assert answer.exit_code == 0, answer.output
        assert (out / f"{final.run_id}.html").read_bytes() == html
        assert (out / f"{final.run_id}.json").read_bytes() == json_bytes
        again = CliRunner().invoke(preuve, ["runs", "files", final.run_id, "--experiment",
                                            EXPERIMENT, "--to", str(out)])
        assert again.exit_code == 1 and "exists already" in again.output

        # Stored bytes are evidence: the database refuses to change or delete them.
        registry = registry_engine(portal)
        table = run_artefacts_table
        for statement in (sa.update(table).values(content=b"<p>autre</p>"),
                          sa.delete(table)):
            with pytest.raises(DBAPIError, match="immutable"), registry.begin() as connection:
                connection.execute(statement.where(table.c.run_id == final.run_id))
        stored = read_artefact(registry, final.run_id, "html", final.html_sha256)
        assert stored is not None and stored.media_type.startswith("text/html")
    finally:
        dispose_engines()
