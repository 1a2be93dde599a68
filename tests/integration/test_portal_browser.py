"""The portal in a real browser: Debian's Chromium driven by Playwright.

The portal runs under uvicorn in a thread on a free 127.0.0.1 port, over a registry
with one experiment whose runs and reports were recorded by the workers' code path
(:func:`tests.support.portal.build_world`). An officer signs in with the keyboard, goes
from the portfolio to the final report, reads its summary sentence and figures, and
cannot reach row-level data. Screenshots land in ``test-artifacts/portal-*.png``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.settings import Settings
from tests.support.portal import EXPERIMENT, NOW, PortalWorld, build_world, served

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
# The machine's network is closed: without these flags Chromium waits on its own
# background services (updates, sync, QUIC probes) before it serves pages.
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

# Checks in the spirit of RGAA (criteria 3.2 contrast, 8.3 language, 9.1 headings, 11.1
# labels, 5.4 table captions), run in the page. Contrast follows WCAG 2.1's relative
# luminance formula: 4.5:1 for text, 3:1 for large text (24 px, or 18.66 px bold).
PAGE_PROBLEMS = """() => {
  const problems = [];
  const lum = (rgb) => {
    const [r, g, b] = rgb.map((v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/);
    if (!m) return null; const p = m[1].split(",").map(Number);
    return {rgb: p.slice(0, 3), alpha: p.length > 3 ? p[3] : 1}; };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor);
      if (c && c.alpha > 0) return c.rgb;
    }
    return [255, 255, 255];
  };
  if (!document.documentElement.lang) problems.push("no lang on <html>");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  if (!document.title.trim()) problems.push("no title");
  for (const input of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!input.labels.length && !input.getAttribute("aria-label")) {
      problems.push("unlabelled " + input.name);
    }
  }
  for (const table of document.querySelectorAll("table")) {
    if (!table.querySelector("caption")) problems.push("table without caption");
  }
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const el = node.parentElement;
    if (!node.textContent.trim() || !el.offsetParent && el.tagName !== "BODY") continue;
    const style = getComputedStyle(el);
    if (el.closest(".visuellement-cache, .evitement")) continue;
    const fg = parse(style.color).rgb, bg = background(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    if (ratio < (large ? 3 : 4.5)) {
      problems.push(`contrast ${ratio.toFixed(2)}: ${node.textContent.trim().slice(0, 40)}`);
    }
  }
  return problems;
}"""


def assert_accessible(page: Any) -> None:
    """No problem found by :data:`PAGE_PROBLEMS`, and the focus is visible."""
    assert page.evaluate(PAGE_PROBLEMS) == [], page.url
    focused = page.locator(":focus")
    if focused.count():
        outline = focused.evaluate("e => getComputedStyle(e).outlineStyle + ' ' + "
                                   "getComputedStyle(e).outlineWidth")
        assert not outline.startswith("none") and float(outline.split()[1][:-2]) >= 2, outline


@pytest.fixture
def portal_url(tmp_path: Path) -> Iterator[tuple[str, PortalWorld]]:
    """The portal served on a free port in a thread, stopped at the end of the test."""
    settings = Settings(state_dir=tmp_path / "state", pseudonym_key="browser-test" * 5)
    world = build_world(settings)
    try:
        with served(create_portal(settings, registry=world.registry, clock=lambda: NOW)) as url:
            yield url, world
    finally:
        dispose_engines()


def test_an_officer_reads_a_report_and_cannot_reach_row_level_data(
        portal_url: tuple[str, PortalWorld]) -> None:
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "Debian's chromium is missing: run tools/install-system-deps.sh"
    base, world = portal_url
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="fr-FR", viewport={"width": 1280, "height": 900})
            page = context.new_page()

            # Without a session, the portfolio sends to the sign-in form.
            page.goto(f"{base}/experiences")
            expect(page).to_have_url(f"{base}/connexion?suite=%2Fexperiences")
            expect(page.locator("html")).to_have_attribute("lang", "fr")

            # Keyboard only: the first Tab reaches the skip link; the token field has a label.
            page.keyboard.press("Tab")
            expect(page.get_by_role("link", name="Aller au contenu")).to_be_focused()
            assert_accessible(page)
            page.screenshot(path=str(ARTIFACTS / "portal-connexion.png"))
            token_field = page.get_by_label("Jeton d'accès")
            token_field.focus()
            page.keyboard.type(world.tokens["officer"])
            page.keyboard.press("Enter")

            # The portfolio: status, territories, resource, latest verdict, next analysis.
            expect(page).to_have_url(f"{base}/experiences")
            expect(page.get_by_role("heading", level=1)).to_have_text(
                "Portefeuille d'expérimentations")
            row = page.get_by_role("row").filter(has_text="fluence au CP")
            expect(row).to_contain_text("en cours")
            expect(row).to_contain_text("Versailles, Créteil")
            expect(row).to_contain_text("Lectio")
            expect(row).to_contain_text("mois de progrès")
            verdict_text = row.inner_text()
            assert_accessible(page)
            # Keyboard: Tab reaches the experiment's link, and Enter follows it below.
            link = row.get_by_role("link")
            for _ in range(12):
                page.keyboard.press("Tab")
                if link.evaluate("e => e === document.activeElement"):
                    break
            expect(link).to_be_focused()
            assert_accessible(page)
            page.screenshot(path=str(ARTIFACTS / "portal-portfolio.png"), full_page=True)

            # To the experiment, then to its latest report.
            page.keyboard.press("Enter")
            expect(page).to_have_url(f"{base}/experiences/{EXPERIMENT}")
            assert_accessible(page)
            history = page.get_by_role("table")
            expect(history.get_by_role("row")).to_have_count(1 + len(world.runs))
            page.screenshot(path=str(ARTIFACTS / "portal-experiment.png"), full_page=True)
            history.get_by_role("link", name="Lire le rapport").first.click()
            final = next(r for r in world.runs if r.analysis == "final")
            expect(page).to_have_url(f"{base}/experiences/{EXPERIMENT}/rapports/{final.run_id}")

            # The report: its summary sentence and its figures (inline SVG).
            sentence = page.locator('[data-role="summary-sentence"]')
            expect(sentence).to_contain_text("ont progressé")
            # The portfolio's verdict is the report's own summary sentence.
            assert sentence.inner_text().strip() in verdict_text.replace("\n", " ")
            assert page.locator("svg").count() >= 1
            expect(page.locator("svg").first).to_be_visible()
            page.screenshot(path=str(ARTIFACTS / "portal-report.png"), full_page=True)

            # Row-level data stays out of reach of the officer's session.
            usage = page.goto(f"{base}/usages/{EXPERIMENT}")
            assert usage is not None and usage.status == 403
            expect(page.get_by_role("heading", level=1)).to_have_text("Accès refusé")
            assert_accessible(page)
            page.screenshot(path=str(ARTIFACTS / "portal-forbidden.png"), full_page=True)
            for url in (f"/api/usages/{EXPERIMENT}", "/usages"):
                assert context.request.get(base + url).status == 403, url
            aggregates = context.request.get(f"{base}/api/experiences")
            assert aggregates.status == 200
            text = aggregates.text()
            hidden = [*world.learner_keys, *world.class_ids["versailles"],
                      *world.class_ids["creteil"]]
            assert not [s for s in hidden if s in text]

            # Sign out; an académie then reads the weekly usage of its own classes only.
            page.goto(f"{base}/experiences")
            page.get_by_role("button", name="Se déconnecter").click()
            expect(page).to_have_url(f"{base}/connexion")
            page.get_by_label("Jeton d'accès").fill(world.tokens["academie_a"])
            page.get_by_role("button", name="Connexion").click()
            expect(page).to_have_url(f"{base}/usages")
            page.get_by_role("link", name="fluence au CP").click()
            table = page.get_by_role("table").first  # then the three levels of use
            for class_id in world.class_ids["versailles"]:
                expect(table).to_contain_text(class_id)
            small = table.get_by_role("row").filter(has_text=world.small_class)
            expect(small).to_contain_text("< 10")
            levels = page.locator('table[data-role="usage-levels"]')
            expect(levels).to_contain_text("Licence activée")
            expect(levels).to_contain_text("(témoin)")
            assert_accessible(page)
            assert not [c for c in world.class_ids["creteil"] if c in page.content()]
            page.screenshot(path=str(ARTIFACTS / "portal-academie.png"), full_page=True)
            context.close()
        finally:
            browser.close()
