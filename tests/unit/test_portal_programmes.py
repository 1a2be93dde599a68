"""The portal's programme pages in process (issue 22, items 2 and 5): what each role sees
on a registry of three programmes and eight closed simulated experiments
(``tests/support/programmes.py``)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import replace
from html import unescape
from pathlib import Path

import pytest

from analysis.multiplicity import certainty
from analysis.results import AnalysisResults
from analysis.synthesis import synthesise
from experiments.access import issue_token
from experiments.database import dispose_engines
from experiments.portal.app import create_portal
from experiments.portfolio.aggregates import entry_json
from experiments.portfolio.entries import confirmatory_effect, portfolio_entries
from experiments.portfolio.text import words
from experiments.settings import Settings
from tests.support.portal import NOW, PortalClient
from tests.support.programmes import TRIALS, ProgrammeWorld, build_programmes


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("programmes"), pseudonym_key="k" * 32)
    try:
        w = build_programmes(settings, tmp_path_factory.mktemp("trials"))
        client = PortalClient(create_portal(settings, registry=w.registry, clock=lambda: NOW))
        tokens = {
            "officer": issue_token(w.registry, "officer", "*", "bdt"),
            "researcher": issue_token(w.registry, "researcher", "tne-lectio-1", "lab"),
            "creteil": issue_token(w.registry, "academie", "creteil"),
            "lyon": issue_token(w.registry, "academie", "lyon"),
            "edtech": issue_token(w.registry, "edtech", "lectio"),
        }
        sessions = {who: client.sign_in(token) for who, token in tokens.items()}
        yield w, client, sessions
        client.close()
    finally:
        dispose_engines()


def _rows(html: str) -> set[str]:
    return set(re.findall(r'<tr data-experiment="([^"]+)">', html))


def test_the_programmes_page_lists_three_programmes(world: tuple[ProgrammeWorld, PortalClient,
                                                                 dict[str, dict[str, str]]]
                                                    ) -> None:
    _, client, sessions = world
    page = client.request("GET", "/programmes", sessions["officer"])
    assert page.status_code == 200
    for name in ("TNE", "eFRAN", "P2IA"):
        assert f'href="/programmes/{name}"' in page.text


def test_an_officer_reads_the_whole_programme_with_synthesis_map_and_table(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    page = client.request("GET", "/programmes/TNE", sessions["officer"]).text
    assert _rows(page) == {t.id for t in TRIALS if t.programme == "TNE"}
    assert "Effet combiné : g = " in page
    assert page.count('<figure class="forest"><svg role="img"') >= 3
    assert '<svg role="img" aria-labelledby="carte-titre carte-desc"' in page
    assert re.search(r"<th scope=\"row\">Créteil</th><td class=\"nombre\">3</td>", page)
    assert re.search(r"<th scope=\"row\">Versailles</th><td class=\"nombre\">3</td>", page)
    # Aggregates only: no learner or class identifier can appear (none is in a run record
    # either); the page links each experiment to its page, nothing deeper.
    assert "/usages/" not in page and "/rapports/" not in page


def test_filters_narrow_the_portfolio(world: tuple[ProgrammeWorld, PortalClient,
                                                   dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    page = client.request("GET", "/programmes/TNE?academie=creteil&type=lecture",
                          sessions["officer"]).text
    assert _rows(page) == {"tne-lectio-2", "tne-lectio-3"}
    page = client.request("GET", "/programmes/TNE?etat=analysing", sessions["officer"]).text
    assert _rows(page) == {"tne-calcul-2"}


def test_an_academie_sees_its_territory_only(world: tuple[ProgrammeWorld, PortalClient,
                                                          dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    page = client.request("GET", "/programmes/TNE", sessions["creteil"]).text
    assert _rows(page) == {t.id for t in TRIALS if t.programme == "TNE"
                           and "creteil" in t.academies}
    assert "tne-lectio-1" not in page  # versailles only: not even in a synthesis
    assert _rows(client.request("GET", "/programmes/TNE", sessions["lyon"]).text) == set()


def test_a_researcher_sees_the_experiments_of_their_scope(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    page = client.request("GET", "/programmes/TNE", sessions["researcher"]).text
    assert _rows(page) == {"tne-lectio-1"}
    assert "Pas d&#39;effet combiné : moins de 3 études" in page


def test_an_edtech_is_refused(world: tuple[ProgrammeWorld, PortalClient,
                                           dict[str, dict[str, str]]], tmp_path: Path) -> None:
    _, client, sessions = world
    for url in ("/programmes", "/programmes/TNE"):
        assert client.request("GET", url, sessions["edtech"]).status_code == 403


# --- leftovers of issue 22: verdict per arm, English, map by département, JSON API ---------


def test_each_row_gives_the_verdict_of_each_arm_by_the_protocols_test(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    w, client, sessions = world
    page = client.request("GET", "/programmes/TNE", sessions["officer"]).text
    assert "Verdict par bras (test du protocole)" in page
    for trial in (t for t in TRIALS if t.programme == "TNE"):
        results = w.results[trial.id]
        claims = [certainty(e, results).claim for e in results["effects"]  # type: ignore[attr-defined]
                  if e["role"] == "primary" and e["estimand"] == "ITT" and not e.get("subgroup")]
        assert len(claims) == 1  # the core protocol has one treated arm
        row = re.search(rf'<tr data-experiment="{trial.id}">(.*?)</tr>', page, re.S)
        assert row is not None
        expected = words("fr", f"claim.{claims[0]}")
        assert f"lectio : {expected}" in unescape(row.group(1)), (trial.id, claims)
        # Never more than the test: "établi" only where the test rejects.
        if claims[0] not in ("positive", "negative"):
            assert "effet positif établi" not in unescape(row.group(1))


def test_the_programme_page_in_english(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    answer = client.request("GET", "/programmes/TNE?lang=en", sessions["officer"])
    page = unescape(answer.text)
    assert '<html lang="en">' in answer.text
    assert "Experiments of the programme: state, size, effect, evidence, cost" in page
    assert "Verdict per arm (the protocol's test)" in page
    assert "Pooled effect: g = " in page and "Effet combiné" not in page
    assert "Map of the experiments of programme TNE by académie" in page
    assert 'Programme “TNE”' in page
    assert "Rests on 4 study(ies)" in page
    # The language sticks (cookie), as on the other pages; French stays the default.
    assert "preuve_lang=en" in answer.headers.get("set-cookie", "")
    french = client.request("GET", "/programmes", sessions["officer"]).text
    assert "Les expérimentations regroupées par programme" in french
    english = client.request("GET", "/programmes?lang=en", sessions["officer"]).text
    assert "Experiments grouped by funding programme" in english


def test_the_map_by_departement_is_switchable_and_has_its_table(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    default = client.request("GET", "/programmes/TNE", sessions["officer"]).text
    assert 'aria-labelledby="carte-titre carte-desc"' in default
    assert "dcarte-titre" not in default
    assert 'href="?carte=departements#territoires"' in default
    page = client.request("GET", "/programmes/TNE?carte=departements", sessions["officer"]).text
    assert 'aria-labelledby="dcarte-titre dcarte-desc"' in page
    assert 'aria-labelledby="carte-titre carte-desc"' not in page
    assert page.count("<g data-departement=") == 101
    # The same figures as the table: Yvelines 2 (lectio-1, lectio-3), Seine-Saint-Denis 2
    # (lectio-2, lectio-3), Hauts-de-Seine 1, Val-de-Marne 1.
    for code, name, n in (("78", "Yvelines", 2), ("93", "Seine-Saint-Denis", 2),
                          ("92", "Hauts-de-Seine", 1), ("94", "Val-de-Marne", 1)):
        assert re.search(rf'<th scope="row">{name} \({code}\)</th><td>[^<]+</td>'
                         rf'<td class="nombre">{n}</td>', page), name
        tile = re.search(rf'<g data-departement="{code}"><title>([^<]+)</title>.*?'
                         rf'font-weight="bold" fill="[^"]+">(\d+)</text></g>', page)
        assert tile is not None and tile.group(2) == str(n), code
        assert tile.group(1).startswith(f"{name} ({code}) : {n} expérimentation")
    # The calcul trials name no département and enrolled no class: said, not hidden.
    assert "tne-calcul-1, tne-calcul-2" in page
    # A département filter keeps its map.
    filtered = client.request("GET", "/programmes/TNE?departement=92&carte=departements",
                              sessions["officer"]).text
    assert _rows(filtered) == {"tne-lectio-1"}


def test_the_programme_filter_goes_to_another_programme(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    answer = client.request("GET", "/programmes/TNE?autre=P2IA&etat=closed",
                            sessions["officer"])
    assert answer.status_code == 303
    assert answer.headers["location"] == "/programmes/P2IA?etat=closed"
    page = client.request("GET", answer.headers["location"], sessions["officer"]).text
    assert _rows(page) == {t.id for t in TRIALS if t.programme == "P2IA"}


def test_the_api_gives_the_portfolio_and_syntheses_as_aggregates(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    w, client, sessions = world
    listing = client.request("GET", "/api/programmes", sessions["officer"]).json()
    assert {p["name"]: (p["experiments"], p["closed"]) for p in listing} == {
        "TNE": (5, 4), "eFRAN": (2, 2), "P2IA": (2, 2)}
    body = client.request("GET", "/api/programmes/TNE", sessions["officer"]).json()
    assert {e["id"] for e in body["experiments"]} == {t.id for t in TRIALS
                                                      if t.programme == "TNE"}
    assert body["data_as_of"].startswith("2028-06-30")
    one = next(e for e in body["experiments"] if e["id"] == "tne-lectio-1")
    primary = confirmatory_effect(AnalysisResults.from_json(w.results["tne-lectio-1"]))
    assert primary is not None
    assert one["primary_effect"]["hedges_g"] == primary.hedges_g
    assert one["verdicts"][0]["arm"] == "lectio"
    assert one["verdicts"][0]["conclusion"] == certainty(
        primary, w.results["tne-lectio-1"]).claim  # type: ignore[arg-type]
    assert one["cost_per_pupil"] == 30000 / 400 and one["departements"] == ["78", "92"]
    assert one["usage"][0]["arm"] == "lectio"
    (programme,) = [s for s in body["syntheses"] if s["kind"] == "programme"]
    studies = [e.study for e in portfolio_entries(w.registry, "TNE") if e.study is not None]
    pooled = synthesise(studies)
    assert programme["k"] == 4 and programme["test"] == "knha"
    assert programme["pooled"]["estimate"] == pytest.approx(pooled.estimate, abs=1e-12)
    assert programme["pooled"]["ci_low"] == pytest.approx(pooled.ci_low, abs=1e-12)
    assert programme["excluded"] == ["tne-calcul-2"]
    # Aggregates only: no class, school or learner key anywhere in the answer.
    text = json.dumps(body)
    for key in ("class_id", "school_uai", "learner_id", "unit_id"):
        assert key not in text
    # Fewer than 3 studies: no pooled number, the studies side by side.
    efran = client.request("GET", "/api/programmes/eFRAN", sessions["officer"]).json()
    (block,) = [s for s in efran["syntheses"] if s["kind"] == "programme"]
    assert block["k"] == 2 and block["pooled"] is None and len(block["studies"]) == 2
    # Filters as on the page.
    narrowed = client.request("GET", "/api/programmes/TNE?academie=creteil&type=lecture",
                              sessions["officer"]).json()
    assert {e["id"] for e in narrowed["experiments"]} == {"tne-lectio-2", "tne-lectio-3"}


def test_the_api_narrows_to_each_callers_territory_and_scope(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    _, client, sessions = world
    creteil = client.request("GET", "/api/programmes/TNE", sessions["creteil"]).json()
    assert {e["id"] for e in creteil["experiments"]} == {
        t.id for t in TRIALS if t.programme == "TNE" and "creteil" in t.academies}
    assert "tne-lectio-1" not in json.dumps(creteil)
    assert client.request("GET", "/api/programmes/TNE", sessions["lyon"]).json()[
        "experiments"] == []
    researcher = client.request("GET", "/api/programmes", sessions["researcher"]).json()
    assert researcher == [{"name": "TNE", "experiments": 1, "closed": 1}]
    assert client.request("GET", "/api/programmes", sessions["edtech"]).status_code == 403
    assert client.request("GET", "/api/programmes/TNE", sessions["edtech"]).status_code == 403
    assert client.request("GET", "/api/programmes/TNE").status_code == 401


def test_the_api_suppresses_small_cells(
        world: tuple[ProgrammeWorld, PortalClient, dict[str, dict[str, str]]]) -> None:
    w, _, _ = world
    entry = portfolio_entries(w.registry, "TNE")[0]
    assert entry.effect is not None
    small = replace(entry, pupils=7, effect=replace(entry.effect, n_learners={"lectio": 7,
                                                                              "usual": 180}))
    out = entry_json(small)
    assert out["pupils"] is None
    assert out["primary_effect"]["n_learners"] == {"lectio": None, "usual": 180}
    assert entry_json(replace(entry, pupils=0))["pupils"] == 0  # 0 is a number
