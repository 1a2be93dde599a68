"""The portal in process: who reaches which route (role × route), sign-in and sign-out,
and that nothing an officer can read holds a learner pseudonym or a class id."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest

from experiments.database import dispose_engines
from experiments.portal.app import SESSION_COOKIE, create_portal
from experiments.settings import Settings
from tests.support.portal import CSRF, EXPERIMENT, NOW, PortalClient, PortalWorld, build_world


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, PortalWorld]]:
    settings = Settings(state_dir=tmp_path_factory.mktemp("portal"), pseudonym_key="portal-key" * 5)
    try:
        yield settings, build_world(settings)
    finally:
        dispose_engines()


@pytest.fixture(scope="module")
def client(world: tuple[Settings, PortalWorld]) -> Iterator[PortalClient]:
    settings, w = world
    client = PortalClient(create_portal(settings, registry=w.registry, clock=lambda: NOW))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def sessions(world: tuple[Settings, PortalWorld], client: PortalClient
             ) -> dict[str, dict[str, str]]:
    _, w = world
    signed = {who: client.sign_in(token) for who, token in w.tokens.items()}
    signed["none"] = {}
    return signed


def _routes(w: PortalWorld) -> dict[str, str]:
    final = next(r for r in w.runs if r.analysis == "final")
    return {
        "portfolio": "/experiences",
        "experiment": f"/experiences/{EXPERIMENT}",
        "report": f"/experiences/{EXPERIMENT}/rapports/{final.run_id}",
        "api_portfolio": "/api/experiences",
        "usage_list": "/usages",
        "usage": f"/usages/{EXPERIMENT}",
        "api_usage": f"/api/usages/{EXPERIMENT}",
        "programmes": "/programmes",
        "programme": "/programmes/TNE",
    }


# Expected status per (caller, route). Pages send callers without a session to the
# sign-in form (302); the JSON endpoints answer 401.
MATRIX: dict[str, dict[str, int]] = {
    "officer": {"portfolio": 200, "experiment": 200, "report": 200, "api_portfolio": 200,
                "usage_list": 403, "usage": 403, "api_usage": 403,
                "programmes": 200, "programme": 200},
    "researcher": {"portfolio": 200, "experiment": 200, "report": 200, "api_portfolio": 200,
                   "usage_list": 403, "usage": 403, "api_usage": 403,
                   "programmes": 200, "programme": 200},
    # Out of scope is the same 404 as a missing experiment (nothing tells it exists).
    "researcher_other": {"portfolio": 200, "experiment": 404, "report": 404,
                         "api_portfolio": 200, "usage_list": 403, "usage": 403,
                         "api_usage": 403,
                         "programmes": 200, "programme": 200},
    "academie_a": {"portfolio": 403, "experiment": 403, "report": 403, "api_portfolio": 403,
                   "usage_list": 200, "usage": 200, "api_usage": 200,
                   "programmes": 200, "programme": 200},
    "academie_b": {"portfolio": 403, "experiment": 403, "report": 403, "api_portfolio": 403,
                   "usage_list": 200, "usage": 200, "api_usage": 200,
                   "programmes": 200, "programme": 200},
    "academie_other": {"portfolio": 403, "experiment": 403, "report": 403,
                       "api_portfolio": 403, "usage_list": 200, "usage": 404,
                       "api_usage": 404,
                       "programmes": 200, "programme": 200},
    "edtech": {"portfolio": 403, "experiment": 403, "report": 403, "api_portfolio": 403,
               "usage_list": 403, "usage": 403, "api_usage": 403,
               "programmes": 403, "programme": 403},
    "admin": {"portfolio": 200, "experiment": 200, "report": 200, "api_portfolio": 200,
              "usage_list": 200, "usage": 200, "api_usage": 200,
              "programmes": 200, "programme": 200},
    "none": {"portfolio": 302, "experiment": 302, "report": 302, "api_portfolio": 401,
             "usage_list": 302, "usage": 302, "api_usage": 401,
             "programmes": 302, "programme": 302},
}


@pytest.mark.parametrize("caller", sorted(MATRIX))
def test_role_route_matrix(caller: str, world: tuple[Settings, PortalWorld],
                           client: PortalClient, sessions: dict[str, dict[str, str]]) -> None:
    _, w = world
    got = {name: client.request("GET", url, sessions[caller]).status_code
           for name, url in _routes(w).items()}
    assert got == MATRIX[caller]


def test_a_page_without_session_redirects_to_sign_in_and_back(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    answer = client.request("GET", f"/experiences/{EXPERIMENT}")
    assert answer.status_code == 302
    assert answer.headers["location"] == f"/connexion?suite=%2Fexperiences%2F{EXPERIMENT}"
    form = client.request("GET", answer.headers["location"])
    assert f'name="suite" value="/experiences/{EXPERIMENT}"' in form.text


def test_nothing_an_officer_reads_holds_row_level_data(
        world: tuple[Settings, PortalWorld], client: PortalClient,
        sessions: dict[str, dict[str, str]]) -> None:
    _, w = world
    officer = sessions["officer"]
    urls = [*_routes(w).values(), "/", "/experiences?lang=en",
            *(f"/experiences/{EXPERIMENT}/rapports/{r.run_id}" for r in w.runs),
            *(f"/experiences/{EXPERIMENT}/rapports/{r.run_id}/resultats.json" for r in w.runs)]
    secrets = [*w.learner_keys, *w.class_ids["versailles"], *w.class_ids["creteil"]]
    for url in urls:
        answer = client.request("GET", url, officer)
        for secret in secrets:
            assert secret not in answer.text, f"{url} shows {secret}"
    assert client.request("GET", "/api/experiences", officer).json()[0]["classes_per_arm"] == {
        "lectio": 4, "usual": 4}


def test_an_academie_reads_its_own_classes_only_with_small_cells_suppressed(
        world: tuple[Settings, PortalWorld], client: PortalClient,
        sessions: dict[str, dict[str, str]]) -> None:
    _, w = world
    page = client.request("GET", f"/usages/{EXPERIMENT}", sessions["academie_a"]).text
    assert all(c in page for c in w.class_ids["versailles"])
    assert not any(c in page for c in w.class_ids["creteil"])
    assert not any(k in page for k in w.learner_keys)
    usage = client.request("GET", f"/api/usages/{EXPERIMENT}", sessions["academie_a"]).json()
    assert usage["academie"] == "versailles"
    assert {c["class_id"] for c in usage["classes"]} == set(w.class_ids["versailles"])
    assert usage["weeks"] == ["2027-10-04", "2027-10-11"]
    cells = {c["class_id"]: c["weeks"] for c in usage["classes"]}
    # 4 pupils used it in the small class: suppressed; 12 in the other lectio class: shown,
    # 3 days a week, each day's 900 s activity counting up to the protocol's pause (300 s,
    # analysis.sessions) = 15 minutes per pupil.
    assert all(week["active_pupils"] is None and week["active_minutes"] is None
               for week in cells[w.small_class])
    shown = [week for c in usage["classes"] for week in c["weeks"]
             if c["arm"] == "lectio" and c["class_id"] != w.small_class]
    assert shown and all(wk["active_pupils"] == 12 and wk["active_minutes"] == 12 * 15
                         for wk in shown)
    assert "&lt; 10" in page or "< 10" in page
    # The total would give the small class away (total - 12 shown = 4): suppressed too.
    assert [t["active_pupils"] for t in usage["totals"]] == [None, None]
    other = client.request("GET", f"/api/usages/{EXPERIMENT}", sessions["academie_b"]).json()
    assert {c["class_id"] for c in other["classes"]} == set(w.class_ids["creteil"])
    assert [t["active_pupils"] for t in other["totals"]] == [24, 24]  # 2 lectio classes × 12


def test_portfolio_shows_status_territories_verdict_and_next_analysis(
        world: tuple[Settings, PortalWorld], client: PortalClient,
        sessions: dict[str, dict[str, str]]) -> None:
    page = client.request("GET", "/experiences", sessions["officer"]).text
    assert '<html lang="fr">' in page
    assert "en cours" in page and "Versailles, Créteil" in page and "Lectio" in page
    # The report's own sentence and evidence rating (analysis.report.document.summary_sentence).
    assert "Les élèves des classes ayant utilisé Lectio ont progressé de" in page
    assert "mois de progrès" in page and "Note de solidité Preuve, inspirée de l&#39;EEF :" in page
    assert "intermédiaire, 15/01/2028" in page  # interim at: 2028-01-15, after NOW
    english = client.request("GET", "/experiences?lang=en", sessions["officer"])
    assert '<html lang="en">' in english.text and "Portfolio of experiments" in english.text
    assert "preuve_lang=en" in english.headers["set-cookie"]


def test_experiment_page_lists_each_run_with_protocol_version_and_hash(
        world: tuple[Settings, PortalWorld], client: PortalClient,
        sessions: dict[str, dict[str, str]]) -> None:
    _, w = world
    page = client.request("GET", f"/experiences/{EXPERIMENT}", sessions["officer"]).text
    for run in w.runs:
        assert f"/experiences/{EXPERIMENT}/rapports/{run.run_id}" in page
        assert run.protocol_sha256[:12] in page
    assert page.index("finale") < page.index("suivi", page.index("rapports"))  # latest first
    # The report's one-page summary (analysis.report.document.report_summary), in French.
    assert "La question" in page and "ont progressé de" in page
    assert "Note de solidité Preuve" in page and "Quel degré de certitude" in page
    english = client.request("GET", f"/experiences/{EXPERIMENT}?lang=en",
                             sessions["officer"]).text
    assert "Pupils in classes that used Lectio" in english and "How sure are we?" in english


def test_reports_are_served_read_only_without_scripts(
        world: tuple[Settings, PortalWorld], client: PortalClient,
        sessions: dict[str, dict[str, str]]) -> None:
    _, w = world
    final = next(r for r in w.runs if r.analysis == "final")
    answer = client.request("GET", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}",
                            sessions["officer"])
    assert answer.content == Path(final.html_path or "").read_bytes()
    assert "default-src 'none'" in answer.headers["content-security-policy"]
    assert client.request("GET", f"/experiences/{EXPERIMENT}/rapports/nope",
                          sessions["officer"]).status_code == 404
    stored = client.request("GET", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}"
                            "/resultats.json", sessions["researcher"])
    assert stored.status_code == 200 and stored.json()["experiment"] == EXPERIMENT
    assert stored.content == Path(final.json_path or "").read_bytes()
    assert client.request("GET", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}"
                          "/resultats.json", sessions["academie_a"]).status_code == 403
    assert client.request("POST", f"/experiences/{EXPERIMENT}/rapports/{final.run_id}",
                          sessions["officer"]).status_code == 405


def test_sign_in_refuses_unknown_tokens_and_forms_without_csrf(client: PortalClient) -> None:
    form = client.request("GET", "/connexion")
    cookie = form.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    body = {"Content-Type": "application/x-www-form-urlencoded"}
    bad = client.request("POST", "/connexion",
                         cookies={"preuve_login_csrf": form.cookies["preuve_login_csrf"]},
                         content=f"csrf={csrf.group(1)}&token=pv_officer_nope".encode(),
                         headers=body)
    assert bad.status_code == 401 and "pas reconnu" in bad.text
    forged = client.request("POST", "/connexion", content=b"csrf=x&token=pv_officer_nope",
                            headers=body)
    assert forged.status_code == 400 and SESSION_COOKIE not in forged.headers.get(
        "set-cookie", "")


def test_sign_out_needs_the_session_csrf_token_and_ends_the_session(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    _, w = world
    session = client.sign_in(w.tokens["officer"])
    answer = client.request("POST", "/deconnexion", session, content=b"csrf=forged",
                            headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 403
    page = client.request("GET", "/experiences", session)
    assert page.status_code == 200
    cookie = page.headers.get("set-cookie", "")
    assert SESSION_COOKIE not in cookie
    csrf = CSRF.search(page.text)
    assert csrf is not None
    out = client.request("POST", "/deconnexion", session,
                         content=f"csrf={csrf.group(1)}".encode(),
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert out.status_code == 303
    assert client.request("GET", "/experiences", session).status_code == 302


def test_an_altered_report_is_not_served(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path, pseudonym_key="altered" * 5)
    try:
        w = build_world(settings)
        run = w.runs[0]
        # The worker's local copy is not what the portal serves (the registry's is).
        original = Path(run.html_path or "").read_bytes()
        Path(run.html_path or "").write_text("<p>changé</p>", encoding="utf-8")
        client = PortalClient(create_portal(settings, registry=w.registry, clock=lambda: NOW))
        try:
            session = client.sign_in(w.tokens["officer"])
            url = f"/experiences/{EXPERIMENT}/rapports/{run.run_id}"
            assert client.request("GET", url, session).content == original
            # Stored bytes changed by someone who dropped the immutability trigger.
            with w.registry.begin() as connection:
                connection.exec_driver_sql("DROP TRIGGER run_artefacts_immutable_update")
                connection.exec_driver_sql(
                    "UPDATE run_artefacts SET content = X'3c703e6368616e67c3a93c2f703e' "
                    "WHERE run_id = ? AND kind = 'html'", (run.run_id,))
            answer = client.request("GET", url, session)
            assert answer.status_code == 500 and "changé" not in answer.text
        finally:
            client.close()
    finally:
        dispose_engines()



def test_the_verdict_follows_the_latest_effect_analysis(
        world: tuple[Settings, PortalWorld]) -> None:
    import dataclasses

    from experiments.portal.app import describe_verdict
    from experiments.portal.views import verdict
    from experiments.protocol.language import parse_protocol
    from tests.support.portal import PROTOCOL_TEXT

    _, w = world
    protocol = parse_protocol(PROTOCOL_TEXT)
    monitoring, final = (next(r for r in w.runs if r.analysis == a)
                         for a in ("monitoring", "final"))
    assert verdict([], protocol).kind == "none"
    assert describe_verdict("fr", verdict([], protocol)) == "pas encore d'analyse"
    assert verdict([monitoring], protocol).kind == "monitoring"
    done = verdict([monitoring, final], protocol)
    assert done.kind == "effect" and done.analysis == "final" and done.padlocks is not None
    assert done.effect is not None
    assert done.effect.to_json() == next(
        e for e in json.loads(final.results_json or "")["effects"] if e["role"] == "primary")
    failed = dataclasses.replace(final, status="failed", reason="no outcome stored",
                                 results_json=None)
    assert verdict([monitoring, failed], protocol).kind == "failed"
    assert describe_verdict("en", verdict([monitoring, failed], protocol)) == \
        "latest analysis failed"


@pytest.mark.parametrize(("suite", "location"), [
    ("/experiences", "/experiences"),
    ("//evil.example", "/"),
    ("/\t/evil.example", "/"),
    ("/\\evil.example", "/"),
    ("https://evil.example/", "/"),
])
def test_sign_in_returns_only_to_a_path_of_the_portal(
        world: tuple[Settings, PortalWorld], client: PortalClient, suite: str,
        location: str) -> None:
    _, w = world
    form = client.request("GET", "/connexion")
    csrf = CSRF.search(form.text)
    assert csrf is not None
    answer = client.request(
        "POST", "/connexion", cookies={"preuve_login_csrf": form.cookies["preuve_login_csrf"]},
        content=urlencode({"csrf": csrf.group(1), "token": w.tokens["officer"],
                           "suite": suite}).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 303 and answer.headers["location"] == location


def test_revoking_a_token_ends_its_sessions_at_once(
        world: tuple[Settings, PortalWorld], client: PortalClient) -> None:
    import sqlalchemy as sa

    from experiments.access import ApiToken, issue_token

    _, w = world
    token = issue_token(w.registry, "officer", "*", "revoked-in-test")
    session = client.sign_in(token)
    assert client.request("GET", "/api/experiences", session).status_code == 200
    with sa.orm.Session(w.registry) as db, db.begin():
        db.execute(sa.update(ApiToken).where(ApiToken.label == "revoked-in-test")
                   .values(revoked=True))
    assert client.request("GET", "/api/experiences", session).status_code == 401
    assert client.request("GET", "/experiences", session).status_code == 302


def test_out_of_scope_and_missing_experiments_get_the_same_answer(
        client: PortalClient, sessions: dict[str, dict[str, str]]) -> None:
    for who, template in (("researcher_other", "/experiences/{}"),
                          ("academie_other", "/api/usages/{}"),
                          ("academie_other", "/usages/{}")):
        out_of_scope = client.request("GET", template.format(EXPERIMENT), sessions[who])
        missing = client.request("GET", template.format("no-such-experiment"), sessions[who])
        assert out_of_scope.status_code == missing.status_code == 404, who
        # The same page but for the path it was asked at (in its links).
        assert (out_of_scope.text.replace(EXPERIMENT, "ID")
                == missing.text.replace("no-such-experiment", "ID")), (who, template)
