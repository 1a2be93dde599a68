"""The académie and collectivité pages in process (issue 17): Excel's French file, the
preview that writes nothing, the confirmation through the enrollment service, arms in
every state, withdrawal, double validation, scopes and CSRF."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from sqlalchemy.orm import Session

from experiments.access import AuditEntry
from experiments.database import dispose_engines
from experiments.enrollment.api import install_enrollment_api
from experiments.enrollment.assignments import enrolled_classes, verify_allocations
from experiments.enrollment.design import registered_design
from experiments.enrollment.validations import pending_classes
from experiments.portal.app import create_portal
from experiments.registry import transition_experiment
from experiments.settings import Settings
from tests.support.academie import (
    DOUBLE,
    SIMULATED_NOW,
    SINGLE,
    AcademieWorld,
    academie_settings,
    build_academie_world,
    excel_file,
)
from tests.support.decision import decide_and_acknowledge
from tests.support.portal import CSRF, PortalClient


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[Settings, AcademieWorld]]:
    settings = academie_settings(tmp_path / "state")
    try:
        yield settings, build_academie_world(settings)
    finally:
        dispose_engines()


@pytest.fixture
def client(world: tuple[Settings, AcademieWorld]) -> Iterator[PortalClient]:
    settings, w = world
    client = PortalClient(create_portal(settings, registry=w.registry,
                                       clock=lambda: SIMULATED_NOW, publish=None))
    try:
        yield client
    finally:
        client.close()


def _csrf(client: PortalClient, cookies: dict[str, str], url: str) -> str:
    page = client.request("GET", url, cookies)
    assert page.status_code == 200, page.text
    found = CSRF.search(page.text)
    assert found is not None
    return found.group(1)


def _upload(client: PortalClient, cookies: dict[str, str], experiment: str, data: bytes,
            csrf: str | None = None) -> Any:
    csrf = csrf if csrf is not None else _csrf(client, cookies, f"/inscriptions/{experiment}")
    return client.request("POST", f"/inscriptions/{experiment}/fichier", cookies,
                          data={"csrf": csrf},
                          files={"fichier": ("classes.csv", data, "text/csv")})


def _form(client: PortalClient, cookies: dict[str, str], url: str,
          fields: list[tuple[str, str]]) -> Any:
    return client.request("POST", url, cookies, content=urlencode(fields).encode(),
                          headers={"Content-Type": "application/x-www-form-urlencoded"})


def _confirm(client: PortalClient, cookies: dict[str, str], experiment: str,
             preview: str) -> Any:
    upload = re.search(r'name="apercu" value="([^"]+)"', preview)
    csrf = CSRF.search(preview)
    assert upload is not None and csrf is not None, preview
    return _form(client, cookies, f"/inscriptions/{experiment}/confirmation",
                 [("csrf", csrf.group(1)), ("apercu", upload.group(1))])


def _audit(registry: sa.Engine, action: str) -> list[AuditEntry]:
    with Session(registry) as session:
        return list(session.scalars(sa.select(AuditEntry).where(AuditEntry.action == action)))


def test_the_academie_journey(world: tuple[Settings, AcademieWorld],
                              client: PortalClient) -> None:
    settings, w = world
    creteil = client.sign_in(w.tokens["creteil"])
    listing = client.request("GET", "/inscriptions", creteil)
    assert SINGLE in listing.text and DOUBLE in listing.text

    # The preview: every refused row with its reason in French, nothing written.
    preview = _upload(client, creteil, SINGLE, excel_file())
    assert preview.status_code == 200, preview.text
    assert "3 ligne(s) seront acceptées, 1 refusée(s)" in preview.text
    assert "sa lettre de contrôle devrait être" in preview.text
    assert "Enseignant référent" in preview.text  # the ignored column is named
    assert enrolled_classes(w.registry, SINGLE) == []
    assert _audit(w.registry, "enrollment.file") == []
    for arm in ("lectio", "usual"):
        assert f"<td>{arm}</td>" not in preview.text  # no arm before the confirmation

    # The confirmation: the enrollment service draws the arms, shown with the balance.
    done = _confirm(client, creteil, SINGLE, preview.text)
    assert done.status_code == 200, done.text
    classes = enrolled_classes(w.registry, SINGLE)
    assert sorted(c.class_id for c in classes) == ["cr-a", "cr-b", "cr-d"]
    assert {c.academie for c in classes} == {"creteil"}
    for c in classes:
        assert f"<th scope=\"row\">{c.class_id}</th><td>{c.school_uai}</td><td>{c.arm}</td>" \
            in done.text
    assert "Équilibre entre les bras" in done.text
    assert [(e.actor, (e.detail or {}).get("file"))
            for e in _audit(w.registry, "enrollment.file")] == [
        ("academie:creteil:dane-creteil", "portal")]
    assert verify_allocations(w.registry, registered_design(w.registry, SINGLE)) == []
    # The same preview cannot be confirmed twice.
    again = _confirm(client, creteil, SINGLE, preview.text)
    assert again.status_code == 409 and "a expiré" in again.text

    # Withdrawal of a class, with its reason; it keeps its arm.
    csrf = _csrf(client, creteil, f"/inscriptions/{SINGLE}")
    answer = _form(client, creteil, f"/inscriptions/{SINGLE}/retrait",
                   [("csrf", csrf), ("class_id", "cr-b"), ("eleve", ""),
                    ("motif", "l'école quitte le dispositif")])
    assert answer.status_code == 303
    withdrawn = {c.class_id: c for c in enrolled_classes(w.registry, SINGLE)}["cr-b"]
    assert withdrawn.status == "withdrawn"
    assert [e.actor for e in _audit(w.registry, "enrollment.withdraw")] == [
        "academie:creteil:dane-creteil"]
    # A reason with a phone number is refused, with a French page.
    refused = _form(client, creteil, f"/inscriptions/{SINGLE}/retrait",
                    [("csrf", csrf), ("class_id", "cr-a"), ("motif", "appeler 06 12 34 56 78")])
    assert refused.status_code == 400 and "Le motif ne peut pas être enregistré" in refused.text

    # Arms stay readable once the experiment is closed: the page and the API.
    for state in ("running", "analysing", "closed"):
        if state == "closed":  # the post-experiment step (issue 19)
            decide_and_acknowledge(w.registry, SINGLE)
        transition_experiment(w.registry, SINGLE, state)  # type: ignore[arg-type]
    page = client.request("GET", f"/inscriptions/{SINGLE}", creteil)
    assert page.status_code == 200
    assert "Les inscriptions de cette expérimentation sont closes" in page.text
    assert f"<td>{withdrawn.arm}</td><td>retirée</td>" in page.text
    assert 'enctype="multipart/form-data"' not in page.text
    api = FastAPI()
    install_enrollment_api(api, settings, publish=lambda messages: len(messages),
                           engine=w.registry)
    api_client = PortalClient(api)
    try:
        read = api_client.request("GET", f"/v1/experiments/{SINGLE}/enrollments",
                                  headers={"Authorization": f"Bearer {w.tokens['creteil']}"})
        assert read.status_code == 200, read.text
        assert sorted(c["class_id"] for c in read.json()["classes"]) == ["cr-a", "cr-b", "cr-d"]
    finally:
        api_client.close()


def test_csrf_scopes_and_roles(world: tuple[Settings, AcademieWorld],
                               client: PortalClient) -> None:
    _, w = world
    creteil = client.sign_in(w.tokens["creteil"])
    versailles = client.sign_in(w.tokens["versailles"])
    # Without the session's CSRF token, nothing is read.
    assert _upload(client, creteil, SINGLE, excel_file(), csrf="forged").status_code == 403
    preview = _upload(client, creteil, SINGLE, excel_file(bad_row=False))
    _confirm(client, creteil, SINGLE, preview.text)
    # Another académie sees none of Créteil's classes, and cannot send them.
    page = client.request("GET", f"/inscriptions/{SINGLE}", versailles)
    assert page.status_code == 200 and "cr-a" not in page.text
    foreign = _upload(client, versailles, SINGLE, excel_file(prefix="vx"))
    assert foreign.status_code == 403 and "autre académie" in foreign.text
    csrf = _csrf(client, versailles, f"/inscriptions/{SINGLE}")
    steal = _form(client, versailles, f"/inscriptions/{SINGLE}/retrait",
                  [("csrf", csrf), ("class_id", "cr-a"), ("motif", "essai")])
    assert steal.status_code == 404
    assert {c.status for c in enrolled_classes(w.registry, SINGLE)} == {"enrolled"}
    # Other roles: 403 on the académie pages; a collectivité on its own pages only.
    for who in ("officer", "edtech", "dep93"):
        cookies = client.sign_in(w.tokens[who])
        assert client.request("GET", "/inscriptions", cookies).status_code == 403
        assert client.request("GET", f"/inscriptions/{SINGLE}", cookies).status_code == 403
    for who in ("officer", "edtech", "creteil"):
        cookies = client.sign_in(w.tokens[who])
        assert client.request("GET", "/validations", cookies).status_code == 403
        assert client.request("GET", f"/validations/{DOUBLE}", cookies).status_code == 403
    dep93 = client.sign_in(w.tokens["dep93"])
    assert client.request("GET", "/", dep93).headers["location"] == "/validations"
    # An académie outside the experiment's territory: as if it did not exist.
    from experiments.access import issue_token

    lille = client.sign_in(issue_token(w.registry, "academie", "lille", "dane-lille"))
    assert client.request("GET", f"/inscriptions/{SINGLE}", lille).status_code == 404
    assert SINGLE not in client.request("GET", "/inscriptions", lille).text
    assert _upload(client, lille, SINGLE, excel_file(),
                   csrf=CSRF.search(client.request("GET", "/inscriptions", lille).text
                                    ).group(1)).status_code == 404  # type: ignore[union-attr]
    # An experiment without a collectivité's validation is not a collectivité's.
    assert client.request("GET", f"/validations/{SINGLE}", dep93).status_code == 404


def test_double_validation(world: tuple[Settings, AcademieWorld],
                           client: PortalClient) -> None:
    _, w = world
    creteil = client.sign_in(w.tokens["creteil"])
    preview = _upload(client, creteil, DOUBLE, excel_file("CE2"))
    assert preview.status_code == 200, preview.text
    assert "3 ligne(s) seront acceptées, 1 refusée(s)" in preview.text
    assert pending_classes(w.registry, DOUBLE) == []
    done = _confirm(client, creteil, DOUBLE, preview.text)
    assert "3 classe(s) validée(s) par votre académie" in done.text
    assert enrolled_classes(w.registry, DOUBLE) == []  # not enrolled before the second
    waiting = pending_classes(w.registry, DOUBLE, waiting=True)
    assert [(c.class_id, c.academie_by) for c in waiting] == [
        ("cr-a", "academie:creteil:dane-creteil"), ("cr-b", "academie:creteil:dane-creteil"),
        ("cr-d", "academie:creteil:dane-creteil")]

    # Each collectivité sees the classes of the schools it equips, and those only.
    dep93, dep78 = client.sign_in(w.tokens["dep93"]), client.sign_in(w.tokens["dep78"])
    page = client.request("GET", f"/validations/{DOUBLE}", dep93)
    assert page.status_code == 200 and "cr-a" in page.text and "cr-b" in page.text
    assert "cr-d" not in page.text  # its school is the commune's
    assert "cr-a" not in client.request("GET", f"/validations/{DOUBLE}", dep78).text
    csrf78 = CSRF.search(client.request("GET", f"/validations/{DOUBLE}", dep78).text)
    assert csrf78 is not None
    probe = _form(client, dep78, f"/validations/{DOUBLE}",
                  [("csrf", csrf78.group(1)), ("classe", "cr-a")])
    assert probe.status_code == 404
    assert len(pending_classes(w.registry, DOUBLE, waiting=True)) == 3

    csrf = CSRF.search(page.text)
    assert csrf is not None
    # Ticked in the reverse order: drawn in the académie's order all the same.
    validated = _form(client, dep93, f"/validations/{DOUBLE}",
                      [("csrf", csrf.group(1)), ("classe", "cr-b"), ("classe", "cr-a")])
    assert validated.status_code == 200, validated.text
    enrolled = {c.class_id: c for c in enrolled_classes(w.registry, DOUBLE)}
    assert sorted(enrolled) == ["cr-a", "cr-b"]
    for c in enrolled.values():
        assert f"<td>{c.arm}</td>" in validated.text
    row = {p.class_id: p for p in pending_classes(w.registry, DOUBLE)}["cr-a"]
    assert row.collectivite_by == "collectivite:departement-93:cd93"
    assert row.collectivite_at is not None
    assert [e.actor for e in _audit(w.registry, "enrollment.validate_collectivite")] == [
        "collectivite:departement-93:cd93"]
    assert verify_allocations(w.registry, registered_design(w.registry, DOUBLE)) == []
    # The académie now reads the arms of its validated classes.
    page = client.request("GET", f"/inscriptions/{DOUBLE}", creteil)
    assert f"<td>{enrolled['cr-a'].arm}</td>" in page.text


def test_a_pupils_file_in_english_then_a_pupil_withdrawn(
        world: tuple[Settings, AcademieWorld], client: PortalClient) -> None:
    """A protocol randomised by pupil: the pupils file (French headers, ';',
    Windows-1252), the preview in English, each pupil's arm shown once, a pupil withdrawn
    by the id of the file."""
    from experiments.enrollment.assignments import enrolled_learners
    from experiments.protocol.language import parse_protocol
    from experiments.registry import register_protocol
    from tests.support.academie import CRETEIL_SCHOOLS, ROOT

    _, w = world
    text = (ROOT / "tests" / "data" / "enrollment" / "learner-protocol.yaml").read_text(
        encoding="utf-8")
    protocol = parse_protocol(text)
    register_protocol(w.registry, protocol, text)
    transition_experiment(w.registry, protocol.id, "enrolling")
    rows = ["Identifiant élève;Classe;UAI;Niveau;Académie;Éducation prioritaire;repeater"]
    rows += [f"gar-{k};cm-1;{CRETEIL_SCHOOLS[0]};CP;Créteil;REP;{('oui', 'non')[k % 2]}"
             for k in range(6)]
    rows.append(f"jean.dupont@ecole.fr;cm-1;{CRETEIL_SCHOOLS[0]};CP;Créteil;REP;non")
    data = ("\r\n".join(rows) + "\r\n").encode("cp1252")
    creteil = client.sign_in(w.tokens["creteil"])
    english = {**creteil, "preuve_lang": "en"}
    preview = _upload(client, english, protocol.id, data)
    assert preview.status_code == 200, preview.text
    assert "6 row(s) will be accepted, 1 refused." in preview.text
    assert "the learner id looks like an e-mail address" in preview.text
    assert "jean.dupont" not in preview.text  # the refusal never repeats it
    done = _confirm(client, english, protocol.id, preview.text)
    assert done.status_code == 200, done.text
    assert "Pupils enrolled by this file and their arm" in done.text
    for k in range(6):
        assert f"<th scope=\"row\">gar-{k}</th><td>cm-1</td>" in done.text
    csrf = _csrf(client, creteil, f"/inscriptions/{protocol.id}")
    answer = _form(client, creteil, f"/inscriptions/{protocol.id}/retrait",
                   [("csrf", csrf), ("class_id", "cm-1"), ("eleve", "gar-3"),
                    ("motif", "opposition des responsables légaux")])
    assert answer.status_code == 303, answer.text
    statuses = sorted(p.status for p in enrolled_learners(w.registry, protocol.id))
    assert statuses == ["enrolled"] * 5 + ["withdrawn"]


def test_the_upload_is_capped_and_forms_stay_small(
        world: tuple[Settings, AcademieWorld], client: PortalClient) -> None:
    settings, w = world
    creteil = client.sign_in(w.tokens["creteil"])
    cap = settings.portal.server.max_upload_bytes
    big = excel_file() + b"x" * cap
    assert _upload(client, creteil, SINGLE, big).status_code == 413
    form = _form(client, creteil, f"/inscriptions/{SINGLE}/retrait",
                 [("csrf", "x"), ("motif", "m" * settings.portal.server.max_form_bytes)])
    assert form.status_code == 413
    assert enrolled_classes(w.registry, SINGLE) == []
