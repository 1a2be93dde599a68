"""The portal's programme pages in process (issue 22, items 2 and 5): what each role sees
on a registry of three programmes and eight closed simulated experiments
(``tests/support/programmes.py``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from experiments.access import issue_token
from experiments.database import dispose_engines
from experiments.portal.app import create_portal
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
