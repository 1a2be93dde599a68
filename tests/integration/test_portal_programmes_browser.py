"""The programme pages in a real browser (issue 22): Debian's Chromium driven by
Playwright, over a registry of three programmes and eight closed simulated experiments
(``tests/support/programmes.py``); axe-core checks WCAG 2.1 A and AA on every page.

An officer signs in, opens the programmes, the TNE page: its portfolio table, its
synthesis (pooled effect) and forest plot, the map and its table; an académie then sees
its territory's experiments only. A second test switches to the map by département (its
table beside it) and to English with the portal's language link, axe-core on each.
Screenshots land in ``test-artifacts/programme-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.access import issue_token
from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.settings import Settings
from tests.integration.test_portal_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    assert_accessible,
)
from tests.support.axe import axe_violations
from tests.support.portal import NOW, served
from tests.support.programmes import TRIALS, build_programmes

pytestmark = pytest.mark.integration


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    settings = Settings(state_dir=tmp_path / "state", pseudonym_key="programmes-browser" * 2)
    world = build_programmes(settings, tmp_path / "trials")
    tokens = {"officer": issue_token(world.registry, "officer", "*", "bdt"),
              "creteil": issue_token(world.registry, "academie", "creteil")}
    try:
        with served(create_portal(settings, registry=world.registry, clock=lambda: NOW)) as url:
            yield url, tokens
    finally:
        dispose_engines()


def test_an_officer_reads_a_programme_its_synthesis_and_its_map(
        portal_url: tuple[str, dict[str, str]]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, tokens = portal_url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the portal forbids every script; axe-core is injected by the test.
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()
            page.goto(f"{base}/connexion")
            page.get_by_label("Jeton d'accès").fill(tokens["officer"])
            page.get_by_role("button", name="Connexion").click()
            page.get_by_role("link", name="Programmes").click()
            expect(page).to_have_url(f"{base}/programmes")
            expect(page.get_by_role("heading", level=1)).to_have_text("Programmes")
            for name in ("TNE", "eFRAN", "P2IA"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            assert_accessible(page)
            assert axe_violations(page) == []

            page.get_by_role("link", name="TNE", exact=True).click()
            expect(page).to_have_url(f"{base}/programmes/TNE")
            expect(page.get_by_role("heading", level=1)).to_have_text("Programme TNE")
            portfolio = page.get_by_role("table", name="Expérimentations du programme")
            tne = [t for t in TRIALS if t.programme == "TNE"]
            expect(portfolio.locator("tbody tr")).to_have_count(len(tne))
            expect(portfolio).to_contain_text("Lectio")
            # The synthesis: pooled effect, HKSJ, the pupils it rests on, its forest plot.
            synthesis = page.locator("section.synthese").filter(
                has=page.get_by_role("heading", name="Programme « TNE »"))
            expect(synthesis).to_contain_text("Repose sur 4 étude(s)")
            expect(synthesis).to_contain_text("Effet combiné : g = ")
            expect(synthesis.locator("figure.forest svg[role=img]")).to_be_visible()
            # The map and the same figures as a table.
            carte = page.get_by_role("img", name="Carte des expérimentations du programme TNE")
            expect(carte).to_be_visible()
            expect(carte.locator('[data-academie="creteil"] text').last).to_have_text("3")
            territories = page.get_by_role("table", name="Expérimentations et élèves par académie")
            expect(territories.get_by_role("row", name="Créteil")).to_contain_text("3")
            expect(territories.get_by_role("row", name="Versailles")).to_contain_text("3")
            assert_accessible(page)
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "programme-tne.png"), full_page=True)

            # Filters with the keyboard-usable form.
            page.get_by_label("Type de ressource", exact=True).select_option("mathématiques")
            page.get_by_role("button", name="Filtrer").click()
            expect(portfolio.locator("tbody tr")).to_have_count(
                sum("mathématiques" in t.tags for t in tne))

            # An académie: its territory's experiments only.
            page.goto(f"{base}/experiences")
            page.goto(f"{base}/programmes/TNE")
            page.get_by_role("button", name="Se déconnecter").click()
            page.get_by_label("Jeton d'accès").fill(tokens["creteil"])
            page.get_by_role("button", name="Connexion").click()
            page.goto(f"{base}/programmes/TNE")
            rows = page.get_by_role("table", name="Expérimentations du programme").locator(
                "tbody tr")
            expect(rows).to_have_count(sum("creteil" in t.academies for t in tne))
            assert "tne-lectio-1" not in page.content()
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "programme-tne-creteil.png"), full_page=True)

            # The checker itself finds a violation where there is one (an unlabelled field,
            # an image without text): an empty list above is a result, not a silent no-op.
            page.set_content('<html lang="fr"><head><title>t</title></head><body><main>'
                             '<input type="text"><img src="data:,"></main></body></html>')
            found = {v["id"] for v in axe_violations(page)}
            assert {"label", "image-alt"} <= found, found
            context.close()
        finally:
            browser.close()


def test_the_map_by_departement_and_the_english_page(
        portal_url: tuple[str, dict[str, str]]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, tokens = portal_url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()
            page.goto(f"{base}/connexion")
            page.get_by_label("Jeton d'accès").fill(tokens["officer"])
            page.get_by_role("button", name="Connexion").click()
            page.goto(f"{base}/programmes/TNE")

            # The switch is a pair of links (no script: the portal's CSP forbids them).
            switch = page.get_by_role("navigation", name="Choix de la carte")
            expect(switch.get_by_role("link", name="Carte par académie")).to_have_attribute(
                "aria-current", "true")
            switch.get_by_role("link", name="Carte par département").click()
            carte = page.get_by_role(
                "img", name="Carte des expérimentations du programme TNE par département")
            expect(carte).to_be_visible()
            expect(page.get_by_role(
                "img", name="Carte des expérimentations du programme TNE par académie")
            ).to_have_count(0)
            expect(carte.locator('[data-departement="93"] text').last).to_have_text("2")
            expect(carte.locator('[data-departement="78"] text').last).to_have_text("2")
            expect(carte.locator('[data-departement="92"] text').last).to_have_text("1")
            table = page.get_by_role("table", name="Expérimentations et élèves par département")
            expect(table.locator("tbody tr")).to_have_count(4)
            expect(table.get_by_role("row", name="Seine-Saint-Denis (93)")).to_contain_text("2")
            expect(table.get_by_role("row", name="Hauts-de-Seine (92)")).to_contain_text("1")
            assert_accessible(page)
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "programme-tne-departements.png"),
                            full_page=True)

            # The verdict per arm and, in English, the same page with the same figures.
            portfolio = page.get_by_role("table", name="Expérimentations du programme")
            expect(portfolio.get_by_role("columnheader",
                                         name="Verdict par bras (test du protocole)")
                   ).to_be_visible()
            page.get_by_role("link", name="English").click()
            expect(page.locator("html")).to_have_attribute("lang", "en")
            expect(page.get_by_role("heading", level=1)).to_have_text("Programme TNE")
            english = page.get_by_role("table", name="Experiments of the programme")
            tne = [t for t in TRIALS if t.programme == "TNE"]
            expect(english.locator("tbody tr")).to_have_count(len(tne))
            expect(english.get_by_role("columnheader", name="Verdict per arm (the protocol's test)")
                   ).to_be_visible()
            synthesis = page.locator("section.synthese").filter(
                has=page.get_by_role("heading", name="Programme “TNE”"))
            expect(synthesis).to_contain_text("Rests on 4 study(ies)")
            expect(synthesis).to_contain_text("Pooled effect: g = ")
            expect(synthesis.locator("figure.forest svg[role=img]")).to_be_visible()
            page.get_by_role("link", name="Map by académie").click()
            expect(page.get_by_role(
                "img", name="Map of the experiments of programme TNE by académie")).to_be_visible()
            expect(page.get_by_role("table", name="Experiments and pupils per académie")
                   .get_by_role("row", name="Créteil")).to_contain_text("3")
            assert_accessible(page)
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "programme-tne-en.png"), full_page=True)
            context.close()
        finally:
            browser.close()
