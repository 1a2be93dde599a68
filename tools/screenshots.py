"""Regenerate the portal's screenshots in ``docs/screenshots/`` with Debian's Chromium.

    .venv/bin/python tools/screenshots.py                    # every shot of every scenario
    .venv/bin/python tools/screenshots.py academie-apercu    # some shots, by name

A **scenario** builds a registry in a temporary directory and returns the tokens of its
users (the tests' worlds, ``tests/support/``); its **shots** run in order against one
portal served on a free 127.0.0.1 port: each signs in as one user, opens a path, may run
steps (upload a file, click a button) and saves ``docs/screenshots/NAME.png``. To add
pages, add shots to a scenario of :data:`SCENARIOS`, or a scenario of your own.
The browser is the tests' (``tests/integration/test_portal_browser.py``): Debian's
Chromium, headless, no network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the tests' worlds (tests/support) and the packages

OUT = ROOT / "docs" / "screenshots"


@dataclass(frozen=True)
class Shot:
    """One screenshot: ``who`` signs in (a token of the scenario), opens ``path``, runs
    ``steps`` (given the Playwright page) and saves ``OUT / f"{name}.png"``."""

    name: str
    who: str
    path: str
    steps: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Scenario:
    """``build(state_dir)`` registers what the shots show and returns (settings,
    registry, tokens by user, portal clock)."""

    build: Callable[[Path], tuple[Any, Any, dict[str, str], Any]]
    shots: list[Shot]


# --- issue 17: académies and collectivités ------------------------------------------------


def _academie_world(state_dir: Path) -> tuple[Any, Any, dict[str, str], Any]:
    from tests.support.academie import SIMULATED_NOW, academie_settings, build_academie_world

    settings = academie_settings(state_dir)
    world = build_academie_world(settings)
    return settings, world.registry, world.tokens, SIMULATED_NOW


def _upload(name: str, data: Callable[[], bytes]) -> Callable[[Any], None]:
    def steps(page: Any) -> None:
        page.get_by_label("Fichier CSV (export Excel accepté)").set_input_files(
            {"name": name, "mimeType": "text/csv", "buffer": data()})
        page.get_by_role("button", name="Vérifier le fichier").click()
        page.get_by_role("heading", level=1).wait_for()
    return steps


def _then(*steps: Callable[[Any], None]) -> Callable[[Any], None]:
    def run(page: Any) -> None:
        for step in steps:
            step(page)
    return run


def _click(name: str) -> Callable[[Any], None]:
    def steps(page: Any) -> None:
        page.get_by_role("button", name=name).click()
        page.wait_for_load_state()
    return steps


def _withdraw(class_id: str, reason: str) -> Callable[[Any], None]:
    def steps(page: Any) -> None:
        page.get_by_label("Classe", exact=True).select_option(class_id)
        page.get_by_label("Motif du retrait").fill(reason)
        _click("Retirer")(page)
    return steps


def _tick(*class_ids: str) -> Callable[[Any], None]:
    def steps(page: Any) -> None:
        for class_id in class_ids:
            page.get_by_label(f"Classe {class_id},", exact=False).check()
        _click("Valider les classes cochées")(page)
    return steps


def _academie_shots() -> list[Shot]:
    from tests.support.academie import DOUBLE, SINGLE, excel_file

    cp = _upload("classes-creteil.csv", excel_file)
    ce2 = _upload("classes-ce2.csv", lambda: excel_file("CE2", prefix="ce"))
    return [
        Shot("academie-apercu", "creteil", f"/inscriptions/{SINGLE}", cp),
        Shot("academie-inscrites", "creteil", f"/inscriptions/{SINGLE}",
             _then(cp, _click("Confirmer l'inscription de 3 ligne(s)"))),
        Shot("academie-retrait", "creteil", f"/inscriptions/{SINGLE}",
             _withdraw("cr-b", "fermeture de la classe")),
        Shot("academie-validation", "creteil", f"/inscriptions/{DOUBLE}",
             _then(ce2, _click("Valider 3 classe(s) pour mon académie"))),
        Shot("collectivite-validations", "dep93", f"/validations/{DOUBLE}"),
        Shot("collectivite-validees", "dep93", f"/validations/{DOUBLE}",
             _tick("ce-a", "ce-b")),
    ]


# --- issue 17: an EdTech's console --------------------------------------------------------


def _edtech_world(state_dir: Path) -> tuple[Any, Any, dict[str, str], Any]:
    """The portal tests' world (events of Lectio stored), with refused events recorded in
    the dead-letter index and events of a mistyped class parked, as the stream worker
    records them (no broker needed for a picture)."""
    import json
    import uuid
    from datetime import UTC, datetime, timedelta

    from experiments.settings import Settings
    from ingest.deadletters import DeadLetterRow, record_dead_letters, safe_payload
    from ingest.stream.parking import ParkedEvent, park
    from tests.support.portal import NOW, build_world

    settings = Settings(state_dir=state_dir, pseudonym_key="screenshots-key" * 3,
                        simulated_now=NOW)
    world = build_world(settings)
    received = datetime.now(UTC)
    payloads = [
        ("contract", "verb: 'exercice_answered' is not a verb of contract v1",
         "verb : « exercice_answered » n'est pas un verbe du contrat v1",
         {"verb": "exercice_answered", "resource_id": "lectio", "class_id": "cp-a"}),
        ("future", "occurred_at is 3 days in the future", "occurred_at est 3 jours dans le futur",
         {"verb": "activity_completed", "resource_id": "lectio",
          "occurred_at": "2031-01-12T09:00:00+01:00"}),
        ("other_school", "school_uai 0750001A is not the school of class cp-b",
         "l'école 0750001A n'est pas celle de la classe cp-b",
         {"verb": "session_started", "resource_id": "lectio", "school_uai": "0750001A"}),
    ]
    record_dead_letters(world.registry, [
        DeadLetterRow(source=f"preuve.events/0/{i}", resource_id="lectio", code=code,
                      field=code, event_id=str(uuid.uuid4()), reason_en=en, reason_fr=fr,
                      payload=safe_payload(json.dumps(payload).encode())[0],
                      received_at=received - timedelta(minutes=i))
        for i, (code, en, fr, payload) in enumerate(payloads * 3)])
    park(world.registry, [ParkedEvent(str(uuid.uuid4()), "cp-a-2027", "lectio",
                                      "preuve.events", 0, 100 + i) for i in range(4)],
         received)
    return settings, world.registry, world.tokens, NOW


def _edtech_shots() -> list[Shot]:
    def create_key(page: Any) -> None:
        page.get_by_label("Nom de la clé").fill("serveur de production")
        page.get_by_role("button", name="Créer la clé").click()
        page.wait_for_load_state()

    return [
        Shot("edtech-console", "edtech", "/ressource"),
        Shot("edtech-cles", "edtech", "/ressource/cles", create_key),
        Shot("accessibilite", "edtech", "/accessibilite"),
    ]


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "academie": lambda: Scenario(_academie_world, _academie_shots()),
    "edtech": lambda: Scenario(_edtech_world, _edtech_shots()),
}
"""Scenario name → its scenario (built lazily: the imports are the tests')."""


# --- running ------------------------------------------------------------------------------


def run_scenario(scenario: Scenario, only: set[str], out: Path) -> list[Path]:
    """Serve the scenario's portal and take its shots (those of ``only``, if given)."""
    import uvicorn
    from playwright.sync_api import sync_playwright

    from experiments.database import dispose_engines
    from experiments.portal.app import create_portal
    from ingest.kafka.broker import free_port
    from tests.integration.test_portal_browser import CHROMIUM, CHROMIUM_ARGS

    shots = [s for s in scenario.shots if not only or s.name in only]
    if not shots:
        return []
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="preuve-screenshots-") as state:
        settings, registry, tokens, now = scenario.build(Path(state))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(
            create_portal(settings, registry=registry, clock=lambda: now, publish=None),
            host="127.0.0.1", port=port, log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, name="portal", daemon=True)
        thread.start()
        try:
            deadline = time.monotonic() + 20
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the portal did not start")
                time.sleep(0.05)
            base = f"http://127.0.0.1:{port}"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                                     args=CHROMIUM_ARGS)
                try:
                    for shot in shots:
                        context = browser.new_context(locale="fr-FR",
                                                      viewport={"width": 1280, "height": 800})
                        page = context.new_page()
                        page.goto(f"{base}/connexion")
                        page.get_by_label("Jeton d'accès").fill(tokens[shot.who])
                        page.get_by_role("button", name="Connexion").click()
                        page.wait_for_load_state()
                        page.goto(base + shot.path)
                        if shot.steps is not None:
                            shot.steps(page)
                        target = out / f"{shot.name}.png"
                        page.screenshot(path=str(target), full_page=True)
                        written.append(target)
                        context.close()
                finally:
                    browser.close()
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            dispose_engines()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("shots", nargs="*", help="shot names (default: all)")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNG files")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, make in SCENARIOS.items():
        for path in run_scenario(make(), set(args.shots), args.out):
            print(f"{name}: {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
