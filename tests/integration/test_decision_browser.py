"""The post-experiment decision in a real browser (issue 19): Debian's Chromium driven by
Playwright. An officer signs in, opens the experiment's « Décision » page from the
experiment page (the rule evaluated on the final analysis, the research team's
decision), acknowledges it with the form's button, and reads it acknowledged, then in
English; axe-core checks WCAG 2.1 A and AA on each page. Screenshot in
``test-artifacts/decision.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine

from experiments.access import issue_token
from experiments.closing import latest_decision, record_decision
from experiments.database import dispose_engines, registry_engine
from experiments.portal.app import create_portal
from experiments.protocol.language import parse_protocol
from experiments.registry import register_protocol, transition_experiment
from experiments.settings import Settings
from tests.integration.test_portal_browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    assert_accessible,
)
from tests.support.axe import axe_violations
from tests.support.decision import record_final_run, with_decision
from tests.support.portal import NOW, served

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXPERIMENT = "fluence-cp-2027"


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[tuple[str, str, Engine]]:
    settings = Settings(state_dir=tmp_path / "state", pseudonym_key="decision-browser" * 2)
    registry = registry_engine(settings)
    text = with_decision((ROOT / "protocols" / f"{EXPERIMENT}.yaml").read_text(encoding="utf-8"))
    register_protocol(registry, parse_protocol(text), text)
    for state in ("enrolling", "running", "analysing"):
        transition_experiment(registry, EXPERIMENT, state)  # type: ignore[arg-type]
    record_final_run(registry, EXPERIMENT, tmp_path, effect=0.4, seed=21)
    record_decision(registry, EXPERIMENT, "generaliser",
                    "Effet établi et usage suffisant : extension à l'académie.",
                    "researcher:*:equipe")
    officer = issue_token(registry, "officer", "*", "bdt")
    try:
        with served(create_portal(settings, registry=registry, clock=lambda: NOW)) as url:
            yield url, officer, registry
    finally:
        dispose_engines()


def test_an_officer_acknowledges_the_decision(portal_url: tuple[str, str, Engine]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, token, registry = portal_url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            # bypass_csp: the portal forbids every script; axe-core is injected by the test.
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900},
                                          bypass_csp=True)
            page = context.new_page()
            page.goto(f"{base}/connexion")
            page.get_by_label("Jeton d'accès").fill(token)
            page.get_by_role("button", name="Connexion").click()
            page.goto(f"{base}/experiences/{EXPERIMENT}")
            page.get_by_role("link", name="Décision après l'expérimentation").click()
            expect(page).to_have_url(f"{base}/experiences/{EXPERIMENT}/decision")
            expect(page.get_by_role("heading", level=1)).to_contain_text(
                "Décision après l'expérimentation")
            expect(page.locator("main")).to_contain_text("Critères chiffrés de la règle")
            expect(page.locator("main")).to_contain_text("généraliser")
            expect(page.locator("main")).to_contain_text("pas encore prise en compte")
            assert_accessible(page)
            assert axe_violations(page) == []

            page.get_by_role("button", name="Je prends acte de cette décision").click()
            expect(page).to_have_url(f"{base}/experiences/{EXPERIMENT}/decision")
            expect(page.get_by_role("button", name="Je prends acte de cette décision")
                   ).to_have_count(0)
            expect(page.locator("main")).not_to_contain_text("pas encore prise en compte")
            expect(page.locator("main")).to_contain_text("officer:*:")
            assert_accessible(page)
            assert axe_violations(page) == []
            page.screenshot(path=str(ARTIFACTS / "decision.png"), full_page=True)

            page.goto(f"{base}/experiences/{EXPERIMENT}/decision?lang=en")
            expect(page.get_by_role("heading", level=1)).to_contain_text(
                "Decision after the experiment")
            expect(page.locator("main")).to_contain_text("scale up (généraliser)")
            assert axe_violations(page) == []
        finally:
            browser.close()
    decision = latest_decision(registry, EXPERIMENT)
    assert decision is not None and decision.acknowledged_by is not None
