"""Checks of a written impact report against its results JSON (a report "lint").

Tests of any path that writes a report (``preuve analyze``, the demo, the analysis
workers) call :func:`check_report` on the HTML file and the JSON next to it:

* every section is present (summary, usage, effect, credibility, methods);
* the effect in each summary sentence (one per treated arm) is the JSON's primary ITT
  estimate of that arm (to the one decimal the sentence shows) and its months of progress;
* the text has no word of the other language (a list of common words, below);
* the page loads nothing: figures are inline SVG, no script, no URL.

Each check returns a problem in words; an empty list means the report passed.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from html.parser import HTMLParser
from typing import Any, Final

from analysis.results import AnalysisResults

__all__ = ["ENGLISH_WORDS", "FRENCH_WORDS", "check_report", "visible_text"]

SECTIONS: Final[tuple[str, ...]] = ("synthese", "usage", "effet", "credibilite", "methodes")
# Common words of each language that the other language's report must not contain
# (data such as a protocol's French title is marked lang="fr" and skipped).
ENGLISH_WORDS: Final[tuple[str, ...]] = (
    "the", "and", "of", "with", "pupils", "learners", "baseline", "cluster", "robust", "not",
    "suppressed", "missing", "weeks", "usual", "control", "confidence", "estimate",
    "analysis", "report", "measure", "group", "flow", "summary", "unit", "none", "yes",
    "level")
FRENCH_WORDS: Final[tuple[str, ...]] = (
    "les", "des", "élèves", "témoin", "témoins", "est", "progrès", "intervalle", "mois", "et",
    "une", "pour", "avec", "sur", "aucun", "classe", "écart", "coût", "groupe", "seuil",
    "semaine", "synthèse", "crédibilité", "non", "oui", "ajustée")
PROPER_NAMES: Final[tuple[str, ...]] = (
    "Education Endowment Foundation", "What Works Clearinghouse", "Hedges", "CONSORT",
    "CACE", "SHA-256", "Banque des Territoires",
    # Titles of the documents the evidence rating and the methods cite.
    "Classifying the security of EEF findings", "Teaching and Learning Toolkit",
    "Standards Handbook")


class _Text(HTMLParser):
    def __init__(self, skip_lang: str | None) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_lang = skip_lang
        self.parts: list[str] = []
        self.skipping = 0  # depth inside an element of the skipped language
        self.depth_stack: list[bool] = []
        self.in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "style":
            self.in_style = True
        void = tag in ("meta", "br", "link", "img", "input", "hr", "path", "use", "rect",
                       "line", "circle", "polyline", "polygon", "stop", "ellipse")
        skip = self.skip_lang is not None and a.get("lang") == self.skip_lang
        if not self.skipping and not skip:
            for key in ("aria-label", "alt"):
                if a.get(key):
                    self.parts.append(str(a[key]))
        if not void:
            self.depth_stack.append(skip)
            self.skipping += int(skip)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self.in_style = False
        if self.depth_stack:
            self.skipping -= int(self.depth_stack.pop())

    def handle_data(self, data: str) -> None:
        if not self.skipping and not self.in_style:
            self.parts.append(data)


def visible_text(page: str, skip_lang: str | None = None) -> str:
    """Text a reader sees or hears (with ``aria-label``/``alt``), spaces collapsed.

    Elements marked ``lang=skip_lang`` are left out. Narrow no-break spaces are kept.
    """
    parser = _Text(skip_lang)
    parser.feed(page)
    return re.sub(r"[ \t\r\n]+", " ", " ".join(parser.parts)).strip()


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-").replace("\u202f", "").replace(",", "."))


def check_report(page: str, results: AnalysisResults | Mapping[str, Any], lang: str = "fr"
                 ) -> list[str]:
    """Problems of a report ``page`` (HTML) against its ``results`` (or results JSON object).

    Examples
    --------
    >>> check_report("<html></html>", {"effects": []})[0]
    'section synthese missing'
    """
    problems = [f"section {s} missing" for s in SECTIONS if f'<section id="{s}"' not in page]
    if f'<html lang="{lang}">' not in page:
        problems.append(f'<html lang="{lang}"> missing')
    if not isinstance(results, AnalysisResults):
        results = AnalysisResults.from_json(results)
    primaries = results.effects_where(role="primary", estimand="ITT", whole_sample=True)
    arms = list(results.design.get("arms", []))
    primaries.sort(key=lambda e: arms.index(e.arm) if e.arm in arms else len(arms))
    sentences = [html.unescape(m) for m in
                 re.findall(r'data-role="summary-sentence">([^<]+)<', page)]
    if not sentences:
        problems.append("summary sentence missing")
    elif len(primaries) > 1 and len(sentences) != len(primaries):
        problems.append(f"{len(sentences)} summary sentences for {len(primaries)} treated arms")
    for primary, sentence in zip(primaries, sentences, strict=False):
        if not primary.estimable:
            continue
        pattern = (r"progressé de ([\d\u202f,]+) points? de (plus|moins)" if lang == "fr"
                   else r"progressed ([\d,.]+) points? (more|less)")
        found = re.search(pattern, sentence)
        if found is None:
            problems.append(f"no effect in the summary sentence: {sentence}")
            continue
        sign = 1 if found.group(2) in ("plus", "more") else -1
        shown = sign * _number(found.group(1) if lang == "fr"
                               else found.group(1).replace(",", ""))
        if abs(shown - primary.estimate) > 0.05 + 1e-9:
            problems.append(f"summary says {shown}, the JSON {primary.estimate}")
        months = primary.months_progress
        if months and str(abs(months)) not in re.findall(r"\d+", sentence.split(",")[-1]):
            problems.append(f"summary's months differ from the JSON's {months}")
    text = visible_text(page, skip_lang="fr" if lang == "en" else "en")
    for name in PROPER_NAMES:
        text = text.replace(name, " ")
    words = {w.lower() for w in re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)?", text)}
    other = ENGLISH_WORDS if lang == "fr" else FRENCH_WORDS
    leftovers = sorted(w for w in other if w in words)
    if leftovers:
        problems.append(f"words of the other language: {leftovers}")
    for forbidden in ("<script", "<img", "<link", "src=", "http:", "https:", "@import"):
        if forbidden in page:
            problems.append(f"the page loads something: {forbidden!r}")
    if "<svg" not in page:
        problems.append("no inline SVG figure")
    return problems
