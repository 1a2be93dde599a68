"""The académie and collectivité pages in a real browser (issue 17): Debian's Chromium
driven by Playwright; axe-core checks WCAG 2.1 A and AA on every page.

A DANE staff member (académie de Créteil) uploads the file Excel wrote (``;``,
Windows-1252, French headers) with a bad row, reads the preview (the bad row and its
reason, nothing written), confirms, reads each class's arm and the balance table,
withdraws a class with the keyboard; the arms stay readable once the experiment is
closed. Then a double-validation protocol: the académie validates, the département's
collectivité ticks its classes and sees their arms. Screenshots land in
``test-artifacts/academie-*.png`` (``tools/screenshots.py`` writes the README's).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.database import dispose_engines
from experiments.enrollment.assignments import enrolled_classes
from experiments.portal.app import create_portal
from experiments.registry import transition_experiment
from tests.integration.test_portal_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    assert_accessible,
)
from tests.support.academie import (
    DOUBLE,
    SIMULATED_NOW,
    SINGLE,
    AcademieWorld,
    academie_settings,
    build_academie_world,
    excel_file,
)
from tests.support.axe import axe_violations
from tests.support.decision import decide_and_acknowledge
from tests.support.portal import served

pytestmark = pytest.mark.integration


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[tuple[str, AcademieWorld]]:
    settings = academie_settings(tmp_path / "state")
    world = build_academie_world(settings)
    # publish=None: no broker in this test; the enrollments stay pending (the role matrix
    # publishes the portal's enrollments to the real broker).
    try:
        with served(create_portal(settings, registry=world.registry,
                                  clock=lambda: SIMULATED_NOW, publish=None)) as url:
            yield url, world
    finally:
        dispose_engines()


def _checked(page: Any, name: str) -> None:
    assert_accessible(page)
    assert axe_violations(page) == [], name
    page.screenshot(path=str(ARTIFACTS / f"academie-{name}.png"), full_page=True)


def test_the_academie_journey_and_the_collectivite_validation(
        portal_url: tuple[str, AcademieWorld]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, world = portal_url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the portal forbids every script; axe-core is injected by the test.
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()

            def sign_in(who: str) -> None:
                page.goto(f"{base}/connexion")
                page.get_by_label("Jeton d'accès").fill(world.tokens[who])
                page.get_by_role("button", name="Connexion").click()

            sign_in("creteil")
            page.get_by_role("link", name="Inscriptions").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Inscriptions de vos classes")
            _checked(page, "liste")
            page.get_by_role("link", name="Effet d'un entraîneur de lecture sur la fluence au "
                                           "CP").click()
            expect(page).to_have_url(f"{base}/inscriptions/{SINGLE}")
            _checked(page, "inscriptions-vide")

            # Excel's file with a bad row → the preview: the row and its reason, nothing yet.
            page.get_by_label("Fichier CSV (export Excel accepté)").set_input_files(
                {"name": "classes-creteil.csv", "mimeType": "text/csv", "buffer": excel_file()})
            page.get_by_role("button", name="Vérifier le fichier").click()
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Vérification du fichier « classes-creteil.csv »")
            expect(page.get_by_role("status")).to_have_text(
                "3 ligne(s) seront acceptées, 1 refusée(s).")
            refused = page.get_by_role("table", name="Lignes refusées et raison du refus")
            expect(refused.locator("tbody tr")).to_have_count(1)
            expect(refused.locator("tbody tr")).to_contain_text("4")
            expect(refused.locator("tbody tr")).to_contain_text("sa lettre de contrôle devrait")
            assert enrolled_classes(world.registry, SINGLE) == []
            _checked(page, "apercu")

            # Confirm → arms and balance.
            page.get_by_role("button", name="Confirmer l'inscription de 3 ligne(s)").click()
            expect(page.get_by_role("status").first).to_contain_text(
                "3 classe(s) inscrite(s) et tirée(s) au sort")
            arms = {c.class_id: c.arm for c in enrolled_classes(world.registry, SINGLE)}
            new = page.get_by_role("table", name="Classes inscrites par ce fichier et leur bras")
            for class_id, arm in arms.items():
                expect(new.get_by_role("row", name=class_id)).to_contain_text(arm)
            expect(page.get_by_role("table", name="Unités, classes et élèves par bras")
                   ).to_be_visible()
            _checked(page, "inscrites")

            # Withdraw a class, with the keyboard.
            page.get_by_label("Classe", exact=True).select_option("cr-b")
            page.get_by_label("Motif du retrait").focus()
            page.keyboard.type("fermeture de la classe")
            page.keyboard.press("Enter")
            expect(page.get_by_role("status")).to_have_text(
                "Le retrait de la classe « cr-b » est enregistré.")
            table = page.get_by_role("table", name="Classes de votre académie inscrites, bras "
                                                   "tiré au sort et statut")
            expect(table.get_by_role("row", name="cr-b")).to_contain_text("retirée")
            _checked(page, "retrait")

            # English is available.
            page.get_by_role("link", name="English").click()
            expect(page.get_by_role("heading", level=1)).to_contain_text("Enrollment — ")
            page.get_by_role("link", name="Français").click()

            # Closed: the arms remain readable.
            for state in ("running", "analysing", "closed"):
                if state == "closed":  # the post-experiment step (issue 19)
                    decide_and_acknowledge(world.registry, SINGLE)
                transition_experiment(world.registry, SINGLE, state)  # type: ignore[arg-type]
            page.goto(f"{base}/inscriptions/{SINGLE}")
            expect(page.get_by_text("Les inscriptions de cette expérimentation sont closes")
                   ).to_be_visible()
            expect(table.get_by_role("row", name="cr-a")).to_contain_text(arms["cr-a"])
            assert page.get_by_label("Fichier CSV (export Excel accepté)").count() == 0
            _checked(page, "close")

            # Double validation: the académie validates...
            page.goto(f"{base}/inscriptions/{DOUBLE}")
            expect(page.get_by_text("Une classe n'est inscrite et tirée au sort qu'après "
                                    "deux validations")).to_be_visible()
            page.get_by_label("Fichier CSV (export Excel accepté)").set_input_files(
                {"name": "ce2.csv", "mimeType": "text/csv",
                 "buffer": excel_file("CE2", prefix="ce")})
            page.get_by_role("button", name="Vérifier le fichier").click()
            page.get_by_role("button", name="Valider 3 classe(s) pour mon académie").click()
            expect(page.get_by_role("status").first).to_contain_text(
                "3 classe(s) validée(s) par votre académie")
            expect(page.get_by_role("table", name="Classes validées par votre académie, pas "
                                                  "encore par leur collectivité")
                   .locator("tbody tr")).to_have_count(3)
            assert enrolled_classes(world.registry, DOUBLE) == []
            _checked(page, "validation-academie")
            page.get_by_role("button", name="Se déconnecter").click()

            # ... then the département's collectivité, for the schools it equips.
            sign_in("dep93")
            expect(page).to_have_url(f"{base}/validations")
            _checked(page, "validations-liste")
            page.get_by_role("link", name="Effet d'une application de calcul sur tablette "
                                           "en CE2").click()
            boxes = page.get_by_role("group", name="Classes validées par leur académie, en "
                                                   "attente de votre validation")
            expect(boxes.get_by_role("checkbox")).to_have_count(2)  # ce-d is the commune's
            _checked(page, "validations")
            boxes.get_by_label("Classe ce-a", exact=False).check()
            boxes.get_by_label("Classe ce-b", exact=False).check()
            page.get_by_role("button", name="Valider les classes cochées").click()
            done = page.get_by_role("table", name="Classes validées à l'instant et leur bras")
            arms = {c.class_id: c.arm for c in enrolled_classes(world.registry, DOUBLE)}
            assert sorted(arms) == ["ce-a", "ce-b"]
            for class_id, arm in arms.items():
                expect(done.get_by_role("row", name=class_id)).to_contain_text(arm)
            _checked(page, "validations-faites")
            context.close()
        finally:
            browser.close()
