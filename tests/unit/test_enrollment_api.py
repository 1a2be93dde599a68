"""The enrollment HTTP API on a real SQLite registry (FastAPI TestClient): who may enroll,
see and withdraw which classes."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from fastapi import FastAPI
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():
    # Starlette warns once, at import, that its TestClient prefers the httpx2 package; the
    # client works with httpx (and filterwarnings=error would fail the collection).
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from experiments.access import issue_token
from experiments.database import dispose_engines, registry_engine
from experiments.enrollment.api import install_enrollment_api
from experiments.protocol.language import load_protocol
from experiments.registry import register_protocol
from experiments.settings import Settings
from ingest.contract import EnrollmentMessage

REPO = Path(__file__).resolve().parents[2]
PROTOCOL = REPO / "protocols" / "fluence-cp-2027.yaml"
URL = "/v1/experiments/fluence-cp-2027"
HEADER = "class_id,school_uai,level,pupils,academie,education_priority\n"
VERSAILLES = HEADER + "".join(
    f"v{i},0781234T,CP,{20 + i},versailles,{'REP' if i % 2 else 'REP+'}\n" for i in range(8)
)
CRETEIL = HEADER + "".join(f"k{i},0931111C,CP,{18 + i},creteil,REP\n" for i in range(4))


class Api:
    def __init__(self, client: TestClient, tokens: dict[str, str],
                 published: list[EnrollmentMessage]) -> None:
        self.client, self.tokens, self.published = client, tokens, published

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    settings = Settings(state_dir=tmp_path / "state")
    engine = registry_engine(settings)
    register_protocol(engine, load_protocol(PROTOCOL), PROTOCOL.read_text(), actor="test")
    tokens = {
        "versailles": issue_token(engine, "academie", "versailles"),
        "creteil": issue_token(engine, "academie", "creteil"),
        "lectio": issue_token(engine, "edtech", "lectio"),
        "other-edtech": issue_token(engine, "edtech", "autre-ressource"),
        "officer": issue_token(engine, "officer", "*"),
    }
    published: list[EnrollmentMessage] = []

    def publish(messages: Sequence[EnrollmentMessage]) -> int:
        published.extend(messages)
        return len(messages)

    app = FastAPI()
    install_enrollment_api(app, settings, publish=publish)
    with TestClient(app) as client:
        yield Api(client, tokens, published)
    dispose_engines()


def _post_csv(api: Api, who: str, text: str) -> object:
    return api.client.post(f"{URL}/enrollments", content=text.encode(),
                           headers={**api.auth(who), "Content-Type": "text/csv"})


def test_no_token_or_an_unknown_token_is_401(api: Api) -> None:
    response = api.client.post(f"{URL}/enrollments", content=VERSAILLES.encode())
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get(f"{URL}/enrollments").status_code == 401
    bad = {"Authorization": "Bearer pv_academie_nope"}
    assert api.client.get(f"{URL}/enrollments", headers=bad).status_code == 401


def test_an_academie_enrolls_its_classes_and_gets_their_arms(api: Api) -> None:
    response = _post_csv(api, "versailles", VERSAILLES)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["enrolled"]) == 8 and body["refused"] == [] and body["pending"] == 0
    assert {c["arm"] for c in body["enrolled"]} == {"lectio", "usual"}
    assert [m.class_id for m in api.published] == [f"v{i}" for i in range(8)]
    assert [c["units"] for c in body["balance"]["counts"]] == [4, 4]


def test_json_rows_are_accepted_and_refusals_come_in_french_and_english(api: Api) -> None:
    rows = [
        {"class_id": "v1", "school_uai": "0781234T", "level": "CP", "pupils": 24,
         "academie": "versailles", "education_priority": "REP"},
        {"class_id": "v2", "school_uai": "0781234T", "level": "CM1", "pupils": 24,
         "academie": "versailles", "education_priority": "REP"},
    ]
    response = api.client.post(f"{URL}/enrollments", json={"classes": rows},
                               headers=api.auth("versailles"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert [c["class_id"] for c in body["enrolled"]] == ["v1"]
    (refused,) = body["refused"]
    assert refused["code"] == "level_outside_population" and refused["line"] == 3
    assert "niveau « CM1 »" in refused["message_fr"] and "niveau 'CM1'" in refused["message_en"]


def test_an_academie_cannot_enroll_another_academies_classes(api: Api) -> None:
    response = _post_csv(api, "versailles", VERSAILLES + CRETEIL.split("\n", 1)[1])
    assert response.status_code == 403
    assert response.json()["detail"]["lines"] == [10, 11, 12, 13]
    paris = HEADER + "p1,0751111A,CP,20,paris,REP\n"  # outside the population, still not theirs
    assert _post_csv(api, "versailles", paris).status_code == 403
    assert api.client.get(f"{URL}/enrollments", headers=api.auth("versailles")).json()[
        "classes"] == []  # nothing enrolled


def test_an_academie_sees_only_its_own_classes(api: Api) -> None:
    assert _post_csv(api, "versailles", VERSAILLES).status_code == 200
    assert _post_csv(api, "creteil", CRETEIL).status_code == 200
    mine = api.client.get(f"{URL}/enrollments", headers=api.auth("creteil")).json()["classes"]
    assert sorted(c["class_id"] for c in mine) == ["k0", "k1", "k2", "k3"]
    assert all(c["academie"] == "creteil" and c["arm"] for c in mine)


def test_the_edtech_sees_only_the_treatment_classes_of_its_resource(api: Api) -> None:
    enrolled = _post_csv(api, "versailles", VERSAILLES).json()["enrolled"]
    _post_csv(api, "creteil", CRETEIL)
    all_arms = {c["class_id"]: c["arm"] for c in enrolled}
    withdrawn = next(c for c, arm in all_arms.items() if arm == "lectio")
    response = api.client.post(f"{URL}/withdrawals", headers=api.auth("versailles"),
                               json={"class_id": withdrawn, "reason": "teacher left"})
    assert response.status_code == 200, response.text
    response = api.client.get(f"{URL}/enrollments", headers=api.auth("lectio"))
    assert response.status_code == 200
    classes = response.json()["classes"]
    assert classes and all(set(c) == {"class_id", "school_uai", "arm"} for c in classes)
    assert all(c["arm"] == "lectio" for c in classes)
    versailles_treated = {c for c, arm in all_arms.items() if arm == "lectio"} - {withdrawn}
    assert versailles_treated <= {c["class_id"] for c in classes}
    assert withdrawn not in {c["class_id"] for c in classes}
    # Another resource's experiment: the 404 of a missing one.
    assert api.client.get(f"{URL}/enrollments",
                          headers=api.auth("other-edtech")).status_code == 404
    assert api.client.get(f"{URL}/enrollments", headers=api.auth("officer")).status_code == 403


def test_an_edtech_or_officer_cannot_enroll(api: Api) -> None:
    assert _post_csv(api, "lectio", VERSAILLES).status_code == 403
    assert _post_csv(api, "officer", VERSAILLES).status_code == 403


def test_withdrawals_keep_the_arm_and_stay_within_the_academie(api: Api) -> None:
    enrolled = _post_csv(api, "versailles", VERSAILLES).json()["enrolled"]
    v0 = next(c for c in enrolled if c["class_id"] == "v0")
    response = api.client.post(f"{URL}/withdrawals", headers=api.auth("creteil"),
                               json={"class_id": "v0", "reason": "x"})
    assert response.status_code == 404  # not one of creteil's classes (no probing)
    response = api.client.post(f"{URL}/withdrawals", headers=api.auth("versailles"),
                               json={"class_id": "v0", "reason": "moved school"})
    assert response.status_code == 200
    assert (response.json()["arm"], response.json()["data_policy"]) == (v0["arm"], "keep")
    assert api.published[-1].class_id == "v0" and api.published[-1].status == "withdrawn"
    again = api.client.post(f"{URL}/withdrawals", headers=api.auth("versailles"),
                            json={"class_id": "v0", "reason": "again"})
    assert again.status_code == 409
    pupil = api.client.post(f"{URL}/withdrawals", headers=api.auth("versailles"),
                            json={"class_id": "v1", "reason": "parents", "learner_id": "l-7"})
    assert pupil.status_code == 200 and pupil.json()["data_policy"] == "remove"
    # No event of the pupil stored yet: nothing to delete, and the answer says so.
    assert pupil.json()["removed"] == {"events": 0, "daily_usage": 0, "receipts": 0}
    assert response.json()["removed"] is None  # a class withdrawal keeps the data


def test_unknown_experiment_is_404(api: Api) -> None:
    response = api.client.get("/v1/experiments/nope/enrollments", headers=api.auth("versailles"))
    assert response.status_code == 404


def test_an_edtech_key_sent_as_x_api_key_works_as_for_events(api: Api) -> None:
    _post_csv(api, "versailles", VERSAILLES)
    key = {"X-API-Key": api.tokens["lectio"]}
    answer = api.client.get(f"{URL}/enrollments", headers=key)
    assert answer.status_code == 200, answer.text
    assert {c["arm"] for c in answer.json()["classes"]} == {"lectio"}
    other = {"X-API-Key": api.tokens["other-edtech"]}
    assert api.client.get(f"{URL}/enrollments", headers=other).status_code == 404
    assert api.client.get(f"{URL}/enrollments",
                          headers={"X-API-Key": "pv_edtech_nope"}).status_code == 401


def test_an_academie_learns_nothing_of_another_academies_class_or_balance(api: Api) -> None:
    assert _post_csv(api, "versailles", VERSAILLES).status_code == 200
    # Créteil names a Versailles class id with its own details: the id is taken, and
    # nothing of how the registry holds it (school, académie, pupils) is said.
    taken = HEADER + "v3,0931111C,CP,30,creteil,REP\n" + CRETEIL.split("\n", 1)[1]
    response = _post_csv(api, "creteil", taken)
    assert response.status_code == 200, response.text
    body = response.json()
    (refused,) = body["refused"]
    assert (refused["code"], refused["field"], refused["value"]) == ("class_id_taken",
                                                                    "class_id", "v3")
    assert "0781234T" not in response.text and "versailles" not in response.text
    # Its balance counts its own 4 classes, not Versailles' 8.
    assert sum(c["units"] for c in body["balance"]["counts"]) == 4
    # Versailles re-sending its own class with another head count still hears why.
    mine = _post_csv(api, "versailles", HEADER + "v3,0781234T,CP,29,versailles,REP\n").json()
    assert mine["refused"][0]["code"] == "enrolled_differently"
    assert mine["refused"][0]["field"] == "pupils"
    assert sum(c["units"] for c in mine["balance"]["counts"]) == 8


LEARNERS_URL = "/v1/experiments/lectio-eleves-2027"


@pytest.fixture
def learner_api(tmp_path: Path) -> Iterator[Api]:
    """The API on a registry holding the pupil-randomised protocol (a pseudonym key set)."""
    protocol = REPO / "tests" / "data" / "enrollment" / "learner-protocol.yaml"
    settings = Settings(state_dir=tmp_path / "learners", pseudonym_key="learners-key" * 5)
    engine = registry_engine(settings)
    register_protocol(engine, load_protocol(protocol), protocol.read_text(), actor="test")
    tokens = {
        "versailles": issue_token(engine, "academie", "versailles"),
        "creteil": issue_token(engine, "academie", "creteil"),
        "lectio": issue_token(engine, "edtech", "lectio"),
        "other-edtech": issue_token(engine, "edtech", "autre-ressource"),
    }
    app = FastAPI()
    install_enrollment_api(app, settings, publish=lambda messages: len(messages))
    with TestClient(app) as client:
        yield Api(client, tokens, [])
    dispose_engines()


def _pupils(academie: str, uai: str, ids: Sequence[str], class_of: Callable[[int], str]
            ) -> list[dict[str, object]]:
    return [{"learner_id": learner, "class_id": class_of(i), "school_uai": uai, "level": "CP",
             "academie": academie, "education_priority": "REP", "repeater": "non"}
            for i, learner in enumerate(ids)]


def _gar(numbers: range) -> list[str]:
    return [f"gar-{i:03d}" for i in numbers]


def test_in_a_learner_design_an_academie_learns_nothing_of_another_academies_pupils(
        learner_api: Api) -> None:
    client, url = learner_api.client, f"{LEARNERS_URL}/enrollments"
    mine = client.post(url, headers=learner_api.auth("versailles"),
                       json={"pupils": _pupils("versailles", "0781234T", _gar(range(8)),
                                               lambda _: "cp-v")})
    assert mine.status_code == 200, mine.text
    # Créteil sends a Versailles pupil id in its own class, and a Versailles class id.
    theirs = client.post(url, headers=learner_api.auth("creteil"), json={"pupils": [
        *_pupils("creteil", "0931111C", _gar(range(7, 12)), lambda _: "cp-k"),
        *_pupils("creteil", "0931111C", _gar(range(20, 21)), lambda _: "cp-v"),
    ]})
    assert theirs.status_code == 200, theirs.text
    body = theirs.json()
    assert "0781234T" not in theirs.text and "versailles" not in theirs.text
    assert {r["code"] for r in body["refused"]} == {"learner_enrolled_differently",
                                                   "class_id_taken"}
    pupil = next(r for r in body["refused"] if r["code"] == "learner_enrolled_differently")
    assert (pupil["field"], pupil["value"]) == ("learner_id", "gar-007")
    assert "cp-v" not in pupil["message_fr"] + pupil["message_en"]  # where it is held
    assert sum(c["units"] for c in body["balance"]["counts"]) == 4  # gar-008..011


def test_in_a_learner_design_the_resource_learns_which_of_its_pupils_are_treated(
        learner_api: Api) -> None:
    client, auth = learner_api.client, learner_api.auth
    ids = _gar(range(20))
    enrolled = client.post(f"{LEARNERS_URL}/enrollments", headers=auth("versailles"),
                           json={"pupils": _pupils("versailles", "0781234T", ids,
                                                   lambda i: f"cp-{i % 2}")})
    assert enrolled.status_code == 200, enrolled.text
    arms = {p["learner_id"]: p["arm"] for p in enrolled.json()["enrolled"]}
    assert set(arms) == set(ids) and set(arms.values()) == {"lectio", "usual"}
    client.post(f"{LEARNERS_URL}/withdrawals", headers=auth("versailles"),
                json={"class_id": "cp-0", "learner_id": "gar-000", "reason": "départ"})

    asked = [*reversed(ids), "gar-999"]
    answer = client.post(f"{LEARNERS_URL}/assignments", headers=auth("lectio"),
                         json={"learner_ids": asked})
    assert answer.status_code == 200, answer.text
    rows = answer.json()["assignments"]
    assert [r["learner_id"] for r in rows] == asked  # in the order asked
    by_id = {r["learner_id"]: r for r in rows}
    for learner in ids[1:]:
        assert by_id[learner]["treated"] == (arms[learner] == "lectio")
        assert by_id[learner]["arm"] == ("lectio" if arms[learner] == "lectio" else None)
    assert by_id["gar-000"]["status"] == "withdrawn" and not by_id["gar-000"]["treated"]
    assert by_id["gar-999"] == {"learner_id": "gar-999", "status": "not_enrolled",
                                "treated": False, "arm": None}
    assert "usual" not in answer.text  # the control arm's name is not given out

    for who, status in (("other-edtech", 404), ("versailles", 403)):
        assert client.post(f"{LEARNERS_URL}/assignments", headers=auth(who),
                           json={"learner_ids": ids}).status_code == status
    refused = client.post(f"{LEARNERS_URL}/assignments", headers=auth("lectio"),
                          json={"learner_ids": ["camille.martin@example.fr"]})
    assert refused.status_code == 422


def test_the_pupils_lookup_of_a_class_design_points_to_the_class_list(api: Api) -> None:
    answer = api.client.post(f"{URL}/assignments", headers=api.auth("lectio"),
                             json={"learner_ids": ["gar-001"]})
    assert answer.status_code == 409 and "enrollments" in answer.json()["detail"]


def test_another_resources_experiment_is_the_same_404_as_a_missing_one(api: Api) -> None:
    for path in (f"{URL}/enrollments", "/v1/experiments/no-such-experiment/enrollments"):
        answer = api.client.get(path, headers=api.auth("other-edtech"))
        assert answer.status_code == 404, answer.text
    out_of_scope = api.client.get(f"{URL}/enrollments", headers=api.auth("other-edtech"))
    missing = api.client.get("/v1/experiments/x/enrollments", headers=api.auth("other-edtech"))
    assert out_of_scope.json()["detail"] == "no experiment 'fluence-cp-2027'"
    assert missing.json()["detail"] == "no experiment 'x'"
    assert "lectio" not in out_of_scope.text, "the resource of the experiment leaks"


def test_a_correction_before_the_intervention_keeps_the_arm_and_stays_within_the_academie(
    api: Api,
) -> None:
    enrolled = _post_csv(api, "versailles", HEADER + "k1,0781234T,CP,42,versailles,REP\n")
    arm = enrolled.json()["enrolled"][0]["arm"]  # type: ignore[attr-defined]
    body = {"class_id": "k1", "reason": "typo: 24", "pupils": 24,
            "attributes": {"education_priority": "REP+"}}
    other = api.client.post(f"{URL}/corrections", json=body, headers=api.auth("creteil"))
    assert other.status_code == 404, other.text  # another académie's class: as if missing
    assert api.client.post(f"{URL}/corrections", json=body,
                           headers=api.auth("lectio")).status_code == 403
    fixed = api.client.post(f"{URL}/corrections", json=body, headers=api.auth("versailles"))
    assert fixed.status_code == 200, fixed.text
    assert fixed.json() | {"corrected_at": None} == {
        "experiment": "fluence-cp-2027", "class_id": "k1", "version": 1, "arm": arm,
        "changes": {"pupils": [42, 24], "education_priority": ["REP", "REP+"]},
        "corrected_at": None}
    bad = api.client.post(f"{URL}/corrections", headers=api.auth("versailles"),
                          json={"class_id": "k1", "reason": "x",
                                "attributes": {"education_priority": "banana"}})
    assert bad.status_code == 400 and "not a value of" in bad.text
