"""The pseudonymisation key id of each experiment: recorded once, another key refused."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from experiments.database import registry_engine
from experiments.enrollment import EnrollmentDesign, enroll_learners, read_pupils
from experiments.protocol.language import load_protocol
from experiments.settings import Settings
from ingest.pseudonym import (
    PseudonymKeyError,
    check_pseudonym_key,
    pseudonym_key_id,
    pseudonym_keys_table,
)
from ingest.stream.router import EventRouter, IngressRecord
from tests.conftest import SettingsFactory
from tests.support.events import enrollment

KEY_A = b"a" * 32
KEY_B = b"b" * 32
PUPILS = ("learner_id,class_id,school_uai,level,academie,education_priority,repeater\n"
          "L1,c1,0781234T,CP,versailles,REP,non\n")


def test_the_key_id_names_the_key_without_revealing_it() -> None:
    key_id = pseudonym_key_id(KEY_A)
    assert len(key_id) == 16 and key_id != pseudonym_key_id(KEY_B)
    assert key_id not in (KEY_A.hex(), hashlib.sha256(KEY_A).hexdigest()[:16])


def test_the_first_key_is_recorded_and_another_is_refused(
        make_settings: SettingsFactory) -> None:
    registry = registry_engine(make_settings())
    assert check_pseudonym_key(registry, "exp-a", KEY_A) == pseudonym_key_id(KEY_A)
    assert check_pseudonym_key(registry, "exp-a", KEY_A) == pseudonym_key_id(KEY_A)
    assert check_pseudonym_key(registry, "exp-b", KEY_B) == pseudonym_key_id(KEY_B), \
        "a rotated key serves new experiments"
    with pytest.raises(PseudonymKeyError) as refused:
        check_pseudonym_key(registry, "exp-a", KEY_B)
    message = str(refused.value)
    assert f"with the key of id {pseudonym_key_id(KEY_A)}" in message
    assert f"this process has the key of id {pseudonym_key_id(KEY_B)}" in message
    assert KEY_B.decode() not in message and KEY_A.decode() not in message
    with registry.connect() as connection:
        rows = dict(connection.execute(sa.select(pseudonym_keys_table.c.experiment_id,
                                                 pseudonym_keys_table.c.key_id)).all())
    assert rows == {"exp-a": pseudonym_key_id(KEY_A), "exp-b": pseudonym_key_id(KEY_B)}


def test_enrolling_pupils_with_another_key_is_refused(make_settings: SettingsFactory) -> None:
    registry = registry_engine(make_settings())
    design = EnrollmentDesign.from_protocol(
        load_protocol("tests/data/enrollment/learner-protocol.yaml"))
    enroll_learners(registry, design, read_pupils(PUPILS, design), key=KEY_A, actor="test")
    more = PUPILS.replace("L1,", "L2,")
    with pytest.raises(PseudonymKeyError, match=design.experiment_id):
        enroll_learners(registry, design, read_pupils(more, design), key=KEY_B, actor="test")


def test_the_stream_worker_refuses_to_store_with_another_key(
        make_settings: SettingsFactory) -> None:
    settings: Settings = make_settings()
    registry = registry_engine(settings)
    check_pseudonym_key(registry, "exp-unit", KEY_A)  # its pupils were enrolled with key A
    router = EventRouter(settings, KEY_B, registry)
    event = (b'{"event_id": "00000000-0000-4000-8000-000000000001", '
             b'"occurred_at": "2027-10-04T09:00:00+02:00", "resource_id": "lectio", '
             b'"learner_id": "gar-1", "class_id": "cp-01a", "school_uai": "0750001U", '
             b'"verb": "exercise_answered"}')
    enrolled = enrollment("cp-01a", "exp-unit", "lectio")
    with pytest.raises(PseudonymKeyError, match="exp-unit"):
        router.route([IngressRecord("preuve.events", 0, 0, None, event)],
                     lambda c, r: enrolled)
