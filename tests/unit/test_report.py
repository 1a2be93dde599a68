"""The impact report on a simulated trial: sections, the summary sentence against the
results JSON, the evidence rating rule, French/English without leftovers, small cells,
no class or teacher, inline SVG, accessibility, PDF.

The trials come from :func:`analysis.simulate.simulate_trial` (seeded), analysed by
:func:`analysis.run.run_analysis` with the core example protocol (docs/architecture.md).
"""

from __future__ import annotations

import csv
import html
import math
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from analysis.inputs import plan_from_protocol, read_outcomes, read_units, read_usage
from analysis.report.context import Amendment, ReportContext, usage_context_from_files
from analysis.report.document import (
    build_view,
    render_report,
    summary_sentence,
    write_html,
    write_report,
    write_report_pdf,
)
from analysis.report.rating import (
    attrition_padlocks,
    mdes_from_interval,
    mdes_padlocks,
    rate_evidence,
)
from analysis.results import AnalysisResults, to_json_dict
from analysis.run import run_analysis
from analysis.simulate import simulate_trial
from experiments.protocol.language import Budget, BudgetItem, Protocol, load_protocol

PROTOCOL = Path(__file__).resolve().parents[2] / "protocols" / "fluence-cp-2027.yaml"
TEACHER = "Mme Zéphirine Dupontel"


@dataclass(frozen=True)
class Trial:
    directory: Path
    results: AnalysisResults
    data: dict[str, Any]
    protocol: Protocol
    context: ReportContext


def _trial(directory: Path, **simulation: Any) -> Trial:
    files = simulate_trial(directory, **simulation)
    # A teacher's name in the units file: the report must never show it.
    rows = list(csv.DictReader(files.units.open(encoding="utf-8")))
    with files.units.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, [*rows[0], "teacher"])
        writer.writeheader()
        writer.writerows({**row, "teacher": TEACHER} for row in rows)
    protocol = load_protocol(PROTOCOL)
    protocol = protocol.model_copy(update={"budget": Budget(
        items=[BudgetItem(label="Licences", amount=24000.0, funder="Banque des Territoires"),
               BudgetItem(label="Formation", amount=8000.0, funder="Académies")],
        pupils=800)})
    plan = plan_from_protocol(protocol)
    units = read_units(files.units, plan)
    outcomes = read_outcomes(files.outcomes, units)
    assert files.usage is not None
    usage = read_usage(files.usage, outcomes, units)
    results = run_analysis(plan, units, outcomes, usage)
    context = usage_context_from_files(files.units, files.usage, files.outcomes, arms=plan.arms)
    context = ReportContext(
        protocol_version=2, protocol_sha256=results.protocol_sha256,
        amendments=(Amendment(2, "2027-10-02", "fenêtre d'inscription prolongée",
                              ("enrollment.closes",)),),
        watermark={"stored_events": 123456, "latest_event_at": "2028-06-16T17:02:11+00:00"},
        funnel=context.funnel, weekly_usage=context.weekly_usage)
    return Trial(directory, results, to_json_dict(results), protocol, context)


@pytest.fixture(scope="module")
def trial(tmp_path_factory: pytest.TempPathFactory) -> Trial:
    return _trial(tmp_path_factory.mktemp("trial"), n_units=40, pupils_per_unit=20,
                  effect=0.3, usage_weeks=6)


@pytest.fixture(scope="module")
def small_trial(tmp_path_factory: pytest.TempPathFactory) -> Trial:
    """Few pupils per class: subgroup and usage cells fall under 10."""
    return _trial(tmp_path_factory.mktemp("small"), n_units=8, pupils_per_unit=6,
                  usage_weeks=3, seed=7)


@pytest.fixture(scope="module")
def french(trial: Trial) -> str:
    return render_report(trial.results, protocol=trial.protocol, context=trial.context)


@pytest.fixture(scope="module")
def english(trial: Trial) -> str:
    return render_report(trial.results, protocol=trial.protocol, context=trial.context,
                         lang="en")


class _Page(HTMLParser):
    """Visible text (and text alternatives), headings, tables, SVG titles of a page."""

    def __init__(self, skip_lang: str | None = None) -> None:
        super().__init__(convert_charrefs=True)
        self.skip_lang = skip_lang
        self.text: list[str] = []
        self.headings: list[int] = []
        self.stack: list[tuple[str, bool]] = []
        self.tables = 0
        self.captions = 0
        self.svgs: list[str] = []
        self._in_svg_title = False
        self.html_lang: str | None = None

    def _skipping(self) -> bool:
        return any(skip for _, skip in self.stack)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "html":
            self.html_lang = a.get("lang")
        void = tag in ("meta", "br", "link", "img", "input", "hr") or tag in (
            "path", "use", "rect", "line", "circle", "polyline", "polygon", "stop", "ellipse")
        skip = self.skip_lang is not None and a.get("lang") == self.skip_lang
        if re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        if tag == "table":
            self.tables += 1
        if tag == "caption":
            self.captions += 1
        if tag == "svg":
            self.svgs.append("")
        if tag == "title" and self.stack and any(t == "svg" for t, _ in self.stack):
            self._in_svg_title = True
        if not skip and not self._skipping():
            for key in ("aria-label", "alt"):
                if a.get(key):
                    self.text.append(str(a[key]))
        if not void:
            self.stack.append((tag, skip))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_svg_title = False
        while self.stack:
            top, _ = self.stack.pop()
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._in_svg_title and self.svgs:
            self.svgs[-1] += data
        if self.stack and self.stack[-1][0] == "style":
            return
        if not self._skipping():
            self.text.append(data)


def _parse(page: str, skip_lang: str | None = None) -> _Page:
    parser = _Page(skip_lang)
    parser.feed(page)
    return parser


def _visible(page: str, skip_lang: str | None = None) -> str:
    # Not str.split(): it would turn the narrow no-break spaces of French numbers into spaces.
    return re.sub(r"[ \t\r\n]+", " ", " ".join(_parse(page, skip_lang).text)).strip()


def _number(text: str) -> float:
    return float(text.replace("\u2212", "-").replace("\u202f", "").replace(",", "."))


# --- sections ------------------------------------------------------------------------

def test_every_section_is_present(french: str) -> None:
    for anchor in ("synthese", "usage", "effet", "credibilite", "methodes"):
        assert f'<section id="{anchor}"' in french, anchor
    text = _visible(french)
    for words in ("La question", "La réponse", "Quel degré de certitude ?", "Coût",
                  "Du déploiement à l'usage réel", "Usage actif semaine par semaine",
                  "Ce que les données ne voient pas", "Effets (intention de traiter)",
                  "Flux des classes et des élèves (CONSORT)", "Équilibre des groupes au départ",
                  "Élèves et classes perdus (attrition)", "Écarts au protocole et avenants",
                  "Annexe méthodologique", "Note de solidité Preuve, inspirée de l'EEF",
                  "méthode de Holm", "Éducation prioritaire : REP+",
                  "Avenant v2 du 2027-10-02 : fenêtre d'inscription prolongée",
                  "Empreinte SHA-256 du protocole", "123456", "statsmodels"):
        assert words in text, words


def test_summary_sentence_equals_the_results_json(trial: Trial, french: str) -> None:
    (primary,) = [e for e in trial.data["effects"]
                  if e["role"] == "primary" and e["estimand"] == "ITT"]
    match = re.search(r'data-role="summary-sentence">([^<]+)<', french)
    assert match, "summary sentence not found"
    sentence = html.unescape(match.group(1))
    found = re.search(r"progressé de ([\d\u202f,]+) points? de (plus|moins) en fluence",
                      sentence)
    assert found, sentence
    value = _number(found.group(1)) * (1 if found.group(2) == "plus" else -1)
    # Tolerance: the sentence rounds to one decimal.
    assert value == pytest.approx(primary["estimate"], abs=0.05 + 1e-9), sentence
    months = re.search(r"soit environ (\d+) mois de progrès", sentence)
    assert months and int(months.group(1)) == abs(primary["months_progress"]), sentence
    assert sentence.startswith("Les élèves des classes ayant utilisé Lectio ont progressé")
    # The interval in words is the JSON's too.
    interval = re.search(r"de ([\u2212\d,]+) à ([\u2212\d,]+) points", _visible(french))
    assert interval
    assert _number(interval.group(1)) == pytest.approx(primary["ci_low"], abs=0.05)
    assert _number(interval.group(2)) == pytest.approx(primary["ci_high"], abs=0.05)


def test_summary_sentence_example_of_the_brief() -> None:
    effect = {"estimate": 4.7, "months_progress": 3}
    assert summary_sentence(effect, resource="Lectio", outcome="fluence", unit="class") == (
        "Les élèves des classes ayant utilisé Lectio ont progressé de 4,7 points de plus en "
        "fluence que ceux des classes témoins, soit environ 3 mois de progrès "
        "supplémentaires.")
    assert summary_sentence({"estimate": -1.04, "months_progress": -1}, resource="Lectio",
                            outcome="fluence", unit="school") == (
        "Les élèves des écoles ayant utilisé Lectio ont progressé de 1,0 point de moins en "
        "fluence que ceux des écoles témoins, soit environ 1 mois de progrès en moins.")
    assert summary_sentence({"estimate": None, "reason": "monitoring analysis: …"},
                            resource="Lectio", outcome="fluence", unit="class").startswith(
        "L'effet n'a pas pu être estimé")
    assert summary_sentence(effect, resource="Lectio", outcome="fluency", unit="class",
                            lang="en") == (
        "Pupils in classes that used Lectio progressed 4.7 points more in fluency than those "
        "in control classes, about 3 months of additional progress.")


def test_cost_per_pupil_and_cost_effectiveness(trial: Trial, french: str) -> None:
    text = _visible(french)
    assert "Coût par élève bénéficiaire : 40 € (32\u202f000 € pour 800 élèves)." in text
    assert "Banque des Territoires 75\u202f%" in text and "Académies 25\u202f%" in text
    (primary,) = [e for e in trial.data["effects"]
                  if e["role"] == "primary" and e["estimand"] == "ITT"]
    if primary["ci_low"] > 0 and primary["months_progress"] > 0:
        value = round(40 / primary["months_progress"])
        assert f"Coût par mois de progrès gagné par élève : {value} €" in text
    else:
        assert "n'est pas calculé : l'effet n'est pas établi" in text


# --- evidence rating -------------------------------------------------------------------

def test_rating_caps_follow_the_eef_tables() -> None:
    # EEF 2019, table 1: MDES ≤ 0.20 → 5, 0.21-0.29 → 4 … ≥ 0.60 → 0 (2 decimals);
    # attrition 0-10 % → 5, 11-20 % → 4 … > 50 % → 0 (whole percents).
    assert [mdes_padlocks(x) for x in (0.1, 0.2, 0.204, 0.205, 0.29, 0.3, 0.39, 0.4, 0.49,
                                       0.5, 0.59, 0.6, math.nan)] == \
        [5, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0]
    assert [attrition_padlocks(x) for x in (0.0, 0.10, 0.104, 0.11, 0.2, 0.3, 0.4, 0.5,
                                            0.51)] == [5, 5, 5, 4, 4, 3, 2, 1, 0]
    # Bloom (1995): with large df the MDES multiplier is 1.96 + 0.84 = 2.80 standard errors.
    assert mdes_from_interval(-0.196, 0.196, 1e9) == pytest.approx(0.280, abs=1e-3)
    assert math.isnan(mdes_from_interval(math.nan, 0.1, 30))


def _results(*, mdes: float | None = 0.15, attrition: float = 0.05, wwc: str = "low",
             balance: str = "satisfied", adjusted: bool = True, mismatch: bool = False,
             units: int = 40, estimate: float | None = 2.0, se_g: float = 0.5
             ) -> dict[str, Any]:
    """A results JSON reduced to what the rating reads. ``se_g`` is the trial's achieved
    precision (large by default): the rating must not read it (issue 15)."""
    t = 1.96  # df large
    return {
        "design": {"alpha": 0.05, "unit": "class", "attrition_boundary": "cautious",
                   "mdes_at_randomisation": [{"contrast": "a vs b", "mdes": mdes}]},
        "effects": [{"role": "primary", "estimand": "ITT", "outcome": "y", "contrast": "a vs b",
                     "estimate": estimate, "hedges_g_ci_low": 0.2 - t * se_g,
                     "hedges_g_ci_high": 0.2 + t * se_g, "df": 1e9,
                     "n_units": {"a": units // 2, "b": units - units // 2}}],
        "checks": {
            "attrition": [
                {"outcome": "y", "contrast": "a vs b", "level": "unit", "overall": 0.0,
                 "rating": "low"},
                {"outcome": "y", "contrast": "a vs b", "level": "learner", "overall": 0.01,
                 "rating": wwc},
                {"outcome": "y", "contrast": "a vs b", "level": "all_learners",
                 "overall": attrition, "rating": "high"}],  # not a WWC check: ignored
            "baseline_equivalence": [{"outcome": "y", "contrast": "a vs b",
                                      "equivalence": balance, "adjusted_in_model": adjusted}],
            "sample_ratio": {"mismatch": mismatch},
        },
    }


def test_rating_steps() -> None:
    # MDES at randomisation 0.15 → 5; 0.28 → 4; 0.84 → 0 (EEF 2019, table 1).
    assert rate_evidence(_results()).padlocks == 5
    assert rate_evidence(_results(mdes=0.28)).padlocks == 4
    assert rate_evidence(_results(attrition=0.25)).padlocks == 3
    assert rate_evidence(_results(mdes=0.28, attrition=0.35)).padlocks == 2  # lower cap
    assert rate_evidence(_results(wwc="high")).padlocks == 4
    assert rate_evidence(_results(balance="not satisfied", adjusted=False)).padlocks == 3
    assert rate_evidence(_results(balance="adjustment required")).padlocks == 5  # adjusted
    assert rate_evidence(_results(balance="adjustment required", adjusted=False)).padlocks == 4
    assert rate_evidence(_results(mismatch=True)).padlocks == 4
    assert rate_evidence(_results(units=12)).padlocks == 4
    assert rate_evidence(_results(estimate=None)).padlocks == 0


def test_rating_power_is_the_mdes_at_randomisation_not_the_achieved_se() -> None:
    # Same design MDES, very different achieved precision: same rating.
    assert rate_evidence(_results(se_g=0.01)).padlocks == rate_evidence(
        _results(se_g=1.0)).padlocks == 5
    step = rate_evidence(_results(mdes=0.33)).steps[1]
    assert (step.key, step.padlocks, step.value, step.source) == ("cap_power", 3, 0.33, "eef")
    # No design MDES in the JSON (older results): unknown → 0 padlocks, not the achieved SE.
    assert rate_evidence(_results(mdes=None)).padlocks == 0


def test_rating_attrition_counts_units_lost_entirely() -> None:
    # Issue 15: 9 of 60 classes removed, 14 % of pupils: the cap reads the all_learners row
    # (every randomised pupil), not the pupils of the classes that remain.
    data = _results(attrition=0.14)
    data["checks"]["attrition"][1]["overall"] = 0.02  # within the remaining classes
    rating = rate_evidence(data)
    assert rating.padlocks == 4
    assert rating.steps[2].key == "cap_attrition" and rating.steps[2].value == 0.14


def test_rating_no_imbalance_deduction_on_adjusted_baseline_when_attrition_is_low() -> None:
    # WWC: with low attrition, baseline equivalence is not required; an imbalance over
    # 0.25 SD on a characteristic the model adjusts for costs nothing.
    assert rate_evidence(_results(balance="not satisfied", adjusted=True)).padlocks == 5
    # With high attrition it costs 2 (WWC: equivalence not established) plus the 1 of the
    # attrition itself.
    assert rate_evidence(_results(balance="not satisfied", adjusted=True,
                                  wwc="high")).padlocks == 2
    # Not adjusted for: it costs 2 even with low attrition.
    assert rate_evidence(_results(balance="not satisfied", adjusted=False)).padlocks == 3


def test_rating_extremes_and_sources() -> None:
    # Best: caps at 5, no deduction → 5; the steps name their sources.
    best = rate_evidence(_results())
    assert best.padlocks == 5
    assert [(s.key, s.source) for s in best.steps] == [
        ("design_rct", "eef"), ("cap_power", "eef"), ("cap_attrition", "eef")]
    # Every deduction at once at the best caps: 5 - (1 + 2 + 1 + 1) = 0.
    every = rate_evidence(_results(wwc="high", balance="not satisfied", mismatch=True,
                                   units=6))
    assert every.padlocks == 0
    assert [(s.key, s.padlocks, s.source) for s in every.steps[3:]] == [
        ("minus_differential_attrition", -1, "wwc"), ("minus_imbalance_large", -2, "wwc"),
        ("minus_sample_ratio", -1, "preuve"), ("minus_few_units", -1, "preuve")]
    # One deduction fewer leaves 1: the deductions add up (they do not take the worst).
    assert rate_evidence(_results(wwc="high", balance="not satisfied",
                                  mismatch=True)).padlocks == 1
    # Worst caps and every deduction: floored at 0, never negative.
    worst = rate_evidence(_results(mdes=0.84, attrition=0.6, wwc="high",
                                   balance="not satisfied", mismatch=True, units=6))
    assert worst.padlocks == 0
    assert [s.key for s in worst.steps] == [
        "design_rct", "cap_power", "cap_attrition", "minus_differential_attrition",
        "minus_imbalance_large", "minus_sample_ratio", "minus_few_units"]
    # The start is the LOWER cap, not their sum or mean: 4 (MDES) and 2 (attrition) → 2.
    assert rate_evidence(_results(mdes=0.25, attrition=0.35)).padlocks == 2


def test_report_shows_the_rating_of_its_json(trial: Trial, french: str) -> None:
    padlocks = rate_evidence(trial.data).padlocks
    assert f"Note de solidité Preuve, inspirée de l'EEF : {padlocks} sur 5" in _visible(french)


# --- languages ---------------------------------------------------------------------------

ENGLISH = ["the", "and", "of", "with", "pupils", "learners", "effect size", "baseline",
           "cluster", "robust", "not", "suppressed", "missing", "weeks", "usual", "control",
           "confidence", "estimate", "analysis", "report", "measure", "attrition rate",
           "group", "flow", "summary", "cost per", "unit", "none", "yes", "level"]
FRENCH = ["les", "des", "élèves", "témoin", "témoins", "est", "progrès", "intervalle", "mois",
          "et", "une", "pour", "avec", "sur", "aucun", "classe", "écart", "coût", "groupe",
          "seuil", "semaine", "nombre", "synthèse", "crédibilité", "non", "oui", "ajustée"]
# Proper names in English that a French text rightly keeps.
PROPER = ["Education Endowment Foundation", "What Works Clearinghouse", "Hedges",
          "CONSORT", "CACE", "SHA-256",
          # Titles of the documents the rating and the methods cite.
          "Classifying the security of EEF findings", "Teaching and Learning Toolkit",
          "Standards Handbook"]


def _words(text: str) -> set[str]:
    return {w.lower() for w in re.findall(r"[^\W\d_]+(?:['’][^\W\d_]+)?", text)}


def test_french_report_has_no_english_leftovers(french: str) -> None:
    text = _visible(french)
    for name in PROPER:
        text = text.replace(name, " ")
    words = _words(text)
    found = [w for w in ENGLISH if (w in words if " " not in w else w in text.lower())]
    assert not found, found
    assert '<html lang="fr">' in french


def test_english_report_has_no_french_leftovers(trial: Trial, english: str) -> None:
    # Protocol data (its title, funders' names, the decision rule) stays in its language:
    # the title is marked lang="fr"; the others are removed before the check.
    text = _visible(english, skip_lang="fr")
    assert trial.protocol.budget is not None
    for data in [item.funder for item in trial.protocol.budget.items] + ["Académie"]:
        text = text.replace(data, " ")
    words = _words(text)
    found = [w for w in FRENCH if w in words]
    assert not found, found
    assert '<html lang="en">' in english
    assert "Pupils in classes that used Lectio progressed" in text


def test_unknown_language_is_refused(trial: Trial) -> None:
    with pytest.raises(ValueError, match=r"expecting one of \['fr', 'en'\]"):
        render_report(trial.results, lang="de")


# --- privacy -------------------------------------------------------------------------

def _ids(directory: Path) -> set[str]:
    out: set[str] = set()
    with (directory / "units.csv").open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            out |= {row["unit_id"], row["school_uai"]}
    with (directory / "outcomes.csv").open(encoding="utf-8") as handle:
        out |= {row["learner_id"] for row in csv.DictReader(handle)}
    return out


@pytest.mark.parametrize("which", ["trial", "small_trial"])
def test_no_class_school_pupil_or_teacher_is_named(which: str,
                                                  request: pytest.FixtureRequest) -> None:
    t: Trial = request.getfixturevalue(which)
    for lang in ("fr", "en"):
        page = render_report(t.results, protocol=t.protocol, context=t.context, lang=lang)
        tokens = set(re.findall(r"[A-Za-z0-9]+", page))
        leaked = _ids(t.directory) & tokens
        assert not leaked, sorted(leaked)[:10]
        assert "Dupontel" not in page
        # No table or figure is organised by class or teacher: no such header or label.
        headers = re.findall(r"<th[^>]*>([^<]*)<", page) + re.findall(r"<caption>([^<]*)<",
                                                                      page)
        for header in headers:
            assert not re.search(r"enseignant|teacher|\bclasse\b|\bclass\b", header,
                                 re.IGNORECASE), header


def _pupil_counts(page: str) -> list[int]:
    """Pupil counts shown in the text, the CONSORT figure and the effects table."""
    text = _visible(page)
    n = r"(<\s10|\d[\d\u202f]*)(?![\d,%]|\u202f%)"
    patterns = [
        rf"Élèves (?:inscrits|avec score initial|analysés) : {n}",  # CONSORT figure
        rf"Élèves (?:suivis|avec un usage actif|ayant atteint \d+ minutes d'usage actif) {n}",
        rf"Lectio {n} · témoin {n}",  # effects table, pupils per arm
    ]
    counts = []
    for pattern in patterns:
        for match in re.finditer(pattern, text):
            counts += [int(v.replace("\u202f", "")) for v in match.groups()
                       if not v.startswith("<")]
    return counts


def test_no_cell_under_10_pupils(small_trial: Trial) -> None:
    page = render_report(small_trial.results, protocol=small_trial.protocol,
                         context=small_trial.context)
    assert "< 10" in _visible(page)  # some cells of this small trial are suppressed
    counts = _pupil_counts(page)
    assert counts, "no pupil count found"
    assert all(n >= 10 for n in counts), counts
    view = build_view(small_trial.results, protocol=small_trial.protocol,
                      context=small_trial.context)
    cells = [n for f in view["usage"]["funnels"] for label, n in f["steps"]
             if "lèves" in label]
    cells += [cell for row in view["usage"]["rows"] for cell in row[1:3]]
    cells += [cell for row in view["credibility"]["consort_rows"] for cell in row[3:]]
    assert cells
    for cell in cells:
        assert cell == "< 10" or int(cell.replace("\u202f", "")) >= 10, cells
    for week in small_trial.context.weekly_usage:
        assert week.active_learners is None or week.active_learners >= 10


# --- form ------------------------------------------------------------------------------

def test_figures_are_inline_svg_with_titles(french: str) -> None:
    parsed = _parse(french)
    assert len(parsed.svgs) == 3  # weekly use, forest plot, CONSORT
    assert all(title.strip() for title in parsed.svgs)
    assert french.count('<svg role="img" aria-label="') == 3
    for forbidden in ("<img", "<script", "<link", "src=", "http:", "https:", "@import"):
        assert forbidden not in french, forbidden


def test_accessible_structure(french: str) -> None:
    parsed = _parse(french)
    assert parsed.html_lang == "fr"
    assert parsed.headings[0] == 1 and parsed.headings.count(1) == 1
    for before, after in zip(parsed.headings, parsed.headings[1:], strict=False):
        assert after <= before + 1, parsed.headings  # no skipped level
    assert parsed.tables >= 5 and parsed.captions == parsed.tables
    assert french.count('scope="col"') > 20


def test_write_report_html_and_pdf(trial: Trial, tmp_path: Path) -> None:
    write_report(trial.results, tmp_path / "rapport.html", protocol=trial.protocol,
                 context=trial.context)
    write_html(trial.results, tmp_path / "page.html")  # the CLI's and workers' call
    assert (tmp_path / "page.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    pdf = tmp_path / "rapport.pdf"
    write_report_pdf(trial.results, pdf, protocol=trial.protocol, context=trial.context)
    raw = pdf.read_bytes()
    assert raw.startswith(b"%PDF-") and raw.rstrip().endswith(b"%%EOF")
    pages = [int(n) for n in re.findall(rb"/Count (\d+)", raw)]
    assert pages and max(pages) >= 1


def test_report_from_the_json_object_equals_report_from_results(trial: Trial) -> None:
    # Readers of an archived run have only the JSON: same report.
    a = render_report(trial.results, protocol=trial.protocol, context=trial.context)
    b = render_report(trial.data, protocol=trial.protocol, context=trial.context)
    assert a == b


def test_cli_writes_the_report_in_english_and_as_pdf(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from experiments.cli.app import app

    files = simulate_trial(tmp_path / "trial", n_units=20, pupils_per_unit=12, usage_weeks=3)
    assert files.usage is not None
    args = ["analyze", "--protocol", str(PROTOCOL), "--units", str(files.units),
            "--outcomes", str(files.outcomes), "--usage", str(files.usage)]
    runner = CliRunner()
    result = runner.invoke(app, [*args, "--html", str(tmp_path / "r.html"), "--lang", "en",
                                 "--pdf", str(tmp_path / "r.pdf")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<html lang="en">' in page and "Active use week by week" in page
    assert page.count("<svg") == 3  # the usage file gives the weekly figure
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF-")
    refused = runner.invoke(app, [*args, "--html", str(tmp_path / "x.html"), "--lang", "de"])
    assert refused.exit_code == 2 and "expecting one of ['fr', 'en']" in refused.output
    assert not (tmp_path / "x.html").exists()


@pytest.mark.parametrize("analysis", ["monitoring", "interim"])
def test_monitoring_and_interim_reports(trial: Trial, analysis: str) -> None:
    plan = plan_from_protocol(trial.protocol)
    units = read_units(trial.directory / "units.csv", plan)
    outcomes = read_outcomes(trial.directory / "outcomes.csv", units)
    usage = read_usage(trial.directory / "usage.csv", outcomes, units)
    results = run_analysis(plan, units, outcomes, usage, analysis)
    text = _visible(render_report(results, protocol=trial.protocol, context=trial.context))
    if analysis == "monitoring":
        # Weekly monitoring shows usage, never an effect (no unplanned looks).
        assert "L'effet n'a pas pu être estimé : pas d'estimation de l'effet avant" in text
        assert "Note de solidité Preuve, inspirée de l'EEF : 0 sur 5" in text
        assert "Usage actif semaine par semaine" in text
    else:
        assert "Analyse intermédiaire : seule l'analyse finale est confirmatoire." in text
        assert "ont progressé de" in text



def test_summary_for_the_portal_is_the_report_s(trial: Trial, french: str) -> None:
    from analysis.report.document import report_summary

    summary = report_summary(trial.data, protocol=trial.protocol)
    assert html.escape(summary["sentence"], quote=False) in french.replace("&#39;", "'")
    assert summary["padlocks"] == rate_evidence(trial.data).padlocks
    assert report_summary(trial.data, protocol=trial.protocol, lang="en")[
        "sentence"].startswith("Pupils in classes that used Lectio")


def test_report_checks_pass_on_the_report_and_catch_faults(trial: Trial, french: str,
                                                           english: str) -> None:
    from analysis.report.checks import check_report

    assert check_report(french, trial.data) == []
    no_budget = render_report(trial.results, context=trial.context, lang="en")
    assert check_report(no_budget, trial.data, lang="en") == []
    assert check_report(french.replace("Coût</h3>", "Cost of the resource</h3>"),
                        trial.data) == ["words of the other language: ['of', 'the']"]
    shifted = {**trial.data, "effects": [{**e, "estimate": e["estimate"] + 0.2}
                                         if e["role"] == "primary" else e
                                         for e in trial.data["effects"]]}
    assert check_report(french, shifted)[0].startswith("summary says")
    assert "section usage missing" in check_report(
        french.replace('<section id="usage"', "<section"), trial.data)


def test_report_of_preuve_analyze_passes_the_checks(tmp_path: Path) -> None:
    # The demo's path: `preuve analyze --json --html` on files (what `preuve demo` runs).
    import json

    from typer.testing import CliRunner

    from analysis.report.checks import check_report
    from experiments.cli.app import app

    files = simulate_trial(tmp_path / "trial", n_units=24, pupils_per_unit=15, usage_weeks=4)
    assert files.usage is not None
    result = CliRunner().invoke(app, [
        "analyze", "--protocol", str(PROTOCOL), "--units", str(files.units), "--outcomes",
        str(files.outcomes), "--usage", str(files.usage), "--json", str(tmp_path / "r.json"),
        "--html", str(tmp_path / "r.html")])
    assert result.exit_code == 0, result.output
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert check_report(page, json.loads((tmp_path / "r.json").read_text("utf-8"))) == []


def test_funnel_from_a_store_tells_logins_from_real_use(trial: Trial) -> None:
    import pandas as pd

    from analysis.report.context import usage_context_from_daily

    # 30 treatment pupils log in on a Monday; 22 of them work in the resource.
    daily = pd.DataFrame({
        "learner_key": [f"k{i}" for i in range(30)], "day": ["2027-09-27"] * 30,
        "class_id": [f"c{i // 15}" for i in range(30)], "arm": ["lectio"] * 30,
        "sessions": [1] * 30, "events": [3] * 30,
        "active_seconds": [600.0] * 22 + [0.0] * 8})
    context = usage_context_from_daily(daily, {"lectio": 20, "usual": 20}, ["lectio", "usual"])
    text = _visible(render_report(trial.results, protocol=trial.protocol, context=context))
    assert "Élèves s'étant connectés 30 Élèves avec un usage actif 22" in text
    assert "Classes ayant activé la ressource 2" in text
    assert "Les connexions sans activité ne figurent pas" not in text  # logins are known
    assert context.weekly_usage[1].arm == "usual" and context.weekly_usage[1].active_learners \
        is None


def test_report_names_each_rule_source_and_the_method_rules(french: str) -> None:
    # Issue 15: each rule of the rating with its source or « règle propre à Preuve »; the
    # WWC rounding rule and the months table named in the methods appendix.
    text = _visible(french)
    assert "Note de solidité Preuve, inspirée de l'EEF" in text
    assert "(source : EEF, Classifying the security of EEF findings (2019), tableau 1)" in text
    assert "Combinaison : la note part du plus bas des plafonds" in text
    assert "règle propre à Preuve" in text
    assert "Effet minimal détectable au tirage au sort de" in text
    assert ("l'attrition globale est arrondie au pour cent entier supérieur pour lire le "
            "tableau") in text
    assert "l'attrition différentielle est comparée sans arrondi" in text
    assert "borne prudente" in text
    assert "table de conversion du Teaching and Learning Toolkit" in text
    assert "Tous les élèves tirés au sort" in text  # the attrition row of every pupil
